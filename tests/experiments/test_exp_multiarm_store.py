"""A/B/n through ``analyze`` on a real DuckDB store (issue 20): assignments with several treatment
arms. Each KPI's main result pools the arms (equal to the two-arm analysis of the same units), and
``arms`` compares each arm with control, Holm-adjusted across arms, equal to ``stats.multi_arm`` on
the same per-unit statistics; the SRM check covers every arm; the CLI, the report and the
dashboard show the same per-arm figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.cli import app
from insightroi.errors import DataError
from insightroi.experiments import analyze_experiment
from insightroi.metrics import unit_metrics
from insightroi.program import parse_program, starter_program_text
from insightroi.stats import Ratio, RatioRegressionAdjusted, multi_arm
from insightroi.store import open_store

TEXT = starter_program_text().replace("end = 2026-03-31", "end = 2025-09-30")
KPI = "negative_reviews_per_1000_orders"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("abn")
    prog = parse_program(TEXT)
    tables = simulate_experiment_tables(prog, n_units=240, effect=-0.3, seed=9)
    two = open_store(f"duckdb:///{root / 'two.duckdb'}")
    write_tables(two, tables)
    two.close()
    # The same units, the treated ones split over two arms by their id.
    a = tables["assignments"].copy()
    treated = a.arm == "treatment"
    a.loc[treated, "arm"] = np.where(a.loc[treated, "unit_id"].str[-1].isin(list("02468")), "alerts_daily",
                                     "alerts_weekly")
    three = open_store(f"duckdb:///{root / 'three.duckdb'}")
    write_tables(three, {**tables, "assignments": a})
    three.close()
    return prog, root


def test_pooled_results_equal_the_two_arm_analysis_and_each_arm_equals_multi_arm(stores):
    prog, root = stores
    with open_store(f"duckdb:///{root / 'two.duckdb'}") as st:
        two = analyze_experiment(st, prog, kpis=[KPI], weekly=False)
    with open_store(f"duckdb:///{root / 'three.duckdb'}") as st:
        three = analyze_experiment(st, prog, kpis=[KPI], weekly=False)
        units = unit_metrics(st, prog, KPI)
    p, q = two.results[KPI], three.results[KPI]
    assert (q.estimate, q.se) == pytest.approx((p.estimate, p.se), rel=1e-12)
    assert (three.n_treatment, three.n_control) == (two.n_treatment, two.n_control)
    arms = three.arms[KPI]
    assert sorted(arms) == ["alerts_daily", "alerts_weekly"]
    # Direct: the same per-unit statistics (CUPED on the pre-period, as the analysis) into multi_arm.
    def stat(arm):
        d = units[units.arm == arm]
        return RatioRegressionAdjusted.from_arrays(d.num, d.den, d.num_pre, d.den_pre)
    direct = multi_arm(stat("control"), {v: stat(v) for v in ("alerts_daily", "alerts_weekly")}, correction="holm",
                       metric=KPI)
    for v, r in direct.arms.items():
        assert arms[v].estimate == pytest.approx(r.estimate * 1000, rel=1e-10)
        assert arms[v].se == pytest.approx(r.se * 1000, rel=1e-10)
        assert arms[v].extra["p_adjusted"] == pytest.approx(r.extra["p_adjusted"], rel=1e-10)
    ps = sorted(r.p_value for r in arms.values())
    assert min(r.extra["p_adjusted"] for r in arms.values()) == pytest.approx(min(2 * ps[0], 1.0), rel=1e-12)
    # Both arms carry the simulated effect (-30%): each is clearly below control.
    assert all(r.ci[1] < 0 for r in arms.values())
    srm = {c.name: c for c in three.checks}["sample_ratio_mismatch"]
    assert len(srm.details["observed"]) == 3 and srm.status == "pass"


def test_cli_report_and_dashboard_show_the_arms(stores, tmp_path):
    import httpx

    from helpers.live_server import LiveServer
    from insightroi.bundle import assemble_bundle
    from insightroi.report import render_html
    from insightroi.server import create_app

    prog, root = stores
    url = f"duckdb:///{root / 'three.duckdb'}"
    prog_file = tmp_path / "insightroi.toml"
    prog_file.write_text(TEXT)
    out = CliRunner().invoke(app, ["analyze", "--store", url, "--program", str(prog_file), "--kpi", KPI],
                             terminal_width=220)
    assert out.exit_code == 0, out.stderr
    saved = json.loads(CliRunner().invoke(app, ["analyze", "--store", url, "--program", str(prog_file), "--kpi", KPI,
                                                "--json"]).stdout)["arms"][KPI]
    assert "Each arm vs control" in out.stdout and "alerts_daily" in out.stdout and "alerts_weekly" in out.stdout
    with open_store(url) as st:
        html = render_html(assemble_bundle(st, prog).to_report())
    with LiveServer(create_app(url, program=prog_file, public_read=True)) as srv:
        page = httpx.get(srv.url + "/experiment", timeout=60).text
    for arm, r in saved.items():
        for doc in (html, page):
            part = doc[doc.index('id="arms"'):]
            row = part[part.index(f'data-arm="{arm}"'):]
            row = row[:row.index("</tr>")]
            assert f"{abs(r['estimate']):.1f}" in row, (arm, row)


def test_a_lone_arm_must_be_called_treatment(stores, tmp_path):
    prog, root = stores
    import shutil

    import duckdb

    path = tmp_path / "one.duckdb"
    shutil.copy(root / "two.duckdb", path)
    con = duckdb.connect(str(path))
    con.execute("UPDATE assignments SET arm = 'variant' WHERE arm = 'treatment'")
    con.close()
    with open_store(f"duckdb:///{path}") as st, pytest.raises(DataError, match="must be called 'treatment'"):
        analyze_experiment(st, prog, kpis=[KPI], weekly=False)


def test_novelty_reads_the_pooled_arms_like_the_two_arm_analysis(stores):
    """The weekly trend behind the novelty check pools the arms as the main result does; with arms
    named other than 'treatment' it had no treated unit in any week and always skipped."""
    prog, root = stores
    novelty = {}
    for name in ("two", "three"):
        with open_store(f"duckdb:///{root / f'{name}.duckdb'}") as st:
            novelty[name] = {c.name: c for c in analyze_experiment(st, prog, kpis=[KPI]).checks}["novelty"]
    assert novelty["three"].status != "skip", novelty["three"].message
    assert (novelty["three"].status, novelty["three"].message) == (novelty["two"].status, novelty["two"].message)

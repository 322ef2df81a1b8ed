"""analyze_experiment, power_table and the analyze CLI on a simulated store with a known effect.

The simulated world (tests/helpers/simstore.py) multiplies treated families' negative
review, ticket and refund propensities by 0.7 in the window (relative effect -30%); refunds
propensity too. Conversion and revenue have no effect.
"""

from __future__ import annotations

import json

import pytest

from insightroi.errors import DataError, EstimationError
from insightroi.experiments import analyze_experiment, power_table
from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

TEXT = starter_program_text().replace("end = 2026-03-31", "end = 2025-09-30")


def _store(path, **kw):
    prog = parse_program(TEXT)
    st = open_store(f"duckdb:///{path}")
    write_tables(st, simulate_experiment_tables(prog, n_units=200, **kw))
    return prog, st


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    path = tmp_path_factory.mktemp("a") / "exp.duckdb"
    prog, st = _store(path, seed=5, effect=-0.3)
    res = analyze_experiment(st, prog, segments=["region"])
    yield prog, st, res, path
    st.close()


def test_effects_cover_the_truth(analysed):
    prog, st, res, _ = analysed
    for kpi in ("negative_reviews_per_1000_orders", "tickets_per_1000_orders"):
        r = res.results[kpi]
        x = r.extra
        assert x["relative_ci_low"] <= -0.3 <= x["relative_ci_high"]
        assert r.ci_high < 0  # detected
        assert x["p_adjusted"] >= r.p_value and x["p_adjusted_bh"] <= x["p_adjusted"] + 1e-12
        assert x["control_mean"] > x["treatment_mean"] > 0
        assert r.method == "cuped_ratio" and x["variance_reduction"] > 0
    conv = res.results["conversion_rate"]
    assert conv.extra["relative_ci_low"] <= 0 <= conv.extra["relative_ci_high"]
    # alerts exist only in treated families: descriptive, not an effect.
    aa = res.results["alert_adoption_rate"]
    assert aa.method == "not_estimable" and aa.extra["treatment_mean"] > 0


def test_checks_and_bundle_rows(analysed):
    prog, st, res, _ = analysed
    names = [c.name for c in res.checks]
    assert names[:3] == ["sample_ratio_mismatch", "exposure_contamination", "covariate_balance"]
    assert res.checks[0].status == "pass"
    assert "novelty" in names
    rows = res.kpi_rows()
    assert {r["name"] for r in rows} == {k.name for k in prog.kpis}
    json.dumps(res.to_dict(), allow_nan=False)
    json.dumps(rows, allow_nan=False)
    sec = res.experiment_section()
    assert sec["n_treatment"] + sec["n_control"] == 200
    seg = res.segments["region"]["negative_reviews_per_1000_orders"]
    assert set(seg) == {"north", "south", "east", "west"}
    assert all("p_adjusted" in r.extra for r in seg.values())


def test_srm_fires_on_broken_assignment(tmp_path):
    prog, st = _store(tmp_path / "srm.duckdb", seed=6, srm_shift=0.6)
    res = analyze_experiment(st, prog, kpis=["negative_reviews_per_1000_orders"], weekly=False)
    assert res.checks[0].name == "sample_ratio_mismatch" and res.checks[0].status == "fail"


def test_power_table(analysed):
    prog, st, *_ = analysed
    rows = power_table(prog, st)
    row = next(r for r in rows if r["kpi"] == "negative_reviews_per_1000_orders")
    assert row["baseline"] > 0 and row["units_treatment"] + row["units_control"] == 200
    assert 0 < row["power_at_planned_end"] < 1
    if row["weeks_needed"] is not None:
        assert row["verdict"].startswith("you need")
    conv = next(r for r in rows if r["kpi"] == "conversion_rate")
    assert conv["weeks_needed"] is not None and conv["weeks_needed"] <= 4
    json.dumps(rows)


def test_analyze_cli_saves_results(analysed):
    from typer.testing import CliRunner

    from insightroi.cli import app

    prog, st, res, path = analysed
    st.close()
    prog_file = path.parent / "insightroi.toml"
    prog_file.write_text(TEXT)
    out = CliRunner().invoke(app, ["analyze", "--store", f"duckdb:///{path}", "--program", str(prog_file),
                                   "--kpi", "negative_reviews_per_1000_orders"])
    assert out.exit_code == 0, out.output
    assert "negative_reviews_per_1000_orders" in out.output and "sample_ratio_mismatch" in out.output
    with open_store(f"duckdb:///{path}") as s2:
        saved = s2.load_result("experiment:negative_reviews_per_1000_orders")
    assert saved["metric"] == "negative_reviews_per_1000_orders" and saved["extra"]["p_adjusted"] is not None


def test_quasi_designs_dispatch_and_say_what_is_missing(tmp_path):
    # did / synthetic_control / its are analysed (tests/experiments/test_exp_quasi_design_analysis.py); on a
    # store without assignments the error says what to ingest.
    prog = parse_program(TEXT.replace('design = "cluster"', 'design = "did"'))
    st = open_store("duckdb://:memory:")
    with pytest.raises(DataError, match="assignments"):
        analyze_experiment(st, prog)


def test_analyze_fail_on_srm_exits_3_on_a_broken_split_and_0_on_a_sound_one(analysed, tmp_path):
    import shutil

    import duckdb
    from typer.testing import CliRunner

    from insightroi.cli import app

    prog, st, res, path = analysed
    st.close()
    prog_file = tmp_path / "insightroi.toml"
    prog_file.write_text(TEXT)
    args = ["analyze", "--program", str(prog_file), "--kpi", "negative_reviews_per_1000_orders", "--json"]
    sound = CliRunner().invoke(app, [*args, "--store", f"duckdb:///{path}", "--fail-on", "srm"])
    assert sound.exit_code == 0, sound.stderr
    # 100 extra treated units (a logging bug): a sample-ratio mismatch (p about 1e-6).
    broken = tmp_path / "broken.duckdb"
    shutil.copy(path, broken)
    con = duckdb.connect(str(broken))
    con.execute("INSERT INTO assignments (id, experiment, unit_type, unit_id, arm, assigned_at) "
                "SELECT 'x' || i, experiment, unit_type, 'phantom-' || i, 'treatment', assigned_at "
                "FROM (SELECT * FROM assignments LIMIT 1), range(100) t(i)")
    con.close()
    out = CliRunner().invoke(app, [*args, "--store", f"duckdb:///{broken}", "--fail-on", "srm"])
    assert out.exit_code == 3, out.stderr
    assert json.loads(out.stdout)["n_treatment"] == json.loads(sound.stdout)["n_treatment"] + 100
    assert "gate failed (--fail-on srm): 1 condition(s)" in out.stderr and "srm: sample-ratio mismatch" in out.stderr
    # Without the gate the same analysis exits 0; an unknown gate is refused before any work.
    assert CliRunner().invoke(app, [*args, "--store", f"duckdb:///{broken}"]).exit_code == 0
    bad = CliRunner().invoke(app, [*args, "--store", f"duckdb:///{broken}", "--fail-on", "p-hacking"])
    assert bad.exit_code == 1 and "unknown gate 'p-hacking'" in bad.stderr


def test_analyze_segment_prints_raw_and_pooled_effects_equal_to_the_saved_section(analysed, tmp_path):
    from typer.testing import CliRunner

    from insightroi.cli import app

    prog, st, res, path = analysed
    st.close()
    prog_file = tmp_path / "insightroi.toml"
    prog_file.write_text(TEXT)
    args = ["analyze", "--store", f"duckdb:///{path}", "--program", str(prog_file),
            "--kpi", "negative_reviews_per_1000_orders", "--segment", "region"]
    table = CliRunner().invoke(app, [*args], terminal_width=200)
    assert table.exit_code == 0, table.stderr
    cells = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)["segments"]["region"][
        "negative_reviews_per_1000_orders"]
    assert len(cells) >= 4  # enough segments to pool
    assert "negative_reviews_per_1000_orders by region" in table.stdout
    for seg, r in cells.items():
        ex = r["extra"]
        line = next(ln for ln in table.stdout.splitlines() if ln.strip("│ ").startswith(seg + " "))
        # The table shows the saved figures: raw and pooled effect, the shrinkage.
        assert f"{r['estimate']:+.1%}" in line and f"{ex['pooled_estimate']:+.1%}" in line, line
        assert f"{ex['shrinkage']:.0%}" in line
        # Pooling moves each estimate towards the segments' mean, never past it.
        lo, hi = sorted((r["estimate"], ex["pooled_mean"]))
        assert lo - 1e-12 <= ex["pooled_estimate"] <= hi + 1e-12
        assert ex["shrinkage"] > 0.05  # a handful of regions of one world: their effects are alike
    # The report shows the same figures, from the section the CLI saved.
    from insightroi.bundle import assemble_bundle
    from insightroi.report import render_html

    with open_store(f"duckdb:///{path}") as s2:
        bundle = assemble_bundle(s2, parse_program(TEXT)).to_report()
    html = render_html(bundle)
    part = html[html.index('id="segments"'):]
    part = part[:part.index("</section>")]
    assert "by region" in part
    for seg, r in cells.items():
        row = part[part.index(f"<td>{seg}</td>"):]
        row = row[:row.index("</tr>")]
        assert f"{r['extra']['pooled_estimate']:+.1%}" in row.replace("−", "-"), row
    # And the dashboard's experiment page, from the same saved section.
    import httpx

    from helpers.live_server import LiveServer
    from insightroi.server import create_app

    with LiveServer(create_app(f"duckdb:///{path}", program=prog_file, public_read=True)) as srv:
        page = httpx.get(srv.url + "/experiment", timeout=60).text
    part = page[page.index('id="segments"'):]
    for seg, r in cells.items():
        row = part[part.index(f"<td>{seg}</td>"):]
        assert f"{r['extra']['pooled_estimate']:+.1%}" in row[:row.index("</tr>")].replace("−", "-")

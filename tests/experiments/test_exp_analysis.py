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


def test_sequential_in_the_program_switches_analyze_to_the_always_valid_interval(analysed):
    from insightroi.stats._twoarm import _sequential_halfwidth

    prog, _, _, path = analysed
    kpi = "negative_reviews_per_1000_orders"
    seq_prog = parse_program(TEXT.replace("sequential = false", "sequential = true\nsequential_tuning = 400", 1))
    with open_store(f"duckdb:///{path}") as s2:
        fixed = analyze_experiment(s2, prog, kpis=[kpi], weekly=False)
        seq = analyze_experiment(s2, seq_prog, kpis=[kpi], weekly=False)
    f, q = fixed.results[kpi], seq.results[kpi]
    n = f.extra["control_n"] + f.extra["treatment_n"]
    # Same estimate and variance; the interval is the confidence sequence's at N* = 400 (gbstats'
    # formula, tested against gbstats in tests/stats), wider than the fixed-horizon t interval.
    assert (q.estimate, q.se) == pytest.approx((f.estimate, f.se), rel=1e-12)
    half = _sequential_halfwidth(q.se ** 2, n, 0.05, 400.0)
    assert (q.ci_low, q.ci_high) == pytest.approx((q.estimate - half, q.estimate + half), rel=1e-12)
    assert half / ((f.ci_high - f.ci_low) / 2) > 1.3
    assert q.p_value > f.p_value and q.extra["reference"] == "sequential" and q.extra["sequential_tuning"] == 400
    assert [c.status for c in seq.checks if c.name == "sequential"] == ["pass"]
    assert not [c for c in fixed.checks if c.name == "sequential"]
    # A design without units to look at repeatedly is refused at parse time, naming the key.
    with pytest.raises(Exception, match="sequential = true applies to randomized unit designs"):
        parse_program(TEXT.replace('design = "cluster"', 'design = "did"').replace(
            "sequential = false", "sequential = true", 1))


def test_bayesian_in_the_program_adds_chance_to_win_and_risk_everywhere(analysed, tmp_path):
    from scipy import stats as sps
    from typer.testing import CliRunner

    from insightroi.bundle import assemble_bundle
    from insightroi.cli import app
    from insightroi.report import render_html

    _, st, _, path = analysed
    st.close()  # the dashboard opens the store file itself
    kpi = "revenue_per_sku_family"  # direction "increase"; no true effect in this world
    flat = parse_program(TEXT.replace("bayesian = false", "bayesian = true", 1))
    informed = parse_program(TEXT.replace("bayesian = false", "bayesian = true\nprior_mean = 0.0\nprior_sd = 0.05", 1))
    with open_store(f"duckdb:///{path}") as s2:
        a_flat = analyze_experiment(s2, flat, kpis=[kpi, "tickets_per_1000_orders"], weekly=False)
        a_inf = analyze_experiment(s2, informed, kpis=[kpi], weekly=False)
    rel = a_flat.relative[kpi]
    # Flat prior: the posterior is the likelihood N(d, se^2) of the relative effect (gbstats'
    # gaussian model, equal to gbstats in tests/stats/test_stats_bayes.py).
    d, v = rel.estimate, rel.se ** 2
    assert a_flat.results[kpi].extra["chance_to_win"] == pytest.approx(sps.norm.cdf(d / v ** 0.5), abs=1e-9)
    # A "decrease" KPI wins below zero: its chance is P(effect < 0).
    d2, se2 = a_flat.relative["tickets_per_1000_orders"].estimate, a_flat.relative["tickets_per_1000_orders"].se
    assert a_flat.results["tickets_per_1000_orders"].extra["chance_to_win"] == pytest.approx(
        sps.norm.cdf(-d2 / se2), abs=1e-9)
    # N(0, 0.05^2) prior: precision-weighted posterior mean, pulled towards 0.
    post = (d / v) / (1 / v + 1 / 0.05 ** 2)
    assert a_inf.results[kpi].extra["posterior_mean"] == pytest.approx(post, abs=1e-9)
    assert abs(post) < abs(d)
    # The same figure in the CLI table, the report and the dashboard.
    prog_file = tmp_path / "insightroi.toml"
    prog_file.write_text(TEXT.replace("bayesian = false", "bayesian = true", 1))
    out = CliRunner().invoke(app, ["analyze", "--store", f"duckdb:///{path}", "--program", str(prog_file),
                                   "--kpi", kpi], terminal_width=250)
    assert out.exit_code == 0, out.stderr
    ctw = a_flat.results[kpi].extra["chance_to_win"]
    assert 0.02 < ctw < 0.98, ctw  # an undecided KPI: a figure a wrong sign or scale would move
    assert "chance to" in out.stdout and f"{ctw:.1%}" in out.stdout
    with open_store(f"duckdb:///{path}") as s2:
        html = render_html(assemble_bundle(s2, parse_program(prog_file.read_text())).to_report())
    row = html[html.index(f'data-kpi="{kpi}"'):]
    row = row[:row.index("\n    </tr>")]  # the KPI's own row (its details hold a nested table)
    assert "Chance to win" in html and f"{100 * ctw:.1f}%" in row
    import httpx

    from helpers.live_server import LiveServer
    from insightroi.server import create_app

    with LiveServer(create_app(f"duckdb:///{path}", program=prog_file, public_read=True)) as srv:
        page = httpx.get(srv.url + "/experiment", timeout=60).text
    kpis = page[page.index('id="kpis"'):]
    assert "Chance to win / risk" in kpis and f"{100 * ctw:.1f}%" in kpis[:kpis.index("</section>")]

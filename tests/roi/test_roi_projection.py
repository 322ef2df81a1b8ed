"""Projected vs realized ROI: the plan's projection, the Shapley waterfall, and the same figures at every door."""

from __future__ import annotations

import json
import math
import re
from itertools import permutations

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.errors import DataError
from insightroi.program import load_program, parse_program, starter_program_text
from insightroi.roi import DRIVERS, RoiVolumes, compute_roi, expected_roi, projected_effects, roi_drivers, roi_waterfall
from insightroi.server import create_app
from insightroi.stats import Result, critical_value
from insightroi.store import open_store

TOKEN = "projection-test-token-0123456789abcdef"


def _pool(name, effect, volume, value, per_volume=-0.001, hard=True):
    return {"name": name, "kpi": name, "hard": hard, "effect": effect, "volume": volume, "per_volume": per_volume,
            "unit_value": value}


def test_shapley_shares_of_a_product_split_the_gap_evenly_by_hand():
    # Benefit = effect x volume x value x 0.001: effect halves while volume doubles, so the benefit
    # is unchanged; by hand the Shapley shares are -/+ 1/2 [(5-10) x 1000 + (5-10) x 2000] x 0.002 = -/+ 15.
    proj = {"pools": [_pool("tickets", -10.0, 1000.0, 2.0)], "cost": 10.0, "months": 12.0}
    real = {"pools": [_pool("tickets", -5.0, 2000.0, 2.0)], "cost": 10.0, "months": 12.0}
    w = roi_waterfall(proj, real)
    shares = {s["driver"]: s["net"] for s in w["steps"]}
    assert shares["effect"] == pytest.approx(-15.0, abs=1e-12)
    assert shares["volume"] == pytest.approx(15.0, abs=1e-12)
    assert shares["unit_value"] == 0.0 and shares["cost"] == 0.0
    assert w["projected_net"] == pytest.approx(10.0) and w["realized_net"] == pytest.approx(10.0)


def test_shapley_shares_equal_the_average_over_every_swap_order():
    rng = np.random.default_rng(5)
    proj = {"pools": [_pool(f"p{i}", -rng.uniform(1, 9), rng.uniform(1e3, 1e4), rng.uniform(1, 30), per_volume=-0.05,
                            hard=i != 2)
                      for i in range(3)], "cost": 900.0, "months": 12.0}
    real = {"pools": [{**p, "effect": -rng.uniform(0, 9), "volume": rng.uniform(1e3, 1e4),
                       "unit_value": rng.uniform(1, 30)} for p in proj["pools"]], "cost": 1300.0, "months": 12.0}
    w = roi_waterfall(proj, real)
    # Brute force: walk every one of the 24 orders, swapping one driver at a time.
    fields = {"effect": ["effect"], "volume": ["volume", "per_volume"], "unit_value": ["unit_value"]}
    by_order = {d: [] for d in DRIVERS}
    for order in permutations(DRIVERS):
        cur = {"pools": [dict(p) for p in proj["pools"]], "cost": proj["cost"]}
        before = expected_roi(cur)
        for d in order:
            if d == "cost":
                cur["cost"] = real["cost"]
            else:
                for pc, pr in zip(cur["pools"], real["pools"]):
                    for f in fields[d]:
                        pc[f] = pr[f]
            after = expected_roi(cur)
            by_order[d].append(after - before)
            before = after
    for s in w["steps"]:
        assert s["roi"] == pytest.approx(np.mean(by_order[s["driver"]]), rel=1e-12, abs=1e-12)
    gap = w["realized_roi"] - w["projected_roi"]
    assert math.fsum(s["roi"] for s in w["steps"]) == pytest.approx(gap, rel=1e-12)
    assert math.fsum(s["net"] for s in w["steps"]) == pytest.approx(w["realized_net"] - w["projected_net"], rel=1e-12)
    # Every driver moves the ROI here, so a share formula that dropped or double counted one would show.
    assert min(abs(s["roi"]) for s in w["steps"]) > 0.05


def test_a_pool_on_one_side_only_counts_as_zero_effect_on_the_other():
    proj = {"pools": [_pool("a", -4.0, 1000.0, 5.0)], "cost": 10.0, "months": 12.0}
    real = {"pools": [_pool("a", -4.0, 1000.0, 5.0), _pool("b", -2.0, 500.0, 8.0)], "cost": 10.0, "months": 12.0}
    w = roi_waterfall(proj, real)
    assert {s["driver"]: s["net"] for s in w["steps"]}["effect"] == pytest.approx(2.0 * 0.001 * 500 * 8)


def test_different_horizons_are_refused():
    proj = {"pools": [_pool("a", -4.0, 1000.0, 5.0)], "cost": 10.0, "months": 12.0}
    with pytest.raises(DataError, match="different horizons"):
        roi_waterfall(proj, {**proj, "months": 9.0})


def test_drivers_reproduce_the_engines_expected_roi():
    prog = parse_program(starter_program_text())
    effects = {"tickets_per_1000_orders": Result(estimate=-8.0, se=2.0, ci=(-12.0, -4.0), p_value=0.01,
                                                 method="t", n=100),
               "refunds_per_1000_orders": Result(estimate=-3.0, se=1.0, ci=(-5.0, -1.0), p_value=0.01,
                                                 method="t", n=100)}
    vol = RoiVolumes({"tickets_per_1000_orders": 2e5, "refunds_per_1000_orders": 2e5}, feedback=3e4, months=6)
    res = compute_roi(prog, effects, vol, draws=500, rng=1, horizon_months=12)
    d = roi_drivers(prog, effects, vol, 12)
    assert expected_roi(d) == pytest.approx(res.estimate, rel=1e-12)
    assert d["cost"] == pytest.approx(res.cost, rel=1e-12)


def test_projected_effect_is_the_planned_mde_with_the_se_the_design_detects_it_at():
    prog = parse_program(starter_program_text())
    e = prog.experiment
    row = {"kpi": "tickets_per_1000_orders", "baseline": 40.0, "mde_at_planned_end_cuped": 0.10,
           "units_treatment": 60, "units_control": 60}
    r = projected_effects(prog, [row, {"kpi": "not_priced", "baseline": 3.0}])["tickets_per_1000_orders"]
    assert r.estimate == pytest.approx(-e.mde_relative * 40.0)  # the starter's tickets KPI is to fall
    z = critical_value(e.alpha) + critical_value(2 * (1 - e.power))
    assert r.se == pytest.approx(0.10 * 40.0 / z)
    # At that SE the design's own MDE is detected with exactly the planned power.
    from scipy.stats import norm
    assert norm.cdf(0.10 * 40.0 / r.se - critical_value(e.alpha)) == pytest.approx(e.power, abs=1e-9)


# ---- on the tiny demo company, through the real CLI, report and dashboard ----------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("projection-demo")
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--scale", "tiny", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    return out, f"duckdb:///{out}/insightroi.duckdb", out / "world" / "insightroi.toml"


def test_plan_saves_the_projection_and_roi_report_and_dashboard_show_one_waterfall(demo, live_server):
    out, url, prog_path = demo
    runner = CliRunner()
    plan = runner.invoke(app, ["plan", "--program", str(prog_path), "--store", url])
    assert plan.exit_code == 0, plan.output
    with open_store(url) as st:
        saved = st.load_result("roi_projection:plan")
    assert saved["saved"] and saved["horizon_months"] == load_program(prog_path).program.horizon_months
    flat = re.sub(r"\s+", " ", plan.output)
    assert f"expected {saved['roi']['estimate']:.1%}" in flat.replace(",", "")  # the figure plan printed is the saved one
    assert expected_roi(saved["drivers"]) == pytest.approx(saved["roi"]["estimate"], rel=1e-12)

    roi = runner.invoke(app, ["roi", "--program", str(prog_path), "--store", url, "--json"])
    assert roi.exit_code == 0, roi.output
    payload = json.loads(roi.output)
    w = payload["projection"]["waterfall"]
    # The two ends are the engine's own expected-case ROIs, and the parts add up to the gap.
    assert w["realized_roi"] == pytest.approx(payload["estimate"], rel=1e-12)
    assert w["projected_roi"] == pytest.approx(saved["roi"]["estimate"], rel=1e-12)
    assert math.fsum(s["roi"] for s in w["steps"]) == pytest.approx(w["realized_roi"] - w["projected_roi"], rel=1e-12)
    assert math.fsum(s["net"] for s in w["steps"]) == pytest.approx(w["realized_net"] - w["projected_net"], rel=1e-12)
    effect_share = next(s for s in w["steps"] if s["driver"] == "effect")
    assert abs(effect_share["roi"]) > 0.05  # the estimates differ from the planned MDE on this world

    rep_dir = out / "rep"
    rep = runner.invoke(app, ["report", "--program", str(prog_path), "--store", url, "--out", str(rep_dir)])
    assert rep.exit_code == 0, rep.output
    bundle = json.loads((rep_dir / "report.json").read_text())
    assert bundle["roi"]["projection"]["waterfall"] == w
    html = (rep_dir / "report.html").read_text()
    table = html[html.index('id="roi-waterfall"'):]
    table = table[:table.index("</table>")]
    for s in w["steps"]:
        assert f"{s['roi'] * 100:+.1f} pts" in table
    assert "<svg" in html[html.index('id="projected-vs-realized"'):html.index('id="roi-waterfall"')]

    server = live_server(create_app(url, token=TOKEN, program=prog_path))
    page = httpx.get(server.url + "/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).text
    card = page[page.index('id="projected-vs-realized"'):]
    for s in w["steps"]:
        row = card[card.index(f'data-driver="{s["driver"]}"'):]
        assert f"{s['roi'] * 100:+.1f} pts" in row[:row.index("</tr>")]


def test_a_saved_projection_is_kept_by_run_and_replaced_by_plan(demo):
    out, url, prog_path = demo
    with open_store(url) as st:
        before = st.load_result("roi_projection:plan")
        st.save_result("roi_projection", "plan", {**before, "basis": "marker"}, result_id="roi_projection:plan")
    result = CliRunner().invoke(app, ["run", "--program", str(prog_path), "--store", url, "--only", "roi"])
    assert result.exit_code == 0, result.output
    with open_store(url) as st:
        assert st.load_result("roi_projection:plan")["basis"] == "marker"  # the record of what was expected stays
        assert st.load_result("roi:latest")["projection"]["basis"] == "marker"
    CliRunner().invoke(app, ["plan", "--program", str(prog_path), "--store", url])
    with open_store(url) as st:
        assert st.load_result("roi_projection:plan")["basis"] != "marker"


def test_a_projection_that_cannot_be_made_never_costs_the_run_its_roi(demo, monkeypatch):
    import insightroi.services as services

    out, url, prog_path = demo

    def broken(program, store, **kw):
        raise services.DataError("no pre-period for this design")

    monkeypatch.setattr(services, "power_table", broken)
    with open_store(url) as st:
        st.sql("DELETE FROM results WHERE id = 'roi_projection:plan'")
        got = services.ensure_roi_projection(st, load_program(prog_path))
        assert got == {"saved": False, "reason": "DataError: no pre-period for this design"}
        roi = services.run_roi(st, load_program(prog_path))
        assert roi.estimate is not None and st.load_result("roi:latest")["projection"] is None

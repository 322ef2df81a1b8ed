"""compute_roi: Monte Carlo correctness, soft value, scenarios, tornado, payback, attribution."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from insightroi.errors import DataError
from insightroi.program import Program, parse_program, starter_program_text
from insightroi.roi import RoiVolumes, compute_roi, roi_ratio
from insightroi.stats import Result

TICKETS = "tickets_per_1000_orders"
REFUNDS = "refunds_per_1000_orders"
NEG = "negative_reviews_per_1000_orders"
CONV = "conversion_rate"


def make_program(pools: list[dict], costs: list[dict]) -> Program:
    """The starter program with its value pools and cost stack replaced."""
    raw = parse_program(starter_program_text()).model_dump(mode="json")
    raw["value_pools"] = pools
    raw["costs"] = costs
    return Program.model_validate(raw)


def rng_(lo, mode=None, hi=None):
    mode = lo if mode is None else mode
    hi = mode if hi is None else hi
    return {"low": lo, "mode": mode, "high": hi}


def pool(name, kpi, value, hard=True, function="support"):
    return {"name": name, "function": function, "kpi": kpi, "unit_value": value, "hard": hard}


def cost(name, amount, kind="recurring", per="month", category="platform"):
    return {"name": name, "category": category, "kind": kind, "amount": amount, "per": per}


def res(est, se, ci=None):
    ci = ci or (est - 1.959963984540054 * se, est + 1.959963984540054 * se)
    return Result(estimate=est, se=se, ci=ci, p_value=0.01, method="welch_t", n=100)


def test_zero_width_and_zero_se_collapse_to_the_formula():
    prog = make_program(
        [pool("tickets", TICKETS, rng_(6.5)), pool("refunds", REFUNDS, rng_(25.0), function="finance")],
        [cost("platform", rng_(1200.0)), cost("llm", rng_(1.0), per="1000_feedback"),
         cost("build", rng_(12000.0), kind="one_off", per="total")],
    )
    eff = {TICKETS: res(-8.0, 0.0), REFUNDS: res(-3.0, 0.0)}
    vol = RoiVolumes({TICKETS: 1_000_000, REFUNDS: 1_000_000}, feedback=200_000, months=9)
    out = compute_roi(prog, eff, vol, draws=500, rng=3)
    benefit = 8.0 / 1000 * 1e6 * 6.5 + 3.0 / 1000 * 1e6 * 25.0
    total_cost = 1200.0 * 9 + 1.0 * 200_000 / 1000 + 12000.0
    expected = roi_ratio(benefit, total_cost)
    assert out.benefit == pytest.approx(benefit) and out.cost == pytest.approx(total_cost)
    assert np.ptp(out.roi_draws) == pytest.approx(0.0, abs=1e-12)
    for q in (out.estimate, out.median, out.conservative, *out.ci):
        assert q == pytest.approx(expected, rel=1e-12)
    assert out.p_positive == 1.0
    # Payback: 12,000 up front, (benefit - recurring) / 9 net per month.
    assert out.payback_months == pytest.approx(12000.0 / ((benefit - (total_cost - 12000.0)) / 9))


def test_normal_effect_with_fixed_values_matches_analytic_quantiles():
    # ROI is linear in the effect when values and costs are fixed, so ROI ~ Normal exactly.
    prog = make_program([pool("tickets", TICKETS, rng_(6.5))], [cost("platform", rng_(4000.0))])
    mu, se, orders, months = -8.0, 3.0, 1_000_000, 10
    vol = RoiVolumes({TICKETS: orders}, feedback=0, months=months)
    out = compute_roi(prog, {TICKETS: res(mu, se)}, vol, draws=200_000, rng=11)
    c = 4000.0 * months
    a = (-mu / 1000 * orders * 6.5 - c) / c
    b = se / 1000 * orders * 6.5 / c
    # Quantile MC error at n = 200,000 is < 0.002 b; 0.01 b is ~ 6 standard errors.
    for q, got in ((0.05, out.ci[0]), (0.10, out.conservative), (0.5, out.median), (0.95, out.ci[1])):
        assert got == pytest.approx(a + b * norm.ppf(q), abs=0.01 * b)
    assert out.p_positive == pytest.approx(norm.cdf(a / b), abs=0.005)
    assert out.roi_draws.std() == pytest.approx(b, rel=0.01)


@pytest.mark.parametrize("rho", [-0.8, 0.0, 0.9])
def test_correlated_effects_change_the_spread_as_theory_says(rho):
    prog = make_program(
        [pool("tickets", TICKETS, rng_(5.0)), pool("refunds", REFUNDS, rng_(20.0), function="finance")],
        [cost("platform", rng_(5000.0))],
    )
    vol = RoiVolumes({TICKETS: 1e6, REFUNDS: 1e6}, feedback=0, months=6)
    eff = {TICKETS: res(-10.0, 4.0), REFUNDS: res(-2.0, 1.0)}
    out = compute_roi(prog, eff, vol, draws=100_000, rng=5, correlation={(TICKETS, REFUNDS): rho})
    c = 30_000.0
    b1, b2 = 4.0 / 1000 * 1e6 * 5.0 / c, 1.0 / 1000 * 1e6 * 20.0 / c
    sd = math.sqrt(b1**2 + b2**2 + 2 * rho * b1 * b2)
    assert out.roi_draws.std() == pytest.approx(sd, rel=0.02)
    # Array form gives the same draws as the dict form.
    arr = compute_roi(prog, eff, vol, draws=100_000, rng=5, correlation=np.array([[1, rho], [rho, 1]]))
    np.testing.assert_allclose(arr.roi_draws, out.roi_draws)


def test_bad_correlation_is_refused():
    prog = make_program([pool("tickets", TICKETS, rng_(5.0))], [cost("platform", rng_(5000.0))])
    vol = RoiVolumes({TICKETS: 1e6}, feedback=0, months=6)
    with pytest.raises(DataError, match="1x1"):
        compute_roi(prog, {TICKETS: res(-1, 1)}, vol, draws=1000, correlation=np.eye(2))
    prog2 = make_program([pool("t", TICKETS, rng_(5.0)), pool("r", REFUNDS, rng_(5.0))], [cost("p", rng_(1.0))])
    vol2 = RoiVolumes({TICKETS: 1e6, REFUNDS: 1e6}, feedback=0, months=6)
    with pytest.raises(DataError, match="symmetric"):
        compute_roi(prog2, {TICKETS: res(-1, 1), REFUNDS: res(-1, 1)}, vol2, draws=1000,
                    correlation=np.array([[1, 0.5], [0.2, 1]]))


def test_triangular_draws_have_the_triangular_moments():
    # Unit value triangular(4, 6.5, 9), effect fixed: benefit mean = (4+6.5+9)/3 x avoided.
    prog = make_program([pool("tickets", TICKETS, rng_(4.0, 6.5, 9.0))], [cost("platform", rng_(1000.0, 1500.0, 3000.0))])
    vol = RoiVolumes({TICKETS: 1e6}, feedback=0, months=1)
    out = compute_roi(prog, {TICKETS: res(-1.0, 0.0)}, vol, draws=200_000, rng=2)
    assert out.benefit_draws.mean() == pytest.approx(1000 * (4 + 6.5 + 9) / 3, rel=0.003)
    assert out.cost_draws.mean() == pytest.approx((1000 + 1500 + 3000) / 3, rel=0.003)
    var = (16 + 6.5**2 + 81 - 4 * 6.5 - 4 * 9 - 6.5 * 9) / 18
    assert out.benefit_draws.std() == pytest.approx(1000 * math.sqrt(var), rel=0.01)
    assert out.benefit_draws.min() >= 4000 - 1e-9 and out.benefit_draws.max() <= 9000 + 1e-9


def test_soft_value_never_enters_the_headline():
    def run(soft_value):
        prog = make_program(
            [pool("tickets", TICKETS, rng_(4.0, 6.5, 9.0)),
             pool("reputation", NEG, rng_(soft_value, soft_value * 2, soft_value * 5), hard=False, function="marketing")],
            [cost("platform", rng_(800.0, 1200.0, 1800.0))],
        )
        vol = RoiVolumes({TICKETS: 1e6, NEG: 1e6}, feedback=0, months=9)
        return compute_roi(prog, {TICKETS: res(-8.0, 2.0), NEG: res(-2.0, 0.5)}, vol, draws=20_000, rng=9)

    small, huge = run(1.0), run(1_000.0)
    np.testing.assert_array_equal(small.roi_draws, huge.roi_draws)
    assert small.estimate == huge.estimate and small.conservative == huge.conservative
    assert huge.benefit_soft == pytest.approx(1000 * 2 * 2000) and small.benefit_soft == pytest.approx(2 * 2000)
    d = huge.to_dict()
    assert d["benefit"] == huge.benefit and d["soft"]["benefit"] == huge.benefit_soft
    soft_rows = [p for p in d["pools"] if not p["hard"]]
    assert soft_rows and soft_rows[0]["share"] == 1.0
    assert sum(p["share"] for p in d["pools"] if p["hard"]) == pytest.approx(1.0)
    assert all("reputation" not in t["input"] and NEG not in t["input"] for t in d["tornado"])


def test_only_soft_pools_gives_zero_hard_benefit_and_a_note():
    prog = make_program([pool("reputation", NEG, rng_(10.0), hard=False)], [cost("platform", rng_(1000.0))])
    vol = RoiVolumes({NEG: 1e6}, feedback=0, months=3)
    out = compute_roi(prog, {NEG: res(-2.0, 0.5)}, vol, draws=1000, rng=0)
    assert out.benefit == 0.0 and out.estimate == -1.0 and out.conservative == -1.0 and out.p_positive == 0.0
    assert any("every value pool is soft" in n for n in out.notes)


def test_tornado_is_sorted_and_exact_and_scenarios_bracket_expected():
    prog = make_program(
        [pool("tickets", TICKETS, rng_(4.0, 6.5, 9.0)), pool("refunds", REFUNDS, rng_(24.0, 25.0, 26.0), function="finance")],
        [cost("platform", rng_(1000.0, 1200.0, 1400.0)), cost("analysts", rng_(2500.0, 3000.0, 3500.0), category="labor"),
         cost("build", rng_(10000.0, 12000.0, 20000.0), kind="one_off", per="total", category="labor")],
    )
    vol = RoiVolumes({TICKETS: 1e6, REFUNDS: 1e6}, feedback=0, months=9)
    eff = {TICKETS: res(-8.0, 2.0, (-12.0, -4.0)), REFUNDS: res(-3.0, 0.1, (-3.2, -2.8))}
    out = compute_roi(prog, eff, vol, draws=2000, rng=1)
    swings = [t["swing"] for t in out.tornado]
    assert swings == sorted(swings, reverse=True)
    names = [t["input"] for t in out.tornado]
    # Tickets effect interval spans 8,000 tickets x $6.5 = $52,000 of benefit: the largest swing.
    assert names[0] == f"effect: {TICKETS}"
    # Refund value 24..26 on 3,000 refunds moves benefit by $6,000: the smallest swing.
    assert names[-1] == "unit value: refunds"
    B = 8000 * 6.5 + 3000 * 25.0
    C = 1200 * 9 + 3000 * 9 + 12000.0
    row = {t["input"]: t for t in out.tornado}["cost: analysts"]
    assert row["low_roi"] == pytest.approx(roi_ratio(B, C - 500 * 9))
    assert row["high_roi"] == pytest.approx(roi_ratio(B, C + 500 * 9))
    row = {t["input"]: t for t in out.tornado}[f"effect: {TICKETS}"]
    assert row["low_roi"] == pytest.approx(roi_ratio(12000 * 6.5 + 3000 * 25.0, C))  # CI low = more avoided
    sc = {s["name"]: s for s in out.scenarios}
    assert sc["worst"]["roi"] < sc["expected"]["roi"] < sc["best"]["roi"]
    worst_b = 4000 * 4.0 + 2800 * 24.0
    worst_c = 1400 * 9 + 3500 * 9 + 20000.0
    assert sc["worst"]["roi"] == pytest.approx(roi_ratio(worst_b, worst_c))
    assert sc["expected"]["roi"] == pytest.approx(out.estimate) == pytest.approx(roi_ratio(B, C))


def test_payback_and_never_paying_back():
    prog = make_program([pool("tickets", TICKETS, rng_(4.0))],
                        [cost("run", rng_(1000.0)), cost("build", rng_(12000.0), kind="one_off", per="total")])
    # 1,000 tickets a month avoided x $4 = $4,000 a month; 12 months.
    vol = RoiVolumes({TICKETS: 12_000_000}, feedback=0, months=12)
    out = compute_roi(prog, {TICKETS: res(-1.0, 0.0)}, vol, draws=500, rng=0)
    assert out.payback_months == pytest.approx(4.0)
    slow = compute_roi(prog, {TICKETS: res(-0.2, 0.0)}, vol, draws=500, rng=0)  # $800 < $1,000 a month
    assert slow.payback_months == math.inf
    assert slow.to_dict()["payback_months"] is None  # JSON has no infinity
    json.dumps(slow.to_dict(), allow_nan=False)


def test_increase_kpi_sign_is_flipped_and_horizon_extrapolates_run_rate():
    prog = make_program([pool("conversions", CONV, rng_(20.0), function="ecommerce")],
                        [cost("run", rng_(10_000.0)), cost("build", rng_(30_000.0), kind="one_off", per="total")])
    vol = RoiVolumes({CONV: 1_000_000}, feedback=0, months=6)
    out = compute_roi(prog, {CONV: res(0.01, 0.0)}, vol, draws=500, rng=0)
    assert out.pools[0]["avoided_events"] == pytest.approx(10_000.0)
    assert out.benefit == pytest.approx(200_000.0)
    assert out.estimate == pytest.approx(roi_ratio(200_000, 90_000))
    year = compute_roi(prog, {CONV: res(0.01, 0.0)}, vol, draws=500, rng=0, horizon_months=12)
    assert year.benefit == pytest.approx(400_000.0) and year.cost == pytest.approx(150_000.0)
    assert year.months == 12


def test_draws_are_reproducible_and_to_dict_is_json():
    prog = parse_program(starter_program_text())
    eff = {TICKETS: res(-8.0, 2.0), REFUNDS: res(-3.0, 1.0), NEG: res(-2.0, 0.5)}
    vol = RoiVolumes({k: 1e6 for k in eff}, feedback=1e5, months=9)
    a = compute_roi(prog, eff, vol, draws=5000, rng=42)
    b = compute_roi(prog, eff, vol, draws=5000, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a.roi_draws, b.roi_draws)
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    for key in ("estimate", "ci_low", "ci_high", "median", "p_positive", "conservative", "benefit", "cost",
                "bcr", "payback_months", "months", "pools", "costs", "scenarios", "tornado", "histogram"):
        assert key in d
    assert {"name", "function", "kpi", "hard", "benefit_median", "benefit_ci_low", "benefit_ci_high", "share"} <= set(d["pools"][0])
    assert {"name", "category", "kind", "total_mode"} <= set(d["costs"][0])
    assert [s["name"] for s in d["scenarios"]] == ["worst", "expected", "best"]
    assert {"input", "low_roi", "high_roi", "swing"} <= set(d["tornado"][0])
    assert sum(d["histogram"]["counts"]) == 5000 and len(d["histogram"]["edges"]) == 41
    assert d["ci_low"] <= d["conservative"] <= d["median"] <= d["ci_high"]
    cs = d["cost_summary"]
    assert cs["per_1000_feedback_mode"] == pytest.approx(cs["total_mode"] / 100)
    assert cs["one_off_mode"] + cs["recurring_mode"] == pytest.approx(cs["total_mode"])


def test_inputs_are_validated():
    prog = parse_program(starter_program_text())
    vol = RoiVolumes({TICKETS: 1e6}, feedback=0, months=3)
    with pytest.raises(DataError, match="absolute effect"):
        rel = Result(estimate=-0.1, se=0.01, ci=(-0.12, -0.08), p_value=0.0, method="x", n=10, unit="relative")
        compute_roi(prog, {TICKETS: rel}, vol, draws=100)
    with pytest.raises(KeyError, match="no KPI"):
        compute_roi(prog, {"nope": res(-1, 1)}, vol, draws=100)
    with pytest.raises(DataError, match="no treated denominator"):
        compute_roi(prog, {REFUNDS: res(-1, 1)}, vol, draws=100)
    with pytest.raises(DataError, match="no effects"):
        compute_roi(prog, {}, vol, draws=100)
    no_costs = make_program([pool("t", TICKETS, rng_(1.0))], [])
    with pytest.raises(DataError, match="no costs"):
        compute_roi(no_costs, {TICKETS: res(-1, 1)}, vol, draws=100)
    with pytest.raises(DataError, match="months"):
        RoiVolumes({}, feedback=0, months=0)
    with pytest.raises(DataError, match="treated_denominator"):
        RoiVolumes.from_dict({"kpis": {TICKETS: {"wrong": 1}}, "months": 3})
    # Pools without an effect are left out and named; NaN se falls back to the interval.
    perm = Result(estimate=-8.0, se=float("nan"), ci=(-11.92, -4.08), p_value=0.0, method="perm", n=10)
    out = compute_roi(prog, {TICKETS: perm}, vol, draws=20_000, rng=0)
    assert any("refunds_avoided" in n for n in out.notes)
    assert out.effects[0]["se"] == pytest.approx(2.0, rel=1e-3)


def test_volumes_round_trip():
    v = RoiVolumes({TICKETS: 123.0}, feedback=50.0, months=2.5)
    assert RoiVolumes.from_dict(v.to_dict()) == v
    assert RoiVolumes.from_dict({"kpis": {TICKETS: 123}, "feedback_treated": 50, "months": 2.5}) == v


def test_effects_no_pool_prices_are_ignored_with_a_note():
    prog = make_program([pool("tickets", TICKETS, rng_(5.0))], [cost("platform", rng_(1000.0))])
    vol = RoiVolumes({TICKETS: 1e6}, feedback=0, months=3)
    # Would be refused if priced.
    rel = Result(estimate=0.1, se=0.01, ci=(0.08, 0.12), p_value=0.0, method="x", n=10, unit="relative")
    eff = {"alert_adoption_rate": rel, TICKETS: res(-2.0, 0.5)}
    out = compute_roi(prog, eff, vol, draws=5_000, rng=4, correlation=np.array([[1.0, 0.3], [0.3, 1.0]]))
    assert any("alert_adoption_rate" in n for n in out.notes)
    base = compute_roi(prog, {TICKETS: res(-2.0, 0.5)}, vol, draws=5_000, rng=4)
    np.testing.assert_array_equal(out.roi_draws, base.roi_draws)
    with pytest.raises(DataError, match="no value pool"):
        compute_roi(prog, {"alert_adoption_rate": rel}, vol, draws=100)


def test_triangular_inverse_cdf_matches_scipy_triang():
    """Reference: scipy.stats.triang(c, loc, scale).ppf on the same uniforms (exact up to rounding, 1e-12)."""
    from scipy.stats import triang

    from insightroi.roi._engine import _triangular

    u = np.random.default_rng(0).random((1000, 3))
    lo, mode, hi = np.array([4.0, 0.0, 18.0]), np.array([6.5, 0.0, 32.0]), np.array([9.0, 40.0, 32.0])
    ours = _triangular(u, lo, mode, hi)
    for j in range(3):
        ref = triang(c=(mode[j] - lo[j]) / (hi[j] - lo[j]), loc=lo[j], scale=hi[j] - lo[j]).ppf(u[:, j])
        np.testing.assert_allclose(ours[:, j], ref, rtol=0, atol=1e-12)
    # A zero-width range is a constant (numpy's triangular refuses it).
    np.testing.assert_array_equal(_triangular(u[:, :1], np.array([5.0]), np.array([5.0]), np.array([5.0])), 5.0)


def test_a_program_that_costs_nothing_has_no_roi_and_says_so():
    """Every cost line at 0: ROI divides by zero. A user got a traceback from the histogram
    ('supplied range of [nan, nan] is not finite'); now roi and plan name the cause."""
    from insightroi.services import save_roi_projection

    prog = make_program([pool("tickets", TICKETS, rng_(6.5))],
                        [cost("platform", rng_(0.0)), cost("analyst time", rng_(0.0), category="labor")])
    vol = RoiVolumes({TICKETS: 1_000_000}, feedback=0, months=9)
    with pytest.raises(DataError, match=r"undefined at zero cost: the program's cost lines \(platform, analyst time\)"):
        compute_roi(prog, {TICKETS: res(-8.0, 2.0)}, vol, draws=500, rng=3)
    plan = save_roi_projection(None, prog, [])
    assert plan["saved"] is False and "undefined at zero cost" in plan["reason"]
    # One line with a cost is enough: the ROI is finite and its histogram well formed.
    prog = make_program([pool("tickets", TICKETS, rng_(6.5))],
                        [cost("platform", rng_(0.0)), cost("analyst time", rng_(0.0, 100.0, 200.0), category="labor")])
    out = compute_roi(prog, {TICKETS: res(-8.0, 2.0)}, vol, draws=500, rng=3)
    h = out.histogram()
    assert sum(h["counts"]) == 500 and all(math.isfinite(e) for e in h["edges"])

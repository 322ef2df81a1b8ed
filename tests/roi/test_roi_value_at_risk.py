"""Value pools for revenue recovered and churn saved: a share of the value at risk, the same at every stage.

``formula = "share_of_value_at_risk"``: the KPI's relative change against the control level recovers
that share of the money per month exposed to it (the field's "churn drops 5% of a churned value of
$70,000 -> $3,500"). Checked against the worked example, against the analytic variance of the
product of a normal effect and a triangular value, and for equal money in the ROI engine, the
retrain/retire decision and the cadence series.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from insightroi.monitor import decide_total
from insightroi.program import parse_program, starter_program_text
from insightroi.report._cadence import _value_fields
from insightroi.roi import RoiVolumes, compute_roi, expected_roi, revenue_saved, roi_drivers, roi_waterfall
from insightroi.stats import Result

CHURN_POOL = """
[[value_pools]]
name = "churned_revenue_saved"
function = "retention"
kpi = "refunds_per_1000_orders"
formula = "share_of_value_at_risk"
value_at_risk = { low = %s, mode = %s, high = %s }
hard = true
"""


def _program(low=70_000.0, mode=70_000.0, high=70_000.0, only_share=True):
    text = starter_program_text()
    if only_share:
        # Keep one pool: the share-of-value one (the starter's per-event pools priced elsewhere).
        head, _, tail = text.partition("[[value_pools]]")
        tail = tail[tail.index("# ---- Cost stack"):]
        text = head + tail
    return parse_program(text + CHURN_POOL % (low, mode, high))


def _effect(est, se, control_mean, name="refunds_per_1000_orders"):
    return {name: Result(estimate=est, se=se, ci=(est - 1.96 * se, est + 1.96 * se), p_value=0.01, method="t",
                         n=200, metric=name, extra={"control_mean": control_mean})}


def test_the_worked_example_a_5pct_drop_on_70000_a_month_saves_3500_a_month():
    prog = _program()
    res = compute_roi(prog, _effect(-1.5, 0.2, 30.0), RoiVolumes({"refunds_per_1000_orders": 1e6}, 1e5, months=1),
                      draws=1000, rng=1, horizon_months=1)
    pool = res.pools[0]
    assert pool["formula"] == "share_of_value_at_risk" and pool["avoided_events"] is None
    assert pool["share_recovered"] == pytest.approx(0.05)
    assert res.benefit == pytest.approx(revenue_saved(0.05, 70_000.0)) == pytest.approx(3500.0)
    # Over 12 months: twelve months of value at risk.
    res12 = compute_roi(prog, _effect(-1.5, 0.2, 30.0), RoiVolumes({"refunds_per_1000_orders": 1e6}, 1e5, months=3),
                        draws=1000, rng=1, horizon_months=12)
    assert res12.benefit == pytest.approx(12 * 3500.0)


def test_the_draws_carry_the_effects_and_the_value_at_risks_variance():
    # benefit = -e / c x V x months with e ~ N(mu, s^2) and V ~ Triangular(a, m, b), independent:
    # Var = (months / c)^2 [s^2 E(V^2) + mu^2 Var(V)].
    a, m, b, mu, s, c, months = 50_000.0, 70_000.0, 110_000.0, -1.5, 0.6, 30.0, 6.0
    prog = _program(a, m, b)
    res = compute_roi(prog, _effect(mu, s, c), RoiVolumes({"refunds_per_1000_orders": 1e6}, 1e5, months=6),
                      draws=400_000, rng=3, horizon_months=months)
    ev = (a + m + b) / 3
    var_v = (a * a + m * m + b * b - a * m - a * b - m * b) / 18
    sd = months / c * math.sqrt(s * s * (var_v + ev * ev) + mu * mu * var_v)
    assert float(np.std(res.benefit_draws)) == pytest.approx(sd, rel=0.01)
    assert float(np.mean(res.benefit_draws)) == pytest.approx(-mu / c * ev * months, rel=0.01)
    # Dropping the value's range would understate the spread by more than the tolerance above.
    assert months / c * s * math.sqrt(var_v + ev * ev) < 0.95 * sd


def test_a_pool_names_the_value_its_formula_takes():
    base = starter_program_text()
    with pytest.raises(Exception, match="needs value_at_risk"):
        parse_program(base + CHURN_POOL.replace('value_at_risk = { low = %s, mode = %s, high = %s }\n', ''))
    with pytest.raises(Exception, match="unit_value does not apply"):
        parse_program(base + (CHURN_POOL % (1, 2, 3)).replace("hard = true", "unit_value = { low = 1, mode = 2, high = 3 }"))
    with pytest.raises(Exception, match="needs unit_value"):
        parse_program(base + (CHURN_POOL % (1, 2, 3)).replace('formula = "share_of_value_at_risk"\n', "")
                      .replace("value_at_risk = { low = 1, mode = 2, high = 3 }\n", ""))


def test_engine_decision_and_cadence_put_the_same_money_on_one_effect():
    prog = _program(60_000.0, 70_000.0, 90_000.0, only_share=False)
    est, se, c = -2.0, 0.5, 25.0
    period_days = prog.retraining.period_days
    months = period_days / 30.4375
    mode = 70_000.0
    expected_share = -est / c * mode * months
    # The retrain/retire decision values a period's effect with every hard pool of the KPI.
    row = {"period": "p1", "estimate": est, "se": se, "treatment_denominator": 40_000.0, "control_mean": c}
    d = decide_total({"refunds_per_1000_orders": [row, {**row, "period": "p2"}]}, prog, running_cost=1.0)
    per_event = -est / 1000 * 40_000.0 * 25.0  # the starter's refunds_avoided pool, mode 25 per refund
    assert d.figures["kpis"]["refunds_per_1000_orders"]["current_value_per_period"] == pytest.approx(
        expected_share + per_event, rel=1e-12)
    # The ROI engine over the same span and volume.
    res = compute_roi(prog, _effect(est, se, c), RoiVolumes({"refunds_per_1000_orders": 40_000.0}, 1e4,
                                                           months=months), draws=1000, rng=1)
    by_pool = {p["name"]: p["benefit_expected"] for p in res.pools}
    assert by_pool["churned_revenue_saved"] == pytest.approx(expected_share, rel=1e-12)
    assert by_pool["refunds_avoided"] == pytest.approx(per_event, rel=1e-12)
    # The cadence series' value to date over a span of the same length.
    from datetime import date, timedelta
    start = date(2025, 7, 1)
    cad_row = {"estimate": est, "ci_low": est - 1.0, "ci_high": est + 1.0, "control_mean": c,
               "to_date": {"start": start.isoformat(), "end": (start + timedelta(days=period_days - 1)).isoformat()}}
    v = _value_fields(prog, "refunds_per_1000_orders", cad_row, 40_000.0)
    assert v["value_hard"] == pytest.approx(expected_share + per_event, rel=1e-12)


def test_the_waterfall_adds_up_with_a_share_pool_and_its_level_counts_as_volume():
    prog = _program(60_000.0, 70_000.0, 90_000.0, only_share=False)
    vols = RoiVolumes({"refunds_per_1000_orders": 40_000.0, "tickets_per_1000_orders": 40_000.0}, 1e4, months=6)
    plan = {**_effect(-3.0, 1.0, 30.0), **_effect(-4.0, 1.0, 50.0, "tickets_per_1000_orders")}
    real = {**_effect(-2.0, 1.0, 25.0), **_effect(-5.0, 1.0, 45.0, "tickets_per_1000_orders")}
    p, r = roi_drivers(prog, plan, vols, 12), roi_drivers(prog, real, vols, 12)
    for d, eff in ((p, plan), (r, real)):
        assert expected_roi(d) == pytest.approx(compute_roi(prog, eff, vols, draws=200, rng=1, horizon_months=12).estimate,
                                                rel=1e-12)
    w = roi_waterfall(p, r)
    assert math.fsum(s["roi"] for s in w["steps"]) == pytest.approx(w["realized_roi"] - w["projected_roi"], rel=1e-12)
    # The control level fell from 30 to 25: the same effect is a larger share; the volume step shows it.
    assert next(s for s in w["steps"] if s["driver"] == "volume")["net"] > 0

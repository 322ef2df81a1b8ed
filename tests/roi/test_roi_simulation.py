"""Simulation: the ROI interval covers the true ROI at its nominal rate; the headline is conservative.

A cluster experiment is simulated many times around known true effects on two KPIs (tickets and
refunds per 1,000 orders, one value per SKU family and arm). Each replicate's effects are the
Welch difference in means with its estimated standard error - what the experiment engine saves -
and ``compute_roi`` turns them into an ROI distribution. Unit values and costs are held at their
modes (zero-width ranges), so the only uncertainty is the effects', and the truth is
``roi_ratio(true avoided x mode values, modal cost)`` (CONTRACTS.md definition).

Expected rates: the 90% interval covers the truth ~90% of the time (slightly less with an
estimated se on 60 units per arm: the normal draw ignores the t-correction), and the 10th
percentile headline is below the truth ~90% of the time (>= 85% required by issue 7).
"""

from __future__ import annotations

import numpy as np
import pytest

from insightroi.program import Program, parse_program, starter_program_text
from insightroi.roi import RoiVolumes, compute_roi, roi_ratio
from insightroi.stats import Result

TICKETS = "tickets_per_1000_orders"
REFUNDS = "refunds_per_1000_orders"


def _program() -> Program:
    raw = parse_program(starter_program_text()).model_dump(mode="json")
    for p in raw["value_pools"]:
        m = p["unit_value"]["mode"]
        p["unit_value"] = {"low": m, "mode": m, "high": m}
    for c in raw["costs"]:
        m = c["amount"]["mode"]
        c["amount"] = {"low": m, "mode": m, "high": m}
    return Program.model_validate(raw)


def _welch(t: np.ndarray, c: np.ndarray, metric: str) -> Result:
    d = t.mean() - c.mean()
    se = float(np.sqrt(t.var(ddof=1) / t.size + c.var(ddof=1) / c.size))
    return Result(estimate=float(d), se=se, ci=(d - 1.96 * se, d + 1.96 * se), p_value=float("nan"), method="welch_t",
                  n=t.size + c.size, metric=metric)


@pytest.mark.slow
def test_roi_interval_covers_truth_and_headline_is_conservative():
    prog = _program()
    rng = np.random.default_rng(20261123)
    reps, n = 400, 60
    true = {TICKETS: -6.0, REFUNDS: -2.0}            # per 1,000 orders, treated minus control
    base = {TICKETS: 40.0, REFUNDS: 15.0}
    sd = {TICKETS: 12.0, REFUNDS: 5.0}               # between-family spread of the KPI
    vol = RoiVolumes({TICKETS: 2_000_000, REFUNDS: 2_000_000, "negative_reviews_per_1000_orders": 2_000_000},
                     feedback=300_000, months=9)
    values = {p.kpi: p.unit_value.mode for p in prog.value_pools if p.hard}
    benefit = sum(-true[k] / 1000 * vol.kpis[k] * values[k] for k in true)
    cost = 1200 * 9 + 1.0 * 300 + 3000 * 9 + 12000 + 3000
    truth = roi_ratio(benefit, cost)

    covered = below = 0
    for _ in range(reps):
        effects = {}
        for k in true:
            c = rng.normal(base[k], sd[k], n)
            t = rng.normal(base[k] + true[k], sd[k], n)
            effects[k] = _welch(t, c, k)
        out = compute_roi(prog, effects, vol, draws=4_000, rng=rng)
        covered += out.ci[0] <= truth <= out.ci[1]
        below += out.conservative < truth
    coverage, conservative_rate = covered / reps, below / reps
    print(f"ROI 90% interval coverage {coverage:.3f}, headline below truth {conservative_rate:.3f} ({reps} replicates)")
    # 400 replicates: binomial sd of a 90% rate is 0.015; +-0.045 is 3 sd.
    assert 0.855 <= coverage <= 0.945, coverage
    assert conservative_rate >= 0.85, conservative_rate
    assert conservative_rate <= 0.96, conservative_rate  # conservative, not uselessly so

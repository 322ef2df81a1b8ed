"""Issue 6: the time-series counterfactual's interval covers the true effect on demo worlds.

The demo world (``scale="demo"``) has 13 pre-rollout weeks and 39 after; the treated and the
control families' weekly negative-review rates are mostly count noise (SD ~2 per 1,000 orders
on a level of ~11) plus family-level defect bursts lasting weeks, which move a group's level by
~1 per 1,000 between the pre- and the post-period and are independent between the groups. With
R CausalImpact's fixed level prior (``level="prior"``) the model treats the level as constant,
and its 95% interval covered the true ATT in only 27 of 60 worlds (seeds 0-59; error SD 1.42
against a claimed SE of 0.49; bias +0.2, not significant). Integrating over the level variance
fixes it: ``level="controls"`` (posterior also from the control group's whole window) covered
57/60, ``level="pre_period"`` 60/60. Measured on seeds 1-20 (this test, n_sims=1000): prior
9/20, controls 17/20, pre_period 20/20; median interval widths 1.8, 8.0 and 14.6 per 1,000
orders (the estimate's actual error SD is ~1.5, so an exact 95% interval would be ~6 wide).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("insightroi.demo")

from insightroi.experiments import kpi_rate, time_series_impact  # noqa: E402
from test_exp_quasi_demo_claim import PRIMARY, _cell_panel  # noqa: E402  (same folder, pytest's prepend import)


def _weekly(panel):
    """Treated and control groups' weekly KPI (ratio of sums), as quasi_kpi_effects builds it."""
    w = panel.groupby(["period", "treated"])[["negative_reviews", "orders"]].sum().reset_index()
    w = kpi_rate(w, "negative_reviews", "orders", 1000.0)
    wide = w.pivot(index="period", columns="treated", values="kpi").sort_index().dropna()
    wide.columns = ["control" if not c else "treated" for c in wide.columns]
    return wide.reset_index()


@pytest.mark.slow
def test_demo_time_series_interval_covers_the_att_over_worlds():
    seeds = range(1, 21)
    covered = {"prior": 0, "controls": 0, "pre_period": 0}
    width = {k: [] for k in covered}
    for seed in seeds:
        panel, rollout, truth, _ = _cell_panel(seed)
        att = truth[PRIMARY]["att"]
        wide = _weekly(panel)
        assert int((wide["period"] < rollout).sum()) == 13 and len(wide) == 52
        for level in covered:
            r = time_series_impact(wide, outcome="treated", period="period", rollout=rollout, controls=["control"],
                                   n_sims=1000, seed=seed, level=level)
            covered[level] += r.ci[0] <= att <= r.ci[1]
            width[level].append(r.ci[1] - r.ci[0])
    n = len(seeds)
    # The defect this guards against: R's fixed prior covers about half the time.
    assert covered["prior"] <= 0.65 * n, covered
    # 20 worlds at a true 95%: fewer than 16 happens with probability ~0.3%.
    assert covered["controls"] >= 0.8 * n, covered
    assert covered["pre_period"] >= 0.85 * n, covered
    # Honest, not unbounded: the control group's evidence narrows the interval.
    assert np.median(width["controls"]) < np.median(width["pre_period"])

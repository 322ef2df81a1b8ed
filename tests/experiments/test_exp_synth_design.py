"""The synthetic-control design's unit-average cross-check: several treated units, variant by rule.

Under no effect, with units exchangeable (a common factor, loadings and noise drawn alike for
every unit), the treated group is as good as a random group of as many units, so the group
placebo-in-space p-value must be uniform: KS test over 120 simulated panels. The variant rule must
pick the demeaned fit when the treated level lies outside what the donors can reach, and the
plain one when it does not; the design's Result must carry the figures and the Check.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from insightroi.experiments import synth_design_effect, synth_panel_effect, synth_variant_rule

N, M, N_PRE, N_POST = 12, 3, 16, 6


def _panel(rng, *, shift=0.0):
    T = N_PRE + N_POST
    f = np.cumsum(rng.normal(0, 1, T))
    Y = 50 + rng.normal(0, 2, N)[:, None] + rng.uniform(0.5, 1.5, N)[:, None] * f + rng.normal(0, 1, (N, T))
    tr = np.zeros(N, dtype=bool)
    tr[:M] = True
    Y[tr] += shift
    return Y, tr


def test_several_treated_placebo_p_uniform_under_no_effect():
    rng = np.random.default_rng(20)
    ps, variants = [], []
    for _ in range(120):
        R, tr = _panel(rng)
        r = synth_panel_effect(R, tr, N_PRE, n_placebo_groups=250, seed=rng)
        ps.append(r.extra["placebo_p_value"])
        variants.append(r.extra["variant"])
    ps = np.asarray(ps)
    ks = sps.kstest(ps, "uniform")
    print(f"placebo p: KS p = {ks.pvalue:.3f}, share below 0.05 = {np.mean(ps <= 0.05):.3f}, "
          f"demeaned in {variants.count('demeaned')} of {len(variants)}")
    assert ks.pvalue > 0.05, ks
    assert np.mean(ps <= 0.05) <= 0.10


def test_variant_rule_demeans_when_levels_differ():
    rng = np.random.default_rng(3)
    R, tr = _panel(rng, shift=25.0)  # treated level above every donor's
    v, reason, t = synth_variant_rule(R[tr, :N_PRE].mean(axis=0), R[~tr, :N_PRE].T)
    assert v == "demeaned" and t > 2, (v, reason)
    R2 = R.copy()
    R2[tr] -= 25.0
    # With the level within the donors' reach, a good plain fit leaves no systematic offset.
    v2, reason2, t2 = synth_variant_rule(R2[tr, :N_PRE].mean(axis=0), R2[~tr, :N_PRE].T)
    assert t2 < t


def test_design_result_carries_the_cross_check():
    rng = np.random.default_rng(8)
    R, tr = _panel(rng, shift=10.0)
    R[tr, N_PRE:] -= 3.0  # a known effect of -3 on every treated unit
    den = np.full(R.shape, 1000.0)
    res = synth_design_effect(R * den, den, tr, N_PRE, n_placebo_groups=60, seed=1, metric="k")
    sp = res.extra["synth_panel"]
    assert sp["variant"] == "demeaned" and res.extra["synth_variant"] == "demeaned"
    lo, hi = res.extra["conformal_ci"]
    assert lo <= -3.0 <= hi and hi < 0, (lo, hi)
    assert 0 <= res.extra["placebo_p_value"] <= 1
    chk = next(c for c in res.diagnostics if c.name == "synth_panel")
    assert "demeaned" in chk.message and "conformal interval" in chk.message

"""Partial pooling of segment estimates (empirical-Bayes normal-normal shrinkage).

References: statsmodels 0.14+ ``statsmodels.stats.meta_analysis.combine_effects`` computes
``tau^2`` by DerSimonian-Laird (``method_re="dl"``) and Paule-Mandel (``method_re="pm"``) on the
same data in the same run (so equal to rounding); Morris (1983, JASA 78:47) gives the closed
form the estimator reduces to with equal standard errors. The simulations check what shrinkage
is for: lower mean squared error than the raw estimates and intervals that cover ~95%.
"""

from __future__ import annotations

import numpy as np
import pytest

from insightroi.errors import DataError
from insightroi.stats._pooling import PooledEstimates, partial_pool, tau2_dersimonian_laird, tau2_paule_mandel

# Twelve segment effects with unequal standard errors and clear heterogeneity (Q >> k - 1),
# so statsmodels' untruncated DerSimonian-Laird value is the truncated one.
Y = np.array([0.12, -0.35, 0.80, 0.41, -0.05, 1.30, 0.22, 0.57, -0.61, 0.95, 0.10, 0.33])
SE = np.array([0.20, 0.35, 0.25, 0.15, 0.40, 0.50, 0.18, 0.30, 0.45, 0.28, 0.22, 0.60])


@pytest.mark.parametrize("method_re", ["dl", "pm"])
def test_tau2_equals_statsmodels_combine_effects(method_re):
    ma = pytest.importorskip("statsmodels.stats.meta_analysis")
    ours = tau2_dersimonian_laird(Y, SE) if method_re == "dl" else tau2_paule_mandel(Y, SE)
    # statsmodels stops Paule-Mandel at |Q - (k - 1)| < atol (1e-5 by default: tau^2 2e-8 off
    # here); 1e-10 brings it to the root. Much tighter and a rounding-level overshoot (Q - (k - 1)
    # just below 0) makes it return 0.
    res = ma.combine_effects(Y, SE**2, method_re=method_re, atol=1e-10, maxiter=500)
    assert ours > 0.05  # heterogeneous data: a positive tau^2 is what is being compared
    assert ours == pytest.approx(res.tau2, abs=1e-8)
    pooled = partial_pool(Y, SE, method=method_re)
    assert pooled.tau2 == ours
    # The pooled mean is the random-effects mean statsmodels reports with the same tau^2.
    assert pooled.mean == pytest.approx(res.mean_effect_re, abs=1e-10)
    assert pooled.mean_se == pytest.approx(res.sd_eff_w_re, abs=1e-10)


def test_tau2_is_zero_when_estimates_agree_more_than_their_errors_allow():
    y = np.array([0.10, 0.11, 0.09, 0.10, 0.12, 0.08])
    se = np.full(6, 0.5)
    assert tau2_dersimonian_laird(y, se) == 0.0
    assert tau2_paule_mandel(y, se) == 0.0
    p = partial_pool(y, se)
    # Morris caps the shrinkage at (k - 3) / (k - 1), never complete pooling.
    assert np.allclose(p.shrinkage, 3 / 5)
    assert (p.se > 0).all()


def test_equal_standard_errors_give_morris_closed_form():
    # Morris (1983): with equal variances V, B = (k - 3) V / S with S = sum (y - ybar)^2, posterior
    # mean ybar + (1 - B)(y - ybar), variance V (1 - (k - 1) B / k) + 2 B^2 (y - ybar)^2 / (k - 3).
    rng = np.random.default_rng(3)
    k, v = 10, 0.25
    y = rng.normal(0.0, 1.0, k)
    ybar = y.mean()
    S = ((y - ybar) ** 2).sum()
    assert S > (k - 1) * v  # so tau^2 > 0 and the cap does not bind
    B = (k - 3) * v / S
    p = partial_pool(y, np.full(k, np.sqrt(v)), method="dl")
    np.testing.assert_allclose(p.shrinkage, B, rtol=1e-12)
    np.testing.assert_allclose(p.estimate, ybar + (1 - B) * (y - ybar), rtol=1e-12)
    var = v * (1 - (k - 1) / k * B) + 2 / (k - 3) * B**2 * (y - ybar) ** 2
    np.testing.assert_allclose(p.se, np.sqrt(var), rtol=1e-12)


def test_noisier_segments_shrink_more_and_intervals_match_se():
    p = partial_pool(Y, SE)
    order = np.argsort(SE)
    assert np.all(np.diff(p.shrinkage[order]) > 0)
    # Every estimate moves towards the pooled mean, never past it.
    assert np.all(np.abs(p.estimate - p.mean) < np.abs(Y - p.mean))
    assert np.all(np.sign(p.estimate - p.mean) == np.sign(Y - p.mean))
    np.testing.assert_allclose(p.ci_high - p.ci_low, 2 * 1.959963984540054 * p.se, rtol=1e-12)
    d = p.to_dict()
    assert d["tau2"] == p.tau2 and d["estimate"] == p.estimate.tolist() and d["method"] == "pm"


def _simulate(tau: float, *, method: str, morris: bool = True, reps: int = 2000, k: int = 12, seed: int = 20250701):
    """Raw and pooled squared errors and interval coverage over ``reps`` worlds of ``k`` segments,
    true effects from N(1, tau^2), standard errors uniform on [0.5, 2] (so shrinkage runs 0.2-0.8)."""
    rng = np.random.default_rng(seed)
    raw = pooled = covered = 0.0
    for _ in range(reps):
        se = rng.uniform(0.5, 2.0, k)
        theta = rng.normal(1.0, tau, k)
        y = rng.normal(theta, se)
        p = partial_pool(y, se, method=method, morris=morris)
        raw += ((y - theta) ** 2).sum()
        pooled += ((p.estimate - theta) ** 2).sum()
        covered += ((p.ci_low <= theta) & (theta <= p.ci_high)).sum()
    return pooled / raw, covered / (reps * k)


@pytest.mark.parametrize("method", ["pm", "dl"])
def test_pooling_lowers_mse_and_covers_95_percent(method):
    ratio, coverage = _simulate(1.0, method=method)
    print(f"{method}: MSE pooled / raw = {ratio:.3f}, 95% interval coverage = {coverage:.4f}")
    # Measured 0.436 (pm) and 0.424 (dl); no shrinkage is 1.0.
    assert ratio < 0.6
    # 24,000 intervals: the binomial SE of a 95% coverage is 0.0014, so 93-97% is far outside noise.
    assert 0.93 <= coverage <= 0.97


def test_morris_correction_is_what_keeps_coverage():
    # Plugging tau^2 and mu in as if known gives intervals that are far too short (measured 76%).
    _, plug_in = _simulate(1.0, method="pm", morris=False, reps=500)
    assert plug_in < 0.85
    # Less heterogeneity relative to the errors shrinks less and still covers (measured 94.5%).
    ratio, coverage = _simulate(2.0, method="pm", reps=500)
    assert ratio < 0.8 and 0.93 <= coverage <= 0.97


def test_bad_inputs_raise_named_errors():
    with pytest.raises(DataError, match="one standard error per estimate"):
        partial_pool([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="se must be > 0"):
        partial_pool([1.0, 2.0, 3.0, 4.0], [0.1, 0.0, 0.3, 0.2])
    with pytest.raises(DataError, match="finite"):
        tau2_paule_mandel([1.0, np.nan], [0.1, 0.2])
    with pytest.raises(DataError, match="at least 4 segments"):
        partial_pool([1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    assert isinstance(partial_pool([1.0, 2.0, 3.0], [0.1, 0.2, 0.3], morris=False), PooledEstimates)
    with pytest.raises(ValueError, match="'method' parameter must be one of"):
        partial_pool(Y, SE, method="reml")
    with pytest.raises(ValueError, match="'level'"):
        partial_pool(Y, SE, level=95)

"""Power, minimum detectable effect and required sample size.

Two-sample formulas follow statsmodels' ``NormalIndPower`` / ``TTestIndPower`` (which reproduce
R ``pwr``): effect sizes are standardized (Cohen's d; Cohen's h for proportions), ``nobs1`` is
the size of the first arm and ``ratio = nobs2 / nobs1``.

References
----------
Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences, 2nd ed.
Donner, A., Klar, N. (2000). Design and Analysis of Cluster Randomization Trials.
Eldridge, S., Ashby, D., Kerry, S. (2006). Sample size for cluster randomized trials: effect of
coefficient of variation of cluster size and analysis method. Int. J. Epidemiology 35, 1292-1300.
Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data (CUPED). WSDM.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import optimize, stats

from insightroi.errors import DataError, check_option
from insightroi.stats._suffstats import Ratio, RatioRegressionAdjusted
from insightroi.stats._twoarm import _grad_post, _grad_pre

__all__ = [
    "power",
    "sample_size",
    "minimum_detectable_effect",
    "cohens_h",
    "sample_size_proportions",
    "sample_size_ratio",
    "ratio_unit_variance",
    "power_from_se",
    "mde_from_se",
    "ratio_window_moments",
    "cuped_residual_variance",
    "duration_variances",
    "icc_anova",
    "design_effect",
]

PowerTest = Literal["normal", "t"]


def _nct_two_sided(crit: float, df: float, nc: float) -> float:
    """P(|T| > crit) for a noncentral t with ``df`` degrees of freedom and noncentrality ``nc``."""
    upper, lower = float(stats.nct.sf(crit, df, nc)), float(stats.nct.cdf(-crit, df, nc))
    # scipy's noncentral t returns NaN far in a tail (the lower one from nc ~ 15 at df 58), where
    # the term is below 1e-30: NaN power made `plan` print "nan%" and call a sure effect undetectable.
    if not math.isfinite(lower):
        lower = 0.0
    if not math.isfinite(upper):
        upper = 1.0 - float(stats.nct.cdf(crit, df, nc))
    return min(1.0, upper + lower)


def power(effect_size: float, nobs1: float, *, alpha: float = 0.05, ratio: float = 1.0, test: PowerTest = "normal") -> float:
    """Two-sided power of a two-sample test for standardized effect ``effect_size``.

    ``test="normal"`` equals ``NormalIndPower().power``; ``test="t"`` uses the noncentral t with
    ``nobs1 + nobs2 - 2`` degrees of freedom and equals ``TTestIndPower().power`` (R ``pwr.t.test``).
    """
    check_option("test", test, ("normal", "t"))
    nobs2 = nobs1 * ratio
    if test == "normal":
        nc = effect_size * math.sqrt(nobs1 * ratio / (1 + ratio))
        crit = stats.norm.isf(alpha / 2)
        return float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    df = nobs1 + nobs2 - 2
    nc = effect_size * math.sqrt(nobs1 * nobs2 / (nobs1 + nobs2))
    crit = stats.t.isf(alpha / 2, df)
    return _nct_two_sided(crit, df, nc)


def sample_size(
    effect_size: float, *, power_target: float = 0.8, alpha: float = 0.05, ratio: float = 1.0, test: PowerTest = "normal",
) -> float:
    """Size of the first arm (not rounded) that reaches ``power_target`` for ``effect_size``.

    Equals ``NormalIndPower().solve_power(effect_size, power=..., alpha=..., ratio=...)`` (or the
    ``TTestIndPower`` one for ``test="t"``). Round up to get a number of units.
    """
    if effect_size == 0:
        return math.inf
    d = abs(effect_size)
    f = lambda n: power(d, n, alpha=alpha, ratio=ratio, test=test) - power_target  # noqa: E731
    lo = 2.0 + 1e-9 if test == "t" else 1e-6
    hi = 10.0
    while f(hi) < 0:
        hi *= 4
        if hi > 1e15:
            return math.inf
    return float(optimize.brentq(f, lo, hi, xtol=1e-10, rtol=1e-12))


def minimum_detectable_effect(
    nobs1: float, *, power_target: float = 0.8, alpha: float = 0.05, ratio: float = 1.0, test: PowerTest = "normal",
) -> float:
    """Smallest standardized effect detectable with ``nobs1`` units in arm 1 at ``power_target``."""
    f = lambda d: power(d, nobs1, alpha=alpha, ratio=ratio, test=test) - power_target  # noqa: E731
    return float(optimize.brentq(f, 1e-9, 100.0, xtol=1e-12))


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1)) (statsmodels ``proportion_effectsize(p2, p1)``)."""
    return 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))


def sample_size_proportions(
    p_control: float, p_treatment: float, *, power_target: float = 0.8, alpha: float = 0.05, ratio: float = 1.0,
) -> int:
    """Units per control arm to detect ``p_control -> p_treatment`` (Cohen's h, normal test), rounded up."""
    return int(math.ceil(sample_size(cohens_h(p_control, p_treatment), power_target=power_target, alpha=alpha,
                                     ratio=ratio) - 1e-9))


def ratio_unit_variance(stat: Ratio) -> float:
    """Per-unit variance of a ratio metric's linearisation ``(num - R den) / mean(den)``.

    The delta-method variance of the ratio of sums over ``n`` units is this divided by ``n``
    (Deng, Knoblich & Lu 2018).
    """
    m = stat.moments()
    r = m.ratio
    c = m.cov
    return float((c[0, 0] - 2 * r * c[0, 1] + r * r * c[1, 1]) / m.mean[1] ** 2)


def sample_size_ratio(
    stat: Ratio, mde_relative: float, *, power_target: float = 0.8, alpha: float = 0.05, ratio: float = 1.0,
) -> int:
    """Units (clusters) per arm for a relative change ``mde_relative`` of a ratio metric.

    ``stat`` describes the units in a baseline (pre-period) window; the standardized effect is
    ``mde_relative x R / sqrt(ratio_unit_variance(stat))``. For a cluster design this already
    includes the intra-cluster correlation: the unit of the variance is the cluster.
    """
    var = ratio_unit_variance(stat)
    if not var > 0:
        raise DataError("the ratio metric has no variance across units in the baseline window")
    d = mde_relative * abs(stat.mean) / math.sqrt(var)
    return int(math.ceil(sample_size(d, power_target=power_target, alpha=alpha, ratio=ratio) - 1e-9))


def power_from_se(effect: float, se: float, *, alpha: float = 0.05, df: float | None = None) -> float:
    """Two-sided power for an effect measured with standard error ``se``.

    Parameters
    ----------
    effect, se : float
        The true effect and the standard error of its estimate, in the same units.
    alpha : float
        Two-sided level of the test.
    df : float, optional
        Degrees of freedom of a t reference (noncentral t power, as :func:`power` with
        ``test="t"``); the normal when None. A cluster design analysed at the cluster has
        about ``clusters - 2`` of them, and with few clusters the normal overstates power.
    """
    if not se > 0:
        return math.nan
    nc = abs(effect) / se
    if df is None or not math.isfinite(df):
        crit = stats.norm.isf(alpha / 2)
        return float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    if not df > 0:
        return math.nan
    crit = stats.t.isf(alpha / 2, df)
    return _nct_two_sided(crit, df, nc)


def mde_from_se(se: float, *, alpha: float = 0.05, power_target: float = 0.8, df: float | None = None) -> float:
    """Smallest effect detected with ``power_target`` when its estimate has standard error ``se``.

    ``(z_{1-alpha/2} + z_{power}) se`` for the normal reference; for a t reference (``df``
    given) the root of :func:`power_from_se`. Either way it is proportional to ``se``.

    Parameters
    ----------
    se : float
        Standard error of the effect's estimate.
    alpha : float
        Two-sided level of the test.
    power_target : float
        Power to reach (default 0.8).
    df : float, optional
        Degrees of freedom of a t reference; None for the normal.

    Returns
    -------
    float
        NaN when ``se`` is not positive or the t root cannot be bracketed.
    """
    if not se > 0:
        return math.nan
    if df is None or not math.isfinite(df):
        return float((stats.norm.isf(alpha / 2) + stats.norm.isf(1 - power_target)) * se)
    f = lambda k: power_from_se(k, 1.0, alpha=alpha, df=df) - power_target  # noqa: E731
    hi = 8.0
    while not f(hi) > 0:  # scipy's nct turns NaN far in the tail, so widen the bracket stepwise
        hi *= 2
        if hi > 1e3:
            return math.nan
    return float(optimize.brentq(f, 1e-9, hi, xtol=1e-12)) * se


def ratio_window_moments(stat: RatioRegressionAdjusted) -> tuple[float, float, float]:
    """Per-unit variances of the linearised post and pre ratios, and their covariance.

    The linearisations are the ones :func:`insightroi.stats.two_arm` uses for a
    :class:`RatioRegressionAdjusted` (``(num - R den) / mean(den)`` in each period), so the
    CUPED variance a plan derives from them is the one the analysis will get.

    Returns
    -------
    (var_post, var_pre, cov)
    """
    m = stat.moments()
    gp, gq = _grad_post(m), _grad_pre(m)
    return float(gp @ m.cov @ gp), float(gq @ m.cov @ gq), float(gp @ m.cov @ gq)


def cuped_residual_variance(var_post: float, var_pre: float, cov: float) -> tuple[float, float]:
    """Variance left after CUPED with the variance-minimising ``theta = cov / var_pre``.

    ``var_post - cov^2 / var_pre = var_post (1 - rho^2)`` (Deng et al. 2013, eq. 3).

    Returns
    -------
    (variance, rho)
        ``rho = cov / sqrt(var_post var_pre)``; ``(var_post, 0.0)`` when the pre-period has
        no variance.
    """
    if not (var_pre > 0 and var_post > 0) or not math.isfinite(cov):
        return float(var_post), 0.0
    rho = max(min(cov / math.sqrt(var_post * var_pre), 1.0), -1.0)
    return float(var_post * (1 - rho * rho)), float(rho)


def duration_variances(
    a: float, b: float, weeks: float, *, cross_cov: float = 0.0, pre_weeks: float | None = None,
) -> tuple[float, float, float]:
    """Per-unit variance of a ratio KPI over ``weeks`` weeks, without and with CUPED, and rho.

    The linearised ratio of a unit over ``T`` weeks has variance ``V(T) = a + b / T``: ``a``
    the lasting between-unit heterogeneity, ``b / T`` the counting noise. Two disjoint windows
    share only the lasting part, so their covariance is ``cross_cov`` whatever their lengths
    (estimate it from two adjacent pre-period windows). CUPED adjusts the ``T``-week
    experiment window by the ``P``-week pre-period, which gives
    ``rho(T)^2 = cross_cov^2 / ((a + b / P) (a + b / T))``: rho grows with both durations as
    the noise averages out, so a rho measured at one window length must not be reused at another.

    Parameters
    ----------
    a, b : float
        Variance components (see ``insightroi.experiments.variance_model``).
    weeks : float
        Experiment window ``T``.
    cross_cov : float
        Covariance of a unit's linearised KPI in two disjoint windows. Clipped to ``[0, a]``:
        under the model it estimates ``a``, and a larger value is sampling noise that would
        promise a variance below zero; a negative one promises nothing a plan can rely on.
    pre_weeks : float, optional
        Pre-period length ``P`` (None: no pre-period, so no CUPED).

    Returns
    -------
    (variance, variance_cuped, rho)
    """
    v_post = a + b / weeks
    if not pre_weeks or pre_weeks <= 0:
        return float(v_post), float(v_post), 0.0
    c = min(max(cross_cov, 0.0), max(a, 0.0))
    v_cuped, rho = cuped_residual_variance(v_post, a + b / pre_weeks, c)
    return float(v_post), v_cuped, rho


def icc_anova(values, clusters) -> float:
    """Intra-cluster correlation by one-way ANOVA with unequal cluster sizes (Donner & Klar 2000).

    ``ICC = (MSB - MSW) / (MSB + (n0 - 1) MSW)`` with ``n0 = (N - sum n_i^2 / N) / (k - 1)``;
    truncated at 0. Use pre-period observations (e.g. one row per order with its outcome).
    """
    y = np.asarray(values, dtype=float)
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    codes = codes.ravel()
    k = int(codes.max()) + 1 if codes.size else 0
    n_tot = y.size
    if k < 2 or n_tot <= k:
        raise DataError(f"ICC needs at least 2 clusters and more observations than clusters (got {k}, {n_tot})")
    sizes = np.bincount(codes, minlength=k).astype(float)
    sums = np.bincount(codes, weights=y, minlength=k)
    means = sums / sizes
    grand = y.mean()
    ssb = float((sizes * (means - grand) ** 2).sum())
    ssw = float(((y - means[codes]) ** 2).sum())
    msb = ssb / (k - 1)
    msw = ssw / (n_tot - k)
    n0 = (n_tot - (sizes**2).sum() / n_tot) / (k - 1)
    denom = msb + (n0 - 1) * msw
    return float(max((msb - msw) / denom, 0.0)) if denom > 0 else 0.0


def design_effect(mean_cluster_size: float, icc: float, *, cv_cluster_size: float = 0.0) -> float:
    """Variance inflation of a cluster design over individual randomization.

    ``1 + ((cv^2 + 1) m - 1) ICC`` (Eldridge, Ashby & Kerry 2006); with equal cluster sizes
    (``cv = 0``) this is Kish's ``1 + (m - 1) ICC``. Multiply an individually-randomized sample
    size by it to get the clustered one.
    """
    return 1.0 + ((cv_cluster_size**2 + 1) * mean_cluster_size - 1) * icc

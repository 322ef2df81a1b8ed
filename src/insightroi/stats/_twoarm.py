"""Two-arm estimators from sufficient statistics: absolute and relative lift by the delta method.

One engine covers means (Welch t), proportions, ratio metrics and CUPED, because every
statistic reduces to the moments of ``(num, den, num_pre, den_pre)`` per unit
(:class:`insightroi.stats.Moments`). Conventions follow GrowthBook's gbstats frequentist engine
(``TwoSidedTTest``): t reference distribution with Welch-Satterthwaite degrees of freedom,
relative lift ``treatment / control - 1`` with the delta-method variance.

References
----------
Welch, B. L. (1947). The generalization of Student's problem when several different population
variances are involved. Biometrika 34, 28-35.
Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data (CUPED). WSDM.
Deng, A., Knoblich, U., Lu, J. (2018). Applying the delta method in metric analytics. KDD.
Waudby-Smith, I. et al. (2023). Time-uniform central limit theory and asymptotic confidence
sequences (the sequential interval gbstats uses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import numpy as np
from scipy import special

from insightroi.errors import DataError, check_option
from insightroi.stats._intervals import welch_df
from insightroi.stats._pooling import partial_pool
from insightroi.stats._result import (
    TOO_FEW_UNITS,
    ZERO_CONTROL_MEAN,
    ZERO_DENOMINATOR,
    Result,
)
from insightroi.stats._suffstats import (
    Moments,
    Proportion,
    Ratio,
    RatioRegressionAdjusted,
    RegressionAdjusted,
    SampleMean,
    Statistic,
)

__all__ = [
    "two_arm",
    "welch_t",
    "proportions_test",
    "ratio_test",
    "cuped",
    "cluster_randomized",
    "holdout",
    "segment_breakdown",
    "adjust_pvalues",
    "holm",
    "benjamini_hochberg",
]

Test = Literal["t", "z"]
Correction = Literal["holm", "bh", "none"]

#: Fewest segments a breakdown pools: Morris' correction needs k - 3 > 0.
MIN_POOLED_SEGMENTS = 4

_DEFAULT_METHOD = {
    SampleMean: "welch_t",
    Proportion: "proportions",
    Ratio: "ratio_delta",
    RegressionAdjusted: "cuped",
    RatioRegressionAdjusted: "cuped_ratio",
}


def _grad_post(m: Moments) -> np.ndarray:
    md = m.mean[1]
    return np.array([1.0 / md, -m.mean[0] / md**2, 0.0, 0.0])


def _grad_pre(m: Moments) -> np.ndarray:
    md = m.mean[3]
    if md == 0:
        return np.zeros(4)
    return np.array([0.0, 0.0, 1.0 / md, -m.mean[2] / md**2])


def _quad(g: np.ndarray, m: Moments) -> float:
    return float(g @ m.cov @ g) / m.n


def _sequential_halfwidth(var: float, n: int, alpha: float, tuning: float) -> float:
    # Waudby-Smith et al. asymptotic confidence sequence, parameterised as in gbstats
    # (``sequential_interval_halfwidth``): s2 is the per-observation variance, n the total size.
    s2 = var * n
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    return math.sqrt(s2) * math.sqrt((2 * (n * rho**2 + 1)) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / alpha))


def two_arm(
    control: Statistic,
    treatment: Statistic,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    test: Test = "t",
    cuped: bool = True,
    sequential_tuning: float | None = None,
    metric: str = "",
    method: str | None = None,
) -> Result:
    """Difference (or relative lift) of treatment over control from sufficient statistics.

    Parameters
    ----------
    control, treatment : SampleMean, Proportion, Ratio, RegressionAdjusted or RatioRegressionAdjusted
        Both arms' statistics, of the same kind.
    relative : bool
        ``False``: ``treatment - control`` in metric units; ``True``: ``treatment / control - 1``
        with the delta-method variance (Deng, Knoblich & Lu 2018).
    alpha : float
        Two-sided level of the interval.
    test : {"t", "z"}
        Reference distribution: Student t with Welch-Satterthwaite degrees of freedom (gbstats'
        choice, and the small-sample correction for cluster designs), or the normal.
    cuped : bool
        For statistics with a pre-period covariate, adjust with
        ``theta = sum_k Cov_k(post, pre) / sum_k Var_k(pre)`` (each arm's sampling covariance; the
        theta that minimises the variance of the adjusted difference, Deng et al. 2013 eq. 3).
    sequential_tuning : float, optional
        When given, the interval is the always-valid confidence sequence of Waudby-Smith et al.
        with this tuning sample size (gbstats' ``sequential_tuning_parameter``), and the p-value
        is the smallest alpha whose sequence excludes zero.
    metric, method : str
        Labels stored on the Result.

    Returns
    -------
    Result
        ``extra`` holds ``control_mean``, ``treatment_mean`` (unadjusted, metric units),
        ``control_n``, ``treatment_n``, ``df``, ``theta`` and ``variance_reduction``.

    Raises
    ------
    DataError
        When an arm has fewer than two units, a zero control mean (relative) or zero denominator.
    """
    check_option("test", test, ("t", "z"))
    if type(control) is not type(treatment):
        raise DataError(f"control and treatment must be the same statistic type, got {type(control).__name__} "
                        f"and {type(treatment).__name__}")
    mc, mt = control.moments(), treatment.moments()
    for name, m in (("control", mc), ("treatment", mt)):
        if m.n < 2:
            raise DataError(TOO_FEW_UNITS.format(arm=name, n=m.n))
        if m.mean[1] == 0:
            raise DataError(ZERO_DENOMINATOR.format(arm=name))
    ac, at = _grad_post(mc), _grad_post(mt)
    bc, bt = _grad_pre(mc), _grad_pre(mt)
    theta = 0.0
    use_cuped = cuped and mc.has_pre and mt.has_pre
    if use_cuped:
        denom = _quad(bc, mc) + _quad(bt, mt)
        if denom > 0 and math.isfinite(denom):
            theta = (float(ac @ mc.cov @ bc) / mc.n + float(at @ mt.cov @ bt) / mt.n) / denom
        else:
            use_cuped = False
    rc, rt = mc.ratio, mt.ratio
    pc, pt = (mc.ratio_pre, mt.ratio_pre) if use_cuped else (0.0, 0.0)
    diff = (rt - rc) - theta * (pt - pc)
    gt, gc = at - theta * bt, -(ac - theta * bc)
    if relative:
        if rc == 0:
            raise DataError(ZERO_CONTROL_MEAN)
        estimate = diff / rc
        gt, gc = gt / rc, gc / rc - (diff / rc**2) * ac
        raw_var = _quad(at / rc, mt) + _quad(-(rt / rc**2) * ac, mc)
    else:
        estimate = diff
        raw_var = _quad(at, mt) + _quad(ac, mc)
    vt, vc = _quad(gt, mt), _quad(gc, mc)
    var = vt + vc
    se = math.sqrt(var) if var >= 0 else math.nan
    df = welch_df([vt, vc], [mt.n, mc.n])
    n_total = mc.n + mt.n
    if sequential_tuning is not None:
        half = _sequential_halfwidth(var, n_total, alpha, sequential_tuning)
        p = _sequential_p(var, n_total, alpha, sequential_tuning, estimate)
        ref = "sequential"
    elif se == 0 or not math.isfinite(se):
        half, p, ref = math.nan, math.nan, test
    elif test == "t" and math.isfinite(df):
        # scipy.special directly: the distribution objects cost ~100 us a call, and the
        # analysis of thousands of KPI x segment cells is dominated by them otherwise.
        half = special.stdtrit(df, 1 - alpha / 2) * se
        p = 2 * special.stdtr(df, -abs(estimate) / se)
        ref = "t"
    else:
        half = special.ndtri(1 - alpha / 2) * se
        p = 2 * special.ndtr(-abs(estimate) / se)
        ref = "z"
    extra = {
        "control_mean": rc, "treatment_mean": rt, "control_n": mc.n, "treatment_n": mt.n,
        "df": df if math.isfinite(df) else None, "reference": ref, "theta": theta, "cuped": use_cuped,
        "variance_reduction": (1 - var / raw_var) if use_cuped and raw_var > 0 else 0.0,
    }
    if use_cuped:
        extra.update(control_mean_pre=mc.ratio_pre, treatment_mean_pre=mt.ratio_pre)
    if sequential_tuning is not None:
        extra["sequential_tuning"] = sequential_tuning
    return Result(
        estimate=float(estimate), se=se, ci=(float(estimate - half), float(estimate + half)), p_value=float(p),
        method=method or _DEFAULT_METHOD[type(control)], n=n_total, unit="relative" if relative else "absolute",
        alpha=alpha, metric=metric, extra=extra,
    )


def _sequential_p(var: float, n: int, alpha: float, tuning: float, effect: float) -> float:
    # Always-valid p-value = 1 / e-value of the normal-mixture martingale (Waudby-Smith et al.
    # 2023, eq. 155), with the mixture width rho tuned for ``alpha`` as the interval is; so
    # p < alpha exactly when the confidence sequence excludes 0. Same formula as gbstats.
    if not var > 0:
        return math.nan
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    st2 = effect**2 * n / var
    tr2p1 = n * rho2 + 1
    log_e = rho2 * st2 / (2 * tr2p1) - 0.5 * math.log(tr2p1)
    return float(min(1.0, math.exp(-log_e)))


def welch_t(control_values, treatment_values, *, relative: bool = False, alpha: float = 0.05, metric: str = "") -> Result:
    """Welch's unequal-variance t test on two arrays of per-unit values (Welch 1947).

    Equals ``scipy.stats.ttest_ind(..., equal_var=False)`` for ``relative=False``.
    """
    return two_arm(SampleMean.from_array(control_values), SampleMean.from_array(treatment_values),
                   relative=relative, alpha=alpha, metric=metric, method="welch_t")


def proportions_test(
    control: Proportion, treatment: Proportion, *, relative: bool = False, alpha: float = 0.05, test: Test = "z",
    metric: str = "",
) -> Result:
    """Two-proportion test with unpooled variance ``p (1 - p) / n`` per arm.

    ``test="z"`` is the Wald z test (statsmodels ``test_proportions_2indep(method="wald")``);
    ``test="t"`` reproduces gbstats, which applies its Welch t machinery to proportions.
    """
    return two_arm(control, treatment, relative=relative, alpha=alpha, test=test, metric=metric,
                   method=f"proportions_{test}")


def ratio_test(control: Ratio, treatment: Ratio, *, relative: bool = False, alpha: float = 0.05, metric: str = "") -> Result:
    """Ratio metric (sum num / sum den over units) by the delta method (Deng, Knoblich & Lu 2018)."""
    return two_arm(control, treatment, relative=relative, alpha=alpha, metric=metric, method="ratio_delta")


def cuped(
    control: RegressionAdjusted | RatioRegressionAdjusted,
    treatment: RegressionAdjusted | RatioRegressionAdjusted,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """CUPED: the difference adjusted by a pre-period covariate (Deng, Xu, Kohavi & Walker 2013).

    Variance falls by ``1 - rho^2`` where ``rho`` is the within-arm correlation of post and pre
    values; ``extra["variance_reduction"]`` reports the realised reduction.
    """
    return two_arm(control, treatment, relative=relative, alpha=alpha, metric=metric, cuped=True)


def cluster_randomized(
    y, treated, cluster, *, relative: bool = False, alpha: float = 0.05, metric: str = "",
) -> Result:
    """Difference in means when whole clusters were randomized, with cluster-robust inference.

    The analysis runs at the cluster level: each cluster contributes the sum of its outcomes
    and its size, and the arm mean is the ratio of sums (a :class:`Ratio`). Its delta-method
    variance is the CR1-type cluster sandwich computed per arm (``G_k / (G_k - 1)`` small-sample
    factor, from the ``n - 1`` sample covariances), with a t reference on Welch-Satterthwaite
    degrees of freedom over clusters (Donner & Klar 2000; Cameron & Miller 2015, sec. VI).

    Parameters
    ----------
    y : array
        One outcome per individual observation.
    treated : array of bool
        Arm of each observation; must be constant within a cluster.
    cluster : array
        Cluster label of each observation.
    """
    y = np.asarray(y, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    codes, uniq = _factorize(cluster)
    g = len(uniq)
    sums = np.bincount(codes, weights=y, minlength=g)
    sizes = np.bincount(codes, minlength=g).astype(float)
    tr_count = np.bincount(codes, weights=treated.astype(float), minlength=g)
    if np.any((tr_count > 0) & (tr_count < sizes)):
        raise DataError("treatment varies within a cluster; cluster_randomized needs whole clusters assigned")
    arm = tr_count > 0
    res = two_arm(Ratio.from_arrays(sums[~arm], sizes[~arm]), Ratio.from_arrays(sums[arm], sizes[arm]),
                  relative=relative, alpha=alpha, metric=metric, method="cluster_ratio_delta")
    return replace(res, extra={**res.extra, "n_clusters": g, "n_obs": int(y.size)})


def _factorize(labels) -> tuple[np.ndarray, np.ndarray]:
    uniq, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes.ravel(), uniq


def holdout(
    holdout_stat: Statistic, exposed_stat: Statistic, *, relative: bool = True, alpha: float = 0.05, metric: str = "",
) -> Result:
    """Effect of the program measured against a persistent holdout (the holdout is the control).

    A persistent holdout keeps a small, fixed share of units away from the program for months,
    so the long-run effect (after novelty wears off) stays measurable. Returns the relative lift
    by default; ``extra["holdout_share"]`` is the holdout's share of units.
    """
    res = two_arm(holdout_stat, exposed_stat, relative=relative, alpha=alpha, metric=metric,
                  method="persistent_holdout")
    share = res.extra["control_n"] / res.n
    return replace(res, extra={**res.extra, "holdout_share": share})


def holm(p_values) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values (family-wise error rate)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini & Hochberg (1995) step-up adjusted p-values (false discovery rate)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p)[::-1]
    adj = np.minimum.accumulate(p[order] * m / np.arange(m, 0, -1))
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def adjust_pvalues(p_values, method: Correction = "holm") -> np.ndarray:
    """Adjust a family of p-values; NaN entries are left NaN and excluded from the family.

    Parameters
    ----------
    method : {"holm", "bh", "none"}
    """
    check_option("method", method, ("holm", "bh", "none"))
    p = np.asarray(p_values, dtype=float)
    out = p.copy()
    ok = np.isfinite(p)
    if method != "none" and ok.any():
        out[ok] = (holm if method == "holm" else benjamini_hochberg)(p[ok])
    return out


def segment_breakdown(
    cells: Mapping[str, tuple[Statistic, Statistic]],
    *,
    relative: bool = False,
    alpha: float = 0.05,
    correction: Correction = "bh",
    metric: str = "",
    pool: bool = True,
) -> dict[str, Result]:
    """One Result per segment, with p-values adjusted across segments and partially pooled estimates.

    Parameters
    ----------
    cells : mapping
        segment -> (control statistic, treatment statistic).
    correction : {"holm", "bh", "none"}
        Family for ``extra["p_adjusted"]``: segments are many looks at one KPI, so the default
        controls the false discovery rate (Benjamini & Hochberg 1995).
    pool : bool
        With at least 4 estimable segments, add the empirical-Bayes estimates of
        :func:`~insightroi.stats.partial_pool` (Paule-Mandel tau^2, Morris corrections) to each
        Result's ``extra``: ``pooled_estimate``, ``pooled_se``, ``pooled_ci``, ``shrinkage``,
        ``pooled_mean``, ``pooled_tau2``. The raw estimate stays the Result's own.

    Segments that cannot be estimated (fewer than two units in an arm) get a NaN Result with a
    ``skip`` check saying why, rather than disappearing from the breakdown.
    """
    check_option("correction", correction, ("holm", "bh", "none"))
    out: dict[str, Result] = {}
    for seg, (c, t) in cells.items():
        try:
            out[seg] = two_arm(c, t, relative=relative, alpha=alpha, metric=metric)
        except DataError as exc:
            out[seg] = Result.not_estimable(str(exc), method=_DEFAULT_METHOD.get(type(c), "two_arm"), metric=metric,
                                            n=int(getattr(c, "n", 0) + getattr(t, "n", 0)),
                                            unit="relative" if relative else "absolute", alpha=alpha)
    keys = list(out)
    adj = adjust_pvalues([out[k].p_value for k in keys], correction)
    for k, a in zip(keys, adj):
        out[k] = replace(out[k], extra={**out[k].extra, "segment": k, "p_adjusted": float(a),
                                        "correction": correction})
    # Beside each raw estimate, its partially pooled one: a small segment's extreme effect is
    # mostly noise, and shrinking towards the segments' mean lowers the error of every segment's
    # estimate at once (Morris 1983). Below 4 segments tau^2 and Morris' terms are not estimable.
    ok = [k for k in keys if np.isfinite(out[k].estimate) and np.isfinite(out[k].se) and out[k].se > 0]
    if pool and len(ok) >= MIN_POOLED_SEGMENTS:
        pp = partial_pool([out[k].estimate for k in ok], [out[k].se for k in ok], level=1 - alpha)
        for i, k in enumerate(ok):
            out[k] = replace(out[k], extra={
                **out[k].extra, "pooled_estimate": float(pp.estimate[i]), "pooled_se": float(pp.se[i]),
                "pooled_ci": (float(pp.ci_low[i]), float(pp.ci_high[i])), "shrinkage": float(pp.shrinkage[i]),
                "pooled_mean": float(pp.mean), "pooled_tau2": float(pp.tau2), "pooled_method": pp.method})
    return out

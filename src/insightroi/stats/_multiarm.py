"""A/B/n: several treatment arms against one control.

Every arm is compared with the control by :func:`insightroi.stats.two_arm` (the same delta-method
estimate for means, proportions, ratios and CUPED), and the family of comparisons is then
corrected for multiplicity:

* Holm (1979) step-down on the two-arm p-values -- valid under any dependence;
* Dunnett (1955) single-step many-to-one -- exact for the positive correlation that sharing the
  control induces (every comparison contains the control's sampling error), so it is uniformly
  less conservative than Bonferroni and has exact family-wise level;
* Bonferroni, or none.

The sample-ratio-mismatch check across all arms is the Pearson chi-square of
:func:`insightroi.stats.srm_test` on ``K - 1`` degrees of freedom, and each arm gets the minimum
detectable effect at the multiplicity-adjusted level.

References
----------
Dunnett, C. W. (1955). A multiple comparison procedure for comparing several treatments with a
control. JASA 50(272), 1096-1121.
Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6, 65-70.
Hothorn, T., Bretz, F., Westfall, P. (2008). Simultaneous inference in general parametric models.
Biometrical Journal 50(3), 346-363 (the many-to-one correlation of Wald statistics).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from insightroi.errors import DataError, check_option
from insightroi.stats._diagnostics import srm_test
from insightroi.stats._power import mde_from_se, minimum_detectable_effect, power_from_se
from insightroi.stats._result import NOT_ESTIMABLE, Check, Result, jsonable
from insightroi.stats._suffstats import SampleMean, Statistic
from insightroi.stats._twoarm import Test, _grad_post, _grad_pre, holm, two_arm

__all__ = [
    "DunnettTest",
    "MultiArmResult",
    "dunnett",
    "dunnett_pvalues",
    "dunnett_critical_value",
    "multi_arm",
    "multi_arm_mde",
]

MultiCorrection = Literal["holm", "dunnett", "bonferroni", "none"]
Alternative = Literal["two-sided", "greater", "less"]

# Gauss-Legendre nodes for the one-factor integrals: the common factor w over [-9, 9] (beyond
# that the normal weight is < 1e-18; 400 nodes agree with scipy's multivariate normal at its
# tightest tolerance to 3e-10), and the t scale on a log axis (64 nodes: < 2e-11 for df >= 3).
_W_NODES, _W_WEIGHTS = np.polynomial.legendre.leggauss(400)
_W_NODES, _W_WEIGHTS = 9.0 * _W_NODES, 9.0 * _W_WEIGHTS * np.exp(-0.5 * (9.0 * _W_NODES) ** 2) / math.sqrt(2 * math.pi)
_X_NODES, _X_WEIGHTS = np.polynomial.legendre.leggauss(64)


def _scale_nodes(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E[g(S)]``, ``S = sqrt(chi2_df / df)``, integrating over ``log S``.

    On the log scale the density of ``S`` is a smooth bell for any ``df``; on the probability
    scale it has endpoint singularities that cost a hundred nodes per digit.
    """
    lo = 0.5 * math.log(special.gammaincinv(df / 2, 1e-15) * 2 / df)
    hi = 0.5 * math.log(special.gammainccinv(df / 2, 1e-15) * 2 / df)
    x = lo + (hi - lo) * (_X_NODES + 1) / 2
    y = df * np.exp(2 * x)  # chi2_df value at S = exp(x)
    log_dens = ((df / 2 - 1) * np.log(y) - y / 2 - (df / 2) * math.log(2) - special.gammaln(df / 2)
                + np.log(2 * y))  # d y / d x = 2 y
    w = _X_WEIGHTS * (hi - lo) / 2 * np.exp(log_dens)
    return np.exp(x), w / w.sum()


class DunnettTest(NamedTuple):
    """Outcome of :func:`dunnett`."""

    statistic: np.ndarray
    p_value: np.ndarray
    df: float
    correlation: np.ndarray


def _one_factor(corr: np.ndarray) -> np.ndarray | None:
    """Loadings ``l`` with ``corr_ij = l_i l_j`` off the diagonal, or None when none exist.

    Many-to-one comparisons without CUPED share one source of correlation, the control mean, so
    their correlation has this form; it turns Dunnett's k-dimensional probability into a
    one-dimensional integral (Dunnett 1955, sec. 2).
    """
    k = corr.shape[0]
    if k == 1:
        return np.zeros(1)
    off = corr[~np.eye(k, dtype=bool)]
    if k == 2:
        r = corr[0, 1]
        lam = np.array([math.sqrt(abs(r)), math.copysign(math.sqrt(abs(r)), r)])
    else:
        if np.any(off == 0):
            return None if np.any(off != 0) else np.zeros(k)
        lam = np.empty(k)
        for i in range(k):
            j, m = [x for x in range(k) if x != i][:2]
            lam[i] = math.sqrt(abs(corr[i, j] * corr[i, m] / corr[j, m]))
        sign = np.sign(corr[0])
        sign[0] = 1.0
        lam *= sign
    approx = np.outer(lam, lam)
    if np.max(np.abs((approx - corr)[~np.eye(k, dtype=bool)])) > 1e-9 or np.any(np.abs(lam) >= 1):
        return None
    return lam


def _box_prob_one_factor(upper: np.ndarray, lower: np.ndarray, lam: np.ndarray, df: float | None) -> np.ndarray:
    """``P(lower_r < T < upper_r)`` per row ``r`` for ``T`` normal (or t) with one-factor correlation."""
    # Z_j = l_j W + sqrt(1 - l_j^2) E_j with W, E_j iid N(0, 1) are independent given W; a t
    # vector is Z / S with S = sqrt(chi2_df / df), so its box is Z's box scaled by S.
    if df is None or not math.isfinite(df):
        scale, s_wt = np.ones(1), np.ones(1)
    else:
        scale, s_wt = _scale_nodes(df)
    inv_sd = (1.0 / np.sqrt(1.0 - lam**2))[None, :, None]
    lw = (lam[:, None] * _W_NODES[None, :])[None, :, :, None] * inv_sd[..., None]
    bounds = np.stack([upper, lower])[..., None, None] * scale * inv_sd[None, ..., None]  # 2 x rows x k x 1 x s
    with np.errstate(invalid="ignore"):  # infinite bounds: ndtr maps them to 0 / 1
        cdf = special.ndtr(bounds - lw[None])
    cond = np.prod(np.clip(cdf[0] - cdf[1], 0.0, 1.0), axis=1)  # rows x w x s
    return (cond * s_wt).sum(axis=2) @ _W_WEIGHTS


def _box_prob(upper: np.ndarray, lower: np.ndarray, corr: np.ndarray, df: float | None, rng) -> np.ndarray:
    """``P(lower_r < T < upper_r)`` per row for ``T`` multivariate normal (``df`` None) or t."""
    lam = _one_factor(corr)
    if lam is not None:
        return _box_prob_one_factor(upper, lower, lam, df)
    # General correlation (CUPED arms with different thetas): Genz's randomised quasi-Monte Carlo
    # in scipy, error about 1e-5 for a few dimensions; rng makes it reproducible.
    k = corr.shape[0]
    if df is None or not math.isfinite(df):
        dist = sps.multivariate_normal(mean=np.zeros(k), cov=corr, allow_singular=True)
        return np.atleast_1d(dist.cdf(upper, lower_limit=lower, rng=rng))
    dist = sps.multivariate_t(shape=corr, df=df, allow_singular=True)
    return np.atleast_1d(dist.cdf(upper, lower_limit=lower, random_state=rng))


def dunnett_pvalues(
    statistic, corr, *, df: float | None = None, alternative: Alternative = "two-sided", rng=None,
) -> np.ndarray:
    """Single-step many-to-one adjusted p-values (Dunnett 1955) from test statistics.

    ``p_i = 1 - P(max_j |T_j| < |t_i|)`` (two-sided), where ``T`` has the comparisons'
    correlation ``corr`` and is multivariate normal (``df`` None) or multivariate t with ``df``
    degrees of freedom. Rejecting where ``p_i < alpha`` keeps the family-wise error at ``alpha``.

    When the correlation has the one-factor form of comparisons that share one control
    (``corr_ij = l_i l_j``), the probability is Dunnett's one-dimensional integral over the common
    factor (two-dimensional with ``df``), computed by Gauss-Legendre quadrature: deterministic and
    accurate to about 1e-9. Otherwise it falls back to scipy's quasi-Monte Carlo multivariate
    normal / t distribution function (error about 1e-5).

    Parameters
    ----------
    statistic : array of float
        One z (or t) statistic per comparison.
    corr : array of float, shape (k, k)
        Their correlation matrix.
    df : float, optional
        Degrees of freedom of a multivariate t reference; None for the normal.
    alternative : {"two-sided", "greater", "less"}
        ``greater``: the treatments are tested for being larger than control.
    rng : numpy Generator or int, optional
        Only used by the quasi-Monte Carlo fallback; seed 0 when None, so results repeat.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, in the order of ``statistic`` (NaN where the statistic is NaN).
    """
    check_option("alternative", alternative, ("two-sided", "greater", "less"))
    t = np.atleast_1d(np.asarray(statistic, dtype=float))
    r = np.atleast_2d(np.asarray(corr, dtype=float))
    k = t.size
    if r.shape != (k, k):
        raise DataError(f"corr must be {k} x {k} for {k} statistics, got {r.shape}")
    out = np.full(k, math.nan)
    ok = np.isfinite(t)
    if not ok.any():
        return out
    rng = np.random.default_rng(0) if rng is None else rng
    tt = t[ok]
    if alternative == "two-sided":
        up = np.repeat(np.abs(tt)[:, None], k, axis=1)
        lo = -up
    elif alternative == "greater":
        up = np.repeat(tt[:, None], k, axis=1)
        lo = np.full_like(up, -np.inf)
    else:
        lo = np.repeat(tt[:, None], k, axis=1)
        up = np.full_like(lo, np.inf)
    prob = _box_prob(up, lo, r, df, rng)
    out[ok] = np.clip(1.0 - prob, 0.0, 1.0)
    return out


def dunnett_critical_value(corr, *, alpha: float = 0.05, df: float | None = None,
                           alternative: Alternative = "two-sided", rng=None) -> float:
    """The ``c`` with ``P(max_j |T_j| < c) = 1 - alpha`` (two-sided; ``max_j T_j`` one-sided).

    ``estimate_i +- c se_i`` are simultaneous ``1 - alpha`` intervals for all comparisons (Dunnett
    1955). Parameters as :func:`dunnett_pvalues`.
    """
    check_option("alternative", alternative, ("two-sided", "greater", "less"))
    r = np.atleast_2d(np.asarray(corr, dtype=float))
    k = r.shape[0]
    rng = np.random.default_rng(0) if rng is None else rng
    two = alternative == "two-sided"

    def excess(c: float) -> float:
        up = np.full((1, k), c)
        lo = -up if two else np.full((1, k), -np.inf)
        return float(1.0 - _box_prob(up, lo, r, df, rng)[0]) - alpha

    # c lies between the unadjusted and the Bonferroni critical values (Sidak / Slepian bounds).
    side = 2.0 if two else 1.0
    q = (lambda a: special.stdtrit(df, 1 - a / side)) if df is not None and math.isfinite(df) else \
        (lambda a: special.ndtri(1 - a / side))
    lo_c, hi_c = float(q(alpha)) - 1e-6, float(q(alpha / k)) + 1e-6
    return float(optimize.brentq(excess, lo_c, hi_c, xtol=1e-7))


def dunnett(
    control: SampleMean, treatments: Sequence[SampleMean], *, alternative: Alternative = "two-sided", rng=None,
) -> DunnettTest:
    """Dunnett's many-to-one test from each group's sufficient statistics (pooled variance).

    The classical test of Dunnett (1955): one pooled variance
    ``s^2 = sum_k (n_k - 1) s_k^2 / (N - K)`` over all ``K`` groups (control included),
    ``t_i = (mean_i - mean_0) / (s sqrt(1 / n_i + 1 / n_0))``, correlation
    ``1 / sqrt((n_0 / n_i + 1)(n_0 / n_j + 1))`` and a multivariate t on ``N - K`` degrees of
    freedom. Equals ``scipy.stats.dunnett(*samples, control=control)`` on the raw values (to
    scipy's quasi-Monte Carlo error). For unequal variances use :func:`multi_arm` with
    ``correction="dunnett"``, which keeps each comparison's own (Welch) variance.

    Parameters
    ----------
    control : SampleMean
        The control group.
    treatments : sequence of SampleMean
        The treatment groups.
    alternative : {"two-sided", "greater", "less"}
    rng : numpy Generator or int, optional
        As :func:`dunnett_pvalues`.

    Returns
    -------
    DunnettTest
        ``statistic`` (t per treatment), adjusted ``p_value``, ``df`` and the ``correlation``.
    """
    groups = [control, *treatments]
    if not treatments:
        raise DataError("dunnett needs at least one treatment group")
    if any(not isinstance(g, SampleMean) for g in groups):
        raise DataError("dunnett needs SampleMean statistics (use multi_arm for other metrics)")
    n = np.array([g.n for g in groups], dtype=float)
    if np.any(n < 1):
        raise DataError("every group needs at least one unit")
    df = float(n.sum() - n.size)
    if df < 1:
        raise DataError("dunnett needs more units than groups for a pooled variance")
    ss = sum((g.sum_sq - g.sum**2 / g.n) for g in groups)
    s = math.sqrt(max(ss, 0.0) / df)
    means = np.array([g.sum / g.n for g in groups])
    n0, ni = n[0], n[1:]
    stat = (means[1:] - means[0]) / (s * np.sqrt(1 / ni + 1 / n0))
    rho = n0 / ni + 1
    corr = 1 / np.sqrt(rho[:, None] * rho[None, :])
    np.fill_diagonal(corr, 1.0)
    return DunnettTest(stat, dunnett_pvalues(stat, corr, df=df, alternative=alternative, rng=rng), df, corr)


# --------------------------------------------------------------------------------- A/B/n


@dataclass(frozen=True)
class MultiArmResult:
    """Several treatment arms against one control, with the family corrected for multiplicity.

    Attributes
    ----------
    arms : dict of str to Result
        One :func:`two_arm` Result per treatment arm. Its ``extra`` adds ``p_adjusted``,
        ``ci_adjusted`` (simultaneous interval: Dunnett's critical value, or Bonferroni's for
        ``holm`` / ``bonferroni``), ``significant_adjusted`` (``p_adjusted < alpha``),
        ``correction``, ``alpha_per_arm`` (the level of the MDE) and ``mde`` (the effect this
        arm detects with ``power_target`` at that level, from its standard error); its
        ``diagnostics`` hold the SRM check across all arms when shares were planned.
    correction : str
        ``"holm"``, ``"dunnett"``, ``"bonferroni"`` or ``"none"``.
    alpha : float
        Family-wise level.
    srm : Check or None
        Sample-ratio mismatch across control and every arm (None when no shares were planned).
    correlation : numpy.ndarray
        Correlation of the arms' estimates (from the shared control), in the order of ``arms``.
    """

    arms: dict[str, Result]
    correction: str
    alpha: float
    srm: Check | None = None
    correlation: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def rejected(self) -> tuple[str, ...]:
        """Arms whose adjusted p-value is below ``alpha``."""
        return tuple(k for k, r in self.arms.items() if r.extra.get("p_adjusted", math.nan) < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return jsonable({"correction": self.correction, "alpha": self.alpha,
                         "arms": {k: r.to_dict() for k, r in self.arms.items()},
                         "srm": self.srm.to_dict() if self.srm is not None else None,
                         "correlation": self.correlation.tolist()})


def _control_gradient(mc, res: Result, relative: bool) -> np.ndarray:
    """The gradient of one comparison's estimate with respect to the control's mean vector.

    Mirrors :func:`two_arm` (absolute: ``-(a - theta b)``; relative: divided by the control
    ratio, plus the derivative of that division), so ``g_i' Cov_c g_j / n_c`` is the covariance
    of comparisons ``i`` and ``j``: the control is all they share.
    """
    ac, bc = _grad_post(mc), _grad_pre(mc)
    theta = res.extra["theta"] if res.extra["cuped"] else 0.0
    g = -(ac - theta * bc)
    if relative:
        rc = mc.ratio
        diff = res.estimate * rc
        g = g / rc - (diff / rc**2) * ac
    return g


def _srm_check(counts, shares, threshold: float) -> Check:
    chi2, p, exp = srm_test(counts, shares)
    obs = ", ".join(f"{int(o):,}" for o in counts)
    if p < threshold:
        status, msg = "fail", (f"sample-ratio mismatch across arms: observed {obs} units vs expected "
                               f"{', '.join(f'{e:,.1f}' for e in exp)} (p = {p:.2g})")
    else:
        status, msg = "pass", (f"arm sizes {obs} match the design's expected "
                               f"{', '.join(f'{e:,.1f}' for e in exp)} (p = {p:.3g})")
    return Check("sample_ratio_mismatch", status, msg, statistic=chi2, p_value=p, threshold=threshold,
                 details={"observed": [float(c) for c in counts], "expected": exp.tolist(), "arms": len(counts)})


@functools.lru_cache(maxsize=64)
def _mde_per_se(alpha: float, power_target: float) -> float:
    return mde_from_se(1.0, alpha=alpha, power_target=power_target)


def _mde(se: float, alpha: float, power_target: float, df: float | None) -> float:
    # scipy's noncentral t turns NaN far in its tail for large df (about 1,000 and up), which
    # breaks mde_from_se's root search; there the t and the normal agree to < 0.1%.
    try:
        v = mde_from_se(se, alpha=alpha, power_target=power_target, df=df)
    except ValueError:
        v = math.nan
    return v if math.isfinite(v) or df is None else mde_from_se(se, alpha=alpha, power_target=power_target)


def _power(effect: float, se: float, alpha: float, df: float | None) -> float:
    v = power_from_se(effect, se, alpha=alpha, df=df)
    return v if math.isfinite(v) or df is None else power_from_se(effect, se, alpha=alpha)


def multi_arm(
    control: Statistic,
    treatments: Mapping[str, Statistic],
    *,
    relative: bool = False,
    alpha: float = 0.05,
    test: Test = "t",
    cuped: bool = True,
    correction: MultiCorrection = "holm",
    planned_shares: Sequence[float] | None = None,
    srm_threshold: float = 0.001,
    power_target: float = 0.8,
    target_effect: float | None = None,
    simultaneous_ci: bool = True,
    metric: str = "",
    rng=None,
) -> MultiArmResult:
    """A/B/n analysis: every treatment arm against one control, corrected for multiplicity.

    Parameters
    ----------
    control : Statistic
        The control arm (any statistic :func:`two_arm` accepts).
    treatments : mapping of str to Statistic
        Arm name -> its statistic, of the control's kind. At least one.
    relative, alpha, test, cuped, metric :
        As :func:`two_arm`; ``alpha`` is the family-wise level.
    correction : {"holm", "dunnett", "bonferroni", "none"}
        ``holm`` (default): Holm's step-down, valid whatever the dependence. ``dunnett``: the
        single-step many-to-one test with the correlation that the shared control induces,
        computed from the arms' own (unpooled) variances -- multivariate normal for
        ``test="z"``, multivariate t on the smallest Welch degrees of freedom for ``test="t"``
        (conservative when the arms' degrees of freedom differ). ``bonferroni``: ``m p``.
    planned_shares : sequence of float, optional
        Designed share (or weight) of control then each arm, in the order of ``treatments``; when
        given, the sample-ratio-mismatch check runs on the arms' unit counts.
    srm_threshold : float
        p-value below which the SRM check fails (0.001, GrowthBook's default).
    power_target : float
        Power of the per-arm minimum detectable effect.
    target_effect : float, optional
        An effect (in the unit of the analysis) whose power per arm is reported as
        ``extra["power_at_target"]``.
    simultaneous_ci : bool
        Compute Dunnett's simultaneous ``extra["ci_adjusted"]``: it needs the critical value's
        root search (about 2 ms a call); batch runs that only need the adjusted p-values can skip
        it, and the Dunnett interval is then NaN (the other corrections' intervals cost nothing).
    rng : numpy Generator or int, optional
        For the quasi-Monte Carlo fallback of :func:`dunnett_pvalues` (CUPED arms only).

    Returns
    -------
    MultiArmResult

    Notes
    -----
    The per-arm MDE and power use the Bonferroni level ``alpha / m`` for every correction but
    ``none``: it is the level Holm's first (hardest) step applies, so an arm powered for it is
    powered whatever the other arms show, and it is slightly conservative for Dunnett (whose
    per-comparison level lies between ``alpha / m`` and ``alpha``).

    An arm that :func:`two_arm` cannot estimate (fewer than two units, a zero denominator) is
    kept as :meth:`Result.not_estimable` with the reason, and left out of the family: it can
    never reject, so ``m`` counts the arms with a p-value.

    Raises
    ------
    DataError
        When there are no treatments, the shares do not match the arms, or the control itself
        cannot be summarised.
    """
    check_option("correction", correction, ("holm", "dunnett", "bonferroni", "none"))
    check_option("test", test, ("t", "z"))
    if not treatments:
        raise DataError("multi_arm needs at least one treatment arm")
    names = list(treatments)
    m = len(names)
    unit = "relative" if relative else "absolute"
    res: dict[str, Result] = {}
    for k in names:
        try:
            res[k] = two_arm(control, treatments[k], relative=relative, alpha=alpha, test=test, cuped=cuped,
                             metric=metric)
        except DataError as exc:
            # One arm without data must not hide the others (as segment_breakdown does); it stays
            # in the family, so the others' adjustment is what the design promised.
            res[k] = Result.not_estimable(str(exc), method="two_arm", metric=metric, unit=unit, alpha=alpha,
                                          n=int(getattr(control, "n", 0) + getattr(treatments[k], "n", 0)))
    ok = np.array([res[k].method != NOT_ESTIMABLE for k in names])
    est = np.array([res[k].estimate for k in names])
    se = np.array([res[k].se for k in names])
    p_raw = np.array([res[k].p_value for k in names])
    dfs = [res[k].extra.get("df") for k in names]
    use_t = test == "t" and all(d is not None for d, good in zip(dfs, ok) if good)
    mc = control.moments()
    corr = np.full((m, m), math.nan)
    if ok.any():
        idx = np.flatnonzero(ok)
        grads = np.array([_control_gradient(mc, res[names[i]], relative) for i in idx])
        cov_c = grads @ mc.cov @ grads.T / mc.n
        with np.errstate(invalid="ignore", divide="ignore"):
            corr[np.ix_(idx, idx)] = cov_c / np.outer(se[idx], se[idx])
    np.fill_diagonal(corr, 1.0)
    finite = np.isfinite(p_raw)
    # The family is the arms actually tested: one that cannot be estimated can never reject.
    m_tested = max(int(finite.sum()), 1)
    p_adj = np.full(m, math.nan)
    crit = np.full(m, math.nan)
    if correction == "holm":
        p_adj[finite] = holm(p_raw[finite])
    elif correction == "bonferroni":
        p_adj[finite] = np.minimum(p_raw[finite] * m_tested, 1.0)
    elif correction == "none":
        p_adj = p_raw.copy()
    df_family = float(min(d for d, good in zip(dfs, finite) if good)) if use_t and finite.any() else None
    if correction == "dunnett":
        if finite.any():
            sub = np.ix_(finite, finite)
            p_adj[finite] = dunnett_pvalues(est[finite] / se[finite], corr[sub], df=df_family, rng=rng)
            if simultaneous_ci:
                crit[:] = dunnett_critical_value(corr[sub], alpha=alpha, df=df_family, rng=rng)
    else:
        a_ci = alpha / m_tested if correction in ("holm", "bonferroni") else alpha
        for i in np.flatnonzero(finite):
            crit[i] = special.stdtrit(dfs[i], 1 - a_ci / 2) if use_t else special.ndtri(1 - a_ci / 2)
    alpha_arm = alpha / m_tested if correction != "none" else alpha
    # The normal MDE is proportional to the SE: one call of mde_from_se serves every arm.
    mde_per_se = _mde_per_se(alpha_arm, power_target)
    srm = None
    if planned_shares is not None:
        shares = list(planned_shares)
        if len(shares) != m + 1:
            raise DataError(f"planned_shares needs {m + 1} values (control, then each arm), got {len(shares)}")
        srm = _srm_check([mc.n] + [getattr(treatments[k], "n", 0) for k in names], shares, srm_threshold)
    out = {}
    for i, k in enumerate(names):
        diags = res[k].diagnostics + ((srm,) if srm is not None else ())
        if not ok[i]:
            out[k] = replace(res[k], extra={**res[k].extra, "arm": k, "correction": correction}, diagnostics=diags)
            continue
        df_i = dfs[i] if use_t else None
        extra = {**res[k].extra, "arm": k, "correction": correction, "p_adjusted": float(p_adj[i]),
                 "significant_adjusted": bool(p_adj[i] < alpha),
                 "ci_adjusted": [float(est[i] - crit[i] * se[i]), float(est[i] + crit[i] * se[i])],
                 "alpha_per_arm": alpha_arm, "mde": (_mde(float(se[i]), alpha_arm, power_target, df_i) if df_i is not None
                                                     else mde_per_se * float(se[i])),
                 "power_target": power_target}
        if target_effect is not None:
            extra["power_at_target"] = _power(target_effect, float(se[i]), alpha_arm, df_i)
        out[k] = replace(res[k], extra=extra, diagnostics=diags)
    return MultiArmResult(arms=out, correction=correction, alpha=alpha, srm=srm, correlation=corr)


def multi_arm_mde(
    n_control: float,
    n_treatments: Sequence[float],
    *,
    sd: float = 1.0,
    alpha: float = 0.05,
    power_target: float = 0.8,
    correction: MultiCorrection = "holm",
) -> np.ndarray:
    """Design-time minimum detectable effect of each arm of an A/B/n test against its control.

    :func:`insightroi.stats.minimum_detectable_effect` (two-sample normal test, statsmodels'
    ``NormalIndPower``) with ``nobs1 = n_control``, ``ratio = n_arm / n_control``, at the level
    ``alpha / m`` for ``m`` arms (any correction but ``none``; see :func:`multi_arm`'s notes for
    why the Bonferroni level), times ``sd``.

    Parameters
    ----------
    n_control : float
        Units in the control arm.
    n_treatments : sequence of float
        Units in each treatment arm.
    sd : float
        Per-unit standard deviation of the metric (1: the MDE in standard deviations).
    alpha, power_target : float
        Family-wise level and target power.
    correction : {"holm", "dunnett", "bonferroni", "none"}

    Returns
    -------
    numpy.ndarray
        MDE per arm, in the metric's unit.
    """
    check_option("correction", correction, ("holm", "dunnett", "bonferroni", "none"))
    n_t = [float(x) for x in n_treatments]
    if not n_t or n_control <= 0 or min(n_t) <= 0:
        raise DataError("multi_arm_mde needs a positive control size and at least one positive arm size")
    a = alpha / len(n_t) if correction != "none" else alpha
    return np.array([minimum_detectable_effect(n_control, power_target=power_target, alpha=a, ratio=x / n_control) * sd
                     for x in n_t])

"""Difference-in-differences over arrays: 2x2, two-way fixed effects, event study, staggered rollouts.

Everything here is pure numpy/scipy over long-format arrays (one entry per unit x period) or a
unit x period matrix; the DataFrame wrappers live in ``insightroi.experiments._quasi``. The
regression and variance machinery (demeaning, OLS with fixed effects, cluster and HC2 vcovs) is
in :mod:`insightroi.stats._panel`; the estimators here set up the design and read the fit.

Staggered rollouts use Callaway & Sant'Anna (2021). Why it and not Sun & Abraham (2021): both are
robust to effects that vary by cohort and over time, but Callaway-Sant'Anna is built only from
clean 2x2 comparisons (a cohort against never- or not-yet-treated units, from its own last
pre-period), so every number it reports can be read back as a simple difference of means and the
unit-level influence function gives exact cluster-by-unit standard errors without a saturated
regression; it also lets the analyst choose not-yet-treated controls when no unit is never treated.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import stats as sps

from insightroi.errors import DataError, check_option
from insightroi.stats._intervals import wald_interval
from insightroi.stats._panel import (
    FEW_TREATED_CLUSTERS,
    cluster_count_check,
    group_codes,
    ols_fe,
    period_positions,
    treated_cluster_check,
    wls_hc2,
)
from insightroi.stats._result import Check, Result
from insightroi.stats._wild import wild_cluster_bootstrap

__all__ = [
    "did_2x2",
    "did_ratio",
    "ratio_ancova",
    "twfe",
    "event_study",
    "staggered_did",
]

Control = Literal["never", "notyet"]
Inference = Literal["auto", "cluster", "wild"]
# Above this many clusters the bootstrap's two G x G matrices (and G^2 x n_boot work) are too big to
# run without being asked.
WILD_AUTO_MAX_CLUSTERS = 3000


# ---------------------------------------------------------------------------------------- 2x2


def did_2x2(
    y_pre: np.ndarray,
    y_post: np.ndarray,
    treated: np.ndarray,
    *,
    alpha: float = 0.05,
    metric: str = "",
    unit: str = "absolute",
) -> Result:
    """Classic 2x2 difference-in-differences of group means, with missing waves allowed.

    DiD = (mean post - mean pre | treated) - (mean post - mean pre | control), each mean over the
    units observed in that wave (Card & Krueger 1994, Table 3). The variance of each group's
    change accounts for the units observed in both waves (their covariance), so a balanced panel
    gives the paired-difference standard error and a fully unbalanced one the independent one.

    Parameters
    ----------
    y_pre, y_post : array of float, shape (n,)
        Outcome per unit before and after; NaN where the unit was not observed in that wave.
    treated : array of bool, shape (n,)
    alpha : float
        Level of the normal-approximation interval.
    metric, unit : str
        Labels carried into the Result.

    Returns
    -------
    Result
        ``method="did_2x2"``; ``extra`` holds the four means and each group's change with its SE.

    References
    ----------
    Card, D. and Krueger, A. B. (1994). Minimum wages and employment: a case study of the
    fast-food industry in New Jersey and Pennsylvania. AER 84(4), 772-793.
    """
    y0 = np.asarray(y_pre, dtype=float)
    y1 = np.asarray(y_post, dtype=float)
    d = np.asarray(treated, dtype=bool)
    if not (y0.shape == y1.shape == d.shape) or y0.ndim != 1:
        raise DataError("did_2x2: y_pre, y_post and treated must be 1-D arrays of the same length")
    out = {}
    for name, g in (("treated", d), ("control", ~d)):
        a, b = y0[g], y1[g]
        ma, mb = ~np.isnan(a), ~np.isnan(b)
        na, nb = int(ma.sum()), int(mb.sum())
        if na < 2 or nb < 2:
            raise DataError(
                f"did_2x2: the {name} group has {min(na, nb)} observed unit(s) in a wave; at least 2 are needed for "
                "a variance. With one or a few treated units use twfe(...) on the unit x period panel, whose "
                "inference='wild' (the default below 10 treated clusters) is a wild cluster bootstrap, or a "
                "synthetic control (synthetic_control)."
            )
        mean_a, mean_b = a[ma].mean(), b[mb].mean()
        var_a, var_b = a[ma].var(ddof=1), b[mb].var(ddof=1)
        both = ma & mb
        nab = int(both.sum())
        cov = 0.0
        if nab >= 2:
            # Cov(mean_a, mean_b) = n_ab * s_ab / (n_a n_b) for the units seen in both waves.
            s_ab = np.sum((a[both] - a[both].mean()) * (b[both] - b[both].mean())) / (nab - 1)
            cov = nab * s_ab / (na * nb)
        var_change = var_a / na + var_b / nb - 2 * cov
        out[name] = {
            "mean_pre": float(mean_a),
            "mean_post": float(mean_b),
            "change": float(mean_b - mean_a),
            "se_change": float(math.sqrt(max(var_change, 0.0))),
            "n_pre": na,
            "n_post": nb,
            "n_both": nab,
        }
    est = out["treated"]["change"] - out["control"]["change"]
    se = math.sqrt(out["treated"]["se_change"] ** 2 + out["control"]["se_change"] ** 2)
    ci, p = wald_interval(est, se, alpha=alpha)
    checks = (_parallel_level_check(out),)
    return Result(
        estimate=float(est), se=float(se), ci=ci, p_value=p, method="did_2x2", n=int(len(d)),
        unit=unit, diagnostics=checks, alpha=alpha, metric=metric, extra=out,
    )


def did_ratio(
    num_pre: np.ndarray,
    den_pre: np.ndarray,
    num_post: np.ndarray,
    den_post: np.ndarray,
    treated: np.ndarray,
    *,
    scale: float = 1.0,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """2x2 difference-in-differences of a ratio KPI (sum of numerators / sum of denominators).

    Each group's KPI before and after is a ratio of sums over its units (so a unit with 10,000
    orders weighs more than one with 20, as in the KPI itself), and
    DiD = (R_T,post - R_T,pre) - (R_C,post - R_C,pre). The standard error linearises each
    ratio (delta method) and pairs each unit's before and after contributions, i.e. it is
    clustered by unit: Var(dR_g) = n_g / (n_g - 1) sum_i z_i^2 with
    z_i = (a_i1 - R_1 b_i1) / B_1 - (a_i0 - R_0 b_i0) / B_0 (Deng, Knoblich & Lu 2018). The
    interval uses a t distribution with min(n_T, n_C) - 1 degrees of freedom.

    Parameters
    ----------
    num_pre, den_pre, num_post, den_post : arrays, shape (n,)
        Per-unit numerator and denominator sums before and after (0 where a unit had none).
    treated : array of bool, shape (n,)
    scale : float
        Multiplier of the KPI (1000 for "per 1,000 orders").
    alpha, metric
        As in :func:`did_2x2`.

    Returns
    -------
    Result
        ``method="did_ratio"``; ``extra`` has each group's KPI before/after and change with SE.

    References
    ----------
    Deng, A., Knoblich, U. and Lu, J. (2018). Applying the delta method in metric analytics.
    KDD 2018.
    """
    a0, b0 = np.asarray(num_pre, dtype=float), np.asarray(den_pre, dtype=float)
    a1, b1 = np.asarray(num_post, dtype=float), np.asarray(den_post, dtype=float)
    d = np.asarray(treated, dtype=bool)
    if not (a0.shape == b0.shape == a1.shape == b1.shape == d.shape) or d.ndim != 1:
        raise DataError("did_ratio: all inputs must be 1-D arrays of the same length")
    if not all(np.all(np.isfinite(x)) for x in (a0, b0, a1, b1)):
        raise DataError("did_ratio: numerators and denominators must be finite (use 0 for none)")
    out = {}
    for name, g in (("treated", d), ("control", ~d)):
        n = int(g.sum())
        B0, B1 = b0[g].sum(), b1[g].sum()
        if n < 2 or B0 <= 0 or B1 <= 0:
            raise DataError(
                f"did_ratio: the {name} group has {n} unit(s) (denominators {B0:g} before, {B1:g} after); it needs "
                ">= 2 units and a positive denominator in both periods. With one treated unit use twfe(...) with "
                "inference='wild' (wild cluster bootstrap) or a synthetic control."
            )
        R0, R1 = a0[g].sum() / B0, a1[g].sum() / B1
        z = (a1[g] - R1 * b1[g]) / B1 - (a0[g] - R0 * b0[g]) / B0
        var = n / (n - 1) * float(np.sum(z**2))
        out[name] = {
            "kpi_pre": float(R0 * scale), "kpi_post": float(R1 * scale), "change": float((R1 - R0) * scale),
            "se_change": float(math.sqrt(var) * scale), "n_units": n, "den_pre": float(B0), "den_post": float(B1),
        }
    est = out["treated"]["change"] - out["control"]["change"]
    se = math.sqrt(out["treated"]["se_change"] ** 2 + out["control"]["se_change"] ** 2)
    # t with min(n_T, n_C) - 1 degrees of freedom: the delta-method SE rests on few clusters
    # when a group has few units (simulations with 25 units per group under-cover with z).
    df_t = min(out["treated"]["n_units"], out["control"]["n_units"]) - 1
    ci, p = wald_interval(est, se, alpha=alpha, df=df_t)
    lvl = {"treated": {"mean_pre": out["treated"]["kpi_pre"]}, "control": {"mean_pre": out["control"]["kpi_pre"]}}
    return Result(
        estimate=float(est), se=float(se), ci=ci, p_value=p, method="did_ratio", n=int(len(d)), unit="absolute",
        diagnostics=(_parallel_level_check(lvl), cluster_count_check(int(len(d)))), alpha=alpha, metric=metric, extra=out,
    )



def ratio_ancova(
    num_post: np.ndarray,
    den_post: np.ndarray,
    treated: np.ndarray,
    covariates: np.ndarray | None = None,
    *,
    covariate_names: list[str] | None = None,
    scale: float = 1.0,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """Treated-minus-control difference of a ratio KPI after the rollout, adjusted for pre-period covariates.

    Weighted least squares of each unit's post-period KPI ``y_i = num_i / den_i`` on an
    intercept, the treatment indicator and the (centred) pre-period covariates, with weights
    ``den_i``. Without covariates the coefficient is exactly the ratio-of-sums difference
    ``sum num_T / sum den_T - sum num_C / sum den_C`` (the KPI as defined, big units weighing by
    their volume); with the units' own pre-period KPI as covariate it is the lagged-dependent-
    variable (ANCOVA) estimator, which generalises difference-in-differences by estimating the
    weight on the pre-period instead of fixing it at 1 (CUPED, Deng et al. 2013; McKenzie 2012).
    When pre/post correlation is weak (transient shocks such as product defects), fixing it at 1
    doubles the noise of the pre-period into the estimate; estimating it cannot do worse
    asymptotically. Identification: conditional on the pre-period covariates, treated and control
    units would have had the same post-period KPI (selection on pre-period outcomes; DiD instead
    assumes parallel trends; Angrist & Pischke 2009, sec. 5.4, on bracketing the two).

    The standard error is the heteroskedasticity-robust HC2 sandwich (MacKinnon & White 1985) with
    one row per unit (so it is clustered by unit over the periods summed into ``num``/``den``),
    with a t distribution on min(n_T, n_C) - 1 degrees of freedom as :func:`did_ratio`. HC2
    rather than HC1 because units weigh very unequally (leverage); with HC1, coverage in the
    simulation tests was ~93.5%.

    Parameters
    ----------
    num_post, den_post : arrays, shape (n,)
        Per-unit numerator and denominator sums over the post period. Units with ``den_post == 0``
        carry no weight and are dropped.
    treated : array of bool, shape (n,)
    covariates : array, shape (n, k), optional
        Pre-period unit characteristics, typically the unit's pre-period KPI (and related KPIs'
        pre-period rates). NaN (e.g. no pre-period orders) is replaced by the weighted mean and
        flagged with an added indicator column.
    covariate_names : list of str, optional
    scale : float
        Multiplier of the KPI (1000 for "per 1,000 orders").
    alpha, metric
        As in :func:`did_ratio`.

    Returns
    -------
    Result
        ``method="ratio_ancova"``, estimate in KPI units. ``extra``: ``kpi_post_treated``,
        ``kpi_post_control``, ``counterfactual`` (treated KPI minus the effect),
        ``coefficients`` (every coefficient with its SE), ``variance_reduction`` (1 - Var adjusted /
        Var unadjusted) and group sizes.

    References
    ----------
    Deng, A., Xu, Y., Kohavi, R. and Walker, T. (2013). Improving the sensitivity of online controlled
    experiments by utilizing pre-experiment data. WSDM 2013.
    McKenzie, D. (2012). Beyond baseline and follow-up: the case for more T in experiments. Journal of
    Development Economics 99(2), 210-221.
    MacKinnon, J. G. and White, H. (1985). Some heteroskedasticity-consistent covariance matrix
    estimators with improved finite sample properties. Journal of Econometrics 29(3), 305-325.
    """
    a = np.asarray(num_post, dtype=float)
    b = np.asarray(den_post, dtype=float)
    d = np.asarray(treated, dtype=bool)
    if not (a.shape == b.shape == d.shape) or d.ndim != 1:
        raise DataError("ratio_ancova: num_post, den_post and treated must be 1-D arrays of the same length")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.any(b < 0):
        raise DataError("ratio_ancova: numerators and denominators must be finite, denominators >= 0")
    Xc = np.zeros((a.shape[0], 0)) if covariates is None else np.asarray(covariates, dtype=float).reshape(a.shape[0], -1)
    names = list(covariate_names) if covariate_names else [f"x{j}" for j in range(Xc.shape[1])]
    keep = b > 0
    a, b, d, Xc = a[keep], b[keep], d[keep], Xc[keep]
    n_t, n_c = int(d.sum()), int((~d).sum())
    if n_t < 2 or n_c < 2:
        raise DataError("ratio_ancova: need >= 2 treated and >= 2 control units with a positive post-period denominator")
    y = a / b * scale
    cols, cnames = [], []
    for j in range(Xc.shape[1]):
        x = Xc[:, j]
        miss = ~np.isfinite(x)
        if miss.all():
            continue
        x = np.where(miss, np.average(x[~miss], weights=b[~miss]), x)
        if np.ptp(x) == 0:
            continue  # constant: carried by the intercept
        cols.append(x)
        cnames.append(names[j])
        if miss.any():
            cols.append(miss.astype(float))
            cnames.append(f"{names[j]}_missing")
    # Centre at the treated units' weighted means, so the treatment coefficient is the effect on
    # the treated at their own covariate values (irrelevant for a common slope, but explicit).
    cols = [x - np.average(x[d], weights=b[d]) for x in cols]

    one = np.ones_like(y)
    beta0, V0 = wls_hc2(y, np.column_stack([one, d.astype(float)]), b, who="ratio_ancova")
    X = np.column_stack([one, d.astype(float), *cols])
    if X.shape[1] >= len(y) - 1:
        raise DataError(f"ratio_ancova: {X.shape[1]} parameters for {len(y)} units")
    beta, V = wls_hc2(y, X, b, who="ratio_ancova")
    est, se = float(beta[1]), float(math.sqrt(max(V[1, 1], 0.0)))
    df_t = min(n_t, n_c) - 1
    ci, p = wald_interval(est, se, alpha=alpha, df=df_t)
    kt = float(a[d].sum() / b[d].sum() * scale)
    kc = float(a[~d].sum() / b[~d].sum() * scale)
    sev = np.sqrt(np.clip(np.diag(V), 0, None))
    coefs = {nm: {"estimate": float(beta[j]), "se": float(sev[j])} for j, nm in enumerate(["intercept", "treated", *cnames])}
    extra = {
        "kpi_post_treated": kt, "kpi_post_control": kc, "counterfactual": kt - est,
        "unadjusted": float(beta0[1]), "unadjusted_se": float(math.sqrt(max(V0[1, 1], 0.0))),
        "variance_reduction": float(1 - V[1, 1] / V0[1, 1]) if V0[1, 1] > 0 else float("nan"),
        "coefficients": coefs, "n_treated": n_t, "n_control": n_c, "n_dropped_no_denominator": int((~keep).sum()),
        "df": df_t,
    }
    return Result(
        estimate=est, se=se, ci=ci, p_value=p, method="ratio_ancova", n=int(len(y)), unit="absolute",
        diagnostics=(cluster_count_check(int(len(y))),), alpha=alpha, metric=metric, extra=extra,
    )

def _parallel_level_check(out: dict) -> Check:
    # A 2x2 cannot test parallel trends; flag a large pre-period level gap, which makes the
    # parallel-trends assumption (and the scale of the outcome) matter more.
    gap = out["treated"]["mean_pre"] - out["control"]["mean_pre"]
    scale = max(abs(out["control"]["mean_pre"]), 1e-12)
    rel = abs(gap) / scale
    status = "warn" if rel > 0.25 else "pass"
    return Check(
        name="pre_period_level_gap",
        status=status,
        message=(
            f"Treated and control differ by {gap:.3g} ({rel:.0%}) before treatment; a before/after "
            "comparison cannot test parallel trends itself (an event study's leads can)"
            + ("; a gap this size makes them less plausible." if status == "warn" else ".")
        ),
        statistic=float(rel),
        threshold=0.25,
    )


# ---------------------------------------------------------------------------------------- TWFE


def twfe(
    y: np.ndarray,
    unit: np.ndarray,
    time: np.ndarray,
    treat: np.ndarray,
    *,
    covariates: np.ndarray | None = None,
    covariate_names: list[str] | None = None,
    cluster: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    alpha: float = 0.05,
    metric: str = "",
    inference: Inference = "auto",
    n_boot: int | None = None,
    weights: Literal["auto", "rademacher", "webb"] = "auto",
    seed: int | np.random.Generator = 0,
) -> Result:
    """Two-way fixed-effects DiD: y_it = a_i + l_t + b * D_it + X_it g + e_it, SE clustered.

    Unit and period effects are swept out by within-demeaning (no dummy matrix is built), so this
    runs on millions of rows. Standard errors are CRV1 with the small-sample factor of fixest /
    pyfixest, and p-values use a t distribution with G - 1 degrees of freedom (Cameron & Miller
    2015), so the numbers equal ``pyfixest.feols("y ~ D + X | unit + time", vcov={"CRV1": ...})``.

    With staggered adoption and effects that change over time, the TWFE coefficient is a weighted
    average with possibly negative weights (Goodman-Bacon 2021); use :func:`staggered_did` then.

    When fewer than 10 clusters are treated (have a row with ``treat != 0``), or fewer than 10
    are untreated, CRV1 tests over-reject badly (MacKinnon & Webb 2017): with one treated cluster
    in 30, a 5% test rejected a true null in 68% of simulated panels (the wild bootstrap in none).
    By default the p-value and the interval then come from a restricted wild cluster bootstrap
    (:func:`insightroi.stats._wild.wild_cluster_bootstrap`; Roodman et al. 2019), the
    ``treated_clusters`` check says so, and the CRV1 figures stay in ``extra``. With one or two
    treated clusters even that test is conservative (it rarely rejects), so a large p-value then
    means "cannot tell", not "no effect".

    Parameters
    ----------
    y : array, shape (n,)
    unit, time : arrays, shape (n,)
        Unit and period identifiers. Periods only label the period fixed effects here (their
        order does not enter the estimate), so any labels work; the order matters where the
        treatment indicator ``treat`` is built, which is the caller's job (see
        :func:`insightroi.experiments.diff_in_diff`, whose ``period_order`` handles text labels).
    treat : array of 0/1, shape (n,)
        1 where the unit is treated in that period.
    covariates : array, shape (n, k), optional
        Time-varying controls: seasonality terms, annotation dummies (promotion, outage, ...).
    cluster : array, shape (n,), optional
        Cluster identifiers; default the unit.
    exclude : array of bool, shape (n,), optional
        Rows to drop before estimation (declared shocks / measurement exceptions).
    alpha : float
    metric : str
    inference : {"auto", "cluster", "wild"}
        ``"cluster"``: CRV1 standard error, t-test and interval on G - 1 degrees of freedom.
        ``"wild"``: p-value and interval (by test inversion) from a restricted wild cluster
        bootstrap of the ``treat`` coefficient; ``se`` stays the CRV1 one. ``"auto"`` (default):
        ``"wild"`` when fewer than 10 clusters are treated or untreated, else ``"cluster"``.
    n_boot : int, optional
        Bootstrap draws (Rademacher weights with ``2^G <= n_boot`` enumerate all ``2^G`` sign
        vectors instead). Default 9999, lowered to ``2e9 / G^2`` (at least 999) above ~450
        clusters, since the cost grows as G^2 x n_boot. ``"auto"`` inference stays with CRV1
        above 3,000 clusters (the G x G bootstrap matrices would take gigabytes) and says so in
        the ``treated_clusters`` check; pass ``inference="wild"`` to run it anyway.
    weights : {"auto", "rademacher", "webb"}
        Bootstrap weights; ``"auto"``: Webb's six-point weights below 12 clusters, else Rademacher.
    seed : int or numpy Generator
        Seed of the bootstrap draws (fixed by default, so results are reproducible).

    Returns
    -------
    Result
        ``method="twfe"``; ``extra["coefficients"]`` has every coefficient with its SE;
        ``extra["inference"]`` is ``"cluster"`` or ``"wild"``; ``extra["p_value_crv1"]`` and
        ``extra["ci_crv1"]`` keep the CRV1 figures and ``extra["wild_bootstrap"]`` the bootstrap's.

    References
    ----------
    MacKinnon, J. G. and Webb, M. D. (2017). Wild bootstrap inference for wildly different
    cluster sizes. Journal of Applied Econometrics 32(2), 233-254.
    Roodman, D., MacKinnon, J. G., Nielsen, M. O. and Webb, M. D. (2019). Fast and wild:
    bootstrap inference in Stata using boottest. The Stata Journal 19(1), 4-60.
    """
    check_option("inference", inference, ("auto", "cluster", "wild"))
    check_option("weights", weights, ("auto", "rademacher", "webb"))
    y = np.asarray(y, dtype=float)
    D = np.asarray(treat, dtype=float)
    u = np.asarray(unit)
    t = np.asarray(time)
    cl = u if cluster is None else np.asarray(cluster)
    Xc = None if covariates is None else np.asarray(covariates, dtype=float).reshape(y.shape[0], -1)
    keep = np.isfinite(y) & np.isfinite(D)
    if Xc is not None:
        keep &= np.all(np.isfinite(Xc), axis=1)
    n_excluded = 0
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        n_excluded = int((ex & keep).sum())
        keep &= ~ex
    y, D, u, t, cl = y[keep], D[keep], u[keep], t[keep], cl[keep]
    X = D[:, None] if Xc is None else np.column_stack([D, Xc[keep]])
    names = ["treat"] + (list(covariate_names) if covariate_names else [f"x{j}" for j in range(X.shape[1] - 1)])
    ucode, n_units = group_codes(u)
    tcode, n_times = group_codes(t)
    if n_units < 2 or n_times < 2:
        raise DataError("twfe: need at least 2 units and 2 periods")
    if np.all(D == D[0]):
        raise DataError("twfe: the treatment indicator does not vary")
    fit = ols_fe(y, X, [ucode, tcode], cl)
    b, V = fit.beta, fit.vcov
    se = np.sqrt(np.diag(V))
    ci_crv, p_crv = wald_interval(float(b[0]), float(se[0]), alpha=alpha, df=fit.df_t)
    clcode, G = group_codes(cl)
    treated_cl = np.bincount(clcode, weights=(D != 0).astype(float), minlength=G) > 0
    n_tr, n_ctrl = int(treated_cl.sum()), int(G - treated_cl.sum())
    too_big = False
    if inference == "auto":
        few = min(n_tr, n_ctrl) < FEW_TREATED_CLUSTERS
        too_big = few and G > WILD_AUTO_MAX_CLUSTERS
        inference = "wild" if few and not too_big else "cluster"
    if n_boot is None:
        n_boot = min(9999, max(999, int(2e9 / G**2)))
    extra = {"coefficients": None, "n_obs": int(fit.n_obs), "n_clusters": int(fit.n_clusters), "n_periods": int(n_times),
             "n_treated_clusters": n_tr, "n_control_clusters": n_ctrl, "inference": inference,
             "p_value_crv1": p_crv, "ci_crv1": [ci_crv[0], ci_crv[1]]}
    checks = []
    if n_excluded:
        checks.append(Check("exclusion_windows", "pass", f"{n_excluded} unit-period rows inside declared exclusion windows were dropped.", statistic=float(n_excluded)))
    checks.append(cluster_count_check(fit.n_clusters))
    tc = treated_cluster_check(n_tr, n_ctrl, inference=inference)
    if too_big:
        tc = Check(tc.name, tc.status, tc.message + f" (Not run automatically: {G} clusters make the G x G bootstrap "
                   "matrices too large; pass inference=\"wild\" with a smaller n_boot to run it.)",
                   statistic=tc.statistic, threshold=tc.threshold, details=tc.details)
    checks.append(tc)
    ci, p = ci_crv, p_crv
    if inference == "wild":
        wb = wild_cluster_bootstrap(y, X, [ucode, tcode], cl, coef=0, alpha=alpha, n_boot=n_boot, weights=weights, seed=seed)
        ci, p = wb.ci, wb.p_value
        extra["wild_bootstrap"] = wb.to_dict()
        how = "all 2^G sign vectors (exact)" if wb.full_enumeration else f"{wb.n_boot} draws, Monte Carlo SE {wb.mc_se:.3f}"
        checks.append(Check(
            "inference", "pass",
            f"p-value {p:.3g} and interval from a restricted wild cluster bootstrap ({wb.weights} weights, {how}; "
            f"Roodman et al. 2019), not the CRV1 t-test (p = {p_crv:.3g}); the standard error shown is CRV1.",
            p_value=p, details={"p_value_crv1": p_crv, "weights": wb.weights, "n_boot": wb.n_boot},
        ))
    extra["coefficients"] = {nm: {"estimate": float(b[j]), "se": float(se[j])} for j, nm in enumerate(names)}
    return Result(
        estimate=float(b[0]), se=float(se[0]), ci=ci, p_value=p, method="twfe", n=int(n_units),
        unit="absolute", diagnostics=tuple(checks), alpha=alpha, metric=metric, extra=extra,
    )


# ---------------------------------------------------------------------------------------- event study


def event_study(
    y: np.ndarray,
    unit: np.ndarray,
    time: np.ndarray,
    first_treated: np.ndarray,
    *,
    leads: int = 4,
    lags: int = 4,
    covariates: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    alpha: float = 0.05,
    pretrend_alpha: float = 0.05,
    metric: str = "",
    period_order=None,
) -> Result:
    """Event-study regression with leads and lags and a joint Wald pre-trend test.

    y_it = a_i + l_t + sum_{k != -1} b_k 1[t - G_i = k] + e_it, with k binned at ``-leads`` and
    ``lags`` (the end bins absorb everything further out), period -1 as the reference, never-
    treated units as pure controls, SE clustered by unit. The pre-trend test is the joint Wald
    test that all lead coefficients are zero (F with G - 1 denominator degrees of freedom);
    Roth (2022) warns it has low power, so the Result reports it as a diagnostic, not a licence.

    Parameters
    ----------
    y, unit, time : arrays, shape (n,)
        ``time``: integer period indices (weeks since start, years, ...), used as they are; or
        dates (``datetime64``, ``datetime.date``, pandas Timestamps), where event time counts
        observed periods; or any labels listed in ``period_order``. Text labels without
        ``period_order`` raise (sorted as text, "Q12011" would come before "Q42010").
    first_treated : array, shape (n,)
        Period in which the row's unit is first treated, on the scale of ``time``; NaN, +inf,
        None or NaT for never treated. A date between two observed periods counts from the next.
    leads, lags : int
        Number of pre-period (>= 2 so there is something to test) and post-period coefficients.
    covariates, exclude, alpha, metric
        As in :func:`twfe`.
    period_order : sequence, optional
        Every period label, earliest first; needed when ``time`` holds text labels.

    Returns
    -------
    Result
        ``estimate`` is the mean of the post coefficients (k = 0..lags); ``extra["event_time"]``
        lists every coefficient; the pre-trend check is in ``diagnostics``.

    References
    ----------
    Freyaldenhoven, S., Hansen, C., Perez, J. P. and Shapiro, J. M. (2021). Visualization,
    identification, and estimation in the linear panel event-study design. NBER WP 29170.
    """
    if leads < 2 or lags < 0:
        raise DataError("event_study: need leads >= 2 and lags >= 0")
    y = np.asarray(y, dtype=float)
    t_raw = np.asarray(time)
    if period_order is None and t_raw.dtype.kind in "biuf":
        t = t_raw.astype(float)
        g_raw = np.asarray(first_treated)
        g = g_raw.astype(float) if g_raw.dtype.kind in "biuf" else np.array([np.nan if v is None else v for v in g_raw.tolist()], dtype=float)
    elif period_order is None:
        t, levels = period_positions(t_raw, who="event_study", name="time")
        g, _ = period_positions(np.asarray(first_treated), who="event_study", name="first_treated", levels=levels)
    else:
        t, _ = period_positions(t_raw, period_order, who="event_study", name="time")
        g, _ = period_positions(np.asarray(first_treated), period_order, who="event_study", name="first_treated")
    never = ~np.isfinite(g)
    rel = np.where(never, np.nan, t - np.where(never, 0, g))
    ks = [k for k in range(-leads, lags + 1) if k != -1]
    cols = []
    for k in ks:
        if k == -leads:
            c = (rel <= k)
        elif k == lags:
            c = (rel >= k)
        else:
            c = (rel == k)
        cols.append(np.where(never, 0.0, c.astype(float)))
    Xe = np.column_stack(cols)
    present = Xe.any(axis=0)
    if not present.all():
        missing = [k for k, pr in zip(ks, present) if not pr]
        raise DataError(f"event_study: no observations at event times {missing}; reduce leads/lags")
    Xc = None if covariates is None else np.asarray(covariates, dtype=float).reshape(y.shape[0], -1)
    keep = np.isfinite(y)
    if Xc is not None:
        keep &= np.all(np.isfinite(Xc), axis=1)
    if exclude is not None:
        keep &= ~np.asarray(exclude, dtype=bool)
    X = Xe[keep] if Xc is None else np.column_stack([Xe[keep], Xc[keep]])
    u = np.asarray(unit)[keep]
    ucode, n_units = group_codes(u)
    tcode, _ = group_codes(t[keep])
    fit = ols_fe(y[keep], X, [ucode, tcode], u)
    ever = np.bincount(ucode, weights=(~never[keep]).astype(float), minlength=n_units) > 0
    n_tr = int(ever.sum())
    b, V = fit.beta[: len(ks)], fit.vcov[: len(ks), : len(ks)]
    se = np.sqrt(np.diag(V))
    pre_idx = [i for i, k in enumerate(ks) if k < -1]
    post_idx = [i for i, k in enumerate(ks) if k >= 0]
    # Joint Wald test of the leads: F = b' V^-1 b / q against F(q, G-1).
    bp, Vp = b[pre_idx], V[np.ix_(pre_idx, pre_idx)]
    q = len(pre_idx)
    wald = float(bp @ np.linalg.solve(Vp, bp))
    F = wald / q
    p_pre = float(sps.f.sf(F, q, fit.df_t))
    pre_check = Check(
        name="pre_trends",
        status="fail" if p_pre < pretrend_alpha else "pass",
        message=(
            f"Joint test that the {q} lead coefficients are zero: F = {F:.3g}, p = {p_pre:.3g}; "
            + ("treated units were already diverging before treatment." if p_pre < pretrend_alpha else "no evidence of diverging pre-trends (the test has limited power; look at the leads).")
        ),
        statistic=F,
        p_value=p_pre,
        threshold=pretrend_alpha,
        details={"wald_chi2": wald, "df": q},
    )
    w = np.zeros(len(ks))
    w[post_idx] = 1.0 / len(post_idx)
    est = float(w @ b)
    se_avg = float(math.sqrt(w @ V @ w))
    ci, p = wald_interval(est, se_avg, alpha=alpha, df=fit.df_t)
    tq = sps.t.ppf(1 - alpha / 2, fit.df_t)
    rows = [{"event_time": -1, "estimate": 0.0, "se": 0.0, "ci_low": 0.0, "ci_high": 0.0, "reference": True}]
    for i, k in enumerate(ks):
        rows.append({"event_time": k, "estimate": float(b[i]), "se": float(se[i]), "ci_low": float(b[i] - tq * se[i]), "ci_high": float(b[i] + tq * se[i]), "reference": False})
    rows.sort(key=lambda r: r["event_time"])
    return Result(
        estimate=est, se=se_avg, ci=ci, p_value=p, method="event_study", n=int(n_units), unit="absolute",
        diagnostics=(pre_check, cluster_count_check(fit.n_clusters), treated_cluster_check(n_tr, n_units - n_tr)),
        alpha=alpha, metric=metric,
        extra={"event_time": rows, "leads": leads, "lags": lags, "pretrend_p_value": p_pre, "n_obs": int(fit.n_obs)},
    )


# ---------------------------------------------------------------------------------------- staggered


def staggered_did(
    Y: np.ndarray,
    cohort: np.ndarray,
    *,
    control: Control = "never",
    exclude_periods: np.ndarray | None = None,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """Callaway & Sant'Anna (2021) group-time ATTs for staggered rollouts, aggregated.

    For every cohort g (units first treated in period g) and period t, ATT(g, t) is the 2x2 DiD of
    cohort g against the comparison units between period g - 1 and t. Post-treatment cells are
    averaged with weights proportional to cohort size (the "simple" aggregation); event-time
    aggregates (including leads, as a pre-trend check) are in ``extra``. Standard errors come from
    the unit-level influence function (clustered by unit), treating the cohort-share weights as
    fixed.

    Parameters
    ----------
    Y : array, shape (n_units, n_periods)
        Balanced outcome matrix (NaN not allowed in periods used).
    cohort : array, shape (n_units,)
        Index (0-based column of ``Y``) of the first treated period; -1, NaN or >= n_periods for
        never treated. Units treated in period 0 have no pre-period and are dropped.
    control : {"never", "notyet"}
        Comparison group: never-treated units only, or also units not yet treated by period t.
    exclude_periods : array of bool, shape (n_periods,), optional
        Periods inside declared shock windows: no ATT(g, t) uses them as t.
    alpha : float
    metric : str

    Returns
    -------
    Result
        ``method="callaway_santanna"``.

    References
    ----------
    Callaway, B. and Sant'Anna, P. H. C. (2021). Difference-in-differences with multiple time
    periods. Journal of Econometrics 225(2), 200-230.
    """
    check_option("control", control, ("never", "notyet"))
    Y = np.asarray(Y, dtype=float)
    N, T = Y.shape
    c = np.asarray(cohort, dtype=float).copy()
    c[~np.isfinite(c) | (c < 0) | (c >= T)] = np.inf
    keep = c != 0
    dropped0 = int((~keep).sum())
    Y, c = Y[keep], c[keep]
    N = Y.shape[0]
    ex = np.zeros(T, dtype=bool) if exclude_periods is None else np.asarray(exclude_periods, dtype=bool)
    cohorts = np.unique(c[np.isfinite(c)]).astype(int)
    if cohorts.size == 0:
        raise DataError("staggered_did: no treated cohort with a pre-period")
    never = ~np.isfinite(c)
    if control == "never" and never.sum() < 2:
        raise DataError("staggered_did: fewer than 2 never-treated units; use control='notyet'")
    cells = []  # (g, t, att, psi)
    for g in cohorts:
        gi = c == g
        ng = int(gi.sum())
        base = g - 1
        for t in range(T):
            if t == base or ex[t]:
                continue
            if control == "never":
                ci_ = never
            else:
                # not yet treated at max(t, base): their untreated path is observed through t
                ci_ = (c > max(t, base)) & ~gi
            nc = int(ci_.sum())
            if nc < 1:
                continue
            dY = Y[:, t] - Y[:, base]
            mg, mc = dY[gi].mean(), dY[ci_].mean()
            psi = np.zeros(N)
            psi[gi] = (dY[gi] - mg) / ng
            psi[ci_] -= (dY[ci_] - mc) / nc
            cells.append((int(g), t, float(mg - mc), psi, ng))
    if not any(t >= g for g, t, *_ in cells):
        raise DataError("staggered_did: no post-treatment cell has a comparison group")

    def aggregate(sel):
        w = np.array([cell[4] for cell in sel], dtype=float)
        w /= w.sum()
        est = float(sum(wi * cell[2] for wi, cell in zip(w, sel)))
        psi = sum(wi * cell[3] for wi, cell in zip(w, sel))
        return est, float(math.sqrt(np.sum(psi**2)))

    post = [cell for cell in cells if cell[1] >= cell[0]]
    est, se = aggregate(post)
    ci, p = wald_interval(est, se, alpha=alpha)
    z = sps.norm.ppf(1 - alpha / 2)
    ev_rows = []
    for e in sorted({cell[1] - cell[0] for cell in cells}):
        sel = [cell for cell in cells if cell[1] - cell[0] == e]
        ee, es = aggregate(sel)
        ev_rows.append({"event_time": int(e), "estimate": ee, "se": es, "ci_low": ee - z * es, "ci_high": ee + z * es})
    pre = [r for r in ev_rows if r["event_time"] < -1]
    checks = []
    if pre:
        # Joint test of pre-period event-time ATTs (their influence functions give the covariance).
        sel_sets = [[cell for cell in cells if cell[1] - cell[0] == r["event_time"]] for r in pre]
        psis = []
        for sel in sel_sets:
            w = np.array([cell[4] for cell in sel], dtype=float)
            w /= w.sum()
            psis.append(sum(wi * cell[3] for wi, cell in zip(w, sel)))
        Psi = np.column_stack(psis)
        Vpre = Psi.T @ Psi
        bpre = np.array([r["estimate"] for r in pre])
        try:
            chi2 = float(bpre @ np.linalg.solve(Vpre, bpre))
            p_pre = float(sps.chi2.sf(chi2, len(pre)))
            checks.append(Check(
                "pre_trends", "fail" if p_pre < 0.05 else "pass",
                f"Joint chi-square test of {len(pre)} pre-period event-time ATTs: chi2 = {chi2:.3g}, p = {p_pre:.3g}.",
                statistic=chi2, p_value=p_pre, threshold=0.05,
            ))
        except np.linalg.LinAlgError:
            checks.append(Check("pre_trends", "skip", "Pre-period covariance is singular; test not run."))
    else:
        checks.append(Check("pre_trends", "skip", "No period before g - 1 to test pre-trends."))
    if dropped0:
        checks.append(Check("always_treated", "warn", f"{dropped0} units treated from the first period have no pre-period and were dropped.", statistic=float(dropped0)))
    gt = [{"cohort": g, "period": t, "att": a} for g, t, a, _, _ in cells]
    return Result(
        estimate=est, se=se, ci=ci, p_value=p, method="callaway_santanna", n=int(N), unit="absolute",
        diagnostics=tuple(checks), alpha=alpha, metric=metric,
        extra={"control": control, "event_time": ev_rows, "group_time": gt, "n_cohorts": int(cohorts.size), "n_never_treated": int(never.sum())},
    )

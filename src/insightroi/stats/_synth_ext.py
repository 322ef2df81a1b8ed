"""Synthetic control for geo tests: demeaned and ridge-augmented fits, several treated units, user V,
placebo-in-space / placebo-in-time p-values and a conformal interval for the ATT. Pure numpy/scipy.

What each option reproduces:

* ``demean=True``: every series is demeaned over the fitting periods before the simplex weights
  are chosen, and the treated unit's mean is added back, i.e. the synthetic unit is
  ``mean(y1_pre) + (Y0_t - mean(Y0_pre)) @ w``. This is the demeaned SC of Ferman & Pinto (2021)
  and the ``fixedeff = TRUE`` fit of augsynth, on which GeoLift's default model rests; it lets the
  treated unit sit at a level outside the donors' range (only its *shape* must be matched).
* ``augment="ridge"``: ridge ASCM of Ben-Michael, Feller & Rothstein (2021), eq. (9) and augsynth's
  ``fit_ridgeaug_formatted``: ``gamma = w + X0c' (X0c X0c' + lambda I)^-1 (x1c - X0c w)``, the
  SC weights plus a ridge correction of the remaining pre-period imbalance, where the rows are the
  fitting periods centred on the donors' average (so the correction sums to zero and gamma still
  sums to one; gamma may be negative). ``lambda`` is chosen by leave-one-period-out CV over the
  pre-period on augsynth's grid (21 values from ``1 + ||x1c||^2`` down by 1e-5), the minimum mean
  squared held-out error winning.
* Several treated units: the fit is to the *average* of the treated units' series (GeoLift fits
  the aggregate of the treated markets), so the effect per period is the average treated unit's
  gap and the ATT is its mean over the post-period.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Literal

import numpy as np
from scipy.special import comb

from insightroi.errors import DataError
from insightroi.stats._result import Check, Result
from insightroi.stats._synth import scale_predictors, simplex_weights, synth_fit

__all__ = ["synth_weights", "conformal_att", "synthetic_control_panel"]

Augment = Literal["none", "ridge"]
Scale = Literal["sd", "none"]
ConformalStat = Literal["mean", "abs"]

# Placebo groups are all enumerated up to this many, else drawn at random (with the +1 correction).
MAX_ENUMERATED_PLACEBOS = 999


def _check_option(func: str, name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"The {name!r} parameter of {func} must be one of {set(allowed)}. Got {value!r} instead.")


def _ridge_correction(z1: np.ndarray, Z0: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """Ridge ASCM correction (BFR 2021 eq. 9) on already demeaned-or-not rows ``z1`` (R,), ``Z0`` (R, J)."""
    m = Z0.mean(axis=1)
    Z0c = Z0 - m[:, None]
    r = (z1 - m) - Z0c @ w
    R = Z0c.shape[0]
    # R x R system (periods), as augsynth: small when there are fewer periods than donors or few.
    return Z0c.T @ np.linalg.solve(Z0c @ Z0c.T + lam * np.eye(R), r)


def _lambda_grid(z1: np.ndarray, Z0: np.ndarray) -> np.ndarray:
    m = Z0.mean(axis=1)
    lam_max = 1.0 + float(np.sum((z1 - m) ** 2))
    return lam_max * (1e-5 ** (1.0 / 20)) ** np.arange(21)


def _cv_lambda(z1: np.ndarray, Z0: np.ndarray, demean: bool, w_fixed: np.ndarray | None) -> tuple[float, np.ndarray, np.ndarray]:
    """Leave-one-period-out CV of the ridge penalty (augsynth's ``get_lambda_errors``, holdout 1)."""
    R = len(z1)
    lams = _lambda_grid(*((z1 - z1.mean(), Z0 - Z0.mean(axis=0)) if demean else (z1, Z0)))
    err = np.zeros((R, len(lams)))
    for i in range(R):
        keep = np.arange(R) != i
        a, B = z1[keep], Z0[keep]
        if demean:
            mu1, mu0 = a.mean(), B.mean(axis=0)
            a, B = a - mu1, B - mu0
            h1, h0 = z1[i] - mu1, Z0[i] - mu0
        else:
            h1, h0 = z1[i], Z0[i]
        w = simplex_weights(a, B) if w_fixed is None else w_fixed
        m = B.mean(axis=1)
        Bc = B - m[:, None]
        r = (a - m) - Bc @ w
        # One eigendecomposition serves every lambda.
        s, U = np.linalg.eigh(Bc @ Bc.T)
        Ur = U.T @ r
        hc = Bc.T  # (J, R-1)
        for l, lam in enumerate(lams):
            g = w + hc @ (U @ (Ur / (s + lam)))
            err[i, l] = (h1 - h0 @ g) ** 2
    mean_err = err.mean(axis=0)
    return float(lams[int(np.argmin(mean_err))]), lams, mean_err


def synth_weights(
    z1: np.ndarray,
    Z0: np.ndarray,
    *,
    demean: bool = False,
    augment: Augment = "none",
    ridge_lambda: float | None = None,
    X1: np.ndarray | None = None,
    X0: np.ndarray | None = None,
    v: np.ndarray | None = None,
    scale: Scale = "sd",
    precise: bool = True,
) -> dict:
    """Synthetic-control weights for one (possibly averaged) treated series, with the options of
    GeoLift and augsynth.

    Parameters
    ----------
    z1 : array, shape (R,)
        Treated series over the fitting periods (usually the pre-period).
    Z0 : array, shape (R, J)
        Donors over the same periods.
    demean : bool
        Demean every series over the R periods before fitting and add the treated mean back
        (Ferman & Pinto 2021; augsynth ``fixedeff = TRUE``; GeoLift's default model).
    augment : {"none", "ridge"}
        ``"ridge"``: ridge ASCM (Ben-Michael, Feller & Rothstein 2021) on the (demeaned, if asked)
        fitting periods.
    ridge_lambda : float, optional
        Ridge penalty; None chooses it by leave-one-period-out CV (see the module docstring).
    X1, X0 : arrays, shapes (k,) and (k, J), optional
        Predictors. With them the simplex weights match predictors, not the R periods.
    v : array, shape (k,), optional
        Predictor weights, used as given (any positive multiple gives the same W). They weight
        the predictors *after* scaling: with ``scale="sd"`` each predictor is divided by its
        sample SD (ddof=1) across the J donors and the treated series together
        (``scale_predictors``, the rule of R Synth, pysyncon and ``synth_fit``), so a V published
        by R Synth (``solution.v``) or returned by ``synth_fit`` can be passed as is; with
        ``scale="none"`` V weights the predictors exactly as passed. Without ``v`` V is chosen by
        ``synth_fit``'s outer loop (``scale`` then does not matter: rescaling a predictor only
        reparametrises V).
    scale : {"sd", "none"}
    precise : bool
        Passed to ``synth_fit`` when V is optimised (False for placebo refits).

    Returns
    -------
    dict
        ``w`` (J,) simplex weights; ``gamma`` (J,) final weights (``w`` plus the ridge correction;
        equal to ``w`` without augmentation); ``intercept`` (the treated minus the weighted donor
        mean with ``demean``, else 0), so the synthetic series is ``Y0 @ gamma + intercept``;
        ``v``; ``lambda`` (NaN without ridge); ``cv`` (lambda grid and CV errors, or None).

    References
    ----------
    Ferman, B. and Pinto, C. (2021). Synthetic controls with imperfect pretreatment fit.
    Quantitative Economics 12(4), 1197-1221.
    Ben-Michael, E., Feller, A. and Rothstein, J. (2021). The augmented synthetic control method.
    JASA 116(536), 1789-1803.
    """
    _check_option("synth_weights", "augment", augment, ("none", "ridge"))
    _check_option("synth_weights", "scale", scale, ("sd", "none"))
    z1 = np.asarray(z1, dtype=float)
    Z0 = np.asarray(Z0, dtype=float)
    if demean:
        mu1, mu0 = float(z1.mean()), Z0.mean(axis=0)
        a, B = z1 - mu1, Z0 - mu0
    else:
        a, B = z1, Z0
    vv = None
    if X1 is not None and X0 is not None:
        if v is not None:
            vv = np.asarray(v, dtype=float)
            if vv.shape != (np.asarray(X1).shape[0],) or np.any(vv < 0) or not np.any(vv > 0):
                raise DataError("synth_weights: v must have one non-negative weight per predictor, not all zero")
            X1s, X0s = (scale_predictors(X1, X0)[:2] if scale == "sd"
                        else (np.asarray(X1, dtype=float), np.asarray(X0, dtype=float)))
            w = simplex_weights(X1s, X0s, vv)
        else:
            f = synth_fit(a, B, X1, X0, precise=precise)
            w, vv = f["w"], f["v"]
        w_fixed = w
    else:
        w = simplex_weights(a, B)
        w_fixed = None
    gamma = w.copy()
    lam, cv = float("nan"), None
    if augment == "ridge":
        if ridge_lambda is None:
            lam, grid, errs = _cv_lambda(z1, Z0, demean, w_fixed)
            cv = {"lambdas": [float(x) for x in grid], "cv_mse": [float(x) for x in errs]}
        else:
            lam = float(ridge_lambda)
            if not lam > 0:
                raise DataError("synth_weights: ridge_lambda must be positive")
        gamma = w + _ridge_correction(a, B, w, lam)
    intercept = float(mu1 - mu0 @ gamma) if demean else 0.0
    return {"w": w, "gamma": gamma, "intercept": intercept, "v": vv, "lambda": lam, "cv": cv}


def _shift_stats(u: np.ndarray, n_post: int, statistic: str) -> np.ndarray:
    """Test statistic of every cyclic (moving-block) shift of the residuals; index 0 = observed."""
    T = len(u)
    ext = np.concatenate([u, u])
    idx = (np.arange(T)[:, None] + np.arange(T - n_post, T)[None, :])  # shift j moves t to t + j
    blocks = ext[idx]
    if statistic == "mean":
        return np.abs(blocks.sum(axis=1)) / math.sqrt(n_post)
    return np.abs(blocks).sum(axis=1) / math.sqrt(n_post)


def _conformal_p(y1, Y0, n_pre, c, demean, lam, statistic) -> float:
    z = y1.copy()
    z[n_pre:] -= c
    # Under H0 the adjusted series is the no-effect outcome in every period, so the fit uses all
    # T periods (CWZ 2021, section 2): that is what makes the residuals (nearly) exchangeable.
    f = synth_weights(z, Y0, demean=demean, augment="none" if lam is None else "ridge", ridge_lambda=lam)
    u = z - (Y0 @ f["gamma"] + f["intercept"])
    s = _shift_stats(u, len(y1) - n_pre, statistic)
    return float(np.mean(s >= s[0] - 1e-12 * max(1.0, abs(s[0]))))


def conformal_att(
    y_treated: np.ndarray,
    y_donors: np.ndarray,
    n_pre: int,
    *,
    alpha: float = 0.05,
    demean: bool = False,
    ridge_lambda: float | None = None,
    statistic: ConformalStat = "mean",
    center: float | None = None,
) -> dict:
    """Conformal interval for a constant post-period effect (Chernozhukov, Wuthrich & Zhu 2021).

    For each candidate effect c, H0: "the effect is c in every post-period" is tested by
    subtracting c from the treated post-period outcomes, refitting the synthetic control on *all*
    periods, and ranking the statistic of the post-period residuals among its T moving-block
    (cyclic) permutations: ``p(c) = (1/T) sum_j 1{S(u_shift_j) >= S(u)}``. The interval collects
    the c with ``p(c) > alpha``: a grid walked outwards from ``center`` in steps of a quarter of
    the pre-period residual SD over sqrt(T1) until two steps in a row are rejected, each edge
    then refined by bisection to 1/256 of a step. Under a constant effect c is the ATT, so this
    is a ``1 - alpha`` interval for the ATT.

    Parameters
    ----------
    y_treated : array, shape (T,)
        Treated series (the average of the treated units when there are several).
    y_donors : array, shape (T, J)
    n_pre : int
    alpha : float
        The smallest attainable p-value is 1/T, so alpha below it gives an unbounded interval.
    demean : bool
        Demeaned SC (see ``synth_weights``).
    ridge_lambda : float, optional
        Ridge ASCM with this fixed penalty (choose it on the pre-period once; re-choosing it for
        every c would change the estimator between hypotheses); None: no augmentation.
    statistic : {"mean", "abs"}
        ``"mean"``: ``|sum of post residuals| / sqrt(T1)``, powerful against a shift of the
        mean; ``"abs"``: CWZ's ``S_1``, ``sum |post residuals| / sqrt(T1)``.
    center : float, optional
        Where the search starts (default: the mean post-period gap of the pre-period fit).

    Notes
    -----
    Validity needs the no-effect residuals to be (nearly) exchangeable over time: a stationary
    panel, or a fit good enough that the residuals are. With ridge augmentation and many donors
    for few periods, the correction can absorb the hypothesised shift itself, leaving the
    interval wide or unbounded (an infinite end is returned as such): prefer plain or demeaned
    SC for the interval then.

    Returns
    -------
    dict
        ``ci`` (low, high), ``p_value`` (of H0: effect 0), ``n_permutations`` (T), ``evaluated``
        (number of refits).

    References
    ----------
    Chernozhukov, V., Wuthrich, K. and Zhu, Y. (2021). An exact and robust conformal inference
    method for counterfactual and synthetic controls. JASA 116(536), 1849-1864.
    """
    _check_option("conformal_att", "statistic", statistic, ("mean", "abs"))
    y1 = np.asarray(y_treated, dtype=float)
    Y0 = np.asarray(y_donors, dtype=float)
    T = len(y1)
    n_post = T - n_pre
    if not (2 <= n_pre < T):
        raise DataError("conformal_att: need at least 2 pre-periods and 1 post-period")
    f = synth_weights(y1[:n_pre], Y0[:n_pre], demean=demean,
                      augment="none" if ridge_lambda is None else "ridge", ridge_lambda=ridge_lambda)
    gap = y1 - (Y0 @ f["gamma"] + f["intercept"])
    c0 = float(gap[n_pre:].mean()) if center is None else float(center)
    sd = float(np.std(gap[:n_pre], ddof=1))
    if not sd > 0:
        sd = max(float(np.std(y1[:n_pre], ddof=1)), 1e-8 * max(1.0, abs(c0)))
    h = sd / math.sqrt(n_post) / 4.0
    count = [0]
    cache: dict[float, float] = {}

    def p(c: float) -> float:
        if c not in cache:
            count[0] += 1
            cache[c] = _conformal_p(y1, Y0, n_pre, c, demean, ridge_lambda, statistic)
        return cache[c]

    def edge(direction: int) -> float:
        last_in, k, misses = (c0 if p(c0) > alpha else None), 0, 0
        first_out = None
        while misses < 2 and k < 400:
            k += 1
            c = c0 + direction * k * h
            if p(c) > alpha:
                last_in, misses, first_out = c, 0, None
            else:
                misses += 1
                first_out = c if first_out is None else first_out
        if last_in is None:
            return float("nan")
        if misses < 2:
            return direction * float("inf")
        lo, hi = last_in, first_out
        for _ in range(8):
            mid = 0.5 * (lo + hi)
            if p(mid) > alpha:
                lo = mid
            else:
                hi = mid
        return lo

    lo, hi = edge(-1), edge(+1)
    if math.isnan(lo) or math.isnan(hi):
        lo = hi = float("nan")
    return {"ci": (lo, hi), "p_value": p(0.0), "n_permutations": T, "evaluated": count[0], "center": c0}


def _rmspe(g: np.ndarray) -> float:
    return float(math.sqrt(np.mean(g**2))) if g.size else float("nan")


def _placebo_groups(N: int, m: int, n_placebo: int | None, rng) -> tuple[list, bool]:
    total = int(comb(N, m, exact=True))
    if n_placebo is None and total <= MAX_ENUMERATED_PLACEBOS + 1:
        return [np.array(g) for g in combinations(range(N), m)], True
    B = MAX_ENUMERATED_PLACEBOS if n_placebo is None else int(n_placebo)
    return [np.sort(rng.choice(N, size=m, replace=False)) for _ in range(B)], False


def synthetic_control_panel(
    Y: np.ndarray,
    treated,
    n_pre: int,
    *,
    demean: bool = False,
    augment: Augment = "none",
    ridge_lambda: float | None = None,
    predictors: np.ndarray | None = None,
    v: np.ndarray | None = None,
    scale: Scale = "sd",
    unit_names: list[str] | None = None,
    placebo_space: bool = True,
    n_placebo: int | None = None,
    placebo_time: bool = True,
    placebo_time_periods: int | None = None,
    conformal: bool = True,
    conformal_statistic: ConformalStat = "mean",
    alpha: float = 0.05,
    seed: int | np.random.Generator | None = 0,
    metric: str = "",
) -> Result:
    """Synthetic control of one or several treated units on a T x N panel, with placebo and
    conformal inference.

    The treated units are averaged and one synthetic control is fitted to that average (GeoLift
    fits the aggregate of the treated markets): ``effect_t = mean_treated_t - synthetic_t`` and
    the ATT is the mean effect over the post-period. The donors are the untreated units.

    Parameters
    ----------
    Y : array, shape (T, N)
        Outcomes, one column per unit, the first ``n_pre`` rows before treatment.
    treated : array of int or bool, shape (m,) or (N,)
        Column indices of the treated units, or a boolean mask over the columns.
    n_pre : int
    demean, augment, ridge_lambda
        See ``synth_weights``. A ridge penalty chosen by CV on the real fit is reused unchanged
        in every placebo and conformal refit.
    predictors : array, shape (k, N), optional
        Predictors per unit (the treated units' are averaged). Placebo fits use them too.
    v : array, shape (k,), optional
        Predictor weights applied to the predictors scaled per ``scale`` (see ``synth_weights``:
        ``"sd"`` divides each by its SD across the donors and the averaged treated unit, R
        Synth's rule, so a published ``solution.v`` passes as is). Predictors are used as
        passed: ``demean`` changes the outcomes V is chosen on and adds the intercept, not them.
    scale : {"sd", "none"}
    unit_names : list of str, optional
    placebo_space : bool
        Placebo in space (Abadie, Diamond & Hainmueller 2010, section 2.4; with several treated
        units, Firpo & Possebom 2018's group form): groups of m units drawn from all N units are
        in turn treated as if treated (the rest as donors) and the p-value is the share of groups,
        the real one included, whose post/pre RMSPE ratio is at least the real one. All groups
        are enumerated when there are at most 1000 (with m = 1: every unit, as ADH), otherwise
        ``n_placebo`` (default 999) are drawn and ``p = (1 + #{ratio_b >= ratio}) / (1 + B)``.
    n_placebo : int, optional
        Number of random placebo groups (forces sampling).
    placebo_time : bool
        Placebo in time: pretend treatment started ``placebo_time_periods`` periods before the
        real date (default ``min(T1, n_pre // 3)``, at least 1), fit on the periods before it
        and report the fake ATT with its conformal p-value of no effect (data before the real
        date only). A small p-value says the method finds effects where there are none.
    conformal : bool
        Conformal ``1 - alpha`` interval for the ATT (``conformal_att``; outcome-matching fit
        with the same ``demean`` and ridge penalty, predictors not used).
    conformal_statistic : {"mean", "abs"}
    alpha : float
    seed : int or Generator
        Only used when placebo groups are sampled.
    metric : str

    Returns
    -------
    Result
        ``estimate`` ATT; ``ci`` the conformal interval (NaN without ``conformal``); ``p_value``
        the conformal p-value of no effect, or the placebo-in-space p-value without
        ``conformal``; ``extra``: ``effect`` (per post-period), ``lift`` (total effect over the
        synthetic post-period total, GeoLift's percent lift), ``gap`` and ``synthetic`` (all
        periods), ``weights`` (simplex), ``gamma`` (final, with the ridge correction),
        ``intercept``, ``v``, ``lambda``, RMSPEs, ``placebo_space`` (p, ratios, enumerated),
        ``placebo_time`` and ``conformal``.

    References
    ----------
    Abadie, A., Diamond, A. and Hainmueller, J. (2010). JASA 105(490), 493-505.
    Firpo, S. and Possebom, V. (2018). Synthetic control method: inference, sensitivity analysis
    and confidence sets. Journal of Causal Inference 6(2).
    Ferman, B. and Pinto, C. (2021). Quantitative Economics 12(4), 1197-1221.
    Ben-Michael, E., Feller, A. and Rothstein, J. (2021). JASA 116(536), 1789-1803.
    Chernozhukov, V., Wuthrich, K. and Zhu, Y. (2021). JASA 116(536), 1849-1864.
    """
    fn = "synthetic_control_panel"
    _check_option(fn, "augment", augment, ("none", "ridge"))
    _check_option(fn, "scale", scale, ("sd", "none"))
    _check_option(fn, "conformal_statistic", conformal_statistic, ("mean", "abs"))
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2:
        raise DataError(f"{fn}: Y must be a T x N matrix")
    T, N = Y.shape
    tr = np.asarray(treated)
    if tr.dtype == bool:
        if tr.shape != (N,):
            raise DataError(f"{fn}: a boolean treated mask needs one entry per column of Y")
        tr = np.flatnonzero(tr)
    tr = np.unique(tr.astype(int))
    if tr.size == 0 or tr.min() < 0 or tr.max() >= N:
        raise DataError(f"{fn}: treated must name at least one column of Y")
    m = tr.size
    ctrl = np.setdiff1d(np.arange(N), tr)
    if ctrl.size < 2:
        raise DataError(f"{fn}: need at least 2 untreated units as donors")
    if not (2 <= n_pre < T):
        raise DataError(f"{fn}: need at least 2 pre-periods and 1 post-period")
    if not np.all(np.isfinite(Y)):
        raise DataError(f"{fn}: outcomes contain NaN; fill or drop those units first")
    names = list(unit_names) if unit_names is not None else [f"unit_{j}" for j in range(N)]
    P = None if predictors is None else np.asarray(predictors, dtype=float)
    if P is not None and (P.ndim != 2 or P.shape[1] != N):
        raise DataError(f"{fn}: predictors must be k x N, one column per unit")
    n_post = T - n_pre
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def fit(group, rows, lam, precise):
        others = np.setdiff1d(np.arange(N), group)
        y1 = Y[:, group].mean(axis=1)
        Y0 = Y[:, others]
        X1 = None if P is None else P[:, group].mean(axis=1)
        X0 = None if P is None else P[:, others]
        f = synth_weights(y1[rows], Y0[rows], demean=demean, augment=augment, ridge_lambda=lam,
                          X1=X1, X0=X0, v=v, scale=scale, precise=precise)
        return f, y1, y1 - (Y0 @ f["gamma"] + f["intercept"])

    pre = np.arange(n_pre)
    f, y1, gap = fit(tr, pre, ridge_lambda, True)
    lam = f["lambda"] if augment == "ridge" else None
    synth = y1 - gap
    att = float(gap[n_pre:].mean())
    pre_rmspe, post_rmspe = _rmspe(gap[:n_pre]), _rmspe(gap[n_pre:])
    ratio = post_rmspe / pre_rmspe if pre_rmspe > 0 else float("inf")
    checks = []
    sd_pre = float(np.std(y1[:n_pre], ddof=1))
    fit_ratio = pre_rmspe / sd_pre if sd_pre > 0 else float("nan")
    checks.append(Check(
        "pre_period_fit", "pass" if fit_ratio < 0.5 else "warn",
        f"Pre-period RMSPE {pre_rmspe:.4g} is {fit_ratio:.0%} of the treated series' pre-period SD"
        + ("." if fit_ratio < 0.5 else "; the synthetic unit tracks the treated one poorly, so post-period gaps are hard to attribute."),
        statistic=fit_ratio, threshold=0.5, details={"pre_rmspe": pre_rmspe},
    ))
    Y0p = Y[:n_pre][:, ctrl]
    a = y1[:n_pre] - (y1[:n_pre].mean() if demean else 0.0)
    B = Y0p - (Y0p.mean(axis=0) if demean else 0.0)
    hull = bool(np.all(a <= B.max(axis=1) + 1e-12) and np.all(a >= B.min(axis=1) - 1e-12))
    what = "demeaned path" if demean else "path"
    checks.append(Check(
        "convex_hull", "pass" if hull else "warn",
        f"The treated {what} lies inside the donors' range in the pre-period." if hull
        else f"The treated {what} leaves the donors' range in the pre-period; no convex combination can match it there"
        + (" (ridge augmentation extrapolates beyond it)." if augment == "ridge" else "; consider demean=True or augment='ridge'."),
    ))

    placebo_out = None
    p_space = float("nan")
    if placebo_space:
        groups, enumerated = _placebo_groups(N, m, n_placebo, rng)
        ratios = []
        for g in groups:
            if np.array_equal(g, tr):
                ratios.append(ratio)
                continue
            _, _, gg = fit(g, pre, lam, False)
            pr, po = _rmspe(gg[:n_pre]), _rmspe(gg[n_pre:])
            ratios.append(po / pr if pr > 0 else float("inf"))
        ratios = np.asarray(ratios)
        tol = 1e-12 * max(1.0, abs(ratio)) if math.isfinite(ratio) else 0.0
        ge = int(np.sum(ratios >= ratio - tol))
        # Enumerated: the real group is one of the groups. Sampled: it is added (+1) so the
        # p-value stays valid (Phipson & Smyth 2010).
        p_space = ge / len(ratios) if enumerated else (1 + ge) / (1 + len(ratios))
        placebo_out = {"p_value": p_space, "ratio": ratio, "ratios": [float(x) for x in ratios],
                       "enumerated": enumerated, "n_groups": len(ratios)}
        checks.append(Check(
            "placebo_in_space", "pass" if p_space <= alpha else "warn",
            f"Post/pre RMSPE ratio {ratio:.3g}: placebo-in-space p = {p_space:.3g} over {len(ratios)} "
            + ("groups (all)." if enumerated else "sampled groups (+1)."),
            statistic=ratio, p_value=p_space, threshold=alpha,
        ))

    time_out = None
    if placebo_time:
        k = placebo_time_periods if placebo_time_periods is not None else max(1, min(n_post, n_pre // 3))
        t_fake = n_pre - int(k)
        if t_fake >= 2 and k >= 1:
            rows = np.arange(t_fake)
            # Ridge penalty as in the real fit, so the placebo tests the same estimator.
            ft, _, gt = fit(tr, rows, lam, True)
            fake_att = float(gt[t_fake:n_pre].mean())
            Yc = Y[:n_pre][:, ctrl]
            cp = _conformal_p(y1[:n_pre], Yc, t_fake, 0.0, demean, lam, conformal_statistic)
            time_out = {"fake_start": int(t_fake), "fake_att": fake_att,
                        "pre_rmspe": _rmspe(gt[:t_fake]), "post_rmspe": _rmspe(gt[t_fake:n_pre]), "p_value": cp}
            checks.append(Check(
                "placebo_in_time", "pass" if cp > alpha else "warn",
                f"A fake start {k} period(s) before the real one gives an effect of {fake_att:.4g} (conformal p = {cp:.3g})"
                + ("; no effect is found where there is none." if cp > alpha else "; the method finds an effect before treatment, so the real one is doubtful."),
                statistic=fake_att, p_value=cp, threshold=alpha,
            ))
        else:
            checks.append(Check("placebo_in_time", "skip", "Too few pre-periods for a fake treatment date (need 2 before it)."))

    conf = None
    ci = (float("nan"), float("nan"))
    if conformal:
        conf = conformal_att(y1, Y[:, ctrl], n_pre, alpha=alpha, demean=demean, ridge_lambda=lam,
                             statistic=conformal_statistic)
        ci = conf["ci"]
    p_value = conf["p_value"] if conf is not None else p_space
    cnames = [names[j] for j in ctrl]
    w, gamma = f["w"], f["gamma"]
    return Result(
        estimate=att, se=float("nan"), ci=(float(ci[0]), float(ci[1])), p_value=float(p_value),
        method="synthetic_control_panel", n=int(N), unit="absolute", diagnostics=tuple(checks),
        alpha=alpha, metric=metric,
        extra={
            "treated": [names[j] for j in tr],
            "demean": bool(demean), "augment": augment,
            "weights": {cnames[j]: float(w[j]) for j in np.argsort(-w) if w[j] > 1e-6},
            "gamma": {cnames[j]: float(gamma[j]) for j in range(len(cnames))},
            "intercept": f["intercept"],
            "v": None if f["v"] is None else [float(x) for x in f["v"]],
            "lambda": None if lam is None else float(lam),
            "cv": f["cv"],
            "effect": [float(x) for x in gap[n_pre:]],
            # GeoLift's percent lift: total effect over the synthetic post-period total.
            "lift": float(gap[n_pre:].sum() / synth[n_pre:].sum()) if synth[n_pre:].sum() != 0 else float("nan"),
            "gap": [float(x) for x in gap],
            "synthetic": [float(x) for x in synth],
            "pre_rmspe": pre_rmspe, "post_rmspe": post_rmspe, "rmspe_ratio": ratio,
            "placebo_space": placebo_out,
            "placebo_time": time_out,
            "conformal": conf,
            "n_pre": int(n_pre),
        },
    )

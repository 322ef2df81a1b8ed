"""Synthetic control (Abadie & Gardeazabal 2003; Abadie, Diamond & Hainmueller 2010), pure numpy/scipy.

Optimiser (deterministic, documented as the reference README asks):

* inner problem, W given V: min_W (X1 - X0 W)' V (X1 - X0 W) with W >= 0, sum W = 1. Solved as a
  non-negative least-squares problem (Lawson-Hanson active set, ``scipy.optimize.nnls``) on the
  system augmented with one heavily weighted row that enforces sum W = 1; exact up to ~1e-10
  and far faster than a general QP, which matters because the outer loop calls it thousands of
  times and placebo inference refits once per donor.
* outer problem, V: diagonal, on the simplex; predictors are first scaled by their standard
  deviation across all units (as R Synth and pysyncon do). V minimises the pre-period MSPE of the
  outcome, searched by Nelder-Mead from equal weights over |v| / sum |v| (R Synth's default and
  pysyncon's) and from R Synth's regression-based start, each followed by one restart from
  where it stopped; the lower loss wins. Same data give the same weights: no random start.
* without predictors, the pre-period outcomes themselves are the predictors with V = I, i.e.
  W minimises the pre-period MSPE directly (no outer loop).

Inference is placebo-in-space (ADH 2010, section 2.4): every donor is in turn treated as if
treated, and the p-value is the rank of the treated unit's post/pre RMSPE ratio among all units.
Leave-one-out drops each donor with positive weight and refits (Abadie 2021, section 7).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize, nnls

from insightroi.errors import DataError
from insightroi.stats._result import Check, Result

__all__ = ["scale_predictors", "simplex_weights", "synth_fit", "synthetic_control"]


def simplex_weights(X1: np.ndarray, X0: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """Donor weights on the simplex minimising ``(X1 - X0 w)' diag(v) (X1 - X0 w)``.

    Parameters
    ----------
    X1 : array, shape (k,)
        Treated unit's predictors.
    X0 : array, shape (k, J)
        Donors' predictors (one column per donor).
    v : array, shape (k,), optional
        Non-negative predictor weights (default all ones).

    Returns
    -------
    array, shape (J,)
        Non-negative weights that sum to one.
    """
    X1 = np.asarray(X1, dtype=float)
    X0 = np.asarray(X0, dtype=float)
    k, J = X0.shape
    sv = np.sqrt(np.ones(k) if v is None else np.maximum(np.asarray(v, dtype=float), 0.0))
    A = X0 * sv[:, None]
    b = X1 * sv
    # Penalty row scaled to the data so the equality holds to ~1e-10 without ill-conditioning.
    M = 1e4 * max(float(np.abs(A).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-12)
    A_aug = np.vstack([A, np.full((1, J), M)])
    b_aug = np.concatenate([b, [M]])
    w, _ = nnls(A_aug, b_aug, maxiter=50 * J)
    s = w.sum()
    return w / s if s > 0 else np.full(J, 1.0 / J)


def scale_predictors(X1: np.ndarray, X0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale predictors as ``synth_fit`` does before any V applies (R Synth's and pysyncon's rule).

    Each predictor (row) is divided by its sample standard deviation (``ddof=1``) across the
    treated unit and all donors together, i.e. across the ``J + 1`` columns of ``[X0, X1]``; a
    predictor that is constant across units is left as is (divisor 1). Predictors are not
    centred. A V reported by ``synth_fit`` (or by R Synth's ``solution.v``) weights these scaled
    predictors, so reusing it needs the same scaling: ``simplex_weights(X1s, X0s, v)``.

    Parameters
    ----------
    X1 : array, shape (k,)
        Treated unit's predictors.
    X0 : array, shape (k, J)
        Donors' predictors (one column per donor).

    Returns
    -------
    X1s : array, shape (k,)
    X0s : array, shape (k, J)
        The scaled predictors.
    divisor : array, shape (k,)
        What each predictor was divided by.

    References
    ----------
    Abadie, A., Diamond, A. and Hainmueller, J. (2011). Synth: an R package for synthetic control
    methods in comparative case studies. Journal of Statistical Software 42(13).
    """
    X1 = np.asarray(X1, dtype=float)
    X0 = np.asarray(X0, dtype=float)
    sd = np.column_stack([X0, X1]).std(axis=1, ddof=1)
    sd[sd == 0] = 1.0
    return X1 / sd, X0 / sd[:, None], sd


def synth_fit(
    Z1: np.ndarray,
    Z0: np.ndarray,
    X1: np.ndarray | None = None,
    X0: np.ndarray | None = None,
    *,
    maxiter: int = 1000,
    precise: bool = True,
) -> dict:
    """Fit synthetic-control weights (W, and V when predictors are given).

    Parameters
    ----------
    Z1 : array, shape (T0,)
        Treated unit's outcome over the periods used to choose V (usually the pre-period).
    Z0 : array, shape (T0, J)
        Donors' outcomes over the same periods.
    X1, X0 : arrays, shapes (k,) and (k, J), optional
        Predictors, unscaled. Without them the pre-period outcomes are matched directly (V = I).
        They are scaled by ``scale_predictors`` (each divided by its SD across all J + 1 units)
        before V applies, so the returned ``v`` weights the *scaled* predictors.
    maxiter : int
        Iterations of each Nelder-Mead run.
    precise : bool
        Tight tolerances and a restart (the reported fit); placebo and leave-one-out refits use
        ``False``: one run stopped at 1e-6 relative loss change, ample for an RMSPE ratio.

    Returns
    -------
    dict
        ``w`` (J,), ``v`` (k,) or None, ``loss_v`` (pre-period MSPE of Z). ``v`` sums to one and
        weights the predictors scaled by ``scale_predictors``; ``w`` equals
        ``simplex_weights(*scale_predictors(X1, X0)[:2], v)``.
    """
    Z1 = np.asarray(Z1, dtype=float)
    Z0 = np.asarray(Z0, dtype=float)
    if X1 is None or X0 is None:
        w = simplex_weights(Z1, Z0)
        r = Z1 - Z0 @ w
        return {"w": w, "v": None, "loss_v": float(r @ r / len(r))}
    X1 = np.asarray(X1, dtype=float)
    X0 = np.asarray(X0, dtype=float)
    X1s, X0s, _ = scale_predictors(X1, X0)
    k = X1s.shape[0]

    def loss(x):
        v = np.abs(x) / np.sum(np.abs(x))
        w = simplex_weights(X1s, X0s, v)
        r = Z1 - Z0 @ w
        return float(r @ r / len(r))

    x0 = np.full(k, 1.0 / k)
    if not precise:
        opts = {"maxiter": maxiter, "xatol": 1e-4, "fatol": 1e-6 * max(loss(x0), 1e-12)}
        best = minimize(loss, x0, method="Nelder-Mead", options=opts)
    else:
        opts = {"maxiter": maxiter, "xatol": 1e-8, "fatol": 1e-12}
        best = None
        # The V problem is not convex: two deterministic starts (equal weights, then R Synth's
        # regression-based start), each followed by one restart from where it stopped; the
        # lowest loss wins, ties going to the equal-weights start.
        for start in (x0, _ols_start(X1s, X0s, Z1, Z0)):
            if start is None:
                continue
            r1 = minimize(loss, start, method="Nelder-Mead", options=opts)
            r2 = minimize(loss, r1.x, method="Nelder-Mead", options=opts)
            r = r2 if r2.fun <= r1.fun else r1
            if best is None or r.fun < best.fun - 1e-12 * max(abs(best.fun), 1.0):
                best = r
    v = np.abs(best.x) / np.sum(np.abs(best.x))
    w = simplex_weights(X1s, X0s, v)
    r = Z1 - Z0 @ w
    return {"w": w, "v": v, "loss_v": float(r @ r / len(r))}


def _ols_start(X1s: np.ndarray, X0s: np.ndarray, Z1: np.ndarray, Z0: np.ndarray) -> np.ndarray | None:
    """Regression-based V start (R Synth / pysyncon ``optim_initial="ols"``): squared coefficients
    of the pre-period outcomes on the scaled predictors across units, normalised."""
    Xa = np.column_stack([X0s, X1s]).T
    Xa = np.column_stack([np.ones(Xa.shape[0]), Xa])
    Za = np.column_stack([Z0, Z1]).T
    beta = np.linalg.lstsq(Xa, Za, rcond=None)[0][1:]
    x = np.sum(beta**2, axis=1)
    return x / x.sum() if np.all(np.isfinite(x)) and x.sum() > 0 else None


def _rmspe(gap: np.ndarray) -> float:
    return float(math.sqrt(np.mean(gap**2))) if gap.size else float("nan")


def synthetic_control(
    y_treated: np.ndarray,
    y_donors: np.ndarray,
    n_pre: int,
    *,
    predictors_treated: np.ndarray | None = None,
    predictors_donors: np.ndarray | None = None,
    optimize_periods: np.ndarray | None = None,
    donor_names: list[str] | None = None,
    placebo: bool = True,
    leave_one_out: bool = True,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """Synthetic-control estimate of the effect on one treated unit, with placebo inference.

    Parameters
    ----------
    y_treated : array, shape (T,)
        Outcome of the treated unit over all periods.
    y_donors : array, shape (T, J)
        Outcomes of the J donor units.
    n_pre : int
        Number of pre-treatment periods (the first ``n_pre`` rows).
    predictors_treated, predictors_donors : arrays, shapes (k,) and (k, J), optional
        Predictors (covariate means, selected pre-period outcomes). Placebo runs need predictors
        for every unit, so with predictors placebo inference uses them too.
        Pass them unscaled: ``synth_fit`` divides each by its SD across all units
        (``scale_predictors``), and ``extra["v"]`` weights those scaled predictors.
    optimize_periods : array of int, optional
        Rows used to choose V (default: all pre-period rows).
    donor_names : list of str, optional
    placebo : bool
        Run placebo-in-space inference (one refit per donor).
    leave_one_out : bool
        Refit dropping each donor with weight > 0.01.
    alpha : float
        Placebo test level for the ``significant_by_placebo`` check.
    metric : str

    Returns
    -------
    Result
        ``estimate`` = mean post-period gap (treated - synthetic); ``se``/``ci`` are NaN/absent
        because inference is by permutation: ``p_value`` is the placebo rank p-value of the
        post/pre RMSPE ratio. ``extra`` holds weights, V, gaps, RMSPEs, placebo ratios and the
        leave-one-out estimates.

    References
    ----------
    Abadie, A., Diamond, A. and Hainmueller, J. (2010). Synthetic control methods for comparative
    case studies. JASA 105(490), 493-505.
    Abadie, A. (2021). Using synthetic controls: feasibility, data requirements, and methodological
    aspects. Journal of Economic Literature 59(2), 391-425.
    """
    y1 = np.asarray(y_treated, dtype=float)
    Y0 = np.asarray(y_donors, dtype=float)
    T, J = Y0.shape
    if y1.shape != (T,):
        raise DataError("synthetic_control: y_treated must have one value per row of y_donors")
    if not (2 <= n_pre < T):
        raise DataError("synthetic_control: need at least 2 pre-periods and 1 post-period")
    if J < 2:
        raise DataError("synthetic_control: need at least 2 donors")
    if not (np.all(np.isfinite(y1)) and np.all(np.isfinite(Y0))):
        raise DataError("synthetic_control: outcomes contain NaN; fill or drop those units first")
    names = list(donor_names) if donor_names is not None else [f"donor_{j}" for j in range(J)]
    opt = np.arange(n_pre) if optimize_periods is None else np.asarray(optimize_periods, dtype=int)
    has_pred = predictors_treated is not None and predictors_donors is not None
    P1 = None if not has_pred else np.asarray(predictors_treated, dtype=float)
    P0 = None if not has_pred else np.asarray(predictors_donors, dtype=float)

    def fit_one(z1, z0, p1, p0, precise=False):
        return synth_fit(z1[opt], z0[opt], p1, p0, precise=precise)

    fit = fit_one(y1, Y0, P1, P0, precise=True)
    w = fit["w"]
    synth = Y0 @ w
    gap = y1 - synth
    pre_rmspe, post_rmspe = _rmspe(gap[:n_pre]), _rmspe(gap[n_pre:])
    ratio = post_rmspe / pre_rmspe if pre_rmspe > 0 else float("inf")
    est = float(gap[n_pre:].mean())
    checks = []
    sd_pre = float(np.std(y1[:n_pre], ddof=1)) if n_pre > 1 else float("nan")
    fit_ratio = pre_rmspe / sd_pre if sd_pre > 0 else float("nan")
    checks.append(Check(
        "pre_period_fit", "pass" if fit_ratio < 0.5 else "warn",
        f"Pre-period RMSPE {pre_rmspe:.4g} is {fit_ratio:.0%} of the treated unit's pre-period SD"
        + ("" if fit_ratio < 0.5 else "; the synthetic unit tracks the treated one poorly, so post-period gaps are hard to attribute."),
        statistic=fit_ratio, threshold=0.5, details={"pre_rmspe": pre_rmspe},
    ))
    if J >= opt.size and fit_ratio < 0.02:
        # As many donor weights as matched periods reproduce almost any path inside the hull: the
        # near-perfect fit is interpolation, and its near-zero RMSPE inflates the treated unit's
        # post/pre ratio, so the placebo rank reads small whatever happened (Abadie 2021, J. Econ.
        # Lit. 59(2), sec. 6: the pre-period should be long relative to the donor pool).
        checks.append(Check(
            "donors_vs_pre_periods", "warn",
            f"{J} donors for {opt.size} matched pre-periods and a near-exact fit (RMSPE {fit_ratio:.1%} of the SD): the "
            "weights interpolate the pre-period, so neither the fit nor the placebo ratio (post / pre RMSPE) says much; "
            "use a longer pre-period or fewer, more similar donors",
            statistic=float(J), threshold=float(opt.size), details={"donors": J, "matched_periods": int(opt.size)},
        ))
    hull = bool(np.all(y1[:n_pre] <= Y0[:n_pre].max(axis=1) + 1e-12) and np.all(y1[:n_pre] >= Y0[:n_pre].min(axis=1) - 1e-12))
    checks.append(Check(
        "convex_hull", "pass" if hull else "warn",
        "The treated unit's pre-period path lies inside the donors' range." if hull
        else "The treated unit leaves the donors' range in the pre-period; no convex combination can match it there.",
    ))
    p_value = float("nan")
    placebo_rows = []
    if placebo:
        ratios = [ratio]
        for j in range(J):
            others = [i for i in range(J) if i != j] + [None]
            z0 = np.column_stack([Y0[:, i] if i is not None else y1 for i in others])
            p1 = P0[:, j] if has_pred else None
            p0 = np.column_stack([P0[:, i] if i is not None else P1 for i in others]) if has_pred else None
            f = fit_one(Y0[:, j], z0, p1, p0)
            g = Y0[:, j] - z0 @ f["w"]
            pr, po = _rmspe(g[:n_pre]), _rmspe(g[n_pre:])
            rj = po / pr if pr > 0 else float("inf")
            ratios.append(rj)
            placebo_rows.append({"unit": names[j], "pre_rmspe": pr, "post_rmspe": po, "ratio": rj, "mean_post_gap": float(g[n_pre:].mean())})
        ratios = np.asarray(ratios)
        # p = share of units (treated included) whose ratio is at least the treated one's.
        p_value = float(np.mean(ratios >= ratio - 1e-12))
        checks.append(Check(
            "placebo_in_space", "pass" if p_value <= alpha else "warn",
            f"Post/pre RMSPE ratio ranks {int(np.sum(ratios >= ratio - 1e-12))} of {len(ratios)}: placebo p = {p_value:.3g}"
            + (" (the smallest attainable is " + f"{1 / len(ratios):.3g})." if p_value > alpha else "."),
            statistic=ratio, p_value=p_value, threshold=alpha,
        ))
    loo_rows = []
    if leave_one_out:
        for j in np.flatnonzero(w > 0.01):
            keep = [i for i in range(J) if i != j]
            f = fit_one(y1, Y0[:, keep], P1, P0[:, keep] if has_pred else None)
            g = y1 - Y0[:, keep] @ f["w"]
            loo_rows.append({"dropped": names[j], "estimate": float(g[n_pre:].mean()), "pre_rmspe": _rmspe(g[:n_pre])})
        if loo_rows:
            ests = [r["estimate"] for r in loo_rows]
            same_sign = all(np.sign(e) == np.sign(est) for e in ests)
            checks.append(Check(
                "leave_one_out", "pass" if same_sign else "warn",
                f"Dropping each weighted donor gives estimates from {min(ests):.4g} to {max(ests):.4g}"
                + ("; the sign never changes." if same_sign else "; the sign depends on a single donor."),
                details={"range": [min(ests), max(ests)]},
            ))
    weights = {names[j]: float(w[j]) for j in np.argsort(-w) if w[j] > 1e-6}
    return Result(
        estimate=est, se=float("nan"), ci=(float("nan"), float("nan")), p_value=p_value,
        method="synthetic_control", n=int(J + 1), unit="absolute", diagnostics=tuple(checks),
        alpha=alpha, metric=metric,
        extra={
            "weights": weights,
            "v": None if fit["v"] is None else [float(x) for x in fit["v"]],
            "gap": [float(x) for x in gap],
            "synthetic": [float(x) for x in synth],
            "pre_rmspe": pre_rmspe,
            "post_rmspe": post_rmspe,
            "rmspe_ratio": ratio,
            "placebos": placebo_rows,
            "leave_one_out": loo_rows,
            "n_pre": int(n_pre),
        },
    )

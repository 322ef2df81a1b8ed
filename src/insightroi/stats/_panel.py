"""Panel regression machinery: fixed-effect demeaning, OLS with absorbed fixed effects, robust vcovs.

The variance machinery behind the difference-in-differences estimators of
:mod:`insightroi.stats._did` (as pyfixest keeps ``internals/vcov_utils`` apart from its models):
alternating-projection demeaning (Gaure 2013), OLS with absorbed fixed effects and the CRV1
cluster-robust covariance with fixest's small-sample correction (Cameron & Miller 2015), and
weighted least squares with the HC2 sandwich (MacKinnon & White 1985).

References
----------
Gaure, S. (2013). OLS with multiple high dimensional category variables. Computational
Statistics & Data Analysis 66, 8-18.
Cameron, A. C. and Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
Journal of Human Resources 50(2), 317-372.
MacKinnon, J. G. and White, H. (1985). Some heteroskedasticity-consistent covariance matrix
estimators with improved finite sample properties. Journal of Econometrics 29(3), 305-325.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from insightroi.errors import DataError
from insightroi.stats._result import Check

__all__ = ["FixedEffectsFit", "cluster_count_check", "cluster_vcov", "group_codes", "ols_fe", "period_positions",
           "treated_cluster_check", "within_demean", "wls_hc2"]

# MacKinnon & Webb (2017, 2018): CRV1 tests over-reject when fewer than about 10 clusters are
# treated, or untreated, whatever the total number of clusters.
FEW_TREATED_CLUSTERS = 10


def group_codes(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes ``0..G-1`` of the labels ``x`` (sorted order) and the number of groups ``G``."""
    _, inv = np.unique(np.asarray(x), return_inverse=True)
    inv = inv.ravel()
    return inv, int(inv.max()) + 1 if inv.size else 0


def within_demean(
    M: np.ndarray,
    fe: list[np.ndarray],
    *,
    weights: np.ndarray | None = None,
    tol: float = 1e-13,
    max_iter: int = 10_000,
) -> np.ndarray:
    """Sweep out one or more sets of fixed effects by alternating projections.

    For a balanced two-way panel one pass is exact; otherwise the projections are repeated
    until the largest change is below ``tol`` (the method of alternating projections, Gaure 2013,
    the algorithm behind R's lfe and fixest).

    Parameters
    ----------
    M : array, shape (n,) or (n, k)
        Columns to demean (not modified).
    fe : list of integer code arrays, each shape (n,)
        Fixed-effect group codes (0..G-1).
    weights : array, shape (n,), optional
    """
    X = np.array(M, dtype=float, copy=True)
    squeeze = X.ndim == 1
    if squeeze:
        X = X[:, None]
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    sizes = [np.bincount(f, weights=w) for f in fe]
    scale = max(float(np.abs(X).max(initial=0.0)), 1.0)
    for _ in range(max_iter):
        delta = 0.0
        for f, sz in zip(fe, sizes):
            G = sz.shape[0]
            # np.bincount per column is the fastest group-sum in plain numpy.
            means = np.empty((G, X.shape[1]))
            for j in range(X.shape[1]):
                means[:, j] = np.bincount(f, weights=X[:, j] * w, minlength=G)
            means /= np.where(sz > 0, sz, 1.0)[:, None]
            step = means[f]
            X -= step
            delta = max(delta, float(np.abs(step).max(initial=0.0)))
        if len(fe) <= 1 or delta <= tol * scale:
            break
    return X[:, 0] if squeeze else X


def cluster_vcov(Xd: np.ndarray, e: np.ndarray, bread: np.ndarray, cl: np.ndarray, G: int) -> np.ndarray:
    """Cluster sandwich ``bread (sum_g s_g s_g') bread`` with scores ``s_g = sum_{i in g} x_i e_i`` (no small-sample factor)."""
    k = Xd.shape[1]
    scores = np.empty((G, k))
    for j in range(k):
        scores[:, j] = np.bincount(cl, weights=Xd[:, j] * e, minlength=G)
    meat = scores.T @ scores
    return bread @ meat @ bread


@dataclass(frozen=True)
class FixedEffectsFit:
    """Coefficients of the non-absorbed regressors, their CRV1 covariance and the fit's counts."""

    beta: np.ndarray
    vcov: np.ndarray
    resid: np.ndarray
    n_clusters: int
    df_t: int  # t / F denominator degrees of freedom: G - 1 (Cameron & Miller 2015)
    n_obs: int


def ols_fe(
    y: np.ndarray,
    X: np.ndarray,
    fes: list[np.ndarray],
    cluster: np.ndarray,
) -> FixedEffectsFit:
    """OLS of ``y`` on ``X`` with absorbed fixed effects and CRV1 cluster-robust errors.

    The fixed effects are swept out by :func:`within_demean`; the covariance is
    :func:`cluster_vcov` times fixest / pyfixest's default small-sample factor
    ``ssc(k_adj=True, k_fixef="nonnested", G_adj=True)``, so the figures equal
    ``pyfixest.feols(..., vcov={"CRV1": cluster})``.

    Parameters
    ----------
    y : array, shape (n,)
    X : array, shape (n, k)
        Regressors besides the fixed effects.
    fes : list of integer code arrays, each shape (n,)
        Fixed-effect group codes (from :func:`group_codes`).
    cluster : array, shape (n,)
        Cluster labels (any sortable type).

    Raises
    ------
    DataError
        When a regressor is collinear with the fixed effects or there are fewer than 2 clusters.
    """
    n = y.shape[0]
    Z = within_demean(np.column_stack([y, X]), fes)
    yd, Xd = Z[:, 0], Z[:, 1:]
    XtX = Xd.T @ Xd
    try:
        bread = np.linalg.inv(XtX)
    except np.linalg.LinAlgError:
        raise DataError("twfe: regressors are collinear with the fixed effects") from None
    beta = bread @ (Xd.T @ yd)
    e = yd - Xd @ beta
    cl, G = group_codes(cluster)
    if G < 2:
        raise DataError("twfe: need at least 2 clusters for cluster-robust errors")
    V = cluster_vcov(Xd, e, bread, cl, G)
    # Small-sample factor as fixest/pyfixest (ssc(k_adj=True, k_fixef="nonnested", G_adj=True)):
    # count fixed effects that are not nested in the clusters, plus one per fully nested set.
    k = X.shape[1]
    n_levels = [int(f.max()) + 1 for f in fes]
    k_fe_adj = sum(n_levels) - (len(fes) - 1) if len(fes) > 1 else sum(n_levels)
    nested, fully = 0, 0
    for f, L in zip(fes, n_levels):
        # nested: every level of this fixed effect sits inside a single cluster
        first = np.full(L, -1)
        first[f] = cl
        if np.all(first[f] == cl):
            nested += L
            fully += 1
    df_k = k + k_fe_adj - nested + fully
    adj = (n - 1) / (n - df_k) * G / (G - 1)
    V = V * adj
    return FixedEffectsFit(beta=beta, vcov=V, resid=e, n_clusters=G, df_t=G - 1, n_obs=n)


def cluster_count_check(G: int) -> Check:
    """``warn`` below 30 clusters, where cluster-robust errors are unreliable (Cameron & Miller 2015)."""
    status = "warn" if G < 30 else "pass"
    return Check(
        name="cluster_count",
        status=status,
        message=(
            f"{G} clusters; " + ("cluster-robust errors are unreliable below ~30 clusters (Cameron & Miller 2015), read the interval as approximate." if status == "warn" else "enough for cluster-robust errors.")
        ),
        statistic=float(G),
        threshold=30.0,
    )


def wls_hc2(y: np.ndarray, Z: np.ndarray, w: np.ndarray, *, who: str = "wls") -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of ``y`` on ``Z`` with weights ``w`` and the HC2 sandwich covariance.

    HC2 scales each residual by ``1 / sqrt(1 - h_i)`` with ``h_i`` the weighted leverage
    (MacKinnon & White 1985); with very unequal weights (a big unit is a high-leverage point)
    HC1 under-covers.

    Returns
    -------
    beta : ndarray, shape (k,)
    vcov : ndarray, shape (k, k)

    Raises
    ------
    DataError
        When the columns of ``Z`` are collinear (the message starts with ``who``).
    """
    XtWX = Z.T @ (Z * w[:, None])
    try:
        B = np.linalg.inv(XtWX)
    except np.linalg.LinAlgError:
        raise DataError(f"{who}: covariates are collinear") from None
    beta = B @ (Z.T @ (w * y))
    e = y - Z @ beta
    h = w * np.einsum("ij,jk,ik->i", Z, B, Z)
    S = Z * (w * e / np.sqrt(np.clip(1.0 - h, 1e-12, None)))[:, None]
    return beta, B @ (S.T @ S) @ B


def treated_cluster_check(n_treated: int, n_control: int, *, inference: str = "cluster") -> Check:
    """``warn`` when fewer than 10 clusters are treated or fewer than 10 are untreated.

    Cluster-robust (CRV1) tests then over-reject however many clusters there are in total: the
    variance of the estimate comes from the few treated clusters' residuals, which the sandwich
    underestimates (MacKinnon & Webb 2017; with one treated cluster out of 30 a 5% test rejects
    a true null about two times in three). ``inference`` says what the caller did about it
    (``"wild"``: the p-value and interval come from a wild cluster bootstrap).

    References
    ----------
    MacKinnon, J. G. and Webb, M. D. (2017). Wild bootstrap inference for wildly different
    cluster sizes. Journal of Applied Econometrics 32(2), 233-254.
    MacKinnon, J. G. and Webb, M. D. (2018). The wild bootstrap for few (treated) clusters.
    The Econometrics Journal 21(2), 114-135.
    """
    few = min(n_treated, n_control)
    counts = f"{n_treated} treated and {n_control} untreated clusters"
    if few >= FEW_TREATED_CLUSTERS:
        return Check("treated_clusters", "pass", f"{counts}; enough on both sides for cluster-robust errors.",
                     statistic=float(few), threshold=float(FEW_TREATED_CLUSTERS),
                     details={"n_treated_clusters": n_treated, "n_control_clusters": n_control})
    side = "treated" if n_treated <= n_control else "untreated"
    msg = (f"{counts}: with fewer than {FEW_TREATED_CLUSTERS} {side} clusters cluster-robust (CRV1) errors are "
           "far too small (MacKinnon & Webb 2017). ")
    if inference == "wild":
        msg += ("The p-value and interval come from a restricted wild cluster bootstrap instead "
                "(Roodman et al. 2019). ")
        if few <= 2:
            msg += ("With so few " + side + " clusters even the bootstrap test is conservative and its interval wide; "
                    "a randomization-inference or synthetic-control analysis is the alternative.")
    else:
        msg += 'Use twfe(..., inference="wild") (a wild cluster bootstrap) or randomization inference.'
    return Check("treated_clusters", "warn", msg.strip(), statistic=float(few), threshold=float(FEW_TREATED_CLUSTERS),
                 details={"n_treated_clusters": n_treated, "n_control_clusters": n_control, "inference": inference})


def _is_time_like(x: object) -> bool:
    return isinstance(x, (_dt.date, _dt.datetime, np.datetime64))


def _is_missing(x: object) -> bool:
    # None, NaN and NaT (x != x); pandas' NA refuses to be a bool, which also marks it missing.
    if x is None:
        return True
    try:
        return bool(x != x)
    except TypeError:
        return True


def period_positions(
    values: np.ndarray,
    period_order: Sequence | None = None,
    *,
    who: str,
    name: str = "time",
    levels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Map period labels to their positions in time, refusing labels whose order would be guessed.

    Numbers and dates (``datetime64``, ``datetime.date``/``datetime``, pandas Timestamps) are
    ordered by value. Anything else (strings such as ``"Q42010"``) has no order that can be
    trusted: sorted as text, ``"Q12011"`` comes before ``"Q42010"``, and a difference in
    differences whose "after" is read that way is silently wrong. Such labels need
    ``period_order``, the labels listed earliest first.

    Parameters
    ----------
    values : array, shape (n,)
        Period labels; NaN / None / NaT entries map to NaN (e.g. "never treated").
    period_order : sequence, optional
        Every label, earliest first. Required for labels that are neither numbers nor dates.
    who, name : str
        The calling function and the argument's name, for the error message.
    levels : array, optional
        The sorted levels of another argument to place ``values`` on (e.g. first-treated
        periods on the scale of the observed periods); a value between two levels takes the
        position of the next one (the first period at or after it).

    Returns
    -------
    positions : ndarray of float, shape (n,)
        ``0..L-1`` (NaN where missing).
    levels : ndarray
        The ordered levels (``period_order`` when given).

    Raises
    ------
    DataError
        Labels that are neither numbers nor dates without ``period_order``; labels missing from
        ``period_order``; a ``period_order`` with repeated labels.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.ravel()
    if period_order is not None:
        order = list(period_order)
        pos = {}
        for i, lab in enumerate(order):
            if lab in pos:
                raise DataError(f"{who}: period_order lists {lab!r} twice; list each period once, earliest first")
            pos[lab] = i
        out = np.full(arr.shape[0], np.nan)
        unknown = []
        for i, v in enumerate(arr.tolist()):
            if _is_missing(v):
                continue
            j = pos.get(v)
            if j is None:
                unknown.append(v)
            else:
                out[i] = j
        if unknown:
            seen = list(dict.fromkeys(unknown))
            raise DataError(f"{who}: {name} has labels that are not in period_order: {seen[:5]!r}"
                            + (f" and {len(seen) - 5} more" if len(seen) > 5 else "")
                            + "; period_order must list every period, earliest first")
        return out, np.asarray(order, dtype=object)
    kind = arr.dtype.kind
    if kind in "biuf" or kind == "M":
        if kind == "M":
            missing = np.isnat(arr)
        else:
            arr = arr.astype(float)
            missing = ~np.isfinite(arr)
    elif kind == "O":
        vals = arr.tolist()
        miss = [_is_missing(v) for v in vals]
        present = [v for v, m in zip(vals, miss) if not m]
        if present and all(_is_time_like(v) for v in present):
            # datetime.date and pandas Timestamps (subclasses of datetime) compare by value.
            arr = np.array([np.datetime64("NaT", "ns") if m else np.datetime64(v, "ns") for v, m in zip(vals, miss)])
            missing = np.isnat(arr)
        elif present and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in present):
            arr = np.array([np.nan if m else float(v) for v, m in zip(vals, miss)])
            missing = ~np.isfinite(arr)
        else:
            _raise_unordered(who, name, present)
    else:
        _raise_unordered(who, name, arr.tolist())
    if levels is None:
        levels = np.unique(arr[~missing])
    elif (np.asarray(levels).dtype.kind == "M") != (arr.dtype.kind == "M"):
        raise DataError(f"{who}: {name} and the periods must both be dates or both be numbers")
    out = np.full(arr.shape[0], np.nan)
    out[~missing] = np.searchsorted(levels, arr[~missing], side="left")
    return out, levels


def _raise_unordered(who: str, name: str, present: list) -> None:
    example = next((v for v in present if v is not None), None)
    raise DataError(
        f"{who}: {name} holds labels such as {example!r} that are neither numbers nor dates, so their time "
        f"order cannot be known (sorted as text, 'Q12011' comes before 'Q42010'). Pass period_order=[...] "
        "listing every period earliest first, or convert the periods to dates or integers."
    )

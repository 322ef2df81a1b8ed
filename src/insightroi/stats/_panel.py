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

from dataclasses import dataclass

import numpy as np

from insightroi.errors import DataError
from insightroi.stats._result import Check

__all__ = ["FixedEffectsFit", "cluster_count_check", "cluster_vcov", "group_codes", "ols_fe", "within_demean",
           "wls_hc2"]


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

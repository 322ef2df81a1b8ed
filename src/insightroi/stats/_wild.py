"""Wild cluster bootstrap (restricted, WCR) for one coefficient of a regression with absorbed fixed effects.

Cluster-robust (CRV1) t-tests over-reject badly when few clusters are treated (or untreated):
with one treated cluster out of 30 a nominal 5% test rejects a true null about two times in
three (MacKinnon & Webb 2017; 68% in tests/stats/test_stats_wild_bootstrap.py). The restricted
wild cluster bootstrap (WCR) imposes the null on the bootstrap data-generating process and flips
the sign of whole clusters' restricted residuals; it is the usual remedy (Cameron, Gelbach &
Miller 2008; Roodman, MacKinnon, Nielsen & Webb 2019). With one or two treated clusters it errs
the other way (it rarely rejects, MacKinnon & Webb 2017), which is safer but not informative.

The computation follows Roodman et al. (2019, "Fast and wild"): every bootstrap t-statistic is a
function of G-vectors and one G x G matrix, so no bootstrap sample is ever re-estimated. The
fixed effects are handled exactly (as if they were dummy regressors, which is what pyfixest's
``Feols.wildboottest`` and Stata's ``boottest`` do), not partialled out once before bootstrapping,
which is only exact when every fixed effect is nested in the clusters.

Because the restricted residuals are linear in the null value ``beta0``, the bootstrap statistics
at any ``beta0`` come from three precomputed quadratic forms per draw, so the confidence interval
is found by inverting the test (Roodman et al. 2019, sec. 3.5) at the cost of a few vector
operations per trial value.

References
----------
Cameron, A. C., Gelbach, J. B. and Miller, D. L. (2008). Bootstrap-based improvements for
inference with clustered errors. Review of Economics and Statistics 90(3), 414-427.
MacKinnon, J. G. and Webb, M. D. (2017). Wild bootstrap inference for wildly different cluster
sizes. Journal of Applied Econometrics 32(2), 233-254.
Webb, M. D. (2023). Reworking wild bootstrap-based inference for clustered errors. Canadian
Journal of Economics 56(3), 839-858.
Roodman, D., MacKinnon, J. G., Nielsen, M. O. and Webb, M. D. (2019). Fast and wild: bootstrap
inference in Stata using boottest. The Stata Journal 19(1), 4-60.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from insightroi.errors import DataError, check_option
from insightroi.stats._panel import group_codes, within_demean

__all__ = ["WildBootstrap", "wild_cluster_bootstrap"]

Weights = Literal["auto", "rademacher", "webb"]

# Below this many clusters Rademacher weights give at most 2^G distinct bootstrap samples, too few
# for a smooth p-value; Webb's six-point distribution has 6^G (Webb 2023; Roodman et al. 2019).
WEBB_BELOW = 12
_WEBB_POINTS = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
# Columns demeaned at once when building the G x G matrix: bounds memory at n x 2 x _CHUNK floats.
_CHUNK = 64


@dataclass(frozen=True)
class WildBootstrap:
    """What a wild cluster bootstrap test found.

    Attributes
    ----------
    p_value : float
        Share of bootstrap |t*| strictly above |t| (symmetric two-sided test of ``beta0``).
    ci : tuple of float
        ``1 - alpha`` interval by test inversion; an end is infinite when the test never rejects
        on that side (possible with one treated cluster).
    t_stat : float
        The CRV1 t-statistic of the original sample with the factor ``(n-1)/(n-k) G/(G-1)``, ``k``
        counting every fixed-effect level as wildboottest and boottest do (fixest does not count
        levels nested in the clusters, so its t differs by a constant factor; the p-value does not
        depend on it).
    n_boot : int
        Bootstrap draws used (``2^G`` under full enumeration).
    weights : {"rademacher", "webb"}
    full_enumeration : bool
        True when every one of the ``2^G`` Rademacher sign vectors was used (the p-value is then
        exact, not a Monte Carlo estimate).
    n_clusters : int
    mc_se : float
        Monte Carlo standard error of the p-value, ``sqrt(p (1 - p) / n_boot)`` (0 under full
        enumeration).
    """

    p_value: float
    ci: tuple[float, float]
    t_stat: float
    n_boot: int
    weights: str
    full_enumeration: bool
    n_clusters: int
    mc_se: float

    def to_dict(self) -> dict:
        """Plain form for a Result's ``extra``."""
        return {
            "p_value": self.p_value, "ci": [self.ci[0], self.ci[1]], "t_stat": self.t_stat, "n_boot": self.n_boot,
            "weights": self.weights, "full_enumeration": self.full_enumeration, "n_clusters": self.n_clusters,
            "mc_se": self.mc_se, "bootstrap": "WCR (restricted, null imposed), CRV1 t-statistic",
        }


def _draw_weights(G: int, n_boot: int, weights: str, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    if weights == "rademacher" and 2**G <= n_boot:
        # Every sign pattern once: an exact p-value instead of a noisy estimate of it.
        V = np.array(list(itertools.product((1.0, -1.0), repeat=G))).T
        return V, True
    if weights == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(G, n_boot)), False
    return rng.choice(_WEBB_POINTS, size=(G, n_boot)), False


def wild_cluster_bootstrap(
    y: np.ndarray,
    X: np.ndarray,
    fes: list[np.ndarray],
    cluster: np.ndarray,
    *,
    coef: int = 0,
    beta0: float = 0.0,
    alpha: float = 0.05,
    n_boot: int = 9999,
    weights: Weights = "auto",
    seed: int | np.random.Generator = 0,
    ci: bool = True,
) -> WildBootstrap:
    """Restricted wild cluster bootstrap (WCR) test and interval for one regression coefficient.

    The model is ``y = X b + fixed effects + e`` with errors correlated within clusters. The test
    of ``b[coef] = beta0`` uses the CRV1 t-statistic; its null distribution is simulated by
    ``y* = X b~ + FE~ + v_g u~`` where ``b~, FE~, u~`` are the estimates and residuals with the
    null imposed and ``v_g`` is one weight per cluster (Cameron, Gelbach & Miller 2008;
    Roodman et al. 2019). The p-value is the share of ``|t*|`` above ``|t|``; the interval is the
    set of ``beta0`` not rejected at ``alpha``, found by bisection on the same draws.

    Parameters
    ----------
    y : array, shape (n,)
    X : array, shape (n, k)
        Regressors besides the fixed effects.
    fes : list of integer code arrays, each shape (n,)
        Fixed-effect group codes (``0..L-1``); they are handled exactly, nested in the clusters
        or not.
    cluster : array, shape (n,)
        Cluster labels; also the bootstrap clusters.
    coef : int
        Column of ``X`` tested.
    beta0 : float
        Null value.
    alpha : float
        Level of the interval.
    n_boot : int
        Bootstrap draws. With Rademacher weights and ``2^G <= n_boot`` all ``2^G`` sign vectors
        are enumerated instead (an exact p-value).
    weights : {"auto", "rademacher", "webb"}
        ``"auto"``: Webb's six-point weights below 12 clusters, Rademacher otherwise.
    seed : int or numpy Generator
        Fixed by default so a result is reproducible.
    ci : bool
        Also invert the test for an interval.

    Returns
    -------
    WildBootstrap

    Raises
    ------
    DataError
        Fewer than 2 clusters, or the tested regressor is collinear with the others and the
        fixed effects.

    References
    ----------
    Roodman, D., MacKinnon, J. G., Nielsen, M. O. and Webb, M. D. (2019). Fast and wild:
    bootstrap inference in Stata using boottest. The Stata Journal 19(1), 4-60.
    MacKinnon, J. G. and Webb, M. D. (2017). Wild bootstrap inference for wildly different
    cluster sizes. Journal of Applied Econometrics 32(2), 233-254.
    """
    check_option("weights", weights, ("auto", "rademacher", "webb"))
    if int(n_boot) < 99:
        raise DataError(f"wild_cluster_bootstrap: n_boot must be at least 99; got {n_boot}")
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float).reshape(y.shape[0], -1)
    cl, G = group_codes(cluster)
    if G < 2:
        raise DataError("wild_cluster_bootstrap: need at least 2 clusters")
    w_type = ("webb" if G < WEBB_BELOW else "rademacher") if weights == "auto" else weights
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def demean(M: np.ndarray) -> np.ndarray:
        return within_demean(M, fes) if fes else M - M.mean(axis=0)  # no fixed effect: an intercept

    Z = demean(np.column_stack([y, X]))
    yd, Xd = Z[:, 0], Z[:, 1:]
    others = [j for j in range(Xd.shape[1]) if j != coef]
    X2 = Xd[:, others]
    # a: the tested regressor net of the fixed effects and the other regressors (FWL), so that
    # b[coef] = a'y / a'a and its CRV1 score in cluster g is a_g' e_g.
    if X2.shape[1]:
        a = Xd[:, coef] - X2 @ np.linalg.lstsq(X2, Xd[:, coef], rcond=None)[0]
        u_r = yd - X2 @ np.linalg.lstsq(X2, yd, rcond=None)[0]
    else:
        a, u_r = Xd[:, coef].copy(), yd.copy()
    aa = float(a @ a)
    if not aa > 1e-12 * max(float(Xd[:, coef] @ Xd[:, coef]), 1e-300):
        raise DataError("wild_cluster_bootstrap: the tested regressor is collinear with the fixed effects and other regressors")
    b1 = float(a @ u_r) / aa  # equals a'y/a'a: a is orthogonal to X2 and the fixed effects
    e = u_r - b1 * a  # full-model residuals
    score = np.bincount(cl, weights=a * e, minlength=G)
    se_raw = math.sqrt(float(score @ score)) / aa

    # H_u[g, h] = a_g' (M u~^(h))_g and H_a likewise for a, with M the full model's residual maker
    # and w^(h) the vector w zeroed outside cluster h: the bootstrap scores are H v (Roodman et al.
    # 2019, eq. 23 with the fixed effects as regressors).
    XtX_inv = np.linalg.pinv(Xd.T @ Xd)
    H_u = np.empty((G, G))
    H_a = np.empty((G, G))
    for start in range(0, G, _CHUNK):
        hs = np.arange(start, min(start + _CHUNK, G))
        mask = (cl[:, None] == hs[None, :]).astype(float)
        W = np.column_stack([u_r[:, None] * mask, a[:, None] * mask])
        W = demean(W)
        W -= Xd @ (XtX_inv @ (Xd.T @ W))
        m = len(hs)
        for j in range(m):
            H_u[:, hs[j]] = np.bincount(cl, weights=a * W[:, j], minlength=G)
            H_a[:, hs[j]] = np.bincount(cl, weights=a * W[:, m + j], minlength=G)
    c_u = np.bincount(cl, weights=a * u_r, minlength=G)
    c_a = np.bincount(cl, weights=a * a, minlength=G)

    V, full = _draw_weights(G, int(n_boot), w_type, rng)
    B = V.shape[1]
    N_u, N_a = c_u @ V, c_a @ V
    S_uu, S_ua, S_aa = np.empty(B), np.empty(B), np.empty(B)
    step = max(1, 4_000_000 // max(G, 1))  # bounds the G x chunk temporaries
    for s in range(0, B, step):
        Vs = V[:, s:s + step]
        Zu, Za = H_u @ Vs, H_a @ Vs
        S_uu[s:s + step] = np.einsum("gb,gb->b", Zu, Zu)
        S_ua[s:s + step] = np.einsum("gb,gb->b", Zu, Za)
        S_aa[s:s + step] = np.einsum("gb,gb->b", Za, Za)

    def pval(b0: float) -> float:
        # Restricted residuals at b0 are u~ - (b0 - beta0_base) a with beta0_base = 0 here.
        num = N_u - b0 * N_a
        den = np.sqrt(np.maximum(S_uu - 2 * b0 * S_ua + b0 * b0 * S_aa, 1e-300))
        t_obs = (b1 - b0) / se_raw
        return float(np.mean(np.abs(num / den) > abs(t_obs)))

    p = pval(beta0)
    lo_hi = (math.nan, math.nan)
    if ci:
        lo_hi = (_invert(pval, b1, se_raw, -1.0, alpha), _invert(pval, b1, se_raw, +1.0, alpha))
    n, k = Xd.shape
    k_total = k + sum(int(f.max()) + 1 for f in fes) - max(len(fes) - 1, 0) if fes else k + 1
    ssc = (n - 1) / max(n - k_total, 1) * G / (G - 1)
    t_stat = (b1 - beta0) / (se_raw * math.sqrt(ssc))
    mc_se = 0.0 if full else math.sqrt(p * (1 - p) / B)
    return WildBootstrap(p_value=p, ci=lo_hi, t_stat=float(t_stat), n_boot=int(B), weights=w_type,
                         full_enumeration=full, n_clusters=int(G), mc_se=float(mc_se))


def _invert(pval, b1: float, scale: float, direction: float, alpha: float) -> float:
    """The ``beta0`` on one side of ``b1`` where the bootstrap p-value falls to ``alpha``.

    The bootstrap p-value is a step function of ``beta0`` that is 1 at the estimate; step out
    in doubling multiples of the CRV1 standard error until it rejects, then bisect.
    """
    inside = b1
    k = 1.0
    while True:
        trial = b1 + direction * k * scale
        if pval(trial) <= alpha:
            outside = trial
            break
        inside = trial
        k *= 2.0
        if k > 2.0**30:
            return direction * math.inf
    for _ in range(200):
        mid = 0.5 * (inside + outside)
        if pval(mid) <= alpha:
            outside = mid
        else:
            inside = mid
        if abs(outside - inside) <= 1e-10 * max(abs(b1), scale):
            break
    return float(0.5 * (inside + outside))

"""Drift statistics between a reference and a current window: pure numpy/scipy over arrays and counts.

Binning and empty bins
----------------------
* Categorical PSI / chi-square use one bin per category seen in either window (the union), so a
  category that appears only in the current window (a new theme, a new locale) counts fully.
* Numeric PSI uses ``n_bins`` bins on the *reference* quantiles (edges ``q_0 .. q_n`` with the outer
  edges opened to -inf/+inf and tied edges merged), so under no drift every bin holds ~1/n of both
  windows and the statistic is comparable across features (Yurdakul 2018, "Statistical properties
  of population stability index").
* PSI needs ``log(p/q)`` for every bin; a share of exactly zero is replaced by ``eps`` (default
  ``1e-4``, the value Evidently uses when no non-empty share is below 1e-4). Counts are never
  altered, only the shares inside the log and the difference.

p-values at monitoring sizes are almost always tiny, so statuses are set on PSI (an effect size),
not on p-values; the p-values are reported as evidence. Counting categories and tokens, and the
statuses, live in :mod:`insightroi.monitor`.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy.stats import distributions

__all__ = [
    "PSI_EPS",
    "psi_terms",
    "psi_from_counts",
    "psi_numeric",
    "quantile_edges",
    "chi_square_counts",
    "ks_two_sample",
    "js_distance",
    "centroid_distance",
    "unseen_category_pvalue",
]

PSI_EPS = 1e-4
# Effective sample size n m / (n + m) above which the KS p-value uses Kolmogorov's limit.
KS_LIMIT_N = 50_000


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / np.where(total > 0, total, 1.0), 0.0)


def psi_terms(reference_counts, current_counts, *, eps: float = PSI_EPS) -> np.ndarray:
    """Each bin's term ``(c_b - r_b) ln(c_b / r_b)`` of the population stability index.

    The terms are non-negative and sum to :func:`psi_from_counts`; the largest one names the bin
    (category) that moved the index most, a new category (large log ratio) ranking above a shift.

    Parameters
    ----------
    reference_counts, current_counts : array_like
        Counts per bin, same bins in the same order, shape ``(..., n_bins)``.
    eps : float
        Share used in place of an empty bin's zero share (default 1e-4).

    Returns
    -------
    ndarray
        Shape of the inputs.
    """
    r = _shares(reference_counts)
    c = _shares(current_counts)
    r = np.where(r == 0, eps, r)
    c = np.where(c == 0, eps, c)
    return (c - r) * np.log(c / r)


def psi_from_counts(reference_counts, current_counts, *, eps: float = PSI_EPS) -> float | np.ndarray:
    """Population stability index from bin counts of two windows.

    ``PSI = sum_b (c_b - r_b) * ln(c_b / r_b)`` with ``r_b, c_b`` the bin shares, zero shares
    replaced by ``eps`` (Siddiqi 2006, *Credit Risk Scorecards*, ch. 8; Yurdakul 2018).

    Parameters
    ----------
    reference_counts, current_counts : array_like
        Counts per bin, same bins in the same order. A leading batch dimension is allowed
        (shape ``(..., n_bins)``), which is how the vectorised simulations call it.
    eps : float
        Share used in place of an empty bin's zero share (default 1e-4).

    Returns
    -------
    float or ndarray
        0 for identical distributions; 0.1 is commonly read as "watch", 0.25 as "act"
        (``MonitoringThresholds.psi_warn`` / ``psi_alert``).
    """
    out = np.sum(psi_terms(reference_counts, current_counts, eps=eps), axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def quantile_edges(reference, n_bins: int = 10) -> np.ndarray:
    """Bin edges at the reference quantiles ``0, 1/n, ..., 1`` with open outer ends.

    Tied quantiles (heavy point masses) are merged, so fewer than ``n_bins`` bins may result.
    The outer edges are -inf and +inf so every current value falls in a bin.

    Parameters
    ----------
    reference : array_like
        Values of the reference window; non-finite values are dropped.
    n_bins : int
        Number of quantile bins before merging ties (default 10, deciles).

    Returns
    -------
    ndarray
        Increasing edges, ``-inf`` first and ``+inf`` last.
    """
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]
    if ref.size == 0:
        raise ValueError("reference has no finite values to bin")
    inner = np.quantile(ref, np.linspace(0, 1, n_bins + 1)[1:-1])
    inner = np.unique(inner)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _bin_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Right-closed bins (a, b] on the inner edges: searchsorted(side="left") puts a value equal to
    # an edge in the bin that edge closes, matching np.quantile's interpretation of q_k.
    x = x[np.isfinite(x)]
    idx = np.searchsorted(edges[1:-1], x, side="left")
    return np.bincount(idx, minlength=len(edges) - 1).astype(float)


def psi_numeric(reference, current, *, n_bins: int = 10, edges=None, eps: float = PSI_EPS) -> float:
    """PSI of a numeric feature on reference-quantile bins (or on the ``edges`` given).

    Parameters
    ----------
    reference, current : array_like
        Values of the two windows; non-finite values are dropped.
    n_bins : int
        Number of reference-quantile bins (default 10, deciles).
    edges : array_like, optional
        Explicit bin edges (increasing); values outside them are dropped. Use this to reproduce
        another tool's binning (e.g. Evidently's Sturges bins on the pooled data).
    eps : float
        See :func:`psi_from_counts`.

    Returns
    -------
    float
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if edges is None:
        e = quantile_edges(ref, n_bins)
        return psi_from_counts(_bin_counts(ref, e), _bin_counts(cur, e), eps=eps)
    e = np.asarray(edges, dtype=float)
    return psi_from_counts(np.histogram(ref, e)[0], np.histogram(cur, e)[0], eps=eps)


def chi_square_counts(reference_counts, current_counts) -> tuple[float, float, int]:
    """Pearson chi-square test of homogeneity on the 2 x K table (window x category).

    Categories empty in both windows are dropped. No continuity correction (it only applies to
    2 x 2 tables and is negligible at monitoring sizes). Equal to
    ``scipy.stats.chi2_contingency(table, correction=False)``.

    Parameters
    ----------
    reference_counts, current_counts : array_like
        Counts per category, same categories in the same order.

    Returns
    -------
    (statistic, p_value, dof)
        ``(0.0, 1.0, 0)`` when fewer than two categories have data or a window is empty.
    """
    table = np.vstack([np.asarray(reference_counts, float), np.asarray(current_counts, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return 0.0, 1.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return stat, float(special.chdtrc(dof, stat)), dof


def ks_two_sample(reference, current, *, assume_sorted: bool = False) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and its asymptotic two-sided p-value.

    ``D = sup_x |F_ref(x) - F_cur(x)|``; the p-value is Smirnov's limiting distribution as
    scipy computes it for ``ks_2samp(..., method="asymp")``: ``kstwo.sf(D, round(n m / (n + m)))``
    (Smirnov 1939; Hodges 1958). Equal to scipy's statistic exactly and to its asymp p-value up
    to an effective size of :data:`KS_LIMIT_N`; above it Kolmogorov's limit
    ``kstwobign.sf(D sqrt(n m / (n + m)))``, within 0.6% of scipy's (relative).

    Parameters
    ----------
    reference, current : array_like
        Samples; non-finite values are dropped.
    assume_sorted : bool
        Skip the sort when both inputs are already sorted (the benchmark reuses sorted columns).

    Returns
    -------
    (statistic, p_value)
        NaN for both when a sample is empty.
    """
    a = np.asarray(reference, dtype=float)
    b = np.asarray(current, dtype=float)
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    if not assume_sorted:
        a = np.sort(a)
        b = np.sort(b)
    n, m = a.size, b.size
    if n == 0 or m == 0:
        return float("nan"), float("nan")
    # The ECDFs' largest gap is reached at an observed value; right of a value both ECDFs are
    # read at the last copy of it in its own sample (index + 1) and by one search in the other.
    # Searching each sample's values in the other sample only (2 x N lookups, not 4 x N over
    # the pooled values) is what makes this ~5x faster than scipy's ks_2samp on 1M values.
    last_a = np.flatnonzero(np.r_[a[1:] != a[:-1], True])
    last_b = np.flatnonzero(np.r_[b[1:] != b[:-1], True])
    d_a = np.abs((last_a + 1) / n - np.searchsorted(b, a[last_a], side="right") / m).max()
    d_b = np.abs(np.searchsorted(a, b[last_b], side="right") / n - (last_b + 1) / m).max()
    d = float(max(d_a, d_b))
    big, small = max(n, m), min(n, m)
    en = big * small / (big + small)
    if en > KS_LIMIT_N:
        # Beyond ~50k effective observations scipy's kstwo.sf takes ~0.2 s per call (more than
        # the statistic); Kolmogorov's limit is then within 0.6% of it (relative, for p down to
        # 1e-14; tested), far inside the approximation error of the asymptotic p-value itself.
        p = float(np.clip(distributions.kstwobign.sf(d * np.sqrt(en)), 0, 1))
    else:
        p = float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p


def js_distance(p_counts, q_counts, *, base: float = 2.0) -> float | np.ndarray:
    """Jensen-Shannon distance (square root of the divergence) between two count vectors.

    Lin 1991, "Divergence measures based on the Shannon entropy". With ``base=2`` it lies in
    [0, 1]. Equal to ``scipy.spatial.distance.jensenshannon(p, q, base)``. Batch dimension allowed.

    Parameters
    ----------
    p_counts, q_counts : array_like
        Counts over the same categories, shape ``(..., K)``.
    base : float
        Base of the logarithm (default 2).

    Returns
    -------
    float or ndarray
    """
    p = _shares(p_counts)
    q = _shares(q_counts)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.where(m > 0, m, 1)), 0.0)
        right = np.where(q > 0, q * np.log(np.where(q > 0, q, 1) / np.where(m > 0, m, 1)), 0.0)
    js = (left.sum(axis=-1) + right.sum(axis=-1)) / 2.0 / np.log(base)
    out = np.sqrt(np.maximum(js, 0.0))
    return float(out) if np.ndim(out) == 0 else out


def centroid_distance(reference_embeddings, current_embeddings) -> float:
    """Cosine distance between the mean embedding of each window (0 = same direction).

    Parameters
    ----------
    reference_embeddings, current_embeddings : array_like
        Arrays of shape ``(n, d)`` (sentence embeddings are optional in insightroi).

    Returns
    -------
    float
        NaN when either mean embedding is the zero vector.
    """
    a = np.asarray(reference_embeddings, dtype=float).mean(axis=0)
    b = np.asarray(current_embeddings, dtype=float).mean(axis=0)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(1.0 - a @ b / (na * nb))


def unseen_category_pvalue(count: float, n_current: float, n_reference: float) -> float:
    """How surprising ``count`` rows of a category never seen in ``n_reference`` reference rows are.

    A category absent from ``n_reference`` rows has a rate below ``3 / n_reference`` with 95%
    confidence (the "rule of three", Hanley & Lippman-Hand 1983, JAMA 249); the p-value is the
    Poisson probability of at least ``count`` among ``n_current`` rows at that rate, conservative
    since the true rate is most likely lower.

    Parameters
    ----------
    count : float
        Rows of the new category in the current window.
    n_current, n_reference : float
        Rows in the current and the reference window (``n_reference > 0``).

    Returns
    -------
    float
        ``P(X >= count)`` for ``X ~ Poisson(3 n_current / n_reference)``.
    """
    return float(distributions.poisson.sf(count - 1, n_current * 3.0 / n_reference))

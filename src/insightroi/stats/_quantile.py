"""Quantiles of clustered rows (median resolution time): the delta method's outer interval.

A quantile KPI pools the *rows* of each arm's units (cases, tickets) while the arms are
randomized by *unit*: rows of one unit are correlated, so the iid order-statistic interval is too
narrow. Deng, Knoblich & Lu (2018, sec. 4.3) bracket the quantile by order statistics whose ranks
come from the variance of the indicator mean ``I(y <= q-hat)``, itself a ratio over clusters
(indicator sum over row count per unit) whose variance is the ratio delta method at the
randomization unit. The bracket ``[Y_(r), Y_(s)]`` is their "outer" confidence interval; its
width over ``2 z`` is the quantile's standard error, from which the difference (and relative
difference) of two independent arms gets a Wald interval.

References
----------
Deng, A., Knoblich, U., Lu, J. (2018). Applying the delta method in metric analytics: a
practical guide with novel ideas. KDD, sec. 4.3 (quantile metrics) and sec. 3.3 (ratio metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from insightroi.errors import DataError, check_option
from insightroi.stats._result import TOO_FEW_UNITS, ZERO_CONTROL_MEAN, Result

__all__ = ["QUANTILE_METHODS", "ClusteredQuantile", "clustered_quantile", "quantile_effect"]

#: numpy.quantile's estimation methods (Hyndman & Fan 1996), accepted as ``method``.
QUANTILE_METHODS = ("inverted_cdf", "averaged_inverted_cdf", "closest_observation", "interpolated_inverted_cdf",
                    "hazen", "weibull", "linear", "median_unbiased", "normal_unbiased", "lower", "higher",
                    "midpoint", "nearest")


@dataclass(frozen=True)
class ClusteredQuantile:
    """One sample's quantile with its clustered delta-method uncertainty.

    Attributes
    ----------
    q : float
        The quantile level.
    estimate : float
        ``numpy.quantile(values, q, method=method)``.
    se : float
        ``(upper - lower) / (2 z)``: the outer interval's width in standard errors.
    ci : (float, float)
        The outer interval: the order statistics ``Y_(r)``, ``Y_(s)`` with
        ``r = floor(N (q - z sigma))`` and ``s = ceil(N (q + z sigma))`` (1-based, clipped to
        ``1..N``).
    indicator_se : float
        ``sigma``: the standard error of the fraction of rows at or below the estimate, by the
        ratio delta method over clusters.
    n_rows, n_clusters : int
    """

    q: float
    estimate: float
    se: float
    ci: tuple[float, float]
    indicator_se: float
    n_rows: int
    n_clusters: int


def _check_q(q: float) -> float:
    q = float(q)
    if not 0.0 < q < 1.0:
        raise ValueError(f"The 'q' parameter must be strictly between 0 and 1. Got {q!r} instead.")
    return q


def clustered_quantile(values, clusters, *, q: float = 0.5, alpha: float = 0.05,
                       method: str = "linear", label: str = "sample") -> ClusteredQuantile:
    """The ``q``-quantile of rows clustered in units, with the outer delta-method interval.

    Parameters
    ----------
    values : array-like of float
        One value per row (finite).
    clusters : array-like
        The randomization unit of each row (any hashable labels).
    q : float
        Quantile level, ``0 < q < 1``.
    alpha : float
        Two-sided level of the order-statistic bracket (``z = Phi^-1(1 - alpha / 2)``).
    method : str
        numpy.quantile's method (:data:`QUANTILE_METHODS`) for the point estimate.
    label : str
        The sample's name in error messages (``"control"``).

    Returns
    -------
    ClusteredQuantile

    Raises
    ------
    DataError
        When the rows come from fewer than two clusters (no variance between units), or a value
        is not finite.

    Notes
    -----
    ``sigma^2 = K / (K - 1) sum_i (S_i - p-hat N_i)^2 / (sum_i N_i)^2`` with ``S_i`` the unit's
    rows at or below the estimate, ``N_i`` its rows and ``p-hat = sum S / sum N``: the ratio delta
    method (Deng, Knoblich & Lu 2018, eq. 4) with the sample covariance over ``K`` units, as the
    package's ratio KPIs use. With one row per unit it is the binomial ``p (1 - p) / N`` (times
    ``N / (N - 1)``).
    """
    q = _check_q(q)
    check_option("method", method, QUANTILE_METHODS)
    y = np.asarray(values, dtype=float)
    g = np.asarray(clusters)
    if y.ndim != 1 or g.shape != y.shape:
        raise ValueError(f"values and clusters must be 1-d and of one length, got shapes {y.shape} and {g.shape}")
    if not np.isfinite(y).all():
        raise DataError(f"the {label} rows hold {int((~np.isfinite(y)).sum())} value(s) that are not finite")
    _, idx = np.unique(g, return_inverse=True)
    k = int(idx.max()) + 1 if idx.size else 0
    if k < 2:
        raise DataError(TOO_FEW_UNITS.format(arm=label, n=k))
    n = y.size
    est = float(np.quantile(y, q, method=method))
    s = np.bincount(idx, weights=(y <= est).astype(float), minlength=k)
    m = np.bincount(idx, minlength=k).astype(float)
    p_hat = s.sum() / n
    var = k / (k - 1) * float(np.sum((s - p_hat * m) ** 2)) / n**2
    sigma = math.sqrt(var)
    z = float(special.ndtri(1 - alpha / 2))
    ys = np.sort(y)
    lo = min(max(math.floor(n * (q - z * sigma)), 1), n)
    hi = min(max(math.ceil(n * (q + z * sigma)), 1), n)
    lower, upper = float(ys[lo - 1]), float(ys[hi - 1])
    return ClusteredQuantile(q=q, estimate=est, se=(upper - lower) / (2 * z), ci=(lower, upper),
                             indicator_se=sigma, n_rows=int(n), n_clusters=k)


def quantile_effect(control_values, control_clusters, treatment_values, treatment_clusters, *,
                    q: float = 0.5, relative: bool = False, alpha: float = 0.05, method: str = "linear",
                    metric: str = "") -> Result:
    """Difference (or relative difference) of two arms' ``q``-quantiles of clustered rows.

    Each arm's quantile and standard error come from :func:`clustered_quantile` (the outer
    interval of Deng, Knoblich & Lu 2018, sec. 4.3, with the indicator's variance clustered by
    unit); the arms are independent, so ``se^2 = se_t^2 + se_c^2`` and the interval is the normal
    Wald interval. The relative difference ``q_t / q_c - 1`` takes the delta method,
    ``se^2 = se_t^2 / q_c^2 + q_t^2 se_c^2 / q_c^4``.

    Parameters
    ----------
    control_values, control_clusters, treatment_values, treatment_clusters : array-like
        Each arm's rows (one value each) and the randomization unit each row belongs to.
    q : float
        Quantile level, ``0 < q < 1`` (0.5: the median).
    relative : bool
        ``treatment / control - 1`` instead of ``treatment - control``.
    alpha : float
        Two-sided level of the interval.
    method : str
        numpy.quantile's method for the point estimates (:data:`QUANTILE_METHODS`).
    metric : str
        Label stored on the Result.

    Returns
    -------
    Result
        ``method="quantile_delta"``, ``n`` the units with rows in both arms together. ``extra``
        holds ``control_mean`` and ``treatment_mean`` (the arms' quantiles, as the ratio
        estimators' arm values), ``quantile``, ``quantile_method``, per arm ``*_n`` (units),
        ``*_rows``, ``*_se``, ``*_ci`` (the outer interval) and ``*_indicator_se``, and
        ``reference="z"``.

    Raises
    ------
    DataError
        When an arm's rows come from fewer than two units, or (relative) the control quantile
        is zero.
    """
    check_option("relative", relative, (True, False))
    c = clustered_quantile(control_values, control_clusters, q=q, alpha=alpha, method=method, label="control")
    t = clustered_quantile(treatment_values, treatment_clusters, q=q, alpha=alpha, method=method, label="treatment")
    if relative:
        if c.estimate == 0:
            raise DataError(ZERO_CONTROL_MEAN)
        estimate = t.estimate / c.estimate - 1
        var = t.se**2 / c.estimate**2 + t.estimate**2 * c.se**2 / c.estimate**4
    else:
        estimate = t.estimate - c.estimate
        var = t.se**2 + c.se**2
    se = math.sqrt(var)
    if se > 0 and math.isfinite(se):
        half = float(special.ndtri(1 - alpha / 2)) * se
        ci, p = (estimate - half, estimate + half), float(2 * special.ndtr(-abs(estimate) / se))
    else:
        ci, p = (math.nan, math.nan), math.nan
    extra = {"control_mean": c.estimate, "treatment_mean": t.estimate, "quantile": c.q, "quantile_method": method,
             "reference": "z", "cuped": False}
    for name, s in (("control", c), ("treatment", t)):
        extra.update({f"{name}_n": s.n_clusters, f"{name}_rows": s.n_rows, f"{name}_se": s.se,
                      f"{name}_ci": list(s.ci), f"{name}_indicator_se": s.indicator_se})
    return Result(estimate=float(estimate), se=se, ci=(float(ci[0]), float(ci[1])), p_value=p,
                  method="quantile_delta", n=c.n_clusters + t.n_clusters,
                  unit="relative" if relative else "absolute", alpha=alpha, metric=metric, extra=extra)

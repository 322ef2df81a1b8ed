"""Intervals and p-values from an estimate and its standard error, and Welch-Satterthwaite df.

The small pieces every estimator ends with, kept in one place so that a t interval on ``df``
degrees of freedom means the same thing in the two-arm, switchback, panel and design analyses.

References
----------
Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance components.
Biometrics Bulletin 2(6), 110-114.
Welch, B. L. (1947). The generalization of Student's problem when several different population
variances are involved. Biometrika 34, 28-35.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["critical_value", "wald_interval", "se_from_interval", "welch_df"]


def critical_value(alpha: float = 0.05, *, df: float | None = None) -> float:
    """Two-sided critical value ``q`` with ``P(|T| > q) = alpha``: ``1.96`` for the normal at 0.05.

    Parameters
    ----------
    alpha : float
        Two-sided level.
    df : float, optional
        Degrees of freedom of a Student t reference; ``None`` or infinite for the normal.

    Returns
    -------
    float
    """
    if df is None or not np.isfinite(df):
        return float(sps.norm.ppf(1 - alpha / 2))
    return float(sps.t.ppf(1 - alpha / 2, df))


def wald_interval(
    estimate: float, se: float, *, alpha: float = 0.05, df: float | None = None
) -> tuple[tuple[float, float], float]:
    """Two-sided ``1 - alpha`` interval ``estimate +/- q se`` and the p-value of no effect.

    Parameters
    ----------
    estimate, se : float
        The point estimate and its standard error.
    alpha : float
        Two-sided level.
    df : float, optional
        Degrees of freedom of a Student t reference; ``None`` or infinite for the normal.

    Returns
    -------
    ci : (float, float)
        NaN when ``se`` is not a positive finite number (no interval can be built).
    p_value : float
        ``2 P(T > |estimate / se|)``; NaN with the interval.
    """
    if not (np.isfinite(se) and se > 0):
        return (float("nan"), float("nan")), float("nan")
    if df is None or not np.isfinite(df):
        q = sps.norm.ppf(1 - alpha / 2)
        p = 2 * sps.norm.sf(abs(estimate / se))
    else:
        q = sps.t.ppf(1 - alpha / 2, df)
        p = 2 * sps.t.sf(abs(estimate / se), df)
    return (float(estimate - q * se), float(estimate + q * se)), float(p)


def se_from_interval(low: float, high: float, *, alpha: float = 0.05) -> float:
    """Standard error implied by a two-sided normal ``1 - alpha`` interval: ``(high - low) / (2 z)``.

    For intervals that do not come from a standard error (permutation or simulation intervals),
    this is the normal-equivalent spread, used to combine or display them; NaN when an end is
    not finite.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return math.nan
    return (high - low) / (2 * sps.norm.ppf(1 - alpha / 2))


def welch_df(variances: Sequence[float], counts: Sequence[int]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance components.

    ``(sum v_k)^2 / sum(v_k^2 / (n_k - 1))`` where ``v_k`` is component ``k``'s contribution to
    the variance of the estimate (e.g. ``s_k^2 / n_k`` for a group mean, times the square of its
    weight in a contrast) and ``n_k`` the observations behind it (Satterthwaite 1946; Welch
    1947). Infinite when the denominator is zero (no sampling variance to estimate).
    """
    tot = sum(variances)
    den = sum(v**2 / (n - 1) for v, n in zip(variances, counts))
    return tot**2 / den if den > 0 else math.inf

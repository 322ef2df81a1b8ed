"""The tests behind an experiment's assumption checks: sample-ratio mismatch and effect trend.

The checks themselves (status, threshold, message) are built in :mod:`insightroi.experiments`;
the statistics live here so that every p-value of the package comes from :mod:`insightroi.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from insightroi.errors import DataError

__all__ = ["SrmTest", "TrendTest", "srm_test", "trend_test"]


class SrmTest(NamedTuple):
    """Outcome of :func:`srm_test`."""

    statistic: float
    p_value: float
    expected: np.ndarray


class TrendTest(NamedTuple):
    """Outcome of :func:`trend_test`."""

    slope: float
    se: float
    z: float
    p_value: float
    weighted_mean: float


def srm_test(counts: Sequence[float], expected_shares: Sequence[float]) -> SrmTest:
    """Pearson chi-square goodness-of-fit test of arm counts against the designed shares.

    ``X^2 = sum_k (o_k - e_k)^2 / e_k`` with ``e_k = N s_k / sum(s)`` on ``K - 1`` degrees of
    freedom: the sample-ratio-mismatch test (Fabijan et al. 2019, KDD). The p-value equals
    gbstats' ``check_srm`` and ``scipy.stats.chisquare(counts, expected)``.

    Parameters
    ----------
    counts : sequence of float
        Units observed per arm (at least two arms, not all zero).
    expected_shares : sequence of float
        Designed share (or weight) of each arm, same order; normalised here.

    Returns
    -------
    SrmTest
        ``statistic``, ``p_value`` and the ``expected`` counts per arm.

    Raises
    ------
    DataError
        When the shapes differ, there are fewer than two arms, or no unit was counted.
    """
    obs = np.asarray(counts, dtype=float)
    shares = np.asarray(expected_shares, dtype=float)
    if obs.size != shares.size or obs.size < 2:
        raise DataError("srm_test needs one expected share per arm and at least two arms")
    total = obs.sum()
    if total == 0:
        raise DataError("srm_test needs at least one unit counted")
    exp = shares / shares.sum() * total
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    return SrmTest(chi2, float(sps.chi2.sf(chi2, obs.size - 1)), exp)


def trend_test(x: Sequence[float], estimates: Sequence[float], se: Sequence[float]) -> TrendTest:
    """Weighted least-squares slope of estimates on ``x`` with weights ``1 / se^2``, and its z-test.

    ``slope = sum w (x - xbar)(y - ybar) / sxx`` with ``sxx = sum w (x - xbar)^2``; its standard
    error is ``sqrt(1 / sxx)`` because the weights are the estimates' known inverse variances (a
    meta-regression on one moderator with a fixed-effect model; Borenstein et al. 2009,
    *Introduction to Meta-Analysis*, ch. 20). Used on weekly effects to detect a fading one
    (novelty).

    Parameters
    ----------
    x : sequence of float
        Position of each estimate (e.g. week index since launch).
    estimates, se : sequence of float
        The estimates and their standard errors (finite, ``se > 0``; at least two distinct ``x``).

    Returns
    -------
    TrendTest
        ``slope`` per unit of ``x``, its ``se``, ``z = slope / se``, the two-sided normal
        ``p_value`` and the inverse-variance ``weighted_mean`` of the estimates.
    """
    w_idx = np.asarray(x, dtype=float)
    est = np.asarray(estimates, dtype=float)
    s = np.asarray(se, dtype=float)
    w = 1 / s**2
    xm = (w * w_idx).sum() / w.sum()
    ym = (w * est).sum() / w.sum()
    sxx = (w * (w_idx - xm) ** 2).sum()
    slope = float((w * (w_idx - xm) * (est - ym)).sum() / sxx)
    slope_se = float(math.sqrt(1 / sxx))
    z = slope / slope_se
    return TrendTest(slope, slope_se, z, float(2 * sps.norm.sf(abs(z))), float(ym))

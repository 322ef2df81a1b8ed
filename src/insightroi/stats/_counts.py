"""Upper-tail probabilities of counts against an expectation, for count surveillance (spikes).

A negative binomial with a moment-estimated dispersion, falling back to the Poisson where there is
no over-dispersion: the standard approach of outbreak detection (Farrington et al. 1996, JRSS A
159; Noufaily et al. 2013, Stat. Med. 32).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

__all__ = ["count_dispersion", "count_tail_pvalue"]

# Dispersions below this are treated as Poisson (the NB's size 1 / phi would overflow).
_POISSON_BELOW = 1e-6


def count_dispersion(observed, expected, *, winsorize: bool = True) -> float:
    """Method-of-moments dispersion ``phi`` of counts under ``Var X = mu + phi mu^2`` (NB2).

    ``phi = max(0, sum((x - mu)^2 - mu) / sum(mu^2))``. With ``winsorize`` each count is first
    capped at ``mu + 5 sqrt(mu) + 2`` so that the spikes one is looking for do not inflate the
    baseline's dispersion and mask themselves.

    Parameters
    ----------
    observed, expected : array_like
        Counts and their expectations (same shape, ``expected > 0``).
    winsorize : bool
        Cap outlying counts before the moments (default True).

    Returns
    -------
    float
        0 when the counts are not over-dispersed.
    """
    m = np.asarray(expected, dtype=float)
    c = np.asarray(observed, dtype=float)
    if winsorize:
        c = np.minimum(c, m + 5 * np.sqrt(m) + 2)
    return max(0.0, float(((c - m) ** 2 - m).sum() / (m**2).sum()))


def count_tail_pvalue(observed, expected, dispersion=0.0):
    """``P(X >= observed)`` for a count with mean ``expected`` and NB2 dispersion ``dispersion``.

    Negative binomial with size ``1 / phi`` and success probability ``1 / (1 + phi mu)`` (so
    ``Var X = mu + phi mu^2``); Poisson where ``phi <= 1e-6``.

    Parameters
    ----------
    observed, expected, dispersion : array_like
        Broadcast together.

    Returns
    -------
    ndarray
        Same shape as the broadcast inputs.
    """
    o = np.asarray(observed)
    m = np.asarray(expected)
    ph = np.asarray(dispersion, dtype=float)
    return np.where(
        ph > _POISSON_BELOW,
        sps.nbinom.sf(o - 1, 1 / np.maximum(ph, _POISSON_BELOW), 1 / (1 + np.maximum(ph, _POISSON_BELOW) * m)),
        sps.poisson.sf(o - 1, m),
    )

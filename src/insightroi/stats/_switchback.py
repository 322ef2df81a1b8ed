"""Switchback designs: time blocks alternate between arms; inference by re-randomising blocks.

References
----------
Bojinov, I., Simchi-Levi, D., Zhao, J. (2023). Design and analysis of switchback experiments.
Management Science 69(7). (Carryover burn-in; randomization-based inference over the block
assignment.)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from insightroi.errors import DataError
from insightroi.stats._result import Check, Result

__all__ = ["switchback", "switchback_blocks", "switchback_power"]


def switchback_blocks(time_hours, values, block_treated, *, block_hours: float, burn_in_hours: float = 0.0):
    """Per-block mean outcome, dropping the carryover burn-in after each switch.

    Parameters
    ----------
    time_hours : array
        Hours since the start of block 0, per observation.
    values : array
        Outcome per observation.
    block_treated : array of bool
        Arm of each block (block ``b`` covers ``[b, b + 1) x block_hours``).
    block_hours : float
        Length of a block.
    burn_in_hours : float
        Observations in the first ``burn_in_hours`` of a block whose arm differs from the
        previous block's are dropped: the previous policy's effect may still be running out.

    Returns
    -------
    means : ndarray
        Mean outcome per block (NaN for a block with no kept observation).
    kept : ndarray
        Number of kept observations per block.
    """
    t = np.asarray(time_hours, dtype=float)
    y = np.asarray(values, dtype=float)
    arms = np.asarray(block_treated, dtype=bool)
    nb = arms.size
    block = np.floor(t / block_hours).astype(np.int64)
    inside = (block >= 0) & (block < nb)
    block, t, y = block[inside], t[inside], y[inside]
    switched = np.ones(nb, dtype=bool)
    switched[1:] = arms[1:] != arms[:-1]
    keep = ~(switched[block] & ((t - block * block_hours) < burn_in_hours))
    sums = np.bincount(block[keep], weights=y[keep], minlength=nb)
    kept = np.bincount(block[keep], minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(kept > 0, sums / np.maximum(kept, 1), np.nan)
    return means, kept


def switchback(
    block_values,
    block_treated,
    *,
    alpha: float = 0.05,
    n_permutations: int = 2000,
    seed: int | np.random.Generator | None = 0,
    metric: str = "",
) -> Result:
    """Difference in mean block outcome between treated and control blocks.

    The p-value is randomization inference: the treated-minus-control difference is recomputed
    under ``n_permutations`` re-randomisations of the block assignment (same number of treated
    blocks, complete randomization), and ``p = (1 + #{|D*| >= |D|}) / (1 + B)``. This is exact
    under the sharp null whatever the serial correlation between blocks. The interval is Welch's
    over blocks (``extra["p_welch"]`` gives its p-value too).

    Parameters
    ----------
    block_values : array
        One outcome per block (e.g. from :func:`switchback_blocks`); NaN blocks are dropped.
    block_treated : array of bool
        Arm of each block.
    seed : int or Generator
        Randomness for the permutations.
    """
    y = np.asarray(block_values, dtype=float)
    z = np.asarray(block_treated, dtype=bool)
    ok = np.isfinite(y)
    y, z = y[ok], z[ok]
    n1, n0 = int(z.sum()), int((~z).sum())
    if n1 < 2 or n0 < 2:
        raise DataError(f"switchback needs at least 2 blocks per arm, got {n1} treated and {n0} control")
    diff = y[z].mean() - y[~z].mean()
    v1, v0 = y[z].var(ddof=1) / n1, y[~z].var(ddof=1) / n0
    se = math.sqrt(v1 + v0)
    df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1)) if (v1 + v0) > 0 else math.inf
    half = stats.t.ppf(1 - alpha / 2, df) * se
    p_welch = 2 * stats.t.sf(abs(diff) / se, df) if se > 0 else math.nan
    rng = np.random.default_rng(seed)
    perm = _permuted_assignments(rng, z, n_permutations)
    tot = y.sum()
    s1 = perm @ y
    d_star = s1 / n1 - (tot - s1) / n0
    p_ri = (1 + np.sum(np.abs(d_star) >= abs(diff) - 1e-12)) / (1 + n_permutations)
    check = Check("randomization_inference", "pass", f"p from {n_permutations} re-randomisations of {y.size} blocks",
                  statistic=float(diff), p_value=float(p_ri))
    return Result(
        estimate=float(diff), se=se, ci=(float(diff - half), float(diff + half)), p_value=float(p_ri),
        method="switchback_ri", n=int(y.size), unit="absolute", diagnostics=(check,), alpha=alpha, metric=metric,
        extra={"control_mean": float(y[~z].mean()), "treatment_mean": float(y[z].mean()), "control_n": n0,
               "treatment_n": n1, "p_welch": float(p_welch), "n_permutations": n_permutations},
    )


def _permuted_assignments(rng: np.random.Generator, z: np.ndarray, b: int) -> np.ndarray:
    keys = rng.random((b, z.size))
    return z[np.argsort(keys, axis=1)].astype(float)


def switchback_power(
    effect: float,
    *,
    n_blocks: int,
    block_sd: float,
    autocorrelation: float = 0.0,
    carryover: float = 0.0,
    treatment_share: float = 0.5,
    alpha: float = 0.05,
    n_simulations: int = 2000,
    seed: int | np.random.Generator | None = 0,
) -> float:
    """Power of a switchback design by simulation (there is no closed form with carryover).

    Block outcomes follow an AR(1) process with standard deviation ``block_sd`` and lag-one
    correlation ``autocorrelation``; treated blocks add ``effect``; a block right after a switch
    keeps a share ``carryover`` of the previous arm's effect (what burn-in removes). Each
    simulated schedule is an independent Bernoulli(``treatment_share``) draw per block, analysed
    with Welch's t over blocks (vectorised over simulations).

    Returns
    -------
    float
        Share of simulations that reject at ``alpha``.
    """
    if n_blocks < 4:
        raise DataError("switchback power needs at least 4 blocks")
    rng = np.random.default_rng(seed)
    s, nb = n_simulations, n_blocks
    eps = rng.standard_normal((s, nb))
    noise = np.empty((s, nb))
    noise[:, 0] = eps[:, 0]
    k = math.sqrt(1 - autocorrelation**2)
    for b in range(1, nb):
        noise[:, b] = autocorrelation * noise[:, b - 1] + k * eps[:, b]
    z = rng.random((s, nb)) < treatment_share
    prev = np.concatenate([z[:, :1], z[:, :-1]], axis=1)
    y = block_sd * noise + effect * z + carryover * effect * (prev.astype(float) - z.astype(float)) * (prev != z)
    n1 = z.sum(axis=1)
    n0 = nb - n1
    valid = (n1 >= 2) & (n0 >= 2)
    zf = z.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = (y * zf).sum(axis=1) / n1
        m0 = (y * (1 - zf)).sum(axis=1) / n0
        v1 = (((y - m1[:, None]) ** 2) * zf).sum(axis=1) / (n1 - 1) / n1
        v0 = (((y - m0[:, None]) ** 2) * (1 - zf)).sum(axis=1) / (n0 - 1) / n0
        df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
        tstat = (m1 - m0) / np.sqrt(v1 + v0)
        reject = np.abs(tstat) > stats.t.ppf(1 - alpha / 2, df)
    return float(np.mean(reject[valid])) if valid.any() else math.nan

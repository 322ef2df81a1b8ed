"""Switchback designs: time blocks alternate between arms; inference by re-randomising blocks.

References
----------
Bojinov, I., Simchi-Levi, D., Zhao, J. (2023). Design and analysis of switchback experiments.
Management Science 69(7). (Carryover burn-in; randomization-based inference over the block
assignment.)
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import stats

from insightroi.errors import DataError
from insightroi.stats._intervals import wald_interval, welch_df
from insightroi.stats._result import Check, Result
from insightroi.stats._suffstats import SampleMean
from insightroi.stats._twoarm import two_arm

__all__ = ["switchback", "switchback_blocks", "switchback_power", "switchback_ratio_effect", "switchback_carryover"]


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
    # The interval is Welch's over blocks: the two-arm engine on the block means.
    welch = two_arm(SampleMean.from_array(y[~z]), SampleMean.from_array(y[z]), alpha=alpha, method="welch_t")
    se, (lo, hi), p_welch = welch.se, welch.ci, welch.p_value
    rng = np.random.default_rng(seed)
    perm = _permuted_assignments(rng, z, n_permutations)
    tot = y.sum()
    s1 = perm @ y
    d_star = s1 / n1 - (tot - s1) / n0
    p_ri = (1 + np.sum(np.abs(d_star) >= abs(diff) - 1e-12)) / (1 + n_permutations)
    check = Check("randomization_inference", "pass", f"p from {n_permutations} re-randomisations of {y.size} blocks",
                  statistic=float(diff), p_value=float(p_ri))
    return Result(
        estimate=float(diff), se=se, ci=(float(lo), float(hi)), p_value=float(p_ri),
        method="switchback_ri", n=int(y.size), unit="absolute", diagnostics=(check,), alpha=alpha, metric=metric,
        extra={"control_mean": float(y[~z].mean()), "treatment_mean": float(y[z].mean()), "control_n": n0,
               "treatment_n": n1, "p_welch": float(p_welch), "n_permutations": n_permutations},
    )


def switchback_ratio_effect(
    num, den, treated, *, scale: float = 1.0, alpha: float = 0.05, n_permutations: int = 2000,
    seed: int | np.random.Generator | None = 0, metric: str = "",
) -> tuple[Result, Result]:
    """Absolute and relative effect of a ratio KPI from per-block numerator and denominator sums.

    The block KPI is ``num / den x scale`` (blocks with ``den = 0`` are dropped); the absolute
    effect is the difference of mean block KPIs with :func:`switchback`'s randomization-inference
    p-value and Welch interval over blocks. The relative effect is ``mean_t / mean_c - 1`` with
    the delta-method standard error over blocks (:func:`two_arm`, Deng, Knoblich & Lu 2018) and
    the same randomization p-value: both test the sharp null of no effect in any block
    (Bojinov, Simchi-Levi & Zhao 2023).

    Parameters
    ----------
    num, den : array
        Per-block sums (burn-in and excluded windows already left out).
    treated : array of bool
        Arm of each block.
    scale, alpha, n_permutations, seed, metric :
        KPI multiplier, interval level, randomization inference and label.

    Returns
    -------
    (Result, Result)
        Absolute (KPI units, method ``"switchback_ri"``, the relative figures repeated in
        ``extra``) and relative. A KPI with fewer than 2 blocks per arm gives two
        :meth:`Result.not_estimable` results.
    """
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    z = np.asarray(treated, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(den > 0, num / den * scale, np.nan)
    ok = np.isfinite(y)
    n = int(ok.sum())
    try:
        ab = switchback(y, z, alpha=alpha, n_permutations=n_permutations, seed=seed, metric=metric)
    except DataError as exc:
        t_ok = ok & z
        tm = float(np.mean(y[t_ok])) if t_ok.any() else math.nan
        return (Result.not_estimable(str(exc), method="switchback_ri", metric=metric, n=n, alpha=alpha,
                                     extra={"treatment_mean": tm, "control_mean": math.nan}),
                Result.not_estimable(str(exc), method="switchback_ri", metric=metric, n=n, unit="relative",
                                     alpha=alpha))
    y1, y0 = y[ok & z], y[ok & ~z]
    try:
        rel = two_arm(SampleMean.from_array(y0), SampleMean.from_array(y1), relative=True, alpha=alpha,
                      metric=metric, method="switchback_ri")
    except DataError as exc:
        rel = Result.not_estimable(str(exc), method="switchback_ri", metric=metric, n=n, unit="relative", alpha=alpha)
    else:
        rel = replace(rel, p_value=ab.p_value, diagnostics=ab.diagnostics,
                      extra={"control_mean": rel.extra["control_mean"], "treatment_mean": rel.extra["treatment_mean"]})
    extra = {**ab.extra, "relative": rel.estimate, "relative_ci_low": rel.ci[0], "relative_ci_high": rel.ci[1],
             "relative_se": rel.se, "relative_p_value": rel.p_value}
    return replace(ab, extra=extra), rel


def switchback_carryover(
    block_values, treated, *, alpha: float = 0.05, estimate_without_burn_in: float | None = None,
    estimate: float | None = None, burn_in_hours: float = 0.0, metric: str = "",
) -> Check:
    """Carryover: is the effect different in blocks right after a switch than in blocks that continue an arm?

    Without carryover the treated-minus-control difference is the same whether or not the
    previous block had the other arm, so the interaction
    ``(T_switch - C_switch) - (T_stay - C_stay)`` is zero; a lingering previous policy pulls the
    first-after-switch difference towards zero (Bojinov, Simchi-Levi & Zhao 2023). Welch test
    over the four cells of blocks, Satterthwaite degrees of freedom (block 0 has no previous
    block and is left out). ``warn`` when it is significant at ``alpha``: lengthen
    ``burn_in_hours`` or the blocks.

    Parameters
    ----------
    block_values : array
        Block KPI as analysed (NaN blocks are ignored).
    treated : array of bool
    estimate_without_burn_in, estimate : float, optional
        The effect with every row kept and with the burn-in dropped (reported in ``details``).
    burn_in_hours : float
        The burn-in the estimate used (named in the message).
    metric : str
        Prefix of the message.
    """
    y = np.asarray(block_values, dtype=float)
    z = np.asarray(treated, dtype=bool)
    after = np.zeros(z.size, dtype=bool)
    after[1:] = z[1:] != z[:-1]
    ok = np.isfinite(y)
    ok[:1] = False
    cells = {(t, s): y[ok & (z == t) & (after == s)] for t in (True, False) for s in (True, False)}
    details = {"n_blocks": {f"{'treated' if t else 'control'}_{'after_switch' if s else 'continuing'}": int(v.size)
                            for (t, s), v in cells.items()},
               "burn_in_hours": burn_in_hours, "estimate": estimate, "estimate_without_burn_in": estimate_without_burn_in}
    shift = ""
    if estimate is not None and estimate_without_burn_in is not None and burn_in_hours > 0:
        shift = f"; dropping the {burn_in_hours:g}h burn-in moved the estimate from {estimate_without_burn_in:.4g} to {estimate:.4g}"
    pre = f"{metric}: " if metric else ""
    if any(v.size < 2 for v in cells.values()):
        return Check("carryover", "skip", f"{pre}need 2 blocks in each arm after a switch and continuing{shift}",
                     details=details)
    mean = {k: v.mean() for k, v in cells.items()}
    var = {k: v.var(ddof=1) / v.size for k, v in cells.items()}
    inter = (mean[True, True] - mean[False, True]) - (mean[True, False] - mean[False, False])
    se = math.sqrt(sum(var.values()))
    _, p = wald_interval(float(inter), se, alpha=alpha, df=welch_df(list(var.values()), [v.size for v in cells.values()]))
    details |= {"effect_after_switch": float(mean[True, True] - mean[False, True]),
                "effect_continuing": float(mean[True, False] - mean[False, False]), "se": se}
    if p < alpha:
        return Check("carryover", "warn",
                     f"{pre}effect after a switch differs from continuing blocks by {inter:+.4g} (p = {p:.2g}); the "
                     f"previous arm lingers: lengthen burn_in_hours (now {burn_in_hours:g}) or the blocks{shift}",
                     statistic=float(inter), p_value=p, threshold=alpha, details=details)
    return Check("carryover", "pass", f"{pre}no carryover detected ({inter:+.4g}, p = {p:.2g}){shift}",
                 statistic=float(inter), p_value=p, threshold=alpha, details=details)


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

"""Analyse a switchback program: time blocks alternate between arms, the platform is the unit.

Design: block ``b`` covers ``[start + b x block_hours, start + (b + 1) x block_hours)`` from
midnight of the experiment's first day. Its arm comes from the store's ``assignments`` table
(``unit_type = "time_block"``; ``unit_id`` = the block's start as an ISO timestamp,
``"2025-07-01T00:00:00"``, which is also what :func:`switchback_schedule` hashes, so a schedule
logged by a flag service and one recomputed here agree; a plain integer is read as the block
index), else from the deterministic hash :func:`switchback_schedule` of the program's salt.

Estimate: per block and KPI the numerator and denominator are summed in the backend
(:func:`insightroi.metrics.block_measures_expr`, one grouped pass per source table), with the
carryover burn-in (the first ``burn_in_hours`` of a block whose arm differs from the previous
block's) and the declared ``exclude_windows`` left out. The block KPI is
``num / den x scale``; the effect is the difference of mean block KPIs between treated and
control blocks, with a randomization-inference p-value over re-randomised block assignments
(:func:`insightroi.stats.switchback_ratio_effect`; Bojinov, Simchi-Levi & Zhao 2023, Management Science
69(7)). Holm and Benjamini-Hochberg adjust across KPIs, as for unit-randomized designs.

Checks: sample-ratio mismatch on block counts; carryover (does the effect differ in blocks right
after a switch from blocks that continue an arm? plus the estimate without burn-in, to see how
much the burn-in moved it); assignment coverage when the schedule comes from the store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from insightroi.errors import DataError, EstimationError
from insightroi.experiments._checks import srm_check
from insightroi.experiments._common import (
    CONTROL,
    TREATMENT,
    ExperimentAnalysis,
    annotate_kpi_results,
    finite_or_none,
)
from insightroi.experiments._design import switchback_schedule
from insightroi.metrics import analysis_windows, block_measures_expr
from insightroi.program import Program
from insightroi.stats import Check, Result, switchback_carryover, switchback_ratio_effect
from insightroi.store import Store

__all__ = ["TIME_BLOCK", "analyze_switchback", "block_arms", "carryover_check", "switchback_kpi_effect"]

TIME_BLOCK = "time_block"


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


def _grid(window, block_hours: int) -> tuple[datetime, datetime, int]:
    start, end = _midnight(window[0]), _midnight(window[1]) + timedelta(days=1)
    n = math.ceil((end - start) / timedelta(hours=block_hours))
    return start, end, n


def block_arms(store: Store, program: Program, *, window: tuple[date, date] | None = None) -> tuple[np.ndarray, str]:
    """Arm of every time block of the program's switchback in the window.

    Parameters
    ----------
    store : insightroi.store.Store
    program : Program
    window : (date, date), optional
        Inclusive analysis window (default from :func:`insightroi.metrics.analysis_windows`).

    Returns
    -------
    arms : ndarray of str
        ``"treatment"``, ``"control"``, or ``""`` for a block the store's assignments do not cover.
    source : {"assignments", "hash"}
        Where the arms came from: the store's ``assignments`` rows for the experiment with
        ``unit_type = "time_block"`` (a block's first assignment counts), or, when there are none,
        :func:`insightroi.experiments.switchback_schedule` of ``experiment.salt``.

    Raises
    ------
    DataError
        For a ``unit_id`` that is neither an integer block index nor the ISO start of a block.
    """
    e = program.experiment
    window, _ = analysis_windows(program, window=window)
    start, end, n = _grid(window, e.block_hours)
    a = store.table("assignments")
    a = a.filter((a.experiment == e.name) & (a.unit_type == TIME_BLOCK))
    rows = a.group_by(unit_id=a.unit_id).aggregate(arm=a.arm.argmin(a.assigned_at)).execute()
    if rows.empty:
        sched = switchback_schedule(start, end, block_hours=e.block_hours, salt=e.salt,
                                    treatment_share=e.treatment_share)
        return np.array([b["arm"] for b in sched], dtype=object), "hash"
    arms = np.full(n, "", dtype=object)
    step = timedelta(hours=e.block_hours)
    for uid, arm in zip(rows.unit_id, rows.arm):
        uid = str(uid).strip()
        if uid.lstrip("-").isdigit():
            b = int(uid)
        else:
            try:
                ts = pd.Timestamp(uid).tz_localize(None) if pd.Timestamp(uid).tzinfo else pd.Timestamp(uid)
            except ValueError:
                raise DataError(f"time_block unit_id {uid!r} is neither a block index nor an ISO timestamp") from None
            off = ts.to_pydatetime() - start
            b = off // step
            if off % step:
                raise DataError(f"time_block unit_id {uid!r} is not the start of a {e.block_hours}-hour block "
                                f"counted from {start.isoformat()}")
        if 0 <= b < n:
            arms[b] = str(arm)
    other = sorted({x for x in arms if x not in ("", TREATMENT, CONTROL)})
    if other:
        raise DataError(f"unknown arm labels {other}; expected 'treatment' and 'control'")
    return arms, "assignments"


def _unit_assignments(store: Store, experiment: str) -> int:
    """How many of the experiment's assignment rows are for units rather than time blocks."""
    a = store.table("assignments")
    return int(a.filter((a.experiment == experiment) & (a.unit_type.fill_null("") != TIME_BLOCK)).count().execute())


def _switched(arms: np.ndarray) -> np.ndarray:
    # Block 0 counts as a switch (what ran before the experiment is unknown to the design, as in
    # stats.switchback_blocks); a block after one with no known arm is treated as a switch too.
    sw = np.ones(arms.size, dtype=bool)
    sw[1:] = (arms[1:] != arms[:-1]) | (arms[:-1] == "")
    return sw


def _merge(intervals):
    out = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def _overlap(lo, hi, merged) -> float:
    return sum(max(0.0, (min(hi, b) - max(lo, a)).total_seconds()) for a, b in merged)


def _exposure(start, end, n, block_hours, burn_in_hours, switched, exclude_windows) -> tuple[np.ndarray, np.ndarray]:
    """Share of each block (in blocks) that is analysed, and the share its burn-in removed."""
    ex = _merge([(_midnight(lo), _midnight(hi) + timedelta(days=1)) for lo, hi in exclude_windows])
    kept, burn = np.zeros(n), np.zeros(n)
    step, bi = timedelta(hours=block_hours), timedelta(hours=burn_in_hours)
    for b in range(n):
        lo = start + b * step
        hi = min(lo + step, end)
        cut = min(lo + bi, hi) if switched[b] else lo
        burn[b] = ((cut - lo).total_seconds() - _overlap(lo, cut, ex)) / step.total_seconds()
        kept[b] = ((hi - cut).total_seconds() - _overlap(cut, hi, ex)) / step.total_seconds()
    return kept, burn


def switchback_kpi_effect(
    num, den, treated, *, scale: float = 1.0, alpha: float = 0.05, n_permutations: int = 2000,
    seed: int | np.random.Generator | None = 0, metric: str = "",
) -> tuple[Result, Result]:
    """Absolute and relative effect of a ratio KPI from per-block sums: :func:`insightroi.stats.switchback_ratio_effect`."""
    return switchback_ratio_effect(num, den, treated, scale=scale, alpha=alpha, n_permutations=n_permutations,
                                   seed=seed, metric=metric)


def carryover_check(block_values, treated, *, alpha: float = 0.05, estimate_without_burn_in: float | None = None,
                    estimate: float | None = None, burn_in_hours: float = 0.0, metric: str = "") -> Check:
    """Carryover test over the four switch x arm cells of blocks: :func:`insightroi.stats.switchback_carryover`."""
    return switchback_carryover(block_values, treated, alpha=alpha, estimate_without_burn_in=estimate_without_burn_in,
                                estimate=estimate, burn_in_hours=burn_in_hours, metric=metric)


def analyze_switchback(
    store: Store,
    program: Program,
    *,
    kpis: Sequence[str] | None = None,
    window: tuple[date, date] | None = None,
    alpha: float | None = None,
    burn_in_hours: float | None = None,
    n_permutations: int = 2000,
    seed: int | np.random.Generator | None = 0,
) -> ExperimentAnalysis:
    """Analyse the program's switchback experiment on the store (see the module docstring).

    Parameters
    ----------
    store : insightroi.store.Store
    program : Program
        ``experiment.design`` should be ``"switchback"``; its ``block_hours``, ``burn_in_hours``,
        ``salt``, ``treatment_share``, ``start``/``end`` and ``exclude_windows`` define the blocks.
    kpis : sequence of str, optional
        KPIs to analyse (default: all).
    window : (date, date), optional
        Inclusive window (default: experiment start to end, or today).
    alpha : float, optional
        Default ``experiment.alpha``.
    burn_in_hours : float, optional
        Override ``experiment.burn_in_hours`` (e.g. 0 for a sensitivity run).
    n_permutations, seed :
        Randomization inference (same permutations for every KPI).

    Returns
    -------
    ExperimentAnalysis
        ``unit = "time_block"``; ``n_treatment`` / ``n_control`` count blocks. Each KPI's
        ``extra`` holds the unit-level keys (``control_mean``, ``relative``, ``p_adjusted`` ...)
        plus ``n_blocks``, ``block_hours``, ``burn_in_hours``, ``estimate_without_burn_in`` and
        ``arm_source``.
    """
    e = program.experiment
    alpha = e.alpha if alpha is None else alpha
    burn = e.burn_in_hours if burn_in_hours is None else burn_in_hours
    if burn < 0 or burn >= e.block_hours:
        raise EstimationError(f"burn_in_hours must be in [0, block_hours = {e.block_hours}), got {burn}")
    chosen = [program.kpi(k) for k in kpis] if kpis else list(program.kpis)
    window, _ = analysis_windows(program, window=window)
    start, end, n = _grid(window, e.block_hours)
    arms, source = block_arms(store, program, window=window)
    known = arms != ""
    z = arms == TREATMENT
    switched = _switched(arms)
    n_t, n_c = int(z.sum()), int((known & ~z).sum())

    measures = sorted({m for k in chosen for m in (k.numerator, k.denominator)} - {"units"})
    sums = pd.DataFrame(index=pd.RangeIndex(n, name="block"))
    if measures:
        got = block_measures_expr(store, program, measures, window=window, block_hours=e.block_hours,
                                  burn_in_hours=burn, switched_blocks=np.flatnonzero(switched).tolist()).execute()
        got = got[(got.block >= 0) & (got.block < n)].set_index("block")
        sums = sums.join(got).fillna(0.0)
    sums["units"], sums["units_burn"] = _exposure(start, end, n, e.block_hours, burn, switched, e.exclude_windows)

    checks = [srm_check([n_c, n_t], [1 - e.treatment_share, e.treatment_share])]
    checks[0] = replace(checks[0], message="time blocks: " + checks[0].message.replace(" units", " blocks"))
    if source == "assignments" and not known.all():
        checks.append(Check("block_assignments", "warn",
                            f"{int((~known).sum())} of {n} blocks have no time_block assignment in the store and are "
                            "left out", statistic=float((~known).sum()), details={"missing": np.flatnonzero(~known).tolist()}))
    elif source == "hash" and (unit_rows := _unit_assignments(store, e.name)):
        # Arms of units, not of time blocks: the experiment that ran was not this switchback, and
        # arms made up from the salt would estimate nothing that happened.
        checks.append(Check(
            "block_assignments", "fail",
            f"the store holds {unit_rows:,} assignments of units (not unit_type = '{TIME_BLOCK}') for experiment "
            f"{e.name!r}, and none of time blocks: the arms here come from the salt's hash, not from what ran. "
            "For units randomized to arms set design = 'cluster' (or 'ab'); for a switchback, load its "
            "time_block assignments",
            statistic=float(unit_rows)))
    else:
        checks.append(Check("block_assignments", "pass", f"{n} blocks of {e.block_hours}h, arms from {source}"))

    results: dict[str, Result] = {}
    relative: dict[str, Result] = {}
    carry: dict[str, Check] = {}
    for k in chosen:
        num = sums[k.numerator].to_numpy()
        den = sums[k.denominator].to_numpy()
        num_all = num + sums[f"{k.numerator}_burn"].to_numpy()
        den_all = den + sums[f"{k.denominator}_burn"].to_numpy()
        ab, rel = switchback_kpi_effect(num[known], den[known], z[known], scale=k.scale, alpha=alpha,
                                        n_permutations=n_permutations, seed=seed, metric=k.name)
        no_burn = ab.estimate
        if burn > 0 and ab.estimable:
            no_burn = switchback_kpi_effect(num_all[known], den_all[known], z[known], scale=k.scale, alpha=alpha,
                                            n_permutations=1, seed=seed, metric=k.name)[0].estimate
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(den > 0, num / den * k.scale, np.nan)
        y[~known] = np.nan
        no_burn = finite_or_none(no_burn)
        chk = carryover_check(y, z, alpha=alpha, estimate_without_burn_in=no_burn, estimate=finite_or_none(ab.estimate),
                              burn_in_hours=burn) if ab.estimable else \
            Check("carryover", "skip", f"{k.name} not estimable")
        carry[k.name] = chk
        x = {**ab.extra, "estimate_without_burn_in": no_burn, "n_blocks": n, "block_hours": e.block_hours,
             "burn_in_hours": burn, "arm_source": source}
        results[k.name] = replace(ab, diagnostics=ab.diagnostics + (chk,), extra=x)
        relative[k.name] = rel
    primary = next((k for k in chosen if k.name == e.primary_kpi), None)
    if primary is not None:
        c = carry[primary.name]
        checks.append(c if c.message.startswith(primary.name) else replace(c, message=f"{primary.name}: {c.message}"))

    annotate_kpi_results(results, relative, program, analysis_unit=TIME_BLOCK, n_treatment=n_t, n_control=n_c,
                         window=window)

    return ExperimentAnalysis(
        name=e.name, design=e.design, unit=TIME_BLOCK, window=window, pre_window=None, n_treatment=n_t,
        n_control=n_c, results=results, relative=relative, checks=tuple(checks), segments={}, alpha=alpha,
    )

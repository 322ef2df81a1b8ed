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
(:func:`insightroi.stats.switchback`; Bojinov, Simchi-Levi & Zhao 2023, Management Science
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
from scipy import stats

from insightroi.errors import DataError, EstimationError
from insightroi.experiments._analysis import CONTROL, TREATMENT, ExperimentAnalysis, _f, annotate_kpi_results
from insightroi.experiments._checks import srm_check
from insightroi.experiments._design import switchback_schedule
from insightroi.metrics import analysis_windows, block_measures_expr
from insightroi.program import Program
from insightroi.stats import Check, Result, switchback

__all__ = ["TIME_BLOCK", "analyze_switchback", "block_arms", "carryover_check", "switchback_kpi_effect"]

TIME_BLOCK = "time_block"


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


def _grid(window, block_hours: int) -> tuple[datetime, datetime, int]:
    start, end = _midnight(window[0]), _midnight(window[1]) + timedelta(days=1)
    n = math.ceil((end - start) / timedelta(hours=block_hours))
    return start, end, n


def block_arms(store, program: Program, *, window: tuple[date, date] | None = None) -> tuple[np.ndarray, str]:
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


def _welch_df(v1: float, v0: float, n1: int, n0: int) -> float:
    den = v1**2 / (n1 - 1) + v0**2 / (n0 - 1)
    return (v1 + v0) ** 2 / den if den > 0 else math.inf


def _nan_pair(metric: str, n: int, message: str, alpha: float, extra: dict) -> tuple[Result, Result]:
    nan = math.nan
    chk = (Check("estimable", "skip", message),)
    return (Result(nan, nan, (nan, nan), nan, "not_estimable", n, "absolute", chk, alpha, metric, dict(extra)),
            Result(nan, nan, (nan, nan), nan, "not_estimable", n, "relative", chk, alpha, metric, {}))


def switchback_kpi_effect(
    num, den, treated, *, scale: float = 1.0, alpha: float = 0.05, n_permutations: int = 2000,
    seed: int | np.random.Generator | None = 0, metric: str = "",
) -> tuple[Result, Result]:
    """Absolute and relative effect of a ratio KPI from per-block numerator and denominator sums.

    The block KPI is ``num / den x scale`` (blocks with ``den = 0`` are dropped); the absolute
    effect is the difference of mean block KPIs with :func:`insightroi.stats.switchback`'s
    randomization-inference p-value and Welch interval over blocks. The relative effect is
    ``mean_t / mean_c - 1`` with a delta-method standard error over blocks and the same
    randomization p-value (both test the sharp null of no effect in any block).

    Parameters
    ----------
    num, den : array
        Per-block sums (burn-in and excluded windows already left out).
    treated : array of bool
        Arm of each block.

    Returns
    -------
    (Result, Result)
        Absolute (KPI units, method ``"switchback_ri"``) and relative.
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
        return _nan_pair(metric, n, str(exc), alpha, {"treatment_mean": tm, "control_mean": math.nan})
    y1, y0 = y[ok & z], y[ok & ~z]
    m1, m0 = y1.mean(), y0.mean()
    v1, v0 = y1.var(ddof=1) / y1.size, y0.var(ddof=1) / y0.size
    if m0 == 0:
        rel = _nan_pair(metric, n, "control blocks have a zero mean KPI; no relative effect", alpha, {})[1]
    else:
        r = m1 / m0 - 1
        g1, g0 = 1 / m0, -m1 / m0**2  # gradient of m1/m0
        se = math.sqrt(g1**2 * v1 + g0**2 * v0)
        half = stats.t.ppf(1 - alpha / 2, _welch_df(v1, v0, y1.size, y0.size)) * se
        rel = Result(float(r), se, (float(r - half), float(r + half)), ab.p_value, "switchback_ri", n, "relative",
                     ab.diagnostics, alpha, metric, {"control_mean": float(m0), "treatment_mean": float(m1)})
    extra = {**ab.extra, "relative": rel.estimate, "relative_ci_low": rel.ci[0], "relative_ci_high": rel.ci[1],
             "relative_se": rel.se, "relative_p_value": rel.p_value}
    return replace(ab, extra=extra), rel


def carryover_check(block_values, treated, *, alpha: float = 0.05, estimate_without_burn_in: float | None = None,
                    estimate: float | None = None, burn_in_hours: float = 0.0, metric: str = "") -> Check:
    """Carryover: is the effect different in blocks right after a switch than in blocks that continue an arm?

    Without carryover the treated-minus-control difference is the same whether or not the
    previous block had the other arm, so the interaction
    ``(T_switch - C_switch) - (T_stay - C_stay)`` is zero; a lingering previous policy pulls the
    first-after-switch difference towards zero (Bojinov, Simchi-Levi & Zhao 2023). Welch test
    over the four cells of blocks (block 0 has no previous block and is left out). ``warn`` when
    it is significant at ``alpha``: lengthen ``burn_in_hours`` or the blocks.

    Parameters
    ----------
    block_values : array
        Block KPI as analysed (NaN blocks are ignored).
    treated : array of bool
    estimate_without_burn_in, estimate : float, optional
        The effect with every row kept and with the burn-in dropped (reported in ``details``).
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
    tot = sum(var.values())
    se = math.sqrt(tot)
    dfs = tot**2 / sum(var[k] ** 2 / (cells[k].size - 1) for k in cells) if tot > 0 else math.inf
    p = float(2 * stats.t.sf(abs(inter) / se, dfs)) if se > 0 else math.nan
    details |= {"effect_after_switch": float(mean[True, True] - mean[False, True]),
                "effect_continuing": float(mean[True, False] - mean[False, False]), "se": se}
    if p < alpha:
        return Check("carryover", "warn",
                     f"{pre}effect after a switch differs from continuing blocks by {inter:+.4g} (p = {p:.2g}); the "
                     f"previous arm lingers: lengthen burn_in_hours (now {burn_in_hours:g}) or the blocks{shift}",
                     statistic=float(inter), p_value=p, threshold=alpha, details=details)
    return Check("carryover", "pass", f"{pre}no carryover detected ({inter:+.4g}, p = {p:.2g}){shift}",
                 statistic=float(inter), p_value=p, threshold=alpha, details=details)


def analyze_switchback(
    store,
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
        if burn > 0 and ab.method != "not_estimable":
            no_burn = switchback_kpi_effect(num_all[known], den_all[known], z[known], scale=k.scale, alpha=alpha,
                                            n_permutations=1, seed=seed, metric=k.name)[0].estimate
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(den > 0, num / den * k.scale, np.nan)
        y[~known] = np.nan
        chk = carryover_check(y, z, alpha=alpha, estimate_without_burn_in=_f(no_burn), estimate=_f(ab.estimate),
                              burn_in_hours=burn) if ab.method != "not_estimable" else \
            Check("carryover", "skip", f"{k.name} not estimable")
        carry[k.name] = chk
        x = {**ab.extra, "estimate_without_burn_in": _f(no_burn), "n_blocks": n, "block_hours": e.block_hours,
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

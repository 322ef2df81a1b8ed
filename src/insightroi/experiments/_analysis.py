"""Run the program's randomized experiment on the store: per-KPI effects, adjusted p-values, checks.

Stages as in DoWhy: design (the assignments) -> checks (SRM, contamination, balance,
pre-period equivalence, regression to the mean, novelty) -> estimate (ratio-of-sums delta
method at the randomization unit, with CUPED on the pre-period KPI) -> multiplicity (Holm and
Benjamini-Hochberg across KPIs).

A KPI over a ``quantile`` measure (median resolution hours) is the quantile of the rows pooled
over each arm's units: it is dispatched to :func:`insightroi.stats.quantile_effect` (the
clustered quantile delta method), without CUPED, pre-period or segment analyses. A capped
measure's cap is computed once over the analysis window and applied to every period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np

from insightroi.errors import DataError, EstimationError
from insightroi.experiments._checks import (
    annotation_check,
    balance_check,
    contamination_check,
    novelty_check,
    pre_period_check,
    regression_to_mean_check,
    srm_check,
)
from insightroi.experiments._common import (
    CONTROL,
    TREATMENT,
    ExperimentAnalysis,
    annotate_kpi_results,
    quantile_measure,
)
from insightroi.experiments._design_analysis import analyze_quasi_design
from insightroi.experiments._switchback_analysis import analyze_switchback
from insightroi.metrics import (
    UNIT_COLUMNS,
    analysis_windows,
    measure_caps,
    measure_rows_expr,
    measure_specs,
    unit_measures_expr,
)
from insightroi.program import Kpi, Program
from insightroi.stats import (
    NO_DENOMINATOR_IN_ARM,
    Check,
    EffectPrior,
    Ratio,
    RatioRegressionAdjusted,
    Result,
    bayesian_two_arm,
    multi_arm,
    quantile_effect,
    segment_breakdown,
    two_arm,
)
from insightroi.store import TABLES, Store

__all__ = ["analyze_experiment", "kpi_effect"]

_RANDOMIZED = ("ab", "cluster", "holdout")


def _stats(df, arm: str, use_pre: bool):
    d = df[df.arm == arm]
    if use_pre:
        return RatioRegressionAdjusted.from_arrays(d.num, d.den, d.num_pre, d.den_pre)
    return Ratio.from_arrays(d.num, d.den)


def _scaled(res: Result, scale: float) -> Result:
    if scale == 1:
        return res
    x = dict(res.extra)
    for k in ("control_mean", "treatment_mean", "control_mean_pre", "treatment_mean_pre", "mde"):
        if k in x and x[k] is not None:
            x[k] = x[k] * scale
    if x.get("ci_adjusted") is not None:  # A/B/n arms' simultaneous interval
        x["ci_adjusted"] = tuple(v * scale for v in x["ci_adjusted"])
    return replace(res, estimate=res.estimate * scale, se=res.se * scale, ci=(res.ci[0] * scale, res.ci[1] * scale),
                   extra=x)


def _nan_result(kpi: Kpi, n: int, message: str, alpha: float, unit: str = "absolute", *,
                method: str = "ratio_delta", extra: dict | None = None) -> Result:
    return Result.not_estimable(message, method=method, metric=kpi.name, n=n, unit=unit, alpha=alpha, extra=extra)


def store_annotations(store: Store, window: tuple[date, date]) -> list[dict[str, Any]]:
    """The ``annotations`` rows whose span meets ``window`` (inclusive days); ``[]`` without any."""
    a = store.table("annotations")
    lo = datetime.combine(window[0], time())
    hi = datetime.combine(window[1] + timedelta(days=1), time())
    rows = a.filter((a.start_time < hi) & (a.end_time.fill_null(a.start_time) >= lo)).select(
        "id", "kind", "start_time", "end_time", "scope", "description").order_by("start_time").execute()
    return rows.to_dict("records")


def kpi_effect(df, kpi: Kpi, *, alpha: float = 0.05, cuped: bool = True,
               sequential_tuning: float | None = None,
               bayesian: EffectPrior | Literal["flat"] | None = None) -> tuple[Result, Result]:
    """Absolute and relative effect of one KPI from per-unit data (columns arm, num, den, num_pre, den_pre).

    The estimator is the ratio of sums per arm with its delta-method variance at the
    randomization unit (cluster-robust for cluster designs: see
    :func:`insightroi.stats.cluster_randomized`), CUPED-adjusted by the unit's pre-period KPI
    when the pre-period has data in both arms (Deng et al. 2013). With ``sequential_tuning``
    the interval and p-value are always valid (a confidence sequence with that N*, as gbstats'
    sequential engine), so they may be read at every look. With ``bayesian`` (a prior on the
    relative effect, or ``"flat"``) both Results' ``extra`` gain ``chance_to_win``,
    ``risk_control``, ``risk_treatment`` and ``credible_interval`` (relative) from
    :func:`insightroi.stats.bayesian_two_arm` on the same statistics ("win" follows the KPI's
    direction).
    """
    n = int(len(df))
    dens = {a: float(df.loc[df.arm == a, "den"].sum()) for a in (TREATMENT, CONTROL)}
    if dens[CONTROL] == 0 or dens[TREATMENT] == 0:
        empty = CONTROL if dens[CONTROL] == 0 else TREATMENT
        msg = NO_DENOMINATOR_IN_ARM.format(arm=empty, denominator=kpi.denominator, kpi=kpi.name)
        tr = df[df.arm == TREATMENT]
        tm = float(tr.num.sum() / tr.den.sum() * kpi.scale) if dens[TREATMENT] else math.nan
        return (_nan_result(kpi, n, msg, alpha, extra={"treatment_mean": tm, "control_mean": math.nan}),
                _nan_result(kpi, n, msg, alpha, "relative"))
    use_pre = bool(cuped and all(float(df.loc[df.arm == a, "den_pre"].sum()) > 0 for a in (TREATMENT, CONTROL)))
    c, t = _stats(df, CONTROL, use_pre), _stats(df, TREATMENT, use_pre)
    try:
        ab = two_arm(c, t, alpha=alpha, metric=kpi.name, cuped=use_pre, sequential_tuning=sequential_tuning)
        rel = two_arm(c, t, relative=True, alpha=alpha, metric=kpi.name, cuped=use_pre,
                      sequential_tuning=sequential_tuning)
    except DataError as exc:
        method = "cuped_ratio" if use_pre else "ratio_delta"
        return (_nan_result(kpi, n, str(exc), alpha, method=method),
                _nan_result(kpi, n, str(exc), alpha, "relative", method=method))
    if bayesian is not None:
        bay = _bayesian_figures(c, t, kpi, alpha=alpha, cuped=use_pre, prior=None if bayesian == "flat" else bayesian)
        ab, rel = (replace(r, extra={**r.extra, **bay}) for r in (ab, rel))
    return _scaled(ab, kpi.scale), rel


def _bayesian_figures(c, t, kpi: Kpi, *, alpha: float, cuped: bool, prior: EffectPrior | None) -> dict[str, Any]:
    try:
        b = bayesian_two_arm(c, t, relative=True, prior=prior, inverse=kpi.direction == "decrease", alpha=alpha,
                             cuped=cuped, metric=kpi.name)
    except DataError as exc:
        return {"bayesian_note": str(exc)}
    return {"chance_to_win": b.extra["chance_to_win"], "risk_control": b.extra["risk_control"],
            "risk_treatment": b.extra["risk_treatment"], "credible_interval": list(b.ci),
            "posterior_mean": b.estimate, "prior": b.extra.get("prior")}


_NO_CUPED = ("CUPED does not apply to a quantile KPI (a quantile of rows has no per-unit pre-period value to "
             "adjust by): the effect is unadjusted, and no pre-period or segment analysis is run")


def _quantile_effects(store: Store, program: Program, k: Kpi, window, alpha: float) -> tuple[Result, Result]:
    """Absolute and relative effect of a quantile KPI from its rows (clustered delta method)."""
    q = quantile_measure(program, k).quantile
    rows = measure_rows_expr(store, program, k.numerator, window=window).execute()
    arm = {a: rows[rows.arm == a] for a in (CONTROL, TREATMENT)}
    args = (arm[CONTROL].value.to_numpy(float), arm[CONTROL].unit_id.to_numpy(),
            arm[TREATMENT].value.to_numpy(float), arm[TREATMENT].unit_id.to_numpy())
    n = int(rows.unit_id.nunique())
    note = Check("cuped", "skip", _NO_CUPED)
    try:
        ab = quantile_effect(*args, q=q, alpha=alpha, metric=k.name)
        rel = quantile_effect(*args, q=q, relative=True, alpha=alpha, metric=k.name)
    except DataError as exc:
        return (_nan_result(k, n, str(exc), alpha, method="quantile_delta", extra={"quantile": q}),
                _nan_result(k, n, str(exc), alpha, "relative", method="quantile_delta"))
    ab = _scaled(ab, k.scale)
    return replace(ab, diagnostics=ab.diagnostics + (note,)), replace(rel, diagnostics=rel.diagnostics + (note,))


def _cap_checks(program: Program, k: Kpi, caps: dict[str, float]) -> tuple[Check, ...]:
    out = []
    for m in (k.numerator, k.denominator):
        if m not in caps:
            continue
        level = program.measure(m).cap
        cap = caps[m]
        if math.isfinite(cap):
            msg = (f"{m}: each row's value capped at {cap:.6g}, the {100 * level:g}th percentile of its values in "
                   "the analysis window (both arms pooled)")
        else:
            msg = f"{m}: no value in the analysis window, nothing capped"
        out.append(Check("capped_values", "pass", msg, statistic=cap if math.isfinite(cap) else None,
                         details={"measure": m, "percentile": level, "cap": cap}))
    return tuple(out)


def _weekly(store: Store, program, kpis_needed: Sequence[Kpi], window, alpha,
            caps: dict[str, float] | None = None) -> dict[str, list[Result]]:
    measures = sorted({m for k in kpis_needed for m in (k.numerator, k.denominator)})
    df = unit_measures_expr(store, program, measures, window=window, by=("week",), caps=caps).execute()
    out: dict[str, list[Result]] = {}
    for k in kpis_needed:
        res = []
        for w in sorted(df.week.unique()):
            d = df[df.week == w]
            dd = d.assign(num=d[k.numerator], den=d[k.denominator], num_pre=0.0, den_pre=0.0)
            res.append(kpi_effect(dd, k, alpha=alpha, cuped=False)[1])
        out[k.name] = res
    return out


def analyze_experiment(
    store: Store,
    program: Program,
    *,
    kpis: Sequence[str] | None = None,
    segments: Sequence[str] | None = None,
    window: tuple[date, date] | None = None,
    alpha: float | None = None,
    cuped: bool = True,
    weekly: bool = True,
) -> ExperimentAnalysis:
    """Analyse the program's experiment on the store, whatever its design.

    Randomized unit designs (ab, cluster, holdout) are analysed here. A switchback design is
    handed to :func:`insightroi.experiments.analyze_switchback` (time blocks
    are the unit; ``cuped``, ``weekly`` and ``segments`` do not apply); did, synthetic_control and
    its to :func:`insightroi.experiments.analyze_quasi_design` (same result shape).

    Parameters
    ----------
    store : insightroi.store.Store
    program : Program
        Its ``experiment`` section names the assignments (experiment name, unit), window,
        pre-period, alpha and primary KPI.
    kpis : sequence of str, optional
        KPIs to analyse (default: all the program's KPIs).
    segments : sequence of str, optional
        Columns to break each KPI down by (e.g. ``["region"]``); each KPI gets one relative
        Result per segment value, BH-adjusted across values.
    window : (date, date), optional
        Inclusive analysis window (default: experiment start to end, or today).
    alpha : float, optional
        Default ``program.experiment.alpha``.
    cuped : bool
        Adjust each KPI by its pre-period value (variance reduction, no bias).
    weekly : bool
        Run the novelty check on the primary KPI (one extra pass over its tables).

    Returns
    -------
    ExperimentAnalysis

    Raises
    ------
    EstimationError
        For segment breakdowns of a switchback or quasi-experimental design.
    DataError
        When the store has no assignments for the experiment.
    """
    e = program.experiment
    if e.design not in _RANDOMIZED:
        for k in [program.kpi(n) for n in kpis] if kpis else program.kpis:
            if quantile_measure(program, k) is not None:
                raise EstimationError(f"KPI {k.name!r} is a quantile of rows ({k.numerator!r}); quantile KPIs are "
                                      f"analysed for randomized unit designs {list(_RANDOMIZED)}, not {e.design!r}")
    if e.design == "switchback":
        # Time blocks, not units, are randomized: a separate path with the same result shape.
        if segments:
            raise EstimationError("segment breakdowns are not available for switchback designs (blocks are the unit)")
        return analyze_switchback(store, program, kpis=kpis, window=window, alpha=alpha)
    if e.design in ("did", "synthetic_control", "its"):
        # Nothing was randomized: the design's own estimator, with the same result shape.
        if segments:
            raise EstimationError(f"segment breakdowns are not available for the {e.design} design")
        return analyze_quasi_design(store, program, kpis=kpis, window=window, alpha=alpha)
    alpha = e.alpha if alpha is None else alpha
    if e.design not in _RANDOMIZED:
        raise EstimationError(
            f"experiment design {e.design!r} is not a randomized unit-level design; analyze_experiment handles "
            f"{list(_RANDOMIZED) + ['switchback']} (did, synthetic_control, its: the quasi-experiment estimators)")
    chosen = [program.kpi(k) for k in kpis] if kpis else list(program.kpis)
    quantiles = {k.name for k in chosen if quantile_measure(program, k) is not None}
    totals = [k for k in chosen if k.name not in quantiles]
    window, pre_window = analysis_windows(program, window=window)
    # Alerts delivered to a control unit are contamination; chain events carry only the unit
    # columns alerts are routed by (a customer-level experiment has no alert per customer).
    alerts_by_unit = UNIT_COLUMNS.get(e.unit) in TABLES["chain_events"].columns
    measures = sorted({m for k in totals for m in (k.numerator, k.denominator)} | ({"alerts"} if alerts_by_unit else set()))
    # Once per analysis: every period, week and segment caps at the analysis window's percentile.
    caps = measure_caps(store, program, measures, window=window)
    df = unit_measures_expr(store, program, measures, window=window, pre_window=pre_window, caps=caps).execute()
    if df.empty:
        raise DataError(f"no assignments for experiment {e.name!r} with unit type {e.unit!r} in the store")
    df = df.sort_values("unit_id", kind="stable").reset_index(drop=True)
    # A/B/n: every label other than "control" is a treatment arm. Each KPI's main result pools the
    # arms (the program's "treatment" policy, what the ROI values); ``arms`` compares each arm
    # with control, Holm-adjusted across arms.
    variants = sorted(set(df.arm) - {CONTROL})
    by_arm = df.copy() if variants != [TREATMENT] else None
    if by_arm is not None:
        if len(variants) < 2 and variants:
            raise DataError(f"arm label {variants[0]!r}: with one treatment arm it must be called 'treatment' "
                            "(several arms may have any names besides 'control')")
        df = df.assign(arm=np.where(df.arm == CONTROL, CONTROL, TREATMENT))
    arms = df.arm.value_counts()
    n_t, n_c = int(arms.get(TREATMENT, 0)), int(arms.get(CONTROL, 0))

    if by_arm is None:
        checks = [srm_check([n_c, n_t], [1 - e.treatment_share, e.treatment_share])]
    else:
        counts = by_arm.arm.value_counts()
        share = e.treatment_share / len(variants)
        checks = [srm_check([n_c] + [int(counts.get(v, 0)) for v in variants],
                            [1 - e.treatment_share] + [share] * len(variants))]
    control_exposed = int(((df.arm == CONTROL) & (df["alerts"] > 0)).sum()) if alerts_by_unit else 0
    checks.append(contamination_check(len(df), int((df.n_arms > 1).sum()), control_exposed=control_exposed,
                                      n_control=n_c))
    cov_c, cov_t = {}, {}
    for k in totals:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = df[f"{k.numerator}_pre"] / df[f"{k.denominator}_pre"]
        cov_c[f"{k.name} (pre)"], cov_t[f"{k.name} (pre)"] = rate[df.arm == CONTROL], rate[df.arm == TREATMENT]
        if k.denominator != "units":
            v = df[f"{k.denominator}_pre"]
            cov_c[f"{k.denominator} (pre)"], cov_t[f"{k.denominator} (pre)"] = v[df.arm == CONTROL], v[df.arm == TREATMENT]
    checks.append(balance_check(cov_c, cov_t) if pre_window else Check("covariate_balance", "skip", "no pre-period"))
    checks.append(annotation_check(store_annotations(store, window), window, rule=e.annotation_rule,
                                   excluded=e.exclude_windows))

    seq = e.sequential_tuning if e.sequential else None
    bayes = None
    if e.bayesian:
        bayes = "flat" if e.prior_sd is None else EffectPrior(mean=e.prior_mean, variance=e.prior_sd ** 2,
                                                              scale="relative")
    if seq is not None:
        checks.append(Check("sequential", "pass", f"always-valid intervals and p-values (confidence sequence, "
                                                  f"N* = {seq:g}): the results may be read at any look"))
    results: dict[str, Result] = {}
    relative: dict[str, Result] = {}
    for k in chosen:
        if k.name in quantiles:
            results[k.name], relative[k.name] = _quantile_effects(store, program, k, window, alpha)
            if seq is not None:
                note = Check("sequential", "warn", "a quantile KPI has no always-valid interval here: its interval "
                                                   "is fixed-horizon, valid only at the planned end")
                results[k.name] = replace(results[k.name], diagnostics=results[k.name].diagnostics + (note,))
            continue
        d = df.assign(num=df[k.numerator], den=df[k.denominator], num_pre=df[f"{k.numerator}_pre"],
                      den_pre=df[f"{k.denominator}_pre"])
        ab, rel = kpi_effect(d, k, alpha=alpha, cuped=cuped, sequential_tuning=seq, bayesian=bayes)
        diag = []
        if pre_window is not None:
            c_pre = Ratio.from_arrays(d.num_pre[d.arm == CONTROL], d.den_pre[d.arm == CONTROL])
            t_pre = Ratio.from_arrays(d.num_pre[d.arm == TREATMENT], d.den_pre[d.arm == TREATMENT])
            diag.append(pre_period_check(c_pre, t_pre, alpha=alpha, metric=k.name))
        diag += _cap_checks(program, k, caps)
        if caps and any(m in caps for m in (k.numerator, k.denominator)):
            ab = replace(ab, extra={**ab.extra, "caps": {m: caps[m] for m in (k.numerator, k.denominator) if m in caps}})
        results[k.name], relative[k.name] = replace(ab, diagnostics=ab.diagnostics + tuple(diag)), rel
    # Regression to the mean on the primary KPI: the pre-period vs the equally long period before it.
    primary = next((k for k in totals if k.name == e.primary_kpi), None)
    if primary is not None and pre_window is not None:
        span = pre_window[1] - pre_window[0] + timedelta(days=1)
        hist_win = (pre_window[0] - span, pre_window[0] - timedelta(days=1))
        h = unit_measures_expr(store, program, [primary.numerator, primary.denominator], window=hist_win,
                               pre_window=pre_window, caps=caps).execute()
        rtm = regression_to_mean_check(Ratio.from_arrays(h[primary.numerator], h[primary.denominator]),
                                       Ratio.from_arrays(h[f"{primary.numerator}_pre"], h[f"{primary.denominator}_pre"]),
                                       metric=primary.name)
        r = results[primary.name]
        results[primary.name] = replace(r, diagnostics=r.diagnostics + (rtm,))
    specs = measure_specs(program)
    per_unit = {k.name for k in totals
                if any(m != "units" and (specs[m].per_unit is not None or specs[m].time_to_first)
                       for m in (k.numerator, k.denominator))}
    if primary is not None and weekly and primary.name in per_unit:
        checks.append(Check("novelty", "skip", f"{primary.name}: a per-unit condition or time to a first event "
                                               "has no weekly trend to read (a unit's week is not its window)"))
    elif primary is not None and weekly:
        wk = _weekly(store, program, [primary], window, alpha, caps)[primary.name]
        nov = novelty_check(wk, alpha=alpha)
        checks.append(replace(nov, message=f"{primary.name}: {nov.message}"))
    if weekly and e.primary_kpi in quantiles:
        checks.append(Check("novelty", "skip", f"{e.primary_kpi}: a quantile KPI is not checked for novelty "
                                               "(the weekly trend reads per-unit totals)"))

    annotate_kpi_results(results, relative, program, analysis_unit=e.unit, n_treatment=n_t, n_control=n_c,
                         window=window)

    arm_out: dict[str, dict[str, Result]] = {}
    if by_arm is not None:
        for k in totals:
            d = by_arm.assign(num=by_arm[k.numerator], den=by_arm[k.denominator],
                              num_pre=by_arm[f"{k.numerator}_pre"], den_pre=by_arm[f"{k.denominator}_pre"])
            use_pre = bool(cuped and all(float(d.loc[d.arm == a, "den_pre"].sum()) > 0 for a in (CONTROL, *variants)))
            try:
                mr = multi_arm(_stats(d, CONTROL, use_pre), {v: _stats(d, v, use_pre) for v in variants},
                               alpha=alpha, cuped=use_pre, correction="holm", metric=k.name)
            except DataError as exc:
                checks.append(Check("arms", "skip", f"{k.name}: arms not compared ({exc})"))
                continue
            arm_out[k.name] = {v: _scaled(r, k.scale) for v, r in mr.arms.items()}

    seg_out: dict[str, dict[str, dict[str, Result]]] = {}
    if segments and per_unit:
        checks.append(Check("segments", "skip", f"{', '.join(sorted(per_unit))}: a per-unit condition or time to a "
                                                "first event over the unit's window is not broken down by segment"))
    for col in segments or ():
        seg_out[col] = _segments(store, program, [k for k in totals if k.name not in per_unit], col, window,
                                 pre_window, alpha, cuped, caps)

    return ExperimentAnalysis(
        name=e.name, design=e.design, unit=e.unit, window=window, pre_window=pre_window, n_treatment=n_t,
        n_control=n_c, results=results, relative=relative, checks=tuple(checks), segments=seg_out, alpha=alpha,
        arms=arm_out,
    )


def _segments(store: Store, program, chosen, col, window, pre_window, alpha, cuped,
              caps=None) -> dict[str, dict[str, Result]]:
    measures = sorted({m for k in chosen for m in (k.numerator, k.denominator)})
    if not measures:
        return {}
    df = unit_measures_expr(store, program, measures, window=window, pre_window=pre_window, by=(col,),
                            caps=caps).execute()
    out = {}
    for k in chosen:
        cells = {}
        for val, d in df.groupby(col, dropna=False, sort=True):
            args = [d[d.arm == a] for a in (CONTROL, TREATMENT)]
            if sum(float(x[k.denominator].sum()) for x in args) == 0:
                continue  # this KPI has no data in this segment (e.g. a table without the column's value)
            use_pre = cuped and all(float(x[f"{k.denominator}_pre"].sum()) > 0 for x in args)
            if use_pre:
                st = [RatioRegressionAdjusted.from_arrays(x[k.numerator], x[k.denominator], x[f"{k.numerator}_pre"],
                                                          x[f"{k.denominator}_pre"]) for x in args]
            else:
                st = [Ratio.from_arrays(x[k.numerator], x[k.denominator]) for x in args]
            if any(s.mean != s.mean or getattr(s, "n", 0) < 2 for s in st):  # NaN mean: empty denominator
                st = [Ratio.from_arrays(x[k.numerator], x[k.denominator]) for x in args]
            cells[str(val)] = tuple(st)
        out[k.name] = segment_breakdown(cells, relative=True, alpha=alpha, correction="bh", metric=k.name)
    return out

"""KPI measures compiled to Ibis expressions over the store: per-unit totals, joined with arms.

Every KPI is ``numerator / denominator x scale`` over base measures (``program.MEASURES``) or the
program's ``[[measures]]``. :func:`insightroi.metrics.measure_specs` says where each measure lives
(table, filter, value, event time, unit column); this module builds *one* aggregation per source
table (and time and unit column) for all the measures it needs (post and pre period side by side
as conditional sums), stacks the tables with ``union`` and sums per analysis unit. Everything
is Ibis, so the same expression runs on DuckDB, PySpark or Databricks; nothing here is SQL text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from insightroi.errors import DataError
from insightroi.metrics._measures import UNIT_COLUMNS, MeasureSpec, measure_specs
from insightroi.program import Kpi, Program
from insightroi.stats import RatioRegressionAdjusted
from insightroi.store import Store

__all__ = [
    "Window",
    "analysis_windows",
    "block_measures_expr",
    "measure_caps",
    "measure_rows_expr",
    "unit_measures_expr",
    "unit_metrics",
    "unit_metrics_expr",
    "arm_statistics",
    "measure_totals",
    "treated_volumes",
    "volume_measures",
]


Window = tuple[date, date]  # inclusive calendar dates


def _is_arm(col: ir.StringValue, arm: str) -> ir.BooleanValue:
    # "treatment" is every arm but control: an A/B/n experiment's treated volume is all its arms'.
    return col != "control" if arm == "treatment" else col == arm


def _epoch(naive_utc: datetime) -> float:
    # Stored timestamps are naive UTC; datetime.timestamp() would read a naive one as local time.
    return naive_utc.replace(tzinfo=timezone.utc).timestamp()


def _day_start(d: date | datetime) -> datetime:
    if isinstance(d, datetime):
        return d.replace(tzinfo=None)
    return datetime(d.year, d.month, d.day)


_ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "boolean": pa.bool_(),
                "date": pa.date32(), "timestamp": pa.timestamp("us")}

# 52 whole weeks: the same season and the same weekdays a year earlier.
SAME_PERIOD_LAST_YEAR_DAYS = 364


def analysis_windows(program: Program, *, window: Window | None = None, pre_window: Window | None = None,
                     today: date | None = None) -> tuple[Window, Window | None]:
    """The experiment window and the pre-period window (inclusive dates) the program implies.

    The window runs from ``experiment.start`` to ``experiment.end`` (or ``today``); the
    pre-period is the ``pre_period_days`` before the start (None when that is 0), or, with
    ``baseline = "same_period_last_year"``, the window shifted back 364 days (52 whole weeks, so
    weekdays line up as well as the season).

    Raises
    ------
    DataError
        A same-period-last-year baseline for a window of 52 weeks or more: the covariate would
        overlap the window.
    """
    e = program.experiment
    if window is None:
        end = e.end or (today or date.today())
        window = (e.start, end)
    if pre_window is None and e.baseline == "same_period_last_year":
        year = timedelta(days=SAME_PERIOD_LAST_YEAR_DAYS)
        if window[1] - year >= window[0]:
            raise DataError(f"baseline = \"same_period_last_year\": the window {window[0]} to {window[1]} is 52 weeks "
                            "or longer, so the same period last year overlaps it; use the pre-period baseline")
        pre_window = (window[0] - year, window[1] - year)
    elif pre_window is None and e.pre_period_days > 0:
        pre_window = (window[0] - timedelta(days=e.pre_period_days), window[0] - timedelta(days=1))
    return window, pre_window


def _in_window(col: ir.Value, w: Window, is_date: bool) -> ir.BooleanValue:
    if is_date:
        return (col >= w[0]) & (col <= w[1])
    return (col >= _day_start(w[0])) & (col < _day_start(w[1] + timedelta(days=1)))


def _flagged_ids(store: Store, task: str, label: str) -> ir.Table:
    # Feedback ids the *latest* model version (by created_at) labelled ``label`` for ``task``;
    # older versions are kept in the table for validation but must not double count.
    ins = store.table("insights")
    of_task = ins.filter(ins.task == task)
    latest = of_task.aggregate(_v=of_task.model_version.argmax(of_task.created_at))
    sel = of_task.filter(of_task.label == label)
    sel = sel.inner_join(latest, sel.model_version == latest._v)
    return sel.select(_fid=sel.feedback_id).distinct()


def _join_insight_flags(store: Store, t: ir.Table, measures: Sequence[str],
                        specs: dict[str, MeasureSpec]) -> tuple[ir.Table, dict[str, ir.BooleanValue]]:
    """Left-join the ids flagged by each insight measure's model; ``measure -> row is flagged``."""
    flag_keys = {}
    for m in measures:
        spec = specs[m]
        if spec.insight is not None:
            key = f"_flag_{m}"
            ids = _flagged_ids(store, *spec.insight).rename({key: "_fid"})
            t = t.left_join(ids, t.id == ids[key])
            flag_keys[m] = key
    # Flags are taken from the final joined table: an expression built before a later join
    # belongs to the earlier relation, and Ibis refuses to mix the two (two insight measures
    # on one table, e.g. negative_feedback and defect_mentions).
    return t, {m: t[key].notnull() for m, key in flag_keys.items()}


def _source_table(store: Store, name: str, measures: Sequence[str], specs: dict[str, MeasureSpec]) -> ir.Table:
    source = next((specs[m].source for m in measures if specs[m].source is not None), None)
    if source is not None:
        store.attach_source(name, source[0], dict(source[1]))
    users = sorted({specs[m].measure for m in measures if specs[m].measure})
    declared = next((specs[m].declared for m in measures if specs[m].declared), None)
    try:
        t = store.table(name)
    except KeyError:
        if not users or not name.startswith("user_"):
            raise
        if declared is None:
            raise DataError(f"measure(s) {users} read the user table {name.removeprefix('user_')!r}, which the store "
                            f"does not hold yet (as {name!r}); ingest it first: insightroi ingest --table "
                            f"{name.removeprefix('user_')} FILE") from None
        # Declared but not ingested yet (the starter's surveys before the first export): no rows,
        # so its KPIs are not estimable while every other KPI is analysed (analyze says which).
        return ibis.memtable(pa.table({c: pa.array([], type=_ARROW_TYPES[t]) for c, t in declared}))
    if declared is not None and source is None:
        # The program file changed after the table was ingested: a measure over a column the
        # stored table lacks failed deep in Ibis ("does not type-check"), naming neither.
        stored = store._stored_columns(name) or {}
        diff = [f"{c} (declared {ty}, {'stored ' + stored[c] if c in stored else 'not stored'})"
                for c, ty in declared if stored.get(c) != ty]
        if diff:
            raise DataError(f"user table {name!r} is stored with other columns than the program file declares: "
                            f"{'; '.join(diff)} (read by measure(s) {users}). User tables are not migrated: declare "
                            "the columns as stored, or ingest the table again into a fresh one")
    return t


def _aggregate(spec: MeasureSpec, t: ir.Table, *conds: ir.BooleanValue) -> list[ir.FloatingScalar]:
    """One float64 reduction of ``spec`` over the rows of ``t`` meeting each condition."""
    val = spec.value_expr(t)
    if spec.distinct:
        return [val.nunique(where=c).cast("float64") for c in conds]
    return [ibis.ifelse(c, val, 0.0).sum() for c in conds]


def _with_cap(spec: MeasureSpec, cap: float) -> MeasureSpec:
    """``spec`` with each row's value capped at ``cap`` (a null stays null, so a mean's rows and
    its ``_count`` still agree; SQL's ``least`` would turn a null into the cap)."""
    base = spec.value

    def capped(t: ir.Table) -> ir.Value:
        v = (t[base] if isinstance(base, str) else base(t)).cast("float64")
        return ibis.ifelse(v > cap, cap, v)

    return replace(spec, value=capped)


def _arms(store: Store, program: Program, unit: str) -> ir.Table:
    # The unit's first assignment (intention to treat) and how many arms it was assigned to.
    e = program.experiment
    a = store.table("assignments")
    a = a.filter((a.experiment == e.name) & (a.unit_type == unit))
    return a.group_by(unit_id=a.unit_id.cast("string")).aggregate(arm=a.arm.argmin(a.assigned_at),
                                                                   n_arms=a.arm.nunique())


def _rows(store: Store, program: Program, measure: str, specs: dict[str, MeasureSpec], window: Window,
          unit: str | None) -> ir.Table:
    """The window's rows of one measure with a value: ``value`` (float64), plus ``unit_id`` and
    ``arm`` of an assigned unit when ``unit`` is given (rows of unassigned units left out)."""
    if measure == "units" or measure not in specs:
        raise DataError(f"unknown measure {measure!r}; known: {sorted(specs)}")
    spec = specs[measure]
    if spec.value is None or spec.distinct:
        raise DataError(f"measure {measure!r} counts rows (or distinct values); it has no value per row")
    e = program.experiment
    t = _source_table(store, spec.table, [measure], specs)
    tc = t[spec.time]
    is_date = tc.type().is_date()
    keep = _in_window(tc, window, is_date)
    for lo, hi in e.exclude_windows:
        keep = keep & ~_in_window(tc, (lo, hi), is_date)
    ucol = None
    if unit is not None:
        ucol = spec.unit_column_for(unit)
        if ucol is None:
            raise DataError(f"analysis unit {unit!r} cannot be read for measure {measure!r} (table {spec.table!r}); "
                            f"supported: {sorted(UNIT_COLUMNS)}, or set the measure's unit_column")
        keep = keep & t[ucol].notnull()
    t = t.filter(keep)
    t, flags = _join_insight_flags(store, t, [measure], specs)
    cond = spec.condition(t)
    if measure in flags:
        cond = cond & flags[measure]
    raw = (t[spec.value] if isinstance(spec.value, str) else spec.value(t)).cast("float64")
    cols = {"_value": raw, "_keep": cond & raw.notnull()}
    if ucol is not None:
        cols["_uid"] = t[ucol].cast("string")
    t = t.mutate(**cols)
    t = t.filter(t._keep)
    if ucol is None:
        return t.select(value=t._value)
    arms = _arms(store, program, unit)
    j = t.inner_join(arms, t._uid == arms.unit_id)
    return j.select(unit_id=j._uid, arm=j.arm, value=j._value)


def measure_rows_expr(store: Store, program: Program, measure: str, *, window: Window | None = None,
                      unit: str | None = None, caps: Mapping[str, float] | None = None) -> ir.Table:
    """The rows of one measure in the analysis window, each with its assigned unit and arm.

    What a quantile KPI is computed from: the rows of ``measure``'s table in the window (rows in
    ``experiment.exclude_windows`` left out) that pass its filter (and insight flag) and have a
    non-null value, joined to the experiment's assigned units (a row of an unassigned unit is
    left out; ``arm`` is the unit's first assignment, as in :func:`unit_measures_expr`).

    Parameters
    ----------
    measure : str
        A measure with a value per row (``sum``, ``mean`` or ``quantile``; not a count).
    window : (date, date), optional
        Inclusive dates; default from :func:`analysis_windows`.
    unit : str, optional
        Analysis unit; default ``experiment.unit``.
    caps : mapping, optional
        ``measure -> cap`` for a capped measure (default: :func:`measure_caps` over ``window``).

    Returns
    -------
    ibis Table
        Columns ``unit_id`` (string), ``arm``, ``value`` (float64), one row per source row.
    """
    window, _ = analysis_windows(program, window=window)
    specs = measure_specs(program)
    spec = specs.get(measure)
    if spec is not None and spec.cap is not None:
        cap = (caps or {}).get(measure)
        if cap is None:
            cap = measure_caps(store, program, [measure], window=window, unit=unit)[measure]
        if math.isfinite(cap):
            specs = {**specs, measure: _with_cap(spec, cap)}
    return _rows(store, program, measure, specs, window, unit or program.experiment.unit)


def measure_caps(store: Store, program: Program, measures: Iterable[str], *, window: Window | None = None,
                 unit: str | None = None) -> dict[str, float]:
    """The cap of each capped measure among ``measures``: its ``cap`` percentile in the window.

    The percentile (linear interpolation, ``numpy.percentile``'s default; DuckDB's
    ``quantile_cont``) of the values of the measure's rows in the window that pass its filter,
    pooled over both arms (the rows of assigned units; every row of the window for a
    switchback design). One query per capped measure; compute it once per analysis and pass it
    to :func:`unit_measures_expr` so every period and breakdown caps at the same value.

    Returns
    -------
    dict
        ``measure -> cap`` (NaN when the window has no row with a value: nothing to cap).
    """
    window, _ = analysis_windows(program, window=window)
    specs = measure_specs(program)
    by_unit = None if program.experiment.design == "switchback" else (unit or program.experiment.unit)
    out = {}
    for m in dict.fromkeys(measures):
        spec = specs.get(m)
        if spec is None or spec.cap is None:
            continue
        rows = _rows(store, program, m, specs, window, by_unit)
        got = rows.aggregate(_cap=rows.value.quantile(spec.cap)).execute()._cap.iloc[0]
        out[m] = math.nan if got is None or got != got else float(got)
    return out


def _capped_specs(store: Store, program: Program, measures: Sequence[str], specs: dict[str, MeasureSpec],
                  window: Window, caps: Mapping[str, float] | None, unit: str | None) -> dict[str, MeasureSpec]:
    capped = [m for m in measures if m in specs and specs[m].cap is not None]
    if not capped:
        return specs
    caps = dict(caps or {})
    missing = [m for m in capped if m not in caps]
    if missing:
        caps.update(measure_caps(store, program, missing, window=window, unit=unit))
    return {**specs, **{m: _with_cap(specs[m], caps[m]) for m in capped if math.isfinite(caps[m])}}


def _week_index(col: ir.Value, start: date, is_date: bool) -> ir.IntegerValue:
    ts = col.cast("timestamp") if is_date else col
    origin = int(_day_start(start).timestamp()) - int(datetime(1970, 1, 1).timestamp())
    return ((ts.epoch_seconds() - origin) // (7 * 86400)).cast("int64")


_PER_UNIT_OPS = {
    ">=": lambda v, x: v >= x, ">": lambda v, x: v > x, "<=": lambda v, x: v <= x, "<": lambda v, x: v < x,
    "=": lambda v, x: v == x, "!=": lambda v, x: v != x,
}


def unit_measures_expr(
    store: Store,
    program: Program,
    measures: Iterable[str],
    *,
    window: Window | None = None,
    pre_window: Window | None = None,
    by: Sequence[str] = (),
    unit: str | None = None,
    caps: Mapping[str, float] | None = None,
) -> ir.Table:
    """Per-unit totals of ``measures`` in the window (``<m>``) and pre-window (``<m>_pre``), with arm.

    One aggregation per source table; rows in ``experiment.exclude_windows`` are left out of
    both periods. ``by`` adds grouping columns present in every source table, or ``"week"``
    (whole weeks since the window start; post period only). Units come from the assignments
    table (experiment name, unit type): every assigned unit appears, with 0 where it had no
    rows. ``arm`` is the unit's first assignment (intention to treat); ``n_arms`` > 1 flags a
    unit assigned to both arms.

    A measure with a ``per_unit`` condition is 1 for a unit whose total meets it and 0 otherwise
    (in each period; a unit with no rows has total 0); it cannot be grouped ``by``.
    A capped measure caps each row at ``caps[m]`` (both periods), computed with
    :func:`measure_caps` over ``window`` when not given. A quantile measure's total is the sum of
    its values (a volume for the stages that need one); its KPI is computed from its rows
    (:func:`measure_rows_expr`).

    Returns
    -------
    ibis Table
        Columns ``unit_id, arm, n_arms, *by, <m>, <m>_pre ...`` (all measures float64).
    """
    e = program.experiment
    unit = unit or e.unit
    specs = measure_specs(program)
    measures = list(dict.fromkeys(measures))
    unknown = [m for m in measures if m not in specs and m != "units"]
    if unknown:
        raise DataError(f"unknown measures {unknown}; known: {sorted([*specs, 'units'])}")
    window, pre_window = analysis_windows(program, window=window, pre_window=pre_window)
    specs = _capped_specs(store, program, measures, specs, window, caps, unit)
    by = list(by)
    per_unit = {m: specs[m].per_unit for m in measures if m != "units" and specs[m].per_unit is not None}
    to_first = [m for m in measures if m != "units" and specs[m].time_to_first]
    if (per_unit or to_first) and by:
        # A condition on the unit's total over the window: a week's or a segment's total is
        # another quantity, and a unit without rows there would vanish instead of counting as 0.
        raise DataError(f"measure(s) {sorted(per_unit) + to_first} hold a per_unit condition or a time to the "
                        f"first event over each unit's whole window; they are not broken down by {by}")
    ends = {"post": _day_start(window[1] + timedelta(days=1)),
            "pre": _day_start(pre_window[1] + timedelta(days=1)) if pre_window is not None else None}
    weekly = "week" in by
    fact_measures = [m for m in measures if m != "units"]
    # One aggregation per (table, time column, unit column): a user measure may window on
    # another time column or join on another unit column than the table's built-in measures.
    groups: dict[tuple[str, str, str], list[str]] = {}
    for m in fact_measures:
        spec = specs[m]
        ucol = spec.unit_column_for(unit)
        if ucol is None:
            raise DataError(f"analysis unit {unit!r} cannot be read for measure {m!r} (table {spec.table!r}); "
                            f"supported: {sorted(UNIT_COLUMNS)}, or set the measure's unit_column")
        groups.setdefault((spec.table, spec.time, ucol), []).append(m)
    all_cols = [c for m in measures for c in (m, f"{m}_pre")]
    fact_cols = [c for m in fact_measures for c in (m, f"{m}_pre")]
    parts = []
    for (tname, time_col, ucol), ms in groups.items():
        t = _source_table(store, tname, ms, specs)
        missing = [c for c in [ucol, *[b for b in by if b != "week"]] if c not in t.columns]
        if missing:
            raise DataError(f"table {tname!r} has no column(s) {missing} needed to group {ms}")
        tc = t[time_col]
        is_date = tc.type().is_date()
        post = _in_window(tc, window, is_date)
        pre = _in_window(tc, pre_window, is_date) if pre_window is not None and not weekly else ibis.literal(False)
        keep = post | pre
        for lo, hi in e.exclude_windows:
            keep = keep & ~_in_window(tc, (lo, hi), is_date)
        t = t.filter(keep & t[ucol].notnull())
        t, flags = _join_insight_flags(store, t, ms, specs)
        tc = t[time_col]
        post = _in_window(tc, window, is_date)
        keys = {"unit_id": t[ucol].cast("string")}
        for b in by:
            keys[b] = _week_index(tc, window[0], is_date) if b == "week" else t[b]
        aggs = {}
        for m in ms:
            spec = specs[m]
            cond = spec.condition(t)
            if m in flags:
                cond = cond & flags[m]
            if spec.time_to_first:
                # The latest "days left in the period" of a unit's rows is its first event seen from
                # the period's end; a unit with none stays at 0 (censored), see below.
                secs = (tc.cast("timestamp") if is_date else tc).epoch_seconds().cast("float64")
                for col, end, c in ((m, ends["post"], cond & post), (f"{m}_pre", ends["pre"], cond & ~post)):
                    # Typed literals: Spark reads an untyped one as a DECIMAL and truncates the quotient.
                    end_s = ibis.literal(_epoch(end) if end else 0.0, type="float64")
                    left = (end_s - secs) / ibis.literal(86400.0, type="float64")
                    aggs[col] = ibis.ifelse(c, left, None).max().cast("float64").fill_null(0.0)
                continue
            aggs[m], aggs[f"{m}_pre"] = _aggregate(spec, t, cond & post, cond & ~post)
        agg = t.group_by(**keys).aggregate(**aggs)
        fill = {c: ibis.literal(0.0) for c in fact_cols if c not in aggs}
        parts.append(agg.mutate(**fill).select("unit_id", *by, *fact_cols))
    arms = _arms(store, program, unit)
    if parts:
        stacked = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
        summed = stacked.group_by("unit_id", *by).aggregate(**{c: stacked[c].sum() for c in fact_cols})
        if by:
            joined = arms.inner_join(summed, "unit_id")
        else:
            joined = arms.left_join(summed, "unit_id")
            joined = joined.select(arms.unit_id, arms.arm, arms.n_arms, *[joined[c] for c in fact_cols])
    else:
        joined = arms
    fills = {c: joined[c].cast("float64").fill_null(0.0) for c in fact_cols}
    for m, (op, threshold) in per_unit.items():
        for c in (m, f"{m}_pre"):
            fills[c] = _PER_UNIT_OPS[op](fills[c], threshold).cast("float64")
    lengths = {"post": (window[1] - window[0]).days + 1,
               "pre": (pre_window[1] - pre_window[0]).days + 1 if pre_window is not None else 0}
    for m in to_first:
        # Days to the first event = period length - days left after it; no event: the whole period.
        fills[m] = ibis.literal(float(lengths["post"])) - fills[m]
        fills[f"{m}_pre"] = ibis.literal(float(lengths["pre"])) - fills[f"{m}_pre"]
    if "units" in measures:
        fills["units"] = ibis.literal(1.0)
        fills["units_pre"] = ibis.literal(1.0)
    out = joined.mutate(**fills)
    return out.select("unit_id", "arm", "n_arms", *by, *all_cols)


def block_measures_expr(
    store: Store,
    program: Program,
    measures: Iterable[str],
    *,
    window: Window | None = None,
    block_hours: int | None = None,
    burn_in_hours: float | None = None,
    switched_blocks: Iterable[int] = (),
    caps: Mapping[str, float] | None = None,
) -> ir.Table:
    """Per time-block totals of ``measures`` for a switchback design, computed in the backend.

    Block ``b`` covers ``[start + b x block_hours, start + (b + 1) x block_hours)`` from midnight
    of the window's first day (the event time of each row places it). Rows in
    ``experiment.exclude_windows`` are left out. Rows in the first ``burn_in_hours`` of a block
    listed in ``switched_blocks`` (its arm differs from the previous block's) are the carryover
    burn-in: they are summed separately into ``<m>_burn`` rather than ``<m>``, so one pass gives
    both the analysed totals and the burn-in sensitivity (Bojinov, Simchi-Levi & Zhao 2023).
    One aggregation per source table (and time column), stacked with ``union`` and summed per
    block.

    Parameters
    ----------
    measures : iterable of str
        Base measures; ``"units"`` is ignored here (a block's exposure is known without data).
    window : (date, date), optional
        Inclusive dates; default from :func:`analysis_windows`.
    block_hours, burn_in_hours : optional
        Default ``experiment.block_hours`` and ``experiment.burn_in_hours``.
    switched_blocks : iterable of int
        Indices of the blocks whose burn-in is dropped.
    caps : mapping, optional
        ``measure -> cap`` for capped measures (default: :func:`measure_caps` over ``window``).

    Returns
    -------
    ibis Table
        Columns ``block`` (int64, only blocks with rows) and ``<m>, <m>_burn`` per measure (float64).
    """
    e = program.experiment
    window, _ = analysis_windows(program, window=window)
    block_s = int((block_hours or e.block_hours) * 3600)
    burn_s = float((e.burn_in_hours if burn_in_hours is None else burn_in_hours) * 3600)
    switched = sorted({int(b) for b in switched_blocks})
    specs = measure_specs(program)
    measures = [m for m in dict.fromkeys(measures) if m != "units"]
    unknown = [m for m in measures if m not in specs]
    if unknown:
        raise DataError(f"unknown measures {unknown}; known: {sorted([*specs, 'units'])}")
    per_unit = sorted(m for m in measures if specs[m].per_unit is not None or specs[m].time_to_first)
    if per_unit:
        raise DataError(f"measure(s) {per_unit} hold a per_unit condition on a unit's total; a switchback "
                        "design's units are time blocks, where it has no meaning")
    specs = _capped_specs(store, program, measures, specs, window, caps, None)
    origin = int(_day_start(window[0]).timestamp()) - int(datetime(1970, 1, 1).timestamp())
    groups: dict[tuple[str, str], list[str]] = {}
    for m in measures:
        groups.setdefault((specs[m].table, specs[m].time), []).append(m)
    all_cols = [c for m in measures for c in (m, f"{m}_burn")]
    parts = []
    for (tname, time_col), ms in groups.items():
        t = _source_table(store, tname, ms, specs)
        is_date = t[time_col].type().is_date()
        keep = _in_window(t[time_col], window, is_date)
        for lo, hi in e.exclude_windows:
            keep = keep & ~_in_window(t[time_col], (lo, hi), is_date)
        t = t.filter(keep)
        t, flags = _join_insight_flags(store, t, ms, specs)
        tc = t[time_col]
        sec = (tc.cast("timestamp") if is_date else tc).epoch_seconds() - origin
        block = (sec // block_s).cast("int64")
        if switched and burn_s > 0:
            drop = block.isin(switched) & ((sec - block * block_s) < burn_s)
        else:
            # Never true (rows are in the window): a column expression, so that a count measure
            # (literal 1.0 under a literal condition) still reduces over the table.
            drop = block < 0
        aggs = {}
        for m in ms:
            spec = specs[m]
            cond = spec.condition(t)
            if m in flags:
                cond = cond & flags[m]
            aggs[m], aggs[f"{m}_burn"] = _aggregate(spec, t, cond & ~drop, cond & drop)
        agg = t.group_by(block=block).aggregate(**aggs)
        fill = {c: ibis.literal(0.0) for c in all_cols if c not in aggs}
        parts.append(agg.mutate(**fill).select("block", *all_cols))
    if not parts:
        return ibis.memtable({"block": []}, schema={"block": "int64"})
    stacked = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    summed = stacked.group_by("block").aggregate(**{c: stacked[c].sum() for c in all_cols})
    return summed.mutate(**{c: summed[c].cast("float64").fill_null(0.0) for c in all_cols}).order_by("block")


def unit_metrics_expr(store: Store, program: Program, kpi: str | Kpi, *, window: Window | None = None,
                      pre_window: Window | None = None, by: Sequence[str] = ()) -> ir.Table:
    """Ibis expression of per-unit ``num, den, num_pre, den_pre`` for one KPI (see :func:`unit_metrics`)."""
    k = program.kpi(kpi) if isinstance(kpi, str) else kpi
    t = unit_measures_expr(store, program, [k.numerator, k.denominator], window=window, pre_window=pre_window, by=by)
    return t.select("unit_id", "arm", "n_arms", *by, num=t[k.numerator], den=t[k.denominator],
                    num_pre=t[f"{k.numerator}_pre"], den_pre=t[f"{k.denominator}_pre"])


def unit_metrics(store: Store, program: Program, kpi: str | Kpi, *, window: Window | None = None,
                 pre_window: Window | None = None, by: Sequence[str] = ()):
    """Per-unit numerator and denominator of a KPI in the window and the pre-period, with arm.

    Parameters
    ----------
    store : insightroi.store.Store
    program : Program
    kpi : str or Kpi
        The KPI; its value for a set of units is ``sum(num) / sum(den) x kpi.scale``.
    window, pre_window : (date, date), optional
        Inclusive date ranges; default from :func:`analysis_windows`.
    by : sequence of str
        Extra grouping columns (e.g. ``("region",)``) or ``"week"``.

    Returns
    -------
    pandas.DataFrame
        One row per unit (x ``by``): ``unit_id, arm, n_arms, *by, num, den, num_pre, den_pre``,
        sorted by ``unit_id``.
    """
    df = unit_metrics_expr(store, program, kpi, window=window, pre_window=pre_window, by=by).execute()
    return df.sort_values(["unit_id", *by], kind="stable").reset_index(drop=True)


def arm_statistics(store: Store, program: Program, kpi: str | Kpi, *, window: Window | None = None,
                   pre_window: Window | None = None, by: Sequence[str] = ()) -> dict[tuple, object]:
    """Sufficient statistics per arm (x ``by``), computed in the backend.

    Returns
    -------
    dict
        ``(arm, *by values) -> RatioRegressionAdjusted`` (post and pre numerator and
        denominator sums and all cross products over units).
    """
    t = unit_metrics_expr(store, program, kpi, window=window, pre_window=pre_window, by=by)
    cols = ["num", "den", "num_pre", "den_pre"]
    aggs = {"n": t.count()}
    for i, a in enumerate(cols):
        aggs[f"s_{a}"] = t[a].sum()
        for b in cols[i:]:
            aggs[f"p_{a}_{b}"] = (t[a] * t[b]).sum()
    df = t.group_by("arm", *by).aggregate(**aggs).execute()
    out = {}
    for row in df.to_dict("records"):
        sums = tuple(float(row[f"s_{a}"] or 0.0) for a in cols)
        prods = tuple(
            tuple(float(row[f"p_{cols[min(i, j)]}_{cols[max(i, j)]}"] or 0.0) for j in range(4)) for i in range(4)
        )
        out[(row["arm"], *[row[b] for b in by])] = RatioRegressionAdjusted(int(row["n"]), sums, prods)
    return out


def measure_totals(store: Store, program: Program, measures: Iterable[str], *, window: Window | None = None,
                   arm: str | None = "treatment") -> dict[str, float]:
    """Total of each measure over the units of ``arm`` (all assigned units when None) in the window."""
    measures = list(measures)
    t = unit_measures_expr(store, program, measures, window=window, pre_window=None)
    if arm is not None:
        t = t.filter(_is_arm(t.arm, arm))
    row = t.aggregate(_n=t.count(), **{m: t[m].sum() for m in measures}).execute().iloc[0]
    return {m: float(row[m] or 0.0) for m in measures} | {"units": float(row["_n"])}


def treated_volumes(store: Store, program: Program, *, window: Window | None = None, arm: str = "treatment",
                    from_assignment: bool | None = None, kpis: Iterable[str] | None = None,
                    totals: Mapping[str, float] | None = None) -> dict[str, dict]:
    """Per KPI, the numerator and denominator volume of the treated units in the window.

    What the ROI stage multiplies an estimated rate change by: avoided events =
    ``-(KPI_treated - KPI_control) / scale x denominator``.

    Parameters
    ----------
    window : (date, date), optional
        Inclusive window; default from :func:`analysis_windows`.
    arm : str
        Whose volume (``"treatment"``).
    from_assignment : bool, optional
        Count each unit only from the week of its first ``assigned_at`` (whole weeks counted from
        the window start, the week holding the assignment included), as the staggered
        difference-in-differences of a ``did`` design measures its effect. Default: True for the
        ``did`` design, False otherwise (a randomized unit is analysed over the whole window).
        When every assignment precedes the window both give the same totals.
    kpis : iterable of str, optional
        Only these KPIs (default: all the program's). Each measure's total is its own sum, so a
        KPI's volume is the same whichever others are counted beside it; fewer measures make a
        smaller query.
    totals : mapping, optional
        ``arm``'s totals over ``window`` per measure (and ``units``) that the caller already
        summed from the same per-unit query (``ExperimentAnalysis.treated_totals``); used
        instead of reading the store when they hold every measure needed and
        ``from_assignment`` is off.

    Returns
    -------
    dict
        ``kpi -> {"numerator_measure", "denominator_measure", "numerator", "denominator", "units",
        "scale"}``; plus the key ``"_feedback"`` with the feedback rows of treated units (for
        per-1,000-feedback cost lines).
    """
    chosen = list(program.kpis) if kpis is None else [program.kpi(k) for k in dict.fromkeys(kpis)]
    needed = set(volume_measures(program, [k.name for k in chosen]))
    if from_assignment is None:
        from_assignment = program.experiment.design == "did"
    if totals is not None and not from_assignment and needed | {"units"} <= set(totals):
        tot = dict(totals)
    elif from_assignment:
        tot = _totals_from_assignment(store, program, sorted(needed), window=window, arm=arm)
    else:
        tot = measure_totals(store, program, sorted(needed), window=window, arm=arm)
    out: dict[str, dict] = {}
    for k in chosen:
        out[k.name] = {"numerator_measure": k.numerator, "denominator_measure": k.denominator,
                       "numerator": tot[k.numerator], "denominator": tot[k.denominator],
                       "units": int(tot["units"]), "scale": k.scale}
    out["_feedback"] = {"feedback": tot["feedback"], "units": int(tot["units"])}
    return out


def volume_measures(program: Program, kpis: Iterable[str] | None = None) -> list[str]:
    """The measures :func:`treated_volumes` counts for ``kpis``.

    Parameters
    ----------
    program : Program
    kpis : iterable of str, optional
        KPI names (default: all the program's).

    Returns
    -------
    list of str
        Each KPI's numerator and denominator, and ``feedback`` (per-1,000-feedback cost
        lines), sorted.
    """
    chosen = list(program.kpis) if kpis is None else [program.kpi(k) for k in kpis]
    return sorted({m for k in chosen for m in (k.numerator, k.denominator)} | {"feedback"})


def _totals_from_assignment(store: Store, program: Program, measures: Sequence[str], *, window: Window | None,
                            arm: str) -> dict[str, float]:
    """:func:`measure_totals` of ``arm``'s units, each counted from the week of its first assignment."""
    window, _ = analysis_windows(program, window=window)
    e = program.experiment
    a = store.table("assignments")
    a = a.filter((a.experiment == e.name) & (a.unit_type == e.unit))
    first = a.group_by(_uid=a.unit_id.cast("string")).aggregate(
        _arm=a.arm.argmin(a.assigned_at), _first_at=a.assigned_at.min())
    first = first.filter(_is_arm(first._arm, arm))
    # Week of the first assignment, counted like the "week" grouping of unit_measures_expr.
    first = first.mutate(_from_week=ibis.greatest(_week_index(first._first_at, window[0], False), 0))
    n_weeks = ((window[1] - window[0]).days + 7) // 7
    started = first.filter(first._from_week < n_weeks)
    units = float(started.count().execute())
    fact = [m for m in measures if m != "units"]
    out = {m: 0.0 for m in fact}
    if fact:
        t = unit_measures_expr(store, program, fact, window=window, pre_window=None, by=("week",))
        j = t.inner_join(started, t.unit_id == started._uid)
        j = j.filter(j.week >= j._from_week)
        row = j.aggregate(**{m: j[m].sum() for m in fact}).execute().iloc[0]
        out = {m: float(row[m] or 0.0) for m in fact}
    return out | {"units": units}

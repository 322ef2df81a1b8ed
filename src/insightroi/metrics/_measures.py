"""Where each measure lives: the built-in specs and the user's ``[[measures]]`` compiled to Ibis.

A user measure's ``value`` and ``filter`` are parsed by :func:`insightroi.program.parse_expression`
into a restricted grammar and compiled here, node by node, into Ibis expressions over the table:
no SQL text is ever executed, so a measure runs on DuckDB, PySpark and Databricks alike. Every
measure is type-checked against the declared schema (``insightroi.store.TABLES`` for the store's
tables, the program's ``[[tables]]`` for the user's) before it reaches a backend, so a bad
column or a text column in arithmetic is refused at ``plan`` time naming the measure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
from sqlglot import exp

from insightroi.chain._links import praise_event
from insightroi.errors import ProgramError
from insightroi.program import MEASURES, Measure, Program, parse_expression
from insightroi.store import TABLES

__all__ = [
    "MEASURE_SPECS",
    "MEASURE_TABLES",
    "UNIT_COLUMNS",
    "MeasureSpec",
    "compile_expression",
    "describe_measures",
    "measure_specs",
]

# Analysis unit -> column holding it in the fact tables.
UNIT_COLUMNS: dict[str, str] = {
    "sku_family": "sku_family", "sku": "sku", "region": "region", "team": "team", "customer": "customer_id",
}

#: Store tables a ``[[measures]]`` entry may read (the fact tables, each with its event time).
MEASURE_TABLES = ("orders", "feedback", "tickets", "refunds", "traffic", "chain_events")


@dataclass(frozen=True)
class MeasureSpec:
    """Where a measure comes from and how it aggregates per unit and period.

    Attributes
    ----------
    table : str
        The store table (a user table is ``user_<name>``).
    time : str
        The event-time column the analysis windows apply to.
    value : str or callable, optional
        A column name or ``table -> Ibis value``; summed (or its distinct values counted when
        ``distinct``). None counts rows.
    where : callable, optional
        ``table -> boolean``: the rows that count (null counts as false).
    insight : (str, str), optional
        An insight ``(task, label)`` a feedback row must carry (latest model version).
    distinct : bool
        Count distinct values of ``value`` instead of summing it.
    unit_column : str or mapping, optional
        The column holding the analysis unit's id, or ``{unit: column}``; default
        :data:`UNIT_COLUMNS`.
    measure : str, optional
        The ``[[measures]]`` entry it comes from (None for a built-in measure).
    quantile : float, optional
        A quantile measure's level: its KPI is the quantile of the rows' ``value`` in each arm
        (:func:`insightroi.metrics.measure_rows_expr`); its per-unit total is the sum of ``value``.
    cap : float, optional
        Cap each row's value at this percentile of the window's values (both arms pooled; see
        :func:`insightroi.metrics.measure_caps`) before summing.
    per_unit : (str, float), optional
        ``(operator, threshold)``: the unit's total becomes 1 when it meets the condition, else 0
        (see :func:`insightroi.metrics.unit_measures_expr`).
    source : (str, tuple), optional
        A user table read in place: its ``source`` and declared ``(column, type)`` pairs, from
        which the metrics layer makes ``table`` a view (:meth:`insightroi.store.Store.attach_source`).
    time_to_first : bool
        Per unit, days from the period's start to its first row, censored at the period's end.
    declared : tuple, optional
        A user table's declared ``(column, type)`` pairs: a table declared but not ingested yet
        reads as empty with these columns, so its KPIs are not estimable and the others still run.
    """

    table: str
    time: str
    value: str | Callable[[ir.Table], ir.Value] | None = None
    where: Callable[[ir.Table], ir.BooleanValue] | None = None
    insight: tuple[str, str] | None = None
    distinct: bool = False
    unit_column: str | Mapping[str, str] | None = None
    measure: str | None = None
    quantile: float | None = None
    cap: float | None = None
    per_unit: tuple[str, float] | None = None
    source: tuple[str, tuple[tuple[str, str], ...]] | None = None
    time_to_first: bool = False
    declared: tuple[tuple[str, str], ...] | None = None

    def value_expr(self, t: ir.Table) -> ir.Value:
        """The per-row value over ``t`` (a float for sums; as declared for distinct counts)."""
        if self.value is None:
            return ibis.literal(1.0)
        v = t[self.value] if isinstance(self.value, str) else self.value(t)
        return v if self.distinct else v.cast("float64").fill_null(0.0)

    def condition(self, t: ir.Table) -> ir.BooleanValue:
        """Whether a row of ``t`` counts (before the insight flag and the time window)."""
        return self.where(t).fill_null(False) if self.where is not None else ibis.literal(True)

    def unit_column_for(self, unit: str) -> str | None:
        """The column holding ``unit``'s id in this measure's table (None when unknown)."""
        if isinstance(self.unit_column, str):
            return self.unit_column
        if isinstance(self.unit_column, Mapping) and unit in self.unit_column:
            return self.unit_column[unit]
        return UNIT_COLUMNS.get(unit)


def _event(kind: str) -> Callable[[ir.Table], ir.BooleanValue]:
    # Praise alerts are good news nobody is expected to act on: the chain leaves them out of
    # adoption and backlog (insightroi.chain.workflow_kpis), so alert_adoption_rate must too, or
    # the KPI and the chain's adoption disagree as soon as a world has praise alerts.
    return lambda t: (t.event_type == kind) & ~praise_event(t)


MEASURE_SPECS: dict[str, MeasureSpec] = {
    "orders": MeasureSpec("orders", "order_time"),
    "revenue": MeasureSpec("orders", "order_time", value="revenue"),
    "margin": MeasureSpec("orders", "order_time", value="margin"),
    "feedback": MeasureSpec("feedback", "event_time"),
    "reviews": MeasureSpec("feedback", "event_time", where=lambda t: t.source == "review"),
    "negative_reviews": MeasureSpec("feedback", "event_time", where=lambda t: (t.source == "review") & (t.rating <= 2)),
    "negative_feedback": MeasureSpec("feedback", "event_time", insight=("sentiment", "negative")),
    "defect_mentions": MeasureSpec("feedback", "event_time", insight=("topic", "product_defect")),
    "tickets": MeasureSpec("tickets", "opened_at"),
    "handle_minutes": MeasureSpec("tickets", "opened_at", value="handle_minutes"),
    "deflected_tickets": MeasureSpec("tickets", "opened_at", where=lambda t: t.deflected),
    "refunds": MeasureSpec("refunds", "event_time"),
    "refund_amount": MeasureSpec("refunds", "event_time", value="amount"),
    "alerts": MeasureSpec("chain_events", "event_time", where=_event("alert_delivered")),
    "alerts_acknowledged": MeasureSpec("chain_events", "event_time", where=_event("acknowledged")),
    "alerts_acted": MeasureSpec("chain_events", "event_time", where=_event("action_taken")),
    "fixes_deployed": MeasureSpec("chain_events", "event_time", where=_event("fix_deployed")),
    "sessions": MeasureSpec("traffic", "date", value="sessions"),
    "conversions": MeasureSpec("traffic", "date", value="conversions"),
}
assert set(MEASURE_SPECS) | {"units"} == set(MEASURES), "every program measure needs a spec"


# ---- the expression grammar compiled to Ibis ------------------------------------------------------
class _Untyped(Exception):
    """An expression that parses but does not type-check over the table (message: the node)."""


_BINARY: dict[type, Callable[[ir.Value, ir.Value], ir.Value]] = {
    exp.Add: lambda a, b: a + b, exp.Sub: lambda a, b: a - b, exp.Mul: lambda a, b: a * b,
    exp.Div: lambda a, b: a / b, exp.Mod: lambda a, b: a % b,
    exp.EQ: lambda a, b: a == b, exp.NEQ: lambda a, b: a != b, exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b, exp.LT: lambda a, b: a < b, exp.LTE: lambda a, b: a <= b,
    exp.And: lambda a, b: a & b, exp.Or: lambda a, b: a | b,
}
_SECONDS = {"hours_between": 3600.0, "minutes_between": 60.0, "days_between": 86400.0}


def _sql(node: exp.Expression) -> str:
    # Functions as the user writes them (sqlglot upper-cases them by default).
    return node.sql(normalize_functions="lower")


def _seconds(v: ir.Value, fn: str) -> ir.Value:
    if v.type().is_date():
        v = v.cast("timestamp")
    if not v.type().is_timestamp():
        raise TypeError(f"{fn} needs date or timestamp arguments, got {v.type()}")
    # Whole seconds on every engine: DuckDB's epoch keeps the fraction, Spark's unix_timestamp
    # drops it, and a sub-second closed_at then made hours_between differ in the fifth digit.
    return v.epoch_seconds().floor().cast("float64")


def compile_expression(tree: exp.Expression, t: ir.Table) -> ir.Value:
    """Compile a tree from :func:`insightroi.program.parse_expression` to an Ibis value over ``t``.

    Parameters
    ----------
    tree : sqlglot.exp.Expression
        A parsed expression (only the grammar's nodes; anything else raises).
    t : ibis Table
        The table whose columns the expression names.

    Returns
    -------
    ibis Value
        Column or scalar expression. Division is true division; ``hours_between(a, b)`` is
        ``(epoch_seconds(b) - epoch_seconds(a)) / 3600``.

    Raises
    ------
    ValueError
        Naming the part of the expression that does not type-check (e.g. ``lower`` of a number).
    """
    try:
        return _compile(tree, t)
    except _Untyped as exc:
        raise ValueError(str(exc)) from None


def _compile(n: exp.Expression, t: ir.Table) -> ir.Value:
    if isinstance(n, exp.Paren):
        return _compile(n.this, t)
    if isinstance(n, exp.Column):
        return t[n.name]
    if isinstance(n, exp.Literal):
        if n.is_string:
            return ibis.literal(n.this)
        try:
            return ibis.literal(int(n.this))
        except ValueError:
            return ibis.literal(float(n.this))
    if isinstance(n, exp.Boolean):
        return ibis.literal(bool(n.this))
    if isinstance(n, exp.Null):
        return ibis.null()
    args = {k: v for k, v in n.args.items() if isinstance(v, exp.Expression)}
    try:
        if type(n) in _BINARY:
            return _BINARY[type(n)](_compile(n.this, t), _compile(n.expression, t))
        if isinstance(n, exp.Neg):
            return -_compile(n.this, t)
        if isinstance(n, exp.Not):
            return ~_compile(n.this, t)
        if isinstance(n, exp.Case):
            base = _compile(n.this, t) if n.this is not None else None
            branches = []
            for branch in n.args["ifs"]:
                cond = _compile(branch.this, t)
                branches.append((cond if base is None else base == cond, _compile(branch.args["true"], t)))
            default = n.args.get("default")
            return ibis.cases(*branches, else_=None if default is None else _compile(default, t))
        if isinstance(n, exp.In):
            return _compile(n.this, t).isin([_compile(e, t) for e in n.expressions])
        if isinstance(n, exp.Between):
            return _compile(n.this, t).between(_compile(args["low"], t), _compile(args["high"], t))
        if isinstance(n, exp.Is):
            return _compile(n.this, t).isnull()
        if isinstance(n, (exp.Like, exp.ILike)):
            x, pattern = _compile(n.this, t), _compile(n.expression, t)
            out = x.ilike(pattern) if isinstance(n, exp.ILike) else x.like(pattern)
            return ~out if n.args.get("negate") else out
        if isinstance(n, exp.Anonymous) and n.name.lower() in _SECONDS:
            fn = n.name.lower()
            a, b = (_compile(e, t) for e in n.expressions)
            return (_seconds(b, fn) - _seconds(a, fn)) / _SECONDS[fn]
        vals = [_compile(e, t) for e in n.iter_expressions()]
        if isinstance(n, exp.Coalesce):
            return ibis.coalesce(*vals) if len(vals) > 1 else vals[0]
        if isinstance(n, exp.Least):
            return ibis.least(*vals)
        if isinstance(n, exp.Greatest):
            return ibis.greatest(*vals)
        if isinstance(n, exp.Abs):
            return vals[0].abs()
        if isinstance(n, exp.Lower):
            return vals[0].lower()
        if isinstance(n, exp.Upper):
            return vals[0].upper()
        if isinstance(n, exp.Round):
            digits = n.args.get("decimals")
            if digits is None:
                return vals[0].round()
            if not (isinstance(digits, exp.Literal) and not digits.is_string and digits.this.lstrip("-").isdigit()):
                raise TypeError("round's digits must be a whole number")
            return vals[0].round(int(digits.this))
    except _Untyped:
        raise
    except Exception as exc:  # Ibis signals type errors with several exception types
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _Untyped(f"{_sql(n)!r} does not type-check: {detail}") from None
    raise _Untyped(f"{_sql(n)!r} ({n.key}) is not part of the expression grammar")


# ---- user measures ----------------------------------------------------------------------------------
def _source(program: Program, m: Measure) -> tuple[str, dict[str, str], str | None]:
    """The store table a measure reads, its declared columns and its default time column."""
    user = next((u for u in program.tables if u.name == m.table), None)
    if user is not None and m.table in TABLES:
        raise ProgramError(f"measure {m.name!r}: table {m.table!r} is both a store table and a [[tables]] entry; "
                           "rename the user table")
    if user is not None:
        return f"user_{user.name}", dict(user.columns), user.time_column
    if m.table in MEASURE_TABLES:
        spec = TABLES[m.table]
        return m.table, dict(spec.columns), spec.time_column
    raise ProgramError(f"measure {m.name!r}: unknown table {m.table!r}; store tables: {', '.join(MEASURE_TABLES)}; "
                       f"user tables ([[tables]]): {', '.join(u.name for u in program.tables) or 'none'}")


def _compiled(m: Measure, field_name: str, columns: dict[str, str], label: str) -> exp.Expression | None:
    text = getattr(m, field_name)
    if text is None:
        return None
    try:
        return parse_expression(text, columns, label)
    except ValueError as exc:
        raise ProgramError(f"measure {m.name!r}: {field_name} {text!r}: {exc}") from None


def _user_specs(program: Program, m: Measure) -> dict[str, MeasureSpec]:
    table, columns, default_time = _source(program, m)
    label = m.table if table == m.table else f"{m.table} (user table)"
    try:
        m.check_columns(columns, default_time, label)
    except ValueError as exc:
        raise ProgramError(str(exc)) from None
    time = m.time or default_time
    if columns[time] not in ("date", "timestamp"):
        raise ProgramError(f"measure {m.name!r}: time column {time!r} of {label} is {columns[time]}, "
                           "not a date or timestamp")
    value_tree = _compiled(m, "value", columns, label)
    filter_tree = _compiled(m, "filter", columns, label)
    # Type-check on an unbound table of the declared schema: no store needed, so `plan` refuses
    # a bad measure before any data is read, and every backend gets the same checked tree.
    schema_table = ibis.table(columns, name=table)
    for field_name, tree in (("value", value_tree), ("filter", filter_tree)):
        if tree is None:
            continue
        try:
            v = compile_expression(tree, schema_table)
        except ValueError as exc:
            raise ProgramError(f"measure {m.name!r}: {field_name} {getattr(m, field_name)!r}: {exc}") from None
        dtype = v.type()
        if field_name == "filter" and not dtype.is_boolean():
            raise ProgramError(f"measure {m.name!r}: filter {m.filter!r} is {dtype}, not a boolean condition")
        if field_name == "value" and m.aggregation == "quantile" and not dtype.is_numeric():
            raise ProgramError(f"measure {m.name!r}: value {m.value!r} is {dtype}; aggregation 'quantile' needs "
                               "a number")
        if field_name == "value" and m.aggregation != "count_distinct" and not (
                dtype.is_numeric() or dtype.is_boolean() or dtype.is_null()):
            raise ProgramError(f"measure {m.name!r}: value {m.value!r} is {dtype}; aggregation {m.aggregation!r} "
                               "needs a number or a boolean")

    def where(t: ir.Table) -> ir.BooleanValue:
        return compile_expression(filter_tree, t)

    def value(t: ir.Table) -> ir.Value:
        return compile_expression(value_tree, t)

    user = next((u for u in program.tables if u.name == m.table), None)
    source = (user.source, tuple(user.columns.items())) if user is not None and user.source else None
    common = {"table": table, "time": time, "unit_column": m.unit_column, "measure": m.name,
              "per_unit": m.per_unit_condition, "source": source,
              "declared": tuple(user.columns.items()) if user is not None else None}
    filt = where if filter_tree is not None else None
    if m.aggregation == "count":
        return {m.name: MeasureSpec(where=filt, **common)}
    if m.aggregation == "time_to_first":
        return {m.name: MeasureSpec(where=filt, time_to_first=True, **common)}
    if m.aggregation == "count_distinct":
        return {m.name: MeasureSpec(value=value, where=filt, distinct=True, **common)}
    if m.aggregation == "quantile":
        return {m.name: MeasureSpec(value=value, where=filt, quantile=m.quantile, **common)}
    out = {m.name: MeasureSpec(value=value, where=filt, cap=m.cap, **common)}
    if m.aggregation == "mean":
        def has_value(t: ir.Table) -> ir.BooleanValue:
            present = value(t).notnull()
            return present if filter_tree is None else where(t) & present
        out[m.count_measure] = MeasureSpec(where=has_value, **common)
    return out


def measure_specs(program: Program) -> dict[str, MeasureSpec]:
    """Every measure the program's KPIs may name: the built-ins and the program's ``[[measures]]``.

    A ``mean`` measure ``m`` gives two specs: ``m`` (the sum of its value) and ``m_count`` (its
    rows with a non-null value); a ``quantile`` measure one spec carrying its level, a capped
    ``sum`` or ``mean`` its cap (the count is never capped). Each user measure is checked against its table's declared
    columns and types first.

    Raises
    ------
    ProgramError
        Naming the measure, the expression and the offending column, function or type.
    """
    out = dict(MEASURE_SPECS)
    for m in program.measures:
        out.update(_user_specs(program, m))
    return out


def describe_measures(program: Program) -> list[dict[str, str]]:
    """One row per ``[[measures]]`` entry, after checking it (see :func:`measure_specs`).

    Returns
    -------
    list of dict
        ``name, definition, table, aggregation, value, filter, time, unit_column, unit,
        description`` as text; ``definition`` reads as a sentence, e.g. ``"mean of nps over
        surveys where nps is not null (a KPI divides nps by nps_count)"``.
    """
    measure_specs(program)
    rows = []
    for m in program.measures:
        table, _, default_time = _source(program, m)
        if isinstance(m.unit_column, dict):
            ucol = ", ".join(f"{u}: {c}" for u, c in m.unit_column.items())
        else:
            ucol = m.unit_column or "the table's usual column"
        what = {"count": "count of rows of", "sum": f"sum of {m.value} over", "mean": f"mean of {m.value} over",
                "count_distinct": f"distinct {m.value} in",
                "quantile": f"{m.quantile or 0:g} quantile of {m.value} over",
                "time_to_first": "days to the first row (censored at the period's end) of"}[m.aggregation]
        definition = f"{what} {m.table}" + (f" where {m.filter}" if m.filter else "")
        if m.cap is not None:
            definition += f", each value capped at the window's {100 * m.cap:g}th percentile"
        if m.aggregation == "quantile":
            definition += " (rows pooled over each arm's units)"
        if m.count_measure:
            definition += f" (a KPI divides {m.name} by {m.count_measure})"
        if m.per_unit is not None:
            definition += f"; per unit: 1 when the unit's total is {m.per_unit.strip()}, else 0"
        rows.append({"name": m.name, "definition": definition, "table": table, "aggregation": m.aggregation,
                     "value": m.value or "-", "filter": m.filter or "-", "time": m.time or default_time or "-",
                     "unit_column": ucol, "unit": m.unit or "-", "description": m.description or "-"})
    return rows

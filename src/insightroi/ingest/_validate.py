"""Vectorised row validation: one DuckDB query per chunk computes every row's typed values and its
first problem (field and reason), so a million rows are checked without a Python loop.

The query is generated from the table's :class:`~insightroi.store.TableSpec` and the types the
source arrived with (all VARCHAR for CSV and JSONL; native types for Parquet and frames).
"""

from __future__ import annotations

import pyarrow as pa

from insightroi.store import TABLES, TableSpec

__all__ = [
    "MAX_TEXT_BYTES",
    "REDACT_COLUMNS",
    "SYSTEM_COLUMNS",
    "ENUMS",
    "RANGES",
    "TRUE_WORDS",
    "FALSE_WORDS",
    "TYPE_FORMATS",
    "ERR_SEP",
    "NUL_REASON",
    "EARLIEST",
    "LATEST",
    "build_query",
    "check_text",
    "validate_chunk",
    "split_error",
]

#: A text field longer than this (in UTF-8 bytes) quarantines its row: no review, ticket or
#: return reason is a megabyte long, and one such value would dominate the store and every
#: model pass over it. The whole raw row is still kept in quarantine, so nothing is lost.
MAX_TEXT_BYTES = 1_000_000

#: A NUL byte in text quarantines its row (kept exactly in quarantine, never stripped): the
#: value cannot round-trip through most tools downstream (C strings, PostgreSQL, CSV exports),
#: and silently changing text would break the rule that text is kept exactly.
NUL_REASON = "contains a NUL byte (\\x00); remove it from the source"

#: Default range of accepted dates and timestamps (inclusive; ``[ingest] earliest`` / ``latest``
#: in the program file change it). A year-99999 timestamp is a typo or a sentinel, and one such
#: value breaks every date computation downstream.
EARLIEST = "1990-01-01"
LATEST = "2100-12-31"

#: Free-text columns that are redacted of e-mails, phones and card numbers (when redaction is on).
REDACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "feedback": ("text",),
    "refunds": ("reason",),
    "chain_events": ("payload",),
    "annotations": ("description",),
}

#: Columns ingestion fills in itself; if a file carries them (an export of the store) they are ignored.
SYSTEM_COLUMNS = ("ingested_at", "batch_id")

#: Columns with a closed set of values (compared after trimming and lower-casing); the values
#: live on the column specs (``ColumnInfo.allowed``) so the printed data contract is the one enforced.
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    (t.name, col): info.allowed for t in TABLES.values() for col, info in t.column_info.items() if info.allowed
}

#: Inclusive numeric ranges (None: unbounded), from ``ColumnInfo.minimum`` / ``maximum``.
#: Ratings cover 1-5 stars and 0-10 NPS scales.
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    (t.name, col): (info.minimum, info.maximum)
    for t in TABLES.values()
    for col, info in t.column_info.items()
    if info.minimum is not None or info.maximum is not None
}

#: Time columns that may not precede another of the same row (``ColumnInfo.not_before``).
NOT_BEFORE: dict[tuple[str, str], str] = {
    (t.name, col): info.not_before for t in TABLES.values() for col, info in t.column_info.items() if info.not_before
}

#: Text accepted as a boolean (after trimming, any case).
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")

#: What a cell of each column type may hold, as users read it (``insightroi schema``).
TYPE_FORMATS: dict[str, str] = {
    "string": f"text, kept exactly (at most {MAX_TEXT_BYTES:,} UTF-8 bytes)",
    "float64": "a number, e.g. 12.5",
    "int64": "a whole number, e.g. 12 (12.0 is accepted)",
    "boolean": f"{'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)} (any case)",
    "date": "a date, YYYY-MM-DD",
    "timestamp": (
        "ISO 8601 date and time with an offset (Z, +01:00 or an IANA zone name); a time without one "
        "is read in the program file's program.timezone, and quarantined when there is none"
    ),
}

#: Separates field and reason in the single error column the query returns.
ERR_SEP = "\x1f"

# An explicit zone after a clock time: Z, +hh, +hhmm, +hh:mm, UTC/GMT, or an IANA name.
_OFFSET_RE = (
    r"[0-9]:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?\s*"
    r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?|UTC|GMT|[A-Za-z]+/[A-Za-z_]+(/[A-Za-z_]+)?)$"
)
_CAST = {
    "string": "VARCHAR", "float64": "DOUBLE", "int64": "BIGINT", "boolean": "BOOLEAN",
    "date": "DATE", "timestamp": "TIMESTAMP",
}
_TYPE_WORDS = {
    "string": "text", "float64": "a number", "int64": "an integer", "boolean": "a boolean",
    "date": "a date", "timestamp": "a timestamp",
}


def check_text(value: str, field: str = "text") -> str:
    """Return ``value`` if ingestion accepts it as text, else raise ValueError naming ``field``.

    The same rule the ingestion query applies to every text column (a NUL byte quarantines the
    row), for callers that validate one value at a time (the server's request models).

    Parameters
    ----------
    value : str
        The text.
    field : str
        Its name, for the message.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ValueError
        ``"<field> contains a NUL byte ..."`` when ``value`` holds ``\\x00``.
    """
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{field} {NUL_REASON}")
    return value


def _is_nested(stype: str) -> bool:
    """A DuckDB type that holds several values (list, array, struct, map, union)."""
    return stype.endswith("]") or stype.startswith(("STRUCT", "MAP", "LIST", "UNION", "LARGE_LIST", "FIXED_SIZE_LIST"))


def _nested_word(stype: str) -> str:
    if stype.startswith("STRUCT"):
        return "a struct"
    if stype.startswith("MAP"):
        return "a map"
    if stype.startswith("UNION"):
        return "a union"
    return "a list"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _shown(expr: str) -> str:
    """SQL for the value quoted in a message, cut to 60 characters."""
    expr = f"CAST({expr} AS VARCHAR)"
    return f"('''' || left({expr}, 60) || CASE WHEN strlen({expr}) > 60 THEN '...' ELSE '' END || '''')"


def _trimmed(expr: str) -> str:
    """SQL: the value without surrounding whitespace, NULL when blank.

    trim() copies every string (a third of the cost of validating a CSV), so only values that
    start or end with whitespace are trimmed.
    """
    ws = "' ' || chr(9) || chr(10) || chr(13)"
    return (
        f"CASE WHEN {expr} = '' THEN NULL WHEN ord({expr}) > 32 AND NOT ends_with({expr}, ' ') "
        f"AND NOT ends_with({expr}, chr(9)) AND NOT ends_with({expr}, chr(13)) AND NOT ends_with({expr}, chr(10)) "
        f"THEN {expr} ELSE NULLIF(trim({expr}, {ws}), '') END"
    )


def _err(field: str | None, reason_sql: str) -> str:
    return f"({_lit((field or '') + ERR_SEP)} || {reason_sql})"


def build_query(
    spec: TableSpec,
    source_types: dict[str, str],
    *,
    view: str,
    tz: str | None,
    redact: bool,
    max_text_bytes: int = MAX_TEXT_BYTES,
    time_range: tuple[str, str] = (EARLIEST, LATEST),
) -> tuple[str, list[str]]:
    """The validation query over ``view`` and the names of the typed columns it returns.

    ``source_types`` maps each input column (already restricted to the spec's columns, plus the
    bookkeeping columns ``_rn`` and optionally ``_pre_err``) to its DuckDB type. The query returns
    ``_rn``, ``_err`` (NULL for a good row, else ``field<US>reason`` for its first problem), one
    typed column per spec column present. ``redact`` is accepted for symmetry and unused.
    ``time_range`` is the inclusive (earliest, latest) ISO date of accepted dates and timestamps.
    """
    earliest, latest = time_range
    inner: list[str] = ["_rn"]
    checks: list[tuple[str, str]] = []  # (condition, error expression), in column order
    outputs: list[str] = []
    if "_pre_err" in source_types:
        inner.append("_pre_err")
        checks.append(("_pre_err IS NOT NULL", "_pre_err"))
    required = set(spec.required)
    for col, target in spec.columns.items():
        if col not in source_types or col in SYSTEM_COLUMNS:
            continue
        stype = source_types[col].upper()
        is_text = stype in ("VARCHAR", "STRING", "TEXT") or stype.startswith("VARCHAR")
        src = _q(col)
        if _is_nested(stype):
            # A list or struct is never one value of a column: rendering it as text would land
            # "[a, b]" in a text column; quarantine it, naming what it was.
            raw = _q("r:" + col)
            outputs.append(col)
            inner.append(f"{src} AS {raw}")
            inner.append(f"__V__{col}:CAST(NULL AS {_CAST[target]})")
            if col in required:
                checks.append((f"{raw} IS NULL", _err(col, "'missing required value'")))
            checks.append((f"{raw} IS NOT NULL", _err(col, f"'is {_nested_word(stype)}, not {_TYPE_WORDS[target]}'")))
            continue
        s, v = _q("s:" + col), _q(col)
        word = _TYPE_WORDS[target]
        enum = ENUMS.get((spec.name, col))
        rng = RANGES.get((spec.name, col))
        outputs.append(col)
        # Typed sources are only rendered as text inside error messages (casting a timestamp to
        # text for every row would cost more than the whole validation).
        s_expr = src if is_text else f"CAST({src} AS VARCHAR)"

        if target == "string":
            if enum:
                allowed = ", ".join(_lit(a) for a in enum)
                # Normalise (trim, lower-case) only values that are not already exact.
                v_expr = f"CASE WHEN {s_expr} IN ({allowed}) THEN {s_expr} ELSE NULLIF(lower(trim({s_expr})), '') END"
            else:
                # Raw text is preserved exactly (taxonomies are re-run on it later).
                v_expr = s_expr
            inner += [f"{s_expr} AS {s}", f"{v_expr} AS {v}"]
            checks.append((f"contains({s}, chr(0))", _err(col, _lit(NUL_REASON))))
            checks.append((
                f"strlen({s}) > {max_text_bytes}",
                _err(col, f"'value is ' || strlen({s}) || ' bytes, over the {max_text_bytes:,}-byte limit per text field'"),
            ))
            if col in required:
                # trim() copies every string; only a value starting with whitespace can be blank.
                checks.append((
                    f"{s} IS NULL OR {s} = '' OR (ord({s}) <= 32 AND trim({s}, ' \t\r\n') = '')",
                    _err(col, "'missing required value'"),
                ))
            if enum:
                allowed = ", ".join(_lit(a) for a in enum)
                checks.append((
                    f"{v} IS NOT NULL AND {v} NOT IN ({allowed})",
                    _err(col, f"{_shown(s)} || ' is not one of {', '.join(enum)}'"),
                ))
            continue

        # Non-text targets: an empty or blank string is a missing value.
        s_norm = _trimmed(s_expr) if is_text else src
        if not is_text:
            # Typed values need the original column in the next projection level.
            raw = _q("r:" + col)
            inner.append(f"{src} AS {raw}")
            src = raw
        after: tuple[str, str] | None = None
        missing_cond = f"{s} IS NULL"
        parse_cond = f"{s} IS NOT NULL AND {v} IS NULL"
        extra_cols: list[str] = []
        if target == "float64":
            if is_text:
                v_expr = f"TRY_CAST({s} AS DOUBLE)"
                parse_cond = f"{s} IS NOT NULL AND ({v} IS NULL OR NOT isfinite({v}))"
            elif stype in ("BOOLEAN",):
                v_expr = f"CAST({src} AS DOUBLE)"
            else:
                v_expr = f"TRY_CAST({src} AS DOUBLE)"
                parse_cond = f"{s} IS NOT NULL AND ({v} IS NULL OR NOT isfinite({v}))"
        elif target == "int64":
            if is_text or stype in ("FLOAT", "DOUBLE", "REAL") or stype.startswith("DECIMAL"):
                d = f"TRY_CAST({s} AS DOUBLE)"
                v_expr = (
                    f"CASE WHEN {d} = trunc({d}) THEN COALESCE(TRY_CAST({s} AS BIGINT), TRY_CAST({d} AS BIGINT)) END"
                )
            else:
                v_expr = f"TRY_CAST({src} AS BIGINT)"
        elif target == "boolean":
            if is_text:
                low = f"lower({s})"
                v_expr = (
                    f"CASE WHEN {low} IN ({', '.join(map(_lit, TRUE_WORDS))}) THEN true "
                    f"WHEN {low} IN ({', '.join(map(_lit, FALSE_WORDS))}) THEN false END"
                )
            elif stype == "BOOLEAN":
                v_expr = src
            else:
                v_expr = f"CASE WHEN {src} = 1 THEN true WHEN {src} = 0 THEN false END"
        elif target == "date":
            if is_text:
                v_expr = f"TRY_CAST({s} AS DATE)"
            elif stype.startswith("TIMESTAMP WITH TIME ZONE") or stype == "TIMESTAMPTZ":
                v_expr = f"CAST(timezone('UTC', {src}) AS DATE)"
            else:
                v_expr = f"TRY_CAST({src} AS DATE)"
        elif target == "timestamp":
            naive_msg = (
                f"{_shown(s)} || ' has no time zone; write it with an offset (e.g. +00:00) "
                f"or set program.timezone'"
            )
            if stype.startswith("TIMESTAMP WITH TIME ZONE") or stype == "TIMESTAMPTZ":
                v_expr = f"timezone('UTC', {src})"
            elif stype.startswith("TIMESTAMP") or stype == "DATE":
                naive = f"CAST({src} AS TIMESTAMP)"
                v_expr = f"timezone('UTC', timezone({_lit(tz)}, {naive}))" if tz else "CAST(NULL AS TIMESTAMP)"
                if not tz:
                    checks.append((f"{s} IS NOT NULL", _err(col, naive_msg)))
                parse_cond = "false"
            else:
                off = _q("off:" + col)
                extra_cols.append(f"regexp_matches({s}, {_lit(_OFFSET_RE)}) AS {off}")
                aware = f"timezone('UTC', TRY_CAST({s} AS TIMESTAMPTZ))"
                if tz:
                    local = f"timezone('UTC', timezone({_lit(tz)}, TRY_CAST({s} AS TIMESTAMP)))"
                    v_expr = f"CASE WHEN {off} THEN {aware} ELSE {local} END"
                else:
                    v_expr = f"CASE WHEN {off} THEN {aware} END"
                    parse_cond = f"{s} IS NOT NULL AND {v} IS NULL AND ({off} OR TRY_CAST({s} AS TIMESTAMP) IS NULL)"
                    after = (f"{s} IS NOT NULL AND {v} IS NULL", _err(col, naive_msg))
        else:  # pragma: no cover - TABLES only uses the types above
            raise AssertionError(f"unhandled type {target!r}")

        # The typed value needs the normalised string, so compute both in a nested projection.
        inner.append(f"{s_norm} AS {s}")
        inner += extra_cols
        inner.append(f"__V__{col}:{v_expr}")
        if col in required:
            checks.append((missing_cond, _err(col, "'missing required value'")))
        checks.append((parse_cond, _err(col, f"'cannot parse ' || {_shown(s)} || ' as {word}'")))
        if after is not None:
            checks.append(after)
        if target in ("date", "timestamp"):
            lo_sql = f"DATE {_lit(earliest)}" if target == "date" else f"TIMESTAMP {_lit(earliest)}"
            # Inclusive of the whole last day.
            hi_sql = (f"DATE {_lit(latest)}" if target == "date"
                      else f"(TIMESTAMP {_lit(latest)} + INTERVAL 1 DAY)")
            hi_op = ">" if target == "date" else ">="
            checks.append((
                f"{v} IS NOT NULL AND ({v} < {lo_sql} OR {v} {hi_op} {hi_sql})",
                _err(col, f"{_shown(s)} || ' is outside the accepted range {earliest} to {latest} "
                          f"(program file: [ingest] earliest / latest)'"),
            ))
        if rng:
            lo, hi = rng
            conds = []
            if lo is not None:
                conds.append(f"{v} < {lo}")
            if hi is not None:
                conds.append(f"{v} > {hi}")
            bounds = f"{lo if lo is not None else '-inf'} to {hi if hi is not None else 'inf'}"
            checks.append((
                f"{v} IS NOT NULL AND ({' OR '.join(conds)})",
                _err(col, f"{_shown(s)} || ' is outside the allowed range {bounds}'"),
            ))

    for later in outputs:
        earlier = NOT_BEFORE.get((spec.name, later))
        if earlier in outputs:
            # After every column's own checks: a row is named for its first problem, and an
            # unparsable time is that problem, not the order.
            a, b = _q(later), _q(earlier)
            checks.append((
                f"{a} IS NOT NULL AND {b} IS NOT NULL AND {a} < {b}",
                _err(later, f"{_shown(_q('s:' + later))} || ' is before {earlier} ' || {_shown(_q('s:' + earlier))}"),
            ))

    # Helper columns are named "s:col", "r:col", "off:col": no column name holds a colon, so a
    # user table's "s_x" next to "x" cannot collide with them.
    # Level 1 computes normalised strings (and offset flags); level 2 the typed values; level 3
    # the error of each row. Nesting keeps each expression evaluated once per row.
    level1 = [c for c in inner if not c.startswith("__V__")]
    level2 = ["*"] + [c.split(":", 1)[1] + " AS " + _q(c[5:].split(":", 1)[0]) for c in inner if c.startswith("__V__")]
    err_sql = "CASE " + " ".join(f"WHEN {cond} THEN {expr}" for cond, expr in checks) + " END" if checks else "NULL"
    # Redaction's pre-filter runs in pyarrow afterwards: its RE2 call costs less per row there.
    level3 = ["_rn", f"{err_sql} AS _err"] + [_q(c) for c in outputs]
    # Level-1 projection renames text targets to their final name directly (no level-2 cast).
    query = (
        f"SELECT {', '.join(level3)} FROM ("
        f"SELECT {', '.join(level2)} FROM ("
        f"SELECT {', '.join(level1)} FROM {view}) AS l1) AS l2"
    )
    return query, outputs


def validate_chunk(con, spec: TableSpec, table: pa.Table, *, tz: str | None, redact: bool,
                   max_text_bytes: int = MAX_TEXT_BYTES,
                   time_range: tuple[str, str] = (EARLIEST, LATEST)) -> pa.Table:
    """Run the validation query over an Arrow chunk (which must carry an int64 ``_rn`` column).

    Returns the query's result (see :func:`build_query`). ``con`` is a DuckDB connection whose
    session time zone is UTC.
    """
    types = {name: _duck_type(t) for name, t in zip(table.column_names, table.schema.types)}
    view = "_ingest_src"
    query, _ = build_query(spec, types, view=view, tz=tz, redact=redact, max_text_bytes=max_text_bytes,
                           time_range=time_range)
    con.register(view, table)
    try:
        return con.execute(query).to_arrow_table()
    finally:
        con.unregister(view)


def split_error(err: str) -> tuple[str | None, str]:
    """``field<US>reason`` -> (field or None, reason)."""
    field, _, reason = err.partition(ERR_SEP)
    return (field or None), reason


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_decimal(t):
        return "DECIMAL"
    if pa.types.is_null(t):
        return "NULL"
    return str(t).upper()

"""Ingestion: read, validate, redact, dedupe, and land one file per transaction."""

from __future__ import annotations

import hashlib
import re
import threading
import time
import tomllib
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pydantic import ValidationError

from insightroi.store._tables import INGESTIBLE
from insightroi.errors import IngestError, ProgramError, check_option
from insightroi.ingest._redact import ID_COLUMNS, REDACTION_TOKENS, redact_raw, redact_table
from insightroi.ingest._report import FileReport, IngestReport, RetryReport, TableRetry
from insightroi.ingest._sources import (
    CHUNK_ROWS,
    CsvDialect,
    FrameSource,
    NeedsResync,
    format_of,
    open_source,
    parse_raw_rows,
)
from insightroi.ingest._validate import (
    EARLIEST,
    ERR_SEP,
    LATEST,
    MAX_TEXT_BYTES,
    REDACT_COLUMNS,
    SYSTEM_COLUMNS,
    split_error,
    validate_chunk,
)
from insightroi.program import Program, UserTable, load_program
from insightroi.store import TABLES, Store, TableSpec, is_user_table, user_table_spec

__all__ = ["ingest_path", "ingest_frame", "retry_quarantine", "table_spec", "load_user_table", "INGESTIBLE",
           "RETRY_SOURCE"]

_ERROR_SAMPLE = 5
#: The ``file`` recorded in ``ingest_batches`` for rows landed by :func:`retry_quarantine`.
RETRY_SOURCE = "<quarantine retry>"

Progress = Callable[[int, int, FileReport], Any]

# One in-memory DuckDB database for validation; each call takes its own cursor (a connection
# costs ~20 ms to open, a cursor well under 1 ms, which matters for single POSTed events).
_VALIDATION_DB: duckdb.DuckDBPyConnection | None = None
_VALIDATION_LOCK = threading.Lock()


def _validation_cursor() -> duckdb.DuckDBPyConnection:
    global _VALIDATION_DB
    with _VALIDATION_LOCK:
        if _VALIDATION_DB is None:
            _VALIDATION_DB = duckdb.connect(":memory:")
        cur = _VALIDATION_DB.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    return cur


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class _Settings:
    """What the program file says about ingestion (defaults without one)."""

    def __init__(self, program: Any, dialect: CsvDialect | None = None) -> None:
        if isinstance(program, (str, PathLike)):
            program = load_program(program)
        self.program = program
        meta = getattr(program, "program", program)
        self.tz: str | None = getattr(meta, "timezone", None) if program is not None else None
        ing = getattr(program, "ingest", None)
        self.time_range = (str(ing.earliest), str(ing.latest)) if ing is not None else (EARLIEST, LATEST)
        self.on_conflict: str = ing.on_conflict if ing is not None else "first-wins"
        if dialect is None and ing is not None:
            dialect = CsvDialect(delimiter=ing.delimiter, quote=ing.quote, escape=ing.escape, header=ing.header)
        self.dialect = dialect or CsvDialect()


def _zone(program: Any) -> str | None:
    """The program file's time zone (a Program, a path to one, or None)."""
    return _Settings(program).tz


def _check_kind(kind: str) -> TableSpec:
    check_option("kind", kind, INGESTIBLE)
    return TABLES[kind]


def _not_in_place(table: UserTable) -> None:
    if table.source:
        raise ValueError(f"user table {table.name!r} is read in place from {table.source!r} ([[tables]] source); "
                         "it is not ingested: load the rows into that source instead")


def table_spec(kind: "str | UserTable | TableSpec", program: Any = None) -> TableSpec:
    """The table a batch lands in: one of ours, or a user table declared in the program file.

    Parameters
    ----------
    kind : str, UserTable or TableSpec
        An ingestible table's name (``feedback``), a user table's store name (``user_surveys``,
        looked up in ``program``'s ``[[tables]]``), a :class:`~insightroi.program.UserTable`
        (e.g. from a ``--schema`` file) or a spec from :func:`~insightroi.store.user_table_spec`.
    program : Program or path, optional
        The program file declaring user tables.

    Returns
    -------
    TableSpec

    Raises
    ------
    ValueError
        For a name that is neither ingestible nor a declared user table (the message lists both).
    """
    if isinstance(kind, UserTable):
        _not_in_place(kind)
        return user_table_spec(kind)
    if isinstance(kind, TableSpec):
        if is_user_table(kind.name):
            return kind
        return _check_kind(kind.name)
    if kind in INGESTIBLE:
        return TABLES[kind]
    if isinstance(program, (str, PathLike)):
        program = load_program(program)
    declared = {user_table_spec(t).name: t for t in getattr(program, "tables", [])}
    if kind in declared:
        _not_in_place(declared[kind])
        return user_table_spec(declared[kind])
    if isinstance(kind, str) and is_user_table(kind):
        where = "the program file's [[tables]]" if program is not None else "a program file (none was given)"
        raise ValueError(f"user table {kind!r} is not declared in {where}; declared: "
                         f"{', '.join(declared) if declared else 'none'}. Pass program= or the UserTable itself")
    check_option("kind", kind, (*INGESTIBLE, *declared))
    raise AssertionError("check_option accepts only the names listed")  # pragma: no cover


def load_user_table(path: str | PathLike, name: str | None = None) -> UserTable:
    """Read a user table's declaration from a TOML file holding one ``[table]`` section.

    The section takes the keys of a program file's ``[[tables]]`` entry (``name``, ``columns``,
    ``key``, ``time_column``, ``required``, ``text_columns``, ``id_columns``, ``description``);
    ``name`` may be left out when ``name`` is given here.

    Parameters
    ----------
    path : str or path
        The TOML file (``insightroi ingest --table NAME FILE --schema PATH``).
    name : str, optional
        The table's name as the caller knows it; it must equal the section's ``name``, if any.

    Returns
    -------
    UserTable

    Raises
    ------
    ProgramError
        Naming the file and each problem (no such file, bad TOML, no ``[table]``, a wrong key or
        type, a name that differs from ``name``).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProgramError(f"{path}: no such schema file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProgramError(f"{path}: cannot read the schema file: {exc}") from None
    section = data.get("table")
    if not isinstance(section, dict):
        raise ProgramError(f"{path}: expected one [table] section (name, columns, key, ...); found "
                           f"{', '.join(map(repr, data)) or 'nothing'}")
    section = dict(section)
    if name is not None:
        if section.setdefault("name", name) != name:
            raise ProgramError(f"{path}: [table] name {section['name']!r} differs from the table asked for ({name!r})")
    try:
        return UserTable.model_validate(section)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            problems.append(f"  table.{loc}: {err['msg'].removeprefix('Value error, ')}" if loc
                            else f"  table: {err['msg'].removeprefix('Value error, ')}")
        raise ProgramError(f"{path}: invalid [table] section:\n" + "\n".join(problems)) from None


def _user_specs(program: Any) -> list[TableSpec]:
    return [user_table_spec(t) for t in getattr(program, "tables", [])] if isinstance(program, Program) else []


# redact_table knows a table's free-text and id columns by its name; a user table's columns go
# through it under feedback's names, so they get the very same detectors, pre-filter and keyed
# pseudonyms (a customer's e-mail joins across our tables and theirs).
_AS_TEXT, _AS_ID, _AS_KIND = "text", "customer_id", "feedback"


def _redact(table: pa.Table, spec: TableSpec) -> pa.Table:
    """Redact one validated chunk: ours through :func:`redact_table`, a user table's declared
    ``text_columns`` and ``id_columns`` column by column."""
    if not is_user_table(spec.name):
        return redact_table(table, spec.name)
    for col, alias in [*((c, _AS_TEXT) for c in spec.text_columns), *((c, _AS_ID) for c in spec.id_columns)]:
        # A pseudonym is text: an integer id column keeps its numbers (an e-mail cannot be one).
        if col not in table.column_names or spec.columns.get(col) != "string":
            continue
        i = table.column_names.index(col)
        done = redact_table(pa.table({alias: table.column(i)}), _AS_KIND).column(0)
        table = table.set_column(i, col, done)
    return table


def _free_text(spec: TableSpec) -> tuple[str, ...]:
    return spec.text_columns if is_user_table(spec.name) else REDACT_COLUMNS.get(spec.name, ())


def _check_columns(spec: TableSpec, columns: list[str], display: str, hint: Callable[[], str] | None = None) -> None:
    cols = [c for c in columns if c not in SYSTEM_COLUMNS]
    unknown = [c for c in cols if c not in spec.columns]
    missing = [c for c in spec.required if c not in cols]
    repeated = sorted({c for c in cols if cols.count(c) > 1})
    if not (unknown or missing or repeated):
        return
    parts = []
    if missing:
        parts.append("missing required column(s) " + ", ".join(repr(c) for c in missing))
    if unknown:
        parts.append("unknown column(s) " + ", ".join(repr(c) for c in unknown))
    if repeated:
        parts.append("repeated column(s) " + ", ".join(repr(c) for c in repeated))
    expected = ", ".join(c for c in spec.columns if c not in SYSTEM_COLUMNS)
    raise IngestError(
        f"{display}: columns do not match table {spec.name!r}: {'; '.join(parts)}. "
        f"Expected columns: {expected} (required: {', '.join(spec.required)}). Nothing was ingested."
        + (hint() if hint else "")
    )


def _prepare(store: Store, spec: TableSpec) -> TableSpec:
    """A user table is created on first use (and its stored columns checked on every later one)."""
    return store.ensure_table(spec) if is_user_table(spec.name) else spec


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


# ---- store helpers -----------------------------------------------------------------------------
def _drop_duplicates_landed(store: Store, table: str, key: str, batch_id: str, *, against_table: bool) -> int:
    """Delete the rows this batch landed whose key came earlier in the batch or is already in
    the table from another batch (DuckDB, inside the batch's transaction); returns how many.

    Within the batch the first landed row of a key stays: rows land in file order and each
    chunk already kept its first row per key, so the lowest ``rowid`` is the file's first.
    """
    raw = store.con.con
    q, k = f'"{table}"', f'"{key}"'
    dropped = 0
    if against_table:
        # An explicit join with this batch's keys as the build side: DuckDB then pushes their
        # min/max into the scan of the stored keys, so ids that grow with time (orders, events)
        # skip whole row groups. ``IN (SELECT ...)`` hashed every stored key instead (10x slower).
        # IS DISTINCT FROM: rows appended outside ingest have no batch id and still count.
        seen = raw.execute(
            f"SELECT DISTINCT o.{k} FROM {q} o JOIN (SELECT {k} FROM {q} WHERE batch_id = ?) b ON o.{k} = b.{k} "
            "WHERE o.batch_id IS DISTINCT FROM ?", [batch_id, batch_id]).to_arrow_table()
        if seen.num_rows:
            view = f"_ingest_seen_{threading.get_ident()}"
            raw.register(view, seen)
            try:
                dropped += int(raw.execute(f'DELETE FROM {q} WHERE batch_id = ? AND {k} IN (SELECT {k} FROM "{view}")',
                                           [batch_id]).fetchone()[0])
            finally:
                raw.unregister(view)
    repeated = raw.execute(f"SELECT count(*) - count(DISTINCT {k}) FROM {q} WHERE batch_id = ?", [batch_id]).fetchone()[0]
    if repeated:
        dropped += int(raw.execute(
            f"DELETE FROM {q} WHERE batch_id = ? AND rowid NOT IN (SELECT min(rowid) FROM {q} WHERE batch_id = ? GROUP BY {k})",
            [batch_id, batch_id]).fetchone()[0])
    return dropped


def _previous_batch(store: Store, kind: str, sha: str) -> tuple[str, int] | None:
    row = store.first_row("ingest_batches", ["batch_id", "rows_read"], target_table=kind, sha256=sha)
    return None if row is None else (str(row["batch_id"]), int(row["rows_read"] or 0))


# ---- the batch ---------------------------------------------------------------------------------
def _first_per_key(table: pa.Table, key: str) -> pa.Table:
    """Keep the first row (lowest ``_rn``) of each key."""
    keys = table.column(key)
    if pc.count_distinct(keys).as_py() == table.num_rows:
        return table
    first = table.group_by(key, use_threads=False).aggregate([("_rn", "min")]).column("_rn_min")
    return table.filter(pc.is_in(table.column("_rn"), value_set=first.combine_chunks()))


def _renumber(rn: np.ndarray, rejected: list[int]) -> np.ndarray:
    """Positions in the reader's stream -> data row numbers, given the rows the reader dropped."""
    out = rn.copy()
    for r in sorted(rejected):
        out[out >= r] += 1
    return out


def _land(store: Store, spec: TableSpec, res: pa.Table, *, keep: list[str], batch_id: str, started: datetime,
          redact: bool, probe: bool, dedupe: bool = True) -> tuple[int, int]:
    """Redact, dedupe and append one chunk of validated rows; returns (landed, duplicates).

    ``probe``: the table may already hold some of these keys (non-DuckDB stores check here;
    DuckDB checks once per batch with :func:`_drop_duplicates_landed`).
    """
    kind, key = spec.name, spec.key
    if redact:
        res = _redact(res, spec)
    n_good = res.num_rows
    if dedupe:
        res = _first_per_key(res, key)
    # DuckDB dedupes against the table once per batch, after landing: probing every chunk
    # against the growing table made a 100M-row file quadratic.
    if not store.supports_row_deletes and probe:
        seen = store.existing_keys(kind, key, res.column(key).combine_chunks())
        if len(seen):
            res = res.filter(pc.invert(pc.is_in(res.column(key), value_set=seen)))
    duplicates = n_good - res.num_rows
    if res.num_rows == 0:
        return 0, duplicates
    out = res.select(keep)
    n = out.num_rows
    out = out.append_column(
        "ingested_at", pa.array(np.full(n, np.datetime64(started, "us")), pa.timestamp("us"))
    ).append_column(
        "batch_id", pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([batch_id]))
    )
    return store.append(kind, out), duplicates


def _resolve_keys(store: Store, spec: TableSpec, batch_id: str, *, against_table: bool, on_conflict: str,
                  ) -> tuple[int, list[tuple[int, str, str]], list[tuple[str, str, str]]]:
    """Settle the keys this batch landed more than once, or that the table already held (DuckDB,
    inside the batch's transaction), in SQL: a re-export of 100M stored keys never comes to Python.

    Per key the kept row is the first (``on_conflict = "first-wins"``: a stored row, else the
    file's first) or the last (``"last-wins"``: the file's last); a stored row identical to it is
    kept instead (re-ingesting changes nothing). This batch's other rows are deleted: duplicates
    when identical to the kept row, conflicts otherwise. Under last-wins, stored rows that differ
    from a kept row of this batch are deleted too (replaced).

    Returns (duplicates of this batch, conflicts of this batch as (landed index, reason, row as
    JSON), stored rows replaced as (key value, their file, row as JSON)).
    """
    raw = store.con.con
    kind, key = spec.name, spec.key
    q, k = f'"{kind}"', f'"{key}"'
    content = ", ".join(f'"{c}"' for c in spec.columns if c not in SYSTEM_COLUMNS)
    # Qualified: a user table may have a column called key, rid or mine, like the helper tables.
    packed = ", ".join(f'"{c}" := t."{c}"' for c in spec.columns if c not in SYSTEM_COLUMNS)
    tag = uuid.uuid4().hex[:8]
    cand, grp, pick = f"_ingest_keys_{tag}", f"_ingest_rows_{tag}", f"_ingest_pick_{tag}"
    # Keys repeated in the batch, and (with stored rows) keys stored by another batch: an explicit
    # join with this batch's keys as the build side lets DuckDB push their min/max into the scan
    # of the stored keys, so ids that grow with time skip whole row groups. IS DISTINCT FROM:
    # rows appended outside ingest have no batch id and still count.
    sql = f"SELECT {k} FROM {q} WHERE batch_id = $b GROUP BY {k} HAVING count(*) > 1"
    if against_table:
        sql += (f" UNION SELECT DISTINCT o.{k} FROM {q} o JOIN (SELECT {k} FROM {q} WHERE batch_id = $b) b "
                f"ON o.{k} = b.{k} WHERE o.batch_id IS DISTINCT FROM $b")
    order = "mine, rid" if on_conflict == "first-wins" else "mine DESC, rid DESC"
    raw.execute(f"CREATE TEMP TABLE {cand} AS {sql}", {"b": batch_id})
    try:
        if raw.execute(f"SELECT count(*) FROM {cand}").fetchone()[0] == 0:
            return 0, [], []
        raw.execute(
            f"CREATE TEMP TABLE {grp} AS SELECT rowid AS rid, {k} AS key, batch_id IS NOT DISTINCT FROM $b AS mine, "
            f"hash({content}) AS h, batch_id FROM {q} WHERE {k} IN (SELECT {k} FROM {cand})", {"b": batch_id})
        raw.execute(
            f"CREATE TEMP TABLE {pick} AS SELECT p.key, p.kh, "
            "COALESCE(s.srid, p.krid) AS krid, s.srid IS NULL AND p.kmine AS kmine, COALESCE(s.sbatch, p.kbatch) AS kbatch "
            f"FROM (SELECT key, first(h ORDER BY {order}) AS kh, first(rid ORDER BY {order}) AS krid, "
            f"first(mine ORDER BY {order}) AS kmine, first(batch_id ORDER BY {order}) AS kbatch FROM {grp} GROUP BY key) p "
            f"LEFT JOIN (SELECT key, h, min(rid) AS srid, first(batch_id ORDER BY rid) AS sbatch FROM {grp} "
            "WHERE NOT mine GROUP BY key, h) s ON s.key = p.key AND s.h = p.kh")
        first_rid, last_rid, n_batch = raw.execute(
            f"SELECT min(rowid), max(rowid), count(*) FROM {q} WHERE batch_id = ?", [batch_id]).fetchone()
        # This batch's rows that are not kept, and (last-wins) stored rows a row of this batch replaces.
        gone = (f"SELECT g.rid, g.mine, g.h = p.kh AS same, p.kmine, p.kbatch, g.batch_id, CAST(g.key AS VARCHAR) AS key "
                f"FROM {grp} g JOIN {pick} p ON g.key = p.key WHERE g.rid <> p.krid "
                "AND (g.mine OR (p.kmine AND g.h <> p.kh))")
        duplicates = raw.execute(f"SELECT count(*) FROM ({gone}) WHERE mine AND same").fetchone()[0]
        differ = raw.execute(
            f"SELECT d.rid, d.mine, d.kmine, d.kbatch, d.batch_id, d.key, to_json(struct_pack({packed})) "
            f"FROM ({gone}) d JOIN {q} t ON t.rowid = d.rid WHERE NOT d.same ORDER BY d.rid").fetchall()
        rank = None
        if differ and last_rid - first_rid + 1 != n_batch:
            # The batch's rows are appended together, so their rowids are consecutive; if the
            # engine ever numbers them otherwise, rank the conflicting rows explicitly.
            rank = dict(raw.execute(
                f"SELECT rid, k FROM (SELECT rowid AS rid, row_number() OVER (ORDER BY rowid) - 1 AS k FROM {q} "
                f"WHERE batch_id = $b) WHERE rid IN (SELECT rid FROM ({gone}) WHERE mine AND NOT same)",
                {"b": batch_id}).fetchall())
        raw.execute(f"DELETE FROM {q} WHERE rowid IN (SELECT rid FROM ({gone}))")
    finally:
        for t in (pick, grp, cand):
            raw.execute(f"DROP TABLE IF EXISTS {t}")
    files = dict(raw.execute("SELECT batch_id, file FROM ingest_batches WHERE target_table = ?", [kind]).fetchall())
    rule = f"on_conflict = {on_conflict}"
    conflicts, replaced = [], []
    for rid, mine, kmine, kbatch, batch, value, js in differ:
        if not mine:
            replaced.append((value, files.get(batch, "<unknown>"), js))
            continue
        which = ("the row stored earlier (" + files.get(kbatch, "another batch") + ")" if not kmine
                 else "this file's first row with it" if on_conflict == "first-wins" else "this file's last row with it")
        conflicts.append((rank[rid] if rank else rid - first_rid,
                          f"conflict: {key} {value!r} appears again with different values; kept {which} ({rule})", js))
    return int(duplicates), conflicts, replaced


def _kth_good(k: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Stream positions (1-based) of the k-th (0-based) rows not in ``bad`` (sorted positions)."""
    if len(bad) == 0:
        return k + 1
    goods_before = bad - np.arange(len(bad))  - 1  # good rows before each bad one
    return k + 1 + np.searchsorted(goods_before, k, side="right")


def _run_batch(store: Store, spec: TableSpec, source, *, file: str, display: str, sha: str | None, cfg: _Settings,
               redact: bool, max_text_bytes: int) -> FileReport:
    t0 = time.perf_counter()
    kind, key = spec.name, spec.key
    _check_columns(spec, source.columns, display, source.dialect_hint)
    started = _utcnow()
    batch_id = f"{kind}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    rows_read = landed = duplicates = 0
    q_rn: list[np.ndarray] = []
    q_err: list[str] = []
    q_raw: list[str] = []
    keep = [c for c in spec.columns if c in source.columns and c not in SYSTEM_COLUMNS]
    # DuckDB lands every valid row in file order and settles repeated keys once per batch (which
    # tells duplicates from conflicts); other engines keep the first row per key as they go.
    settle = store.supports_row_deletes
    va = _validation_cursor()
    try:
        with store.transaction():
            store_had_rows = store.has_rows(kind)
            for chunk in source.chunks():
                rows_read += chunk.num_rows
                res = validate_chunk(va, spec, chunk, tz=cfg.tz, redact=redact, max_text_bytes=max_text_bytes,
                                     time_range=cfg.time_range)
                err = res.column("_err")
                if err.null_count < res.num_rows:
                    bad_mask = pc.is_valid(err)
                    bad = res.filter(bad_mask).select(["_rn", "_err"])
                    res = res.filter(pc.invert(bad_mask))
                    bad_rn = bad.column("_rn").combine_chunks()
                    positions = pc.index_in(bad_rn, value_set=chunk.column("_rn").combine_chunks())
                    q_rn.append(bad_rn.to_numpy())
                    q_err.extend(bad.column("_err").to_pylist())
                    q_raw.extend(source.raw(chunk.take(positions)))
                if res.num_rows == 0:
                    continue
                n_landed, n_dup = _land(
                    store, spec, res, keep=keep, batch_id=batch_id, started=started, redact=redact,
                    probe=store_had_rows or landed > 0, dedupe=not settle,
                )
                landed += n_landed
                duplicates += n_dup

            rn = np.concatenate(q_rn) if q_rn else np.zeros(0, np.int64)
            replaced: list[tuple[str, str, str]] = []
            n_conflicts = 0
            if settle and landed:
                n_dup, conflicts, replaced = _resolve_keys(
                    store, spec, batch_id, against_table=store_had_rows, on_conflict=cfg.on_conflict)
                n_conflicts = len(conflicts)
                landed -= n_dup + n_conflicts
                duplicates += n_dup
                if conflicts:
                    # Landed rows are the valid rows in stream order: the k-th landed row is the
                    # k-th stream position that did not fail validation.
                    pos = _kth_good(np.array([c[0] for c in conflicts], np.int64), np.sort(rn))
                    rn = np.concatenate([rn, pos])
                    q_err.extend(key + ERR_SEP + c[1] for c in conflicts)
                    q_raw.extend(c[2] for c in conflicts)

            rejects = source.rejects()
            if rejects:
                if source.renumber:
                    rn = _renumber(rn, [r[0] for r in rejects])
                rn = np.concatenate([rn, np.array([r[0] for r in rejects], np.int64)])
                q_err.extend((r[1] or "") + ERR_SEP + r[2] for r in rejects)
                q_raw.extend(r[3] for r in rejects)
                rows_read += len(rejects)
            if rows_read == 0:
                raise IngestError(f"{display}: no data rows (empty file); nothing was ingested")
            quarantined, sample = _quarantine(
                store, kind, file=file, display=display, batch_id=batch_id, rn=rn, errs=q_err, raws=q_raw,
                redact=redact, when=started, id_columns=_id_columns(spec),
            )
            if replaced:
                _quarantine_replaced(store, kind, key, replaced, by=display, batch_id=batch_id, redact=redact,
                                     when=started, id_columns=_id_columns(spec))
            store.append("ingest_batches", pa.table({
                "batch_id": [batch_id], "target_table": [kind], "file": [file], "sha256": [sha],
                "rows_read": pa.array([rows_read], pa.int64()), "landed": pa.array([landed], pa.int64()),
                "duplicates": pa.array([duplicates + (len(rn) - quarantined)], pa.int64()),
                "quarantined": pa.array([quarantined], pa.int64()),
                "started_at": pa.array([started], pa.timestamp("us")),
                "finished_at": pa.array([_utcnow()], pa.timestamp("us")),
            }))
    finally:
        va.close()
    return FileReport(
        file=file, kind=kind, rows_read=rows_read, landed=landed, duplicates=duplicates + (len(rn) - quarantined),
        quarantined=quarantined, batch_id=batch_id, errors=tuple(sample), seconds=time.perf_counter() - t0,
        conflicts=n_conflicts, replaced=len(replaced),
    )


def _id_columns(spec: TableSpec) -> tuple[str, ...]:
    return tuple(spec.id_columns) if is_user_table(spec.name) else ID_COLUMNS.get(spec.name, ())


def _quarantine_replaced(store: Store, kind: str, key: str, replaced: list[tuple[str, str, str]], *, by: str,
                         batch_id: str, redact: bool, when: datetime, id_columns: tuple[str, ...]) -> None:
    """Stored rows that a later file replaced (last-wins) go to the quarantine under their own file."""
    raws = [redact_raw(r[2], id_columns) if redact else r[2] for r in replaced]
    store.append("quarantine", pa.table({
        "id": [hashlib.sha256(f"{kind}\x1f{batch_id}\x1freplaced\x1f{r[0]}".encode()).hexdigest()[:32] for r in replaced],
        "target_table": [kind] * len(replaced), "file": [r[1] for r in replaced],
        "row_number": pa.array([0] * len(replaced), pa.int64()), "field": [key] * len(replaced),
        "reason": [f"conflict: {key} {r[0]!r} was replaced by a row with different values from {by} "
                   "(on_conflict = last-wins)" for r in replaced],
        "raw": pa.array(raws, pa.string()), "batch_id": [batch_id] * len(replaced),
        "quarantined_at": pa.array([when] * len(replaced), pa.timestamp("us")),
    }))


def _quarantine(store: Store, kind, *, file, display, batch_id, rn, errs, raws, redact, when,
                id_columns: tuple[str, ...]) -> tuple[int, list[str]]:
    """Append bad rows to quarantine (skipping ones already there); returns (count, sample messages)."""
    if len(rn) == 0:
        return 0, []
    order = np.argsort(rn, kind="stable")
    fields, reasons, messages, ids, raw_out = [], [], [], [], []
    rn_sorted = rn[order]
    for i in order:
        field, reason = split_error(errs[i])
        raw = raws[i]
        if redact and raw is not None:
            raw = redact_raw(raw, id_columns)
        fields.append(field)
        reasons.append(reason)
        raw_out.append(raw)
        ids.append(hashlib.sha256(f"{kind}\x1f{file}\x1f{rn[i]}\x1f{raw}".encode("utf-8", "replace")).hexdigest()[:32])
    for r, field, reason in list(zip(rn_sorted, fields, reasons))[:_ERROR_SAMPLE]:
        where = f"{display} row {int(r)}" + (f", field {field!r}" if field else "")
        messages.append(f"{where}: {reason}")
    table = pa.table({
        "id": ids, "target_table": [kind] * len(ids), "file": [file] * len(ids),
        "row_number": pa.array(rn_sorted, pa.int64()), "field": pa.array(fields, pa.string()),
        "reason": reasons, "raw": pa.array(raw_out, pa.string()), "batch_id": [batch_id] * len(ids),
        "quarantined_at": pa.array([when] * len(ids), pa.timestamp("us")),
    })
    # Rows already quarantined (the same bad row of the same file) are counted but not re-added;
    # they are reported as duplicates.
    seen = store.existing_keys("quarantine", "id", table.column("id").combine_chunks())
    if len(seen):
        table = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=seen)))
    store.append("quarantine", table)
    return table.num_rows, messages


# ---- public API ------------------------------------------------------------------------------
def ingest_path(
    store: Store,
    kind: str,
    path: str | PathLike,
    *,
    program: Any = None,
    redact: bool = True,
    progress: Progress | None = None,
    max_text_bytes: int = MAX_TEXT_BYTES,
    dialect: CsvDialect | None = None,
) -> IngestReport:
    """Ingest a CSV, JSONL or Parquet file, or every such file under a directory, into ``kind``.

    Each file is one batch in one transaction: its good rows land, its bad rows go to the
    ``quarantine`` table with file, row number, field and reason, and a crash mid-file leaves the
    store as it was. A row whose key is already in the store (or earlier in the file) with the
    same values is counted as a duplicate and not written again; with different values it is a
    conflict: the program file's ``[ingest] on_conflict`` keeps the first row ("first-wins",
    default) or the file's last ("last-wins"), and the other goes to the quarantine with a
    reason starting ``conflict:``. A file whose exact bytes were already ingested into ``kind``
    is skipped, so re-ingesting changes nothing. Dates and timestamps outside ``[ingest]
    earliest`` .. ``latest`` (default 1990-01-01 .. 2100-12-31) and text with a NUL byte are
    quarantined.

    Parameters
    ----------
    store : Store
        From :func:`insightroi.store.open_store`.
    kind : str, UserTable or TableSpec
        An ingestible table: products, feedback, orders, tickets, refunds, traffic,
        chain_events, assignments, annotations or review_labels; or a user table: its store name
        ``user_<name>`` declared in ``program``'s ``[[tables]]``, or its
        :class:`~insightroi.program.UserTable` (see :func:`table_spec`). A user table is created
        on first ingest; its declared ``text_columns`` are redacted and ``id_columns``
        pseudonymised like ours.
    path : str or path
        A ``.csv``, ``.jsonl``/``.ndjson`` (optionally ``.gz``) or ``.parquet`` file, or a
        directory searched recursively for them (names starting with ``.`` or ``_`` skipped).
    program : Program or path, optional
        The program file; its ``program.timezone`` localises naive timestamps. Without one,
        timestamps must carry an offset (naive ones are quarantined). Its ``[[tables]]`` declare
        the user tables.
    redact : bool
        Replace e-mails, phone numbers and card numbers in free-text columns (and in quarantined
        raw rows) with ``[EMAIL]``, ``[PHONE]``, ``[CARD]`` (default True).
    progress : callable, optional
        Called as ``progress(done, total, file_report)`` after each file.
    max_text_bytes : int
        Longest text value accepted; a longer one quarantines its row (default 1,000,000).
    dialect : CsvDialect, optional
        How CSV files are split (default: the program file's ``[ingest]`` keys, else
        ``CsvDialect()``: comma, double quote, doubled-quote escape, a header line). It is never
        guessed from a file; a guess is only suggested in the error when the columns do not match.

    Returns
    -------
    IngestReport
        Per-file counts (``landed + duplicates + quarantined == rows_read``) and sample messages.

    Raises
    ------
    IngestError
        For a single file that cannot be ingested as a whole (unreadable, empty, wrong or
        missing columns): the message names the file and the columns, and nothing lands. For a
        directory, such files are recorded in the report (``FileReport.error``, ``report.ok``)
        and the other files are still ingested; call ``report.raise_for_errors()`` to fail.
    ValueError
        For an unknown ``kind`` (neither ingestible nor a user table ``program`` declares).
    StoreError
        For a user table already stored, with rows, under other columns than declared.
    """
    cfg = _Settings(program, dialect)
    spec = _prepare(store, table_spec(kind, cfg.program))
    kind = spec.name
    path = Path(path)
    report = IngestReport(kind=kind)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and format_of(p) and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if not files:
            raise IngestError(f"{path}: no .csv, .jsonl or .parquet files in this directory")
        for i, p in enumerate(files):
            display = str(p.relative_to(path))
            try:
                fr = _ingest_file(store, spec, p, display, cfg=cfg, redact=redact, max_text_bytes=max_text_bytes)
            except IngestError as exc:
                fr = FileReport(file=str(p), kind=kind, error=str(exc))
            report.files.append(fr)
            if progress:
                progress(i + 1, len(files), fr)
        return report
    if not path.exists():
        raise IngestError(f"{path}: no such file or directory")
    fr = _ingest_file(store, spec, path, path.name, cfg=cfg, redact=redact, max_text_bytes=max_text_bytes)
    report.files.append(fr)
    if progress:
        progress(1, 1, fr)
    return report


def _ingest_file(store: Store, spec, path: Path, display: str, *, cfg: _Settings, redact, max_text_bytes) -> FileReport:
    t0 = time.perf_counter()
    if path.stat().st_size == 0:
        raise IngestError(f"{display}: empty file (0 bytes); nothing was ingested")
    sha = _sha256(path)
    prev = _previous_batch(store, spec.name, sha)
    if prev is not None:
        batch, rows = prev
        return FileReport(
            file=str(path), kind=spec.name, rows_read=rows, duplicates=rows, skipped=True,
            skipped_batch=batch, seconds=time.perf_counter() - t0,
        )
    columns = [c for c in spec.columns if c not in SYSTEM_COLUMNS]
    # Engines without transactions cannot roll a fast read back, so they read CSV on the
    # resynchronising path from the start.
    resync = not store.supports_row_deletes
    for _attempt in range(2):
        con = duckdb.connect(":memory:")
        source = None
        try:
            con.execute("SET TimeZone = 'UTC'")
            source = open_source(path, con, display, dialect=cfg.dialect, columns=columns, resync=resync)
            return _run_batch(
                store, spec, source, file=str(path), display=display, sha=sha, cfg=cfg, redact=redact,
                max_text_bytes=max_text_bytes,
            )
        except NeedsResync:
            # A broken quoted value: the batch was rolled back; read the file again line by line.
            resync = True
        finally:
            if source is not None:
                source.close()
            con.close()
    raise AssertionError("the resynchronising reader never asks for another pass")  # pragma: no cover


def ingest_frame(
    store: Store,
    kind: str,
    data: Any,
    *,
    source: str = "<frame>",
    program: Any = None,
    redact: bool = True,
    max_text_bytes: int = MAX_TEXT_BYTES,
) -> IngestReport:
    """Ingest rows held in memory (a pandas DataFrame, a pyarrow Table/RecordBatch, or a list of dicts).

    Same validation, redaction, dedupe, conflicts and quarantine as :func:`ingest_path`, in one transaction;
    ``source`` names the rows in messages and in the quarantine table (e.g. ``"POST /events"``).
    Cheap for a single row (no file, no hashing; a pooled validation connection).

    Raises
    ------
    IngestError
        When the columns do not match the table or there are no rows; nothing lands.
    """
    cfg = _Settings(program)
    spec = _prepare(store, table_spec(kind, cfg.program))
    kind = spec.name
    table = _to_arrow(data, source)
    if table.num_rows == 0:
        raise IngestError(f"{source}: no rows; nothing was ingested")
    fr = _run_batch(
        store, spec, FrameSource(table, source), file=source, display=source, sha=None, cfg=cfg, redact=redact,
        max_text_bytes=max_text_bytes,
    )
    return IngestReport(kind=kind, files=[fr])


def retry_quarantine(
    store: Store,
    kind: str | None = None,
    *,
    program: Any = None,
    redact: bool = True,
    max_text_bytes: int = MAX_TEXT_BYTES,
) -> RetryReport:
    """Validate quarantined rows again (after the program file or the rules changed) and land those that pass.

    Each quarantined row is re-read from its stored raw text and goes through the same
    validation, redaction and dedupe as :func:`ingest_path`. Rows that now pass land in their
    table (one new batch per table) and leave the quarantine; rows that still fail stay, with
    their field and reason updated. Each table is one transaction, so a crash changes nothing,
    and running it again lands nothing new: a row leaves the quarantine exactly when it lands
    (or when its key is already in the table, which counts as a duplicate).

    Rows that cannot be re-read from the quarantine stay as they are: conflicts (a row whose key
    was kept with other values; ingest the file again under another ``on_conflict`` instead),
    CSV lines the reader could not split into fields, JSONL lines that are not objects, and rows whose stored raw text was
    redacted outside the free-text and id columns (an order id that looked like a phone number is
    stored as ``[PHONE]``; an id column keeps its pseudonym and lands). Fix the file and ingest it
    again for those.

    Parameters
    ----------
    store : Store
        An embedded DuckDB store (rows are deleted from and updated in the quarantine table).
    kind : str, UserTable or TableSpec, optional
        One ingestible table or user table (as for :func:`ingest_path`); when None, all of ours
        and the user tables ``program`` declares that the store holds.
    program : Program or path, optional
        The program file; its ``program.timezone`` localises naive timestamps (the usual reason
        to retry: rows quarantined for a missing time zone land once it is set).
    redact : bool
        Redact e-mails, phone and card numbers in text of the rows that land (default True).
    max_text_bytes : int
        Longest text value accepted (default 1,000,000).

    Returns
    -------
    RetryReport
        One :class:`~insightroi.ingest.TableRetry` per table that had quarantined rows (always
        one for a named ``kind``): ``landed + duplicates + still_quarantined == retried``.

    Raises
    ------
    ValueError
        For an unknown ``kind``.
    StoreError
        On a store other than DuckDB.
    """
    store.require_duckdb("retrying quarantined rows")
    cfg = _Settings(program)
    if kind is None:
        # A user table the program no longer declares has no rules to validate its rows against.
        present = set(store.user_tables())
        specs = [TABLES[k] for k in INGESTIBLE] + [s for s in _user_specs(cfg.program) if s.name in present]
    else:
        specs = [table_spec(kind, cfg.program)]
    report = RetryReport()
    for spec in specs:
        spec = _prepare(store, spec)
        tr = _retry_table(store, spec, cfg=cfg, redact=redact, max_text_bytes=max_text_bytes)
        if tr.retried or kind is not None:
            report.tables.append(tr)
    return report


def _retry_table(store: Store, spec: TableSpec, *, cfg: _Settings, redact: bool, max_text_bytes: int) -> TableRetry:
    t0 = time.perf_counter()
    kind, key = spec.name, spec.key
    raw = store.con.con
    cols = [c for c in spec.columns if c not in SYSTEM_COLUMNS]
    started = _utcnow()
    batch_id = f"{kind}-retry-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]
    passed, failed = f"_retry_pass_{tag}", f"_retry_fail_{tag}"
    retried = landed = duplicates = changed = unreadable = 0
    va = _validation_cursor()
    try:
        with store.transaction():
            lo, hi, n = raw.execute(
                "SELECT min(rowid), max(rowid), count(*) FROM quarantine WHERE target_table = ?", [kind]
            ).fetchone()
            if not n:
                return TableRetry(kind=kind, seconds=time.perf_counter() - t0)
            store_had_rows = store.has_rows(kind)
            # Which rows passed or changed is collected in temp tables and applied to the
            # quarantine at the end: pages are addressed by rowid, which must not move meanwhile.
            raw.execute(f"CREATE TEMP TABLE {passed} (rid BIGINT)")
            raw.execute(f"CREATE TEMP TABLE {failed} (rid BIGINT, field VARCHAR, reason VARCHAR)")
            for start in range(int(lo), int(hi) + 1, CHUNK_ROWS):
                page = raw.execute(
                    "SELECT rowid AS _rn, field, reason, raw FROM quarantine "
                    "WHERE target_table = ? AND rowid BETWEEN ? AND ? AND reason NOT LIKE 'conflict:%'",
                    [kind, start, start + CHUNK_ROWS - 1],
                ).to_arrow_table()
                retried += page.num_rows
                rows = _unredacted(parse_raw_rows(va, page, cols), _free_text(spec))
                unreadable += page.num_rows - rows.num_rows
                if rows.num_rows == 0:
                    continue
                res = validate_chunk(va, spec, rows, tz=cfg.tz, redact=redact, max_text_bytes=max_text_bytes,
                                     time_range=cfg.time_range)
                bad_mask = pc.is_valid(res.column("_err"))
                bad = res.filter(bad_mask).select(["_rn", "_err"])
                if bad.num_rows:
                    at = pc.index_in(bad.column("_rn"), value_set=page.column("_rn").combine_chunks())
                    old = page.select(["field", "reason"]).take(at).to_pylist()
                    upd = [
                        (rid, *new) for rid, new, was in zip(
                            bad.column("_rn").to_pylist(), map(split_error, bad.column("_err").to_pylist()), old)
                        if new != (was["field"], was["reason"])
                    ]
                    if upd:
                        changed += len(upd)
                        _insert(raw, failed, pa.table({
                            "rid": pa.array([u[0] for u in upd], pa.int64()),
                            "field": pa.array([u[1] for u in upd], pa.string()),
                            "reason": pa.array([u[2] for u in upd], pa.string()),
                        }))
                good = res.filter(pc.invert(bad_mask))
                if good.num_rows == 0:
                    continue
                _insert(raw, passed, pa.table({"rid": good.column("_rn")}))
                n_landed, n_dup = _land(
                    store, spec, good, keep=[c for c in cols if c in good.column_names], batch_id=batch_id,
                    started=started, redact=redact, probe=store_had_rows or landed > 0,
                )
                landed += n_landed
                duplicates += n_dup
            if landed:
                dropped = _drop_duplicates_landed(store, kind, key, batch_id, against_table=store_had_rows)
                landed -= dropped
                duplicates += dropped
            # Delete first: a delete never moves the rows left, so the rowids to update stay valid.
            raw.execute(f"DELETE FROM quarantine WHERE rowid IN (SELECT rid FROM {passed})")
            raw.execute(
                f"UPDATE quarantine SET field = f.field, reason = f.reason FROM {failed} f WHERE quarantine.rowid = f.rid"
            )
            raw.execute(f"DROP TABLE {passed}")
            raw.execute(f"DROP TABLE {failed}")
            if landed or duplicates:
                store.append("ingest_batches", pa.table({
                    "batch_id": [batch_id], "target_table": [kind], "file": [RETRY_SOURCE],
                    "sha256": pa.array([None], pa.string()),
                    "rows_read": pa.array([landed + duplicates], pa.int64()),
                    "landed": pa.array([landed], pa.int64()), "duplicates": pa.array([duplicates], pa.int64()),
                    "quarantined": pa.array([0], pa.int64()),
                    "started_at": pa.array([started], pa.timestamp("us")),
                    "finished_at": pa.array([_utcnow()], pa.timestamp("us")),
                }))
            sample = raw.execute(
                "SELECT file, row_number, field, reason FROM quarantine WHERE target_table = ? "
                "ORDER BY rowid LIMIT ?", [kind, _ERROR_SAMPLE],
            ).fetchall()
    finally:
        va.close()
    errors = tuple(
        f"{file} row {rn}" + (f", field {field!r}" if field else "") + f": {reason}" for file, rn, field, reason in sample
    )
    return TableRetry(
        kind=kind, retried=retried, landed=landed, duplicates=duplicates,
        still_quarantined=retried - landed - duplicates, reasons_changed=changed, not_rereadable=unreadable,
        batch_id=batch_id if landed else None, errors=errors, seconds=time.perf_counter() - t0,
    )


_TOKENS = "|".join(re.escape(t) for t in REDACTION_TOKENS)


def _unredacted(rows: pa.Table, free_text: tuple[str, ...]) -> pa.Table:
    """The rows whose values outside the redacted free-text columns carry no redaction token.

    A quarantined raw row is redacted as a whole, so an id or a field that looked like a phone
    number was stored as ``[PHONE]``; landing it would store the token instead of the value.
    Such a row stays in quarantine: only ingesting its file again brings the value back.
    """
    free = set(free_text)
    keep = None
    for name in rows.column_names:
        if name == "_rn" or name in free:
            continue
        hit = pc.fill_null(pc.match_substring_regex(rows.column(name), _TOKENS), False)
        keep = pc.invert(hit) if keep is None else pc.and_(keep, pc.invert(hit))
    return rows if keep is None else rows.filter(keep)


def _insert(raw: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    view = f"_ins_{uuid.uuid4().hex[:8]}"
    raw.register(view, rows)
    try:
        raw.execute(f"INSERT INTO {table} SELECT * FROM {view}")
    finally:
        raw.unregister(view)


def _to_arrow(data: Any, source: str) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list):
        import pandas as pd

        data = pd.DataFrame.from_records(data)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            # Mixed-type object columns: keep what converts, render the rest as text (validated next).
            arrays = []
            for name in data.columns:
                col = data[name]
                try:
                    arrays.append(pa.array(col, from_pandas=True))
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    arrays.append(pa.array([None if _isnull(v) else str(v) for v in col], pa.string()))
            return pa.table(arrays, names=[str(c) for c in data.columns])
    raise IngestError(f"{source}: cannot ingest a {type(data).__name__}; pass a DataFrame, Arrow table or list of dicts")


def _isnull(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)

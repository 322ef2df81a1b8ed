"""Readers: stream a CSV, JSONL or Parquet file (or a frame) as Arrow chunks of bounded size.

Each reader yields Arrow tables whose columns are the file's columns (CSV and JSONL as VARCHAR,
Parquet and frames with their own types) plus ``_rn``, the 1-based position of the row in the
stream. Lines that DuckDB's CSV reader rejects (bytes that are not UTF-8, a wrong number of
fields) are not in the stream; :meth:`rejects` returns them once the stream is exhausted, with
their row numbers, so the caller can renumber and quarantine them.

Row numbers are 1-based data rows: for CSV the header is not counted (row 1 is the line after
the header; equal to ``line - 1`` unless a quoted field spans lines), for JSONL row N is line N.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from insightroi.errors import IngestError
from insightroi.ingest._validate import ERR_SEP

__all__ = [
    "open_source", "FrameSource", "format_of", "parse_raw_rows", "SUFFIXES", "CHUNK_ROWS", "MAX_LINE_BYTES",
]

#: Rows per chunk: bounds memory while a file is validated and appended (one transaction per file).
CHUNK_ROWS = 262_144
#: Longest CSV/JSONL line read; longer lines make the whole file fail with a clear error.
MAX_LINE_BYTES = 64 * 2**20

SUFFIXES = {
    ".csv": "csv", ".csv.gz": "csv", ".csv.zst": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl", ".ndjson.gz": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}

_REJECT_REASONS = {
    "INVALID ENCODING": "contains bytes that are not valid UTF-8",
    "TOO MANY COLUMNS": "has more fields than the header",
    "MISSING COLUMNS": "has fewer fields than the header",
    "UNQUOTED VALUE": "has a malformed quoted value",
    "LINE SIZE OVER MAXIMUM": f"is longer than {MAX_LINE_BYTES:,} bytes",
}


def format_of(path: Path) -> str | None:
    """'csv', 'jsonl', 'parquet' from the file name, or None."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def _short(exc: BaseException, limit: int = 300) -> str:
    # DuckDB's CSV errors quote the whole offending line (which may be megabytes).
    text = str(exc).strip().splitlines()
    first = " ".join(line for line in text[:2] if line.strip())
    return first[:limit] + ("..." if len(first) > limit else "")


def _with_rn(table: pa.Table, start: int) -> pa.Table:
    rn = pa.array(np.arange(start + 1, start + 1 + table.num_rows, dtype=np.int64))
    return table.append_column("_rn", rn)


class _Source:
    fmt = ""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, display: str):
        self.path, self.con, self.display = path, con, display
        self.columns: list[str] = []

    def chunks(self) -> Iterator[pa.Table]:  # pragma: no cover - interface
        raise NotImplementedError

    def rejects(self) -> list[tuple[int, str | None, str, str]]:
        return []

    def raw(self, rows: pa.Table) -> list[str]:
        """Raw JSON of (bad) rows for the quarantine table."""
        cols = [c for c in rows.column_names if not c.startswith("_")]
        return [json.dumps(r, default=str, ensure_ascii=False) for r in rows.select(cols).to_pylist()]

    def _fail(self, exc: BaseException) -> IngestError:
        return IngestError(f"{self.display}: cannot read as {self.fmt.upper()}: {_short(exc)}")

    def _stream(self, sql: str, params: list[Any], transform=None) -> Iterator[pa.Table]:
        try:
            reader = self.con.execute(sql, params).to_arrow_reader(CHUNK_ROWS)
        except duckdb.Error as exc:
            raise self._fail(exc) from None
        pos = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except duckdb.Error as exc:
                raise self._fail(exc) from None
            table = _with_rn(pa.Table.from_batches([batch]), pos)
            pos += batch.num_rows
            yield transform(table) if transform else table


class _CsvSource(_Source):
    fmt = "csv"

    def __init__(self, path, con, display):
        super().__init__(path, con, display)
        tag = uuid.uuid4().hex[:8]
        self._rej, self._scan = f"rej_{tag}", f"rejscan_{tag}"
        self._opts = (
            f"all_varchar=true, header=true, store_rejects=true, rejects_table='{self._rej}', "
            f"rejects_scan='{self._scan}', max_line_size={MAX_LINE_BYTES}"
        )
        try:
            desc = con.execute(f"DESCRIBE SELECT * FROM read_csv(?, {self._opts})", [str(path)]).fetchall()
        except duckdb.Error as exc:
            raise self._fail(exc) from None
        self._names = [row[0] for row in desc]
        self.columns = [n.strip() for n in self._names]

    def chunks(self):
        rename = self.columns != self._names

        def fix(table):
            return table.rename_columns(self.columns + ["_rn"]) if rename else table

        yield from self._stream(f"SELECT * FROM read_csv(?, {self._opts})", [str(self.path)], fix)

    def rejects(self):
        try:
            rows = self.con.execute(
                f"SELECT line, column_name, error_type, line_byte_position, csv_line FROM {self._rej} ORDER BY line"
            ).fetchall()
        except duckdb.Error:
            return []
        out = []
        for line, column, etype, byte_pos, csv_line in rows:
            reason = _REJECT_REASONS.get(str(etype), str(etype).lower())
            field = column if str(etype) == "INVALID ENCODING" else None
            out.append((int(line) - 1, field, reason, self._raw_line(byte_pos, csv_line)))
        return out

    def _raw_line(self, byte_pos, fallback) -> str:
        # The original bytes of the line, undecodable ones kept as \xNN escapes (nothing lost).
        try:
            with open(self.path, "rb") as fh:
                # DuckDB reports the line start 1-based; check the byte before is a line break.
                start = max(int(byte_pos) - 1, 0)
                if start > 0:
                    fh.seek(start - 1)
                    if fh.read(1) != b"\n":
                        start += 1
                fh.seek(start)
                raw = fh.readline(MAX_LINE_BYTES).rstrip(b"\r\n")
            text = raw.decode("utf-8", errors="backslashreplace")
        except (OSError, TypeError, ValueError):
            text = fallback or ""
        return json.dumps({"line": text}, ensure_ascii=False)


class _JsonlSource(_CsvSource):
    fmt = "jsonl"

    def __init__(self, path, con, display):
        _Source.__init__(self, path, con, display)
        tag = uuid.uuid4().hex[:8]
        self._rej, self._scan = f"rej_{tag}", f"rejscan_{tag}"
        # Read each line as one VARCHAR (a delimiter and quote that JSON text never contains raw),
        # so a bad line becomes a quarantined row instead of failing the file.
        base = (
            "columns={'line': 'VARCHAR'}, header=false, delim='\x01', quote='', escape='', "
            f"auto_detect=false, max_line_size={MAX_LINE_BYTES}"
        )
        self._opts = base + f", store_rejects=true, rejects_table='{self._rej}', rejects_scan='{self._scan}'"
        self._jsonl = (
            "SELECT CASE WHEN json_type(jl) = 'OBJECT' THEN jl END AS jo, jl IS NULL AS invalid "
            "FROM (SELECT CASE WHEN json_valid(line) THEN line END AS jl FROM {src} "
            "WHERE line IS NOT NULL AND trim(line) <> '')"
        )
        try:
            keys = con.execute(
                "SELECT DISTINCT unnest(json_keys(jo)) AS k FROM ("
                + self._jsonl.format(src=f"read_csv(?, {base}, ignore_errors=true)")
                + ") WHERE jo IS NOT NULL ORDER BY k",
                [str(path)],
            ).fetchall()
        except duckdb.Error as exc:
            raise self._fail(exc) from None
        self.columns = [k[0] for k in keys]
        self._names = self.columns
        if not self.columns:
            lines = con.execute(
                f"SELECT count(*) FROM read_csv(?, {base}, ignore_errors=true) WHERE trim(line) <> ''", [str(path)]
            ).fetchone()[0]
            if lines:
                raise IngestError(f"{display}: no JSON object on any line; nothing was ingested")
            raise IngestError(f"{display}: no data rows (empty file); nothing was ingested")

    def chunks(self):
        cols = self.columns
        extract = ", ".join(
            f"json_extract_string(jo, '$.\"{c}\"') AS \"{c}\"" for c in cols if '"' not in c and "'" not in c
        )
        sql = (
            f"SELECT _rn, line AS _line, CASE WHEN invalid THEN '{ERR_SEP}not valid JSON' "
            f"WHEN jo IS NULL THEN '{ERR_SEP}not a JSON object' END AS _pre_err"
            + (f", {extract}" if extract else "")
            + " FROM (SELECT _rn, line, CASE WHEN json_type(jl) = 'OBJECT' THEN jl END AS jo, jl IS NULL AS invalid "
            "FROM (SELECT _rn, line, CASE WHEN json_valid(line) THEN line END AS jl FROM _jsonl_lines "
            "WHERE line IS NOT NULL AND trim(line) <> ''))"
        )
        worker = self.con.cursor()
        worker.execute("SET TimeZone = 'UTC'")

        def parse(table):
            worker.register("_jsonl_lines", table)
            try:
                return worker.execute(sql).to_arrow_table()
            finally:
                worker.unregister("_jsonl_lines")

        try:
            yield from self._stream(f"SELECT line FROM read_csv(?, {self._opts})", [str(self.path)], parse)
        finally:
            worker.close()

    def rejects(self):
        out = super().rejects()
        # No header line in JSONL: row N is line N.
        return [(row + 1, field, reason, raw) for row, field, reason, raw in out]

    def raw(self, rows):
        return rows.column("_line").to_pylist()


class _ParquetSource(_Source):
    fmt = "parquet"

    def __init__(self, path, con, display):
        super().__init__(path, con, display)
        try:
            desc = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        except duckdb.Error as exc:
            raise self._fail(exc) from None
        self.columns = [row[0] for row in desc]

    def chunks(self):
        yield from self._stream("SELECT * FROM read_parquet(?)", [str(self.path)])


class FrameSource(_Source):
    """An in-memory Arrow table, cut into chunks."""

    fmt = "frame"

    def __init__(self, table: pa.Table, display: str):
        self.display, self.table = display, table
        self.columns = list(table.column_names)

    def chunks(self):
        for start in range(0, self.table.num_rows, CHUNK_ROWS):
            yield _with_rn(self.table.slice(start, CHUNK_ROWS), start)


def parse_raw_rows(con: duckdb.DuckDBPyConnection, rows: pa.Table, columns: list[str]) -> pa.Table:
    """Quarantined raw rows back into a table that :func:`~insightroi.ingest._validate.validate_chunk` takes.

    ``rows`` has ``_rn`` (int64) and ``raw`` (the quarantine table's JSON text of the row, as
    :meth:`_Source.raw` and the JSONL reader store it). Values are read as text, like a JSONL line,
    so a row is validated exactly as when it was first ingested. Only rows that are a JSON object
    whose keys are all in ``columns`` come back: CSV lines the reader rejected (stored as
    ``{"line": ...}``) and lines that are not JSON objects cannot be re-read without the file, and
    keep their quarantine entry. Every column of ``columns`` is returned (NULL where absent), so a
    missing required value is reported per row instead of failing the whole set.
    """
    allowed = "[" + ", ".join("'" + c.replace("'", "''") + "'" for c in columns) + "]"
    extract = ", ".join(
        f"json_extract_string(raw, '$.\"{c}\"') AS \"{c}\"" for c in columns if '"' not in c and "'" not in c
    )
    view = f"_raw_rows_{uuid.uuid4().hex[:8]}"
    con.register(view, rows.select(["_rn", "raw"]))
    try:
        return con.execute(
            f"SELECT _rn, {extract} FROM {view} WHERE raw IS NOT NULL AND json_valid(raw) "
            f"AND json_type(raw) = 'OBJECT' AND list_has_all({allowed}::VARCHAR[], json_keys(raw)) ORDER BY _rn"
        ).to_arrow_table()
    finally:
        con.unregister(view)


def open_source(path: Path, con: duckdb.DuckDBPyConnection, display: str) -> _Source:
    """The reader for ``path`` by its suffix (IngestError for an unknown one)."""
    fmt = format_of(path)
    cls = {"csv": _CsvSource, "jsonl": _JsonlSource, "parquet": _ParquetSource}.get(fmt or "")
    if cls is None:
        raise IngestError(
            f"{display}: unsupported file type; use .csv, .jsonl/.ndjson or .parquet (optionally .gz for text)"
        )
    return cls(path, con, display)

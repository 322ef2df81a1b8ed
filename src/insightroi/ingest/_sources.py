"""Readers: stream a CSV, JSONL or Parquet file (or a frame) as Arrow chunks of bounded size.

Each reader yields Arrow tables whose columns are the file's columns (CSV and JSONL as VARCHAR,
Parquet and frames with their own types) plus ``_rn``, the 1-based position of the row in the
stream. Lines the reader rejects (bytes that are not UTF-8, a wrong number of fields, a broken
quoted value) are not in the stream; :meth:`rejects` returns them once the stream is exhausted,
with their row numbers and a reason that names the physical line, so the caller can quarantine
them.

CSV dialect
-----------
A CSV file is split with one explicit dialect, the same for every file and never guessed from
the file (:class:`CsvDialect`; the program file's ``[ingest]`` keys change it):

- delimiter ``,``; quote ``"``; escape ``"`` (a quote inside a quoted value is doubled, RFC 4180);
- the first line is the header (names the columns; a name may appear only once);
- a quoted value may span lines; a quote inside an unquoted value is an ordinary character;
- encoding UTF-8 (a UTF-8 byte-order mark is skipped); UTF-16 and UTF-32 files with a byte-order
  mark are read too; a file that looks like UTF-16 without one is refused, naming the encoding.

A stray quote never changes how the rest of the file is read. The fast path is DuckDB's CSV
reader in strict mode; when it reports a broken quoted value (or a quoted value swallows lines
that are whole records), the batch is rolled back and the file read again on a slow,
line-resynchronising path: a record whose quote does not close properly is quarantined as its
first physical line alone, and reading resumes on the next line. A line with too many or too
few fields is one quarantined row. Only when the columns do not match is a guess of the dialect
(DuckDB's sniffer on the first lines) printed, as a suggestion in the error.

Row numbers are 1-based data rows: for CSV the header is not counted (row 1 is the first record
after the header; equal to ``line - 1`` unless a quoted field spans lines; reader rejects name
the physical line in their reason), for JSONL row N is line N.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from insightroi.errors import IngestError
from insightroi.ingest._validate import ERR_SEP, SYSTEM_COLUMNS

__all__ = [
    "open_source", "FrameSource", "format_of", "parse_raw_rows", "SUFFIXES", "CHUNK_ROWS", "MAX_LINE_BYTES",
    "CsvDialect", "NeedsResync", "MAX_RECORD_LINES",
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
    #: Whether ``_rn`` skips the rows :meth:`rejects` returns (the engine then renumbers).
    renumber = True

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, display: str):
        self.path, self.con, self.display = path, con, display
        self.columns: list[str] = []

    def chunks(self) -> Iterator[pa.Table]:  # pragma: no cover - interface
        raise NotImplementedError

    def rejects(self) -> list[tuple[int, str | None, str, str]]:
        return []

    def close(self) -> None:
        """Remove temporary files (a transcoded copy)."""

    def dialect_hint(self) -> str:
        return ""

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


#: A quoted value may span at most this many lines; a quote left open longer is a stray quote.
MAX_RECORD_LINES = 10_000

# DuckDB reject types that stay on their own line; any other (a broken quoted value) may have
# swallowed the lines after it, so the file is read again on the resynchronising path.
_LINE_LOCAL = {"INVALID ENCODING", "TOO MANY COLUMNS", "MISSING COLUMNS", "LINE SIZE OVER MAXIMUM", "CAST"}

# Byte-order marks, longest first (UTF-32 LE starts with the UTF-16 LE mark).
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF8, "UTF-8"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


class NeedsResync(Exception):
    """Raised by the fast CSV reader when a broken quoted value may have swallowed other rows;
    the caller rolls the batch back and reads the file on the resynchronising path."""


@dataclass(frozen=True)
class CsvDialect:
    """How every CSV file is split into fields: explicit, the same for every file, never guessed.

    Parameters
    ----------
    delimiter : str
        One character between fields (default ``,``).
    quote : str
        One character that encloses a value holding delimiters, quotes or line breaks (default ``"``).
    escape : str
        One character that escapes a quote inside a quoted value (default ``"``: the quote is
        doubled, as RFC 4180 writes it; ``\\`` for files that write ``\\"``).
    header : bool
        Whether the first line names the columns (default True). Without one, the columns are
        the table's columns in the data contract's order.
    """

    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    header: bool = True

    def __post_init__(self) -> None:
        for name in ("delimiter", "quote", "escape"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise ValueError(f"CSV {name} must be one character other than a line break, got {value!r}")
        if self.delimiter in (self.quote, self.escape):
            raise ValueError(f"CSV delimiter {self.delimiter!r} cannot also be the quote or escape character")

    def describe(self) -> str:
        """The dialect in words, for messages and the data contract."""
        esc = "doubled quotes" if self.escape == self.quote else repr(self.escape)
        return (f"delimiter {self.delimiter!r}, quote {self.quote!r}, escape {esc}, "
                f"{'a header line' if self.header else 'no header line'}, UTF-8")

    def csv_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`csv.reader` for this dialect (strict: a malformed quote is an error)."""
        doubled = self.escape == self.quote
        return {"delimiter": self.delimiter, "quotechar": self.quote, "doublequote": doubled,
                "escapechar": None if doubled else self.escape, "strict": True}

    def duckdb_options(self) -> str:
        """DuckDB ``read_csv`` options for this dialect (sniffing off)."""
        return (f"delim={_lit(self.delimiter)}, quote={_lit(self.quote)}, escape={_lit(self.escape)}, "
                f"header={'true' if self.header else 'false'}, auto_detect=false, strict_mode=true")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _NoZstd(OSError):
    """A .zst file without the optional ``zstandard`` package (DuckDB's fast reader still reads it)."""


def _open_binary(path: Path):
    """The file's (decompressed) bytes."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        try:
            import zstandard  # optional: DuckDB reads .zst itself; Python only needs it off the fast path
        except ImportError:
            raise _NoZstd(f"{path.name}: reading a .zst file line by line needs the 'zstandard' package "
                          "(pip install zstandard), or decompress it first") from None
        return zstandard.open(path, "rb")
    return open(path, "rb")


def _detect_encoding(path: Path, display: str) -> str:
    """'UTF-8' (with or without a byte-order mark), 'UTF-16' or 'UTF-32'; refuses what looks
    like UTF-16 without a byte-order mark, naming it."""
    try:
        with _open_binary(path) as fh:
            head = fh.read(4096)
    except _NoZstd:
        return "UTF-8"  # DuckDB reads it; bytes that are not UTF-8 are quarantined per line
    except (OSError, EOFError) as exc:
        raise IngestError(f"{display}: cannot read the file: {exc}") from None
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if len(head) >= 16:
        # Mostly-ASCII UTF-16 has a NUL in every other byte; one NUL in UTF-8 text does not look like that.
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if max(even, odd) > len(head) // 4:
            order = "big-endian" if even > odd else "little-endian"
            raise IngestError(
                f"{display}: the file looks like UTF-16 ({order}) without a byte-order mark; save it as UTF-8 "
                "(or as UTF-16 with a byte-order mark). Nothing was ingested."
            )
    return "UTF-8"


def _transcode(path: Path, encoding: str, display: str, fmt: str) -> Path:
    """A UTF-8 copy of a UTF-16/32 file in a temporary directory (the caller removes it)."""
    tmp = Path(tempfile.mkdtemp(prefix="insightroi_ingest_"))
    out = tmp / f"transcoded.{fmt}"
    try:
        with _open_binary(path) as raw, open(out, "w", encoding="utf-8", newline="") as dst:
            # The codec without an explicit byte order reads the byte-order mark and drops it.
            text = io.TextIOWrapper(raw, encoding=encoding.lower(), newline="")
            shutil.copyfileobj(text, dst, 1 << 20)
    except UnicodeError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise IngestError(f"{display}: starts with a {encoding} byte-order mark but is not valid {encoding}: {exc}. "
                          "Nothing was ingested.") from None
    return out


def _first_line_duckdb(path: Path) -> list[str]:
    # The header line through DuckDB's decompression (a .zst file without the zstandard package).
    line = duckdb.connect().execute(
        "SELECT line FROM read_csv(?, columns={'line': 'VARCHAR'}, header=false, delim='\x01', quote='', "
        "escape='', auto_detect=false) LIMIT 1", [str(path)]).fetchone()
    return [] if line is None or line[0] is None else [line[0] + "\n"]


def _header(path: Path, dialect: CsvDialect, display: str) -> list[str]:
    """The header's column names, whitespace-trimmed (refusing one that repeats)."""
    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            row = next(csv.reader(text, **dialect.csv_kwargs()), None)
    except _NoZstd:
        row = next(csv.reader(_first_line_duckdb(path), **dialect.csv_kwargs()), None)
    except csv.Error as exc:
        raise IngestError(f"{display}: cannot read the header line ({exc}); nothing was ingested") from None
    if row is None:
        raise IngestError(f"{display}: no header line (empty file); nothing was ingested")
    names = [n.strip().lstrip("\ufeff") for n in row]
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in seen:
            raise IngestError(
                f"{display}: duplicated header {name!r} (columns {seen[name]} and {i}); each column may appear "
                "once. Nothing was ingested."
            )
        seen[name] = i
    return names


def _physical_lines(path: Path, positions: list[int]) -> dict[int, int]:
    """Byte offset -> 1-based physical line number (one sequential pass, only up to the last offset)."""
    out: dict[int, int] = {}
    if not positions:
        return out
    wanted = sorted(set(positions))
    lines, done, i = 1, 0, 0
    try:
        fh = _open_binary(path)
    except OSError:
        return out  # reasons then name no line (a .zst file without the zstandard package)
    with fh:
        while i < len(wanted):
            block = fh.read(1 << 22)
            if not block:
                break
            end = done + len(block)
            while i < len(wanted) and wanted[i] <= end:
                out[wanted[i]] = lines + block.count(b"\n", 0, wanted[i] - done)
                i += 1
            lines += block.count(b"\n")
            done = end
    for pos in wanted[i:]:
        out[pos] = lines
    return out


class _CsvSource(_Source):
    """The fast path: DuckDB's CSV reader with the explicit dialect, in strict mode."""

    fmt = "csv"
    #: Stream positions skip the rejected rows; the engine renumbers them.
    renumber = True

    def __init__(self, path, con, display, *, dialect: CsvDialect | None = None, columns: list[str] | None = None):
        super().__init__(path, con, display)
        self.dialect = dialect or CsvDialect()
        self.original = path
        self._tmp: Path | None = None
        encoding = _detect_encoding(path, display)
        if encoding != "UTF-8":
            self.path = _transcode(path, encoding, display, self.fmt)
            self._tmp = self.path.parent
        if self.dialect.header:
            self.columns = _header(self.path, self.dialect, display)
        else:
            self.columns = [c for c in (columns or []) if c not in SYSTEM_COLUMNS]
        tag = uuid.uuid4().hex[:8]
        self._rej, self._scan = f"rej_{tag}", f"rejscan_{tag}"
        # Positional names for DuckDB (its names are case-insensitive; the header's are not).
        struct = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(self.columns))) + "}"
        self._opts = (
            f"{self.dialect.duckdb_options()}, columns={struct}, store_rejects=true, rejects_table='{self._rej}', "
            f"rejects_scan='{self._scan}', max_line_size={MAX_LINE_BYTES}"
        )

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def dialect_hint(self) -> str:
        """A sentence suggesting another dialect when DuckDB's sniffer reads the file differently ('' otherwise)."""
        try:
            row = self.con.execute(
                "SELECT Delimiter, Quote, Escape, HasHeader FROM sniff_csv(?, sample_size = 20480)", [str(self.path)]
            ).fetchone()
        except duckdb.Error:
            return ""
        if row is None:
            return ""
        delim, quote, escape, header = row
        d = self.dialect
        found = []
        # The sniffer writes '(empty)' for "none found"; only one real character is a suggestion.
        if isinstance(delim, str) and len(delim) == 1 and delim != d.delimiter:
            found.append(f"delimiter = {delim!r}")
        if isinstance(quote, str) and len(quote) == 1 and quote not in ("\x00", d.quote):
            found.append(f"quote = {quote!r}")
        if not found:
            return ""
        return (f" The file may use {', '.join(found)} (a guess from its first lines, not applied): add "
                f"{' and '.join(found)} under [ingest] in the program file (from Python: dialect=CsvDialect(...)).")

    def chunks(self):
        n = len(self.columns)
        names = self.columns + ["_rn"]

        def fix(table):
            table = table.rename_columns(names)
            if n > 1:
                self._check_swallowed(table)
            return table

        yield from self._stream(f"SELECT * FROM read_csv(?, {self._opts})", [str(self.path)], fix)

    def _check_swallowed(self, table: pa.Table) -> None:
        # A stray quote that closes at a later quote reads every line between as one value;
        # a value whose later lines are whole records is sent to the resynchronising path.
        n = len(self.columns)
        for col in table.columns[:-1]:
            if not _may_hold_newline(col):
                continue
            hits = pc.match_substring(col, "\n")
            if not pc.any(hits).as_py():
                continue
            for value in col.filter(hits).to_pylist():
                if any(_is_record(line, n, self.dialect) for line in value.split("\n")[1:]):
                    raise NeedsResync

    def rejects(self):
        try:
            types = self.con.execute(
                f"SELECT DISTINCT CAST(error_type AS VARCHAR), count(DISTINCT line_byte_position) OVER (PARTITION BY line) "
                f"FROM {self._rej}").fetchall()
            rows = self.con.execute(
                f"SELECT line, first(column_name ORDER BY column_idx), first(error_type ORDER BY column_idx), "
                f"min(line_byte_position), first(csv_line) FROM {self._rej} GROUP BY line ORDER BY line"
            ).fetchall()
        except duckdb.Error:
            return []
        # Any error of a broken quoted value (even beside a field-count error on the same record),
        # or one record number at two places in the file, means lines may have been swallowed.
        if any(etype not in _LINE_LOCAL or places > 1 for etype, places in types):
            raise NeedsResync
        starts = {bp: self._line_start(bp) for _, _, _, bp, _ in rows}
        numbers = _physical_lines(self.path, [s for s in starts.values() if s is not None])
        out = []
        for line, column, etype, byte_pos, csv_line in rows:
            reason = _REJECT_REASONS.get(str(etype), str(etype).lower())
            field = None
            if str(etype) == "INVALID ENCODING" and column and column[0] == "c" and column[1:].isdigit():
                field = self.columns[int(column[1:])]
            start = starts[byte_pos]
            physical = numbers.get(start) if start is not None else None
            where = f"line {physical} " if physical else ""
            out.append((int(line) - (1 if self.dialect.header else 0), field, where + reason,
                        self._raw_line(start, csv_line)))
        return out

    def _line_start(self, byte_pos) -> int | None:
        # DuckDB reports the line start 1-based; check the byte before is a line break.
        try:
            start = max(int(byte_pos) - 1, 0)
            if start > 0:
                with _open_binary(self.path) as fh:
                    fh.seek(start - 1)
                    if fh.read(1) != b"\n":
                        start += 1
            return start
        except (OSError, TypeError, ValueError):
            return None

    def _raw_line(self, start, fallback) -> str:
        # The original bytes of the line, undecodable ones kept as \xNN escapes (nothing lost).
        try:
            with _open_binary(self.path) as fh:
                fh.seek(int(start))
                raw = fh.readline(MAX_LINE_BYTES).rstrip(b"\r\n")
            text = raw.decode("utf-8", errors="backslashreplace")
        except (OSError, TypeError, ValueError):
            text = fallback or ""
        return json.dumps({"line": text}, ensure_ascii=False)


def _may_hold_newline(col: pa.ChunkedArray) -> bool:
    """False when no value of a string column holds a line break (one memchr over its bytes).

    Checking each value (``match_substring``) cost 3-4% of a CSV ingest; the data buffer of a
    string array is searched whole instead (it may hold bytes outside a slice: a false alarm
    only sends the column to the per-value check).
    """
    for chunk in col.chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return True
        data = chunk.buffers()[2]
        if data is not None and data.to_pybytes().find(b"\n") >= 0:
            return True
    return False


def _is_record(line: str, n: int, dialect: CsvDialect) -> bool:
    """Whether ``line`` alone parses as a whole record of ``n`` fields."""
    if n < 2 or dialect.delimiter not in line:
        return False
    try:
        rows = list(csv.reader([line.rstrip("\r")], **dialect.csv_kwargs()))
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) == n


class _ResilientCsvSource(_CsvSource):
    """The slow path: Python's csv module record by record, resynchronising on the next line
    after a record whose quoted value does not close properly (used only for such files)."""

    renumber = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rejected: list[tuple[int, str | None, str, str]] = []

    def chunks(self):
        n = len(self.columns)
        d = self.dialect
        kw = d.csv_kwargs()
        plain_ok = d.escape == d.quote
        records: list[list[str]] = []
        rns: list[int] = []
        self._rejected = []
        rec = 0

        def reject(lineno: int, reason: str, raw: str) -> None:
            self._rejected.append((rec, None, f"line {lineno} {reason}", json.dumps({"line": raw}, ensure_ascii=False)))

        def flush() -> pa.Table:
            columns = [list(c) for c in zip(*records)] if records else [[] for _ in range(n)]
            # An empty field is a missing value, as DuckDB's reader reads it.
            arrays = [pa.array([v or None for v in c], pa.string()) for c in columns]
            table = pa.table(arrays + [pa.array(rns, pa.int64())], names=self.columns + ["_rn"])
            records.clear()
            rns.clear()
            return table

        old_limit = csv.field_size_limit()
        csv.field_size_limit(MAX_LINE_BYTES)
        try:
            try:
                fh = _open_binary(self.path)
            except OSError as exc:
                raise IngestError(str(exc) if isinstance(exc, _NoZstd) else f"{self.display}: {exc}") from None
            with fh:
                lines = enumerate(fh, 1)
                pending: deque[tuple[int, bytes]] = deque()

                def take() -> tuple[int, bytes] | None:
                    if pending:
                        return pending.popleft()
                    return next(lines, None)

                if d.header:
                    # The header is one record; a quoted name spanning lines is not supported.
                    take()
                while (item := take()) is not None:
                    lineno, raw = item
                    try:
                        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                    except UnicodeDecodeError:
                        rec += 1
                        reject(lineno, _REJECT_REASONS["INVALID ENCODING"],
                               raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace"))
                        continue
                    body = line.rstrip("\r\n")
                    if not body.strip():
                        continue
                    rec += 1
                    if d.quote not in body and (plain_ok or d.escape not in body):
                        fields = body.split(d.delimiter)
                        if len(fields) != n:
                            reject(lineno, _count_reason(len(fields), n), body)
                            continue
                    else:
                        fields, reason, extra = _parse_record(line, take, n, d, kw)
                        if reason is not None:
                            # Only the record's first line is quarantined; the lines read ahead are read again.
                            pending.extendleft(reversed(extra))
                            reject(lineno, reason, body)
                            continue
                    records.append(fields)
                    rns.append(rec)
                    if len(rns) >= CHUNK_ROWS:
                        yield flush()
        finally:
            csv.field_size_limit(old_limit)
        if rns:
            yield flush()

    def rejects(self):
        return list(self._rejected)


def _count_reason(got: int, n: int) -> str:
    word = "more" if got > n else "fewer"
    return f"has {word} fields than the header ({got}, expected {n})"


def _parse_record(first: str, take, n: int, d: CsvDialect, kw: dict) -> tuple[list[str] | None, str | None, list]:
    """Parse one record starting with line ``first``, reading more lines while a quote is open.

    Returns (fields, None, lines read ahead) or (None, reason, lines read ahead).
    """
    parts = [first]
    extra: list[tuple[int, bytes]] = []
    while True:
        try:
            # The reader takes the lines themselves (line breaks inside a quoted value kept).
            fields = next(csv.reader(parts, **kw))
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                return None, f"has a malformed quoted value ({exc})", extra
            if len(parts) >= MAX_RECORD_LINES:
                return None, f"has a quoted value still open after {MAX_RECORD_LINES:,} lines (a stray quote?)", extra
            item = take()
            if item is None:
                return None, "has a quoted value that is never closed (a stray quote?)", extra
            extra.append(item)
            try:
                parts.append(item[1].decode("utf-8"))
            except UnicodeDecodeError:
                return None, "has a quoted value that is never closed before an undecodable line (a stray quote?)", extra
            continue
        if len(parts) > 1 and any(_is_record(p.rstrip("\r\n"), n, d) for p in parts[1:]):
            return None, "has a quoted value that is never closed; it would swallow the rows after it (a stray quote?)", extra
        if len(fields) != n:
            return None, _count_reason(len(fields), n), extra
        return fields, None, extra


class _JsonlSource(_CsvSource):
    fmt = "jsonl"
    renumber = True

    def __init__(self, path, con, display, *, dialect=None, columns: list[str] | None = None):
        _Source.__init__(self, path, con, display)
        self.original, self._tmp = path, None
        encoding = _detect_encoding(path, display)
        if encoding != "UTF-8":
            self.path = _transcode(path, encoding, display, self.fmt)
            self._tmp = self.path.parent
        path = self.path
        tag = uuid.uuid4().hex[:8]
        self._rej, self._scan = f"rej_{tag}", f"rejscan_{tag}"
        # Read each line as one VARCHAR (a delimiter and quote that JSON text never contains raw),
        # so a bad line becomes a quarantined row instead of failing the file.
        base = (
            "columns={'line': 'VARCHAR'}, header=false, delim='\x01', quote='', escape='', "
            f"auto_detect=false, max_line_size={MAX_LINE_BYTES}"
        )
        self._opts = base + f", store_rejects=true, rejects_table='{self._rej}', rejects_scan='{self._scan}'"
        self.dialect = CsvDialect()
        try:
            keys = con.execute(
                "SELECT DISTINCT unnest(json_keys(jo)) AS k FROM ("
                "SELECT CASE WHEN json_type(jl) = 'OBJECT' THEN jl END AS jo "
                f"FROM (SELECT CASE WHEN json_valid(line) THEN line END AS jl FROM read_csv(?, {base}, ignore_errors=true) "
                "WHERE line IS NOT NULL AND trim(line) <> '')) WHERE jo IS NOT NULL ORDER BY k",
                [str(path)],
            ).fetchall()
        except duckdb.Error as exc:
            raise self._fail(exc) from None
        found = [k[0] for k in keys]
        known = None if columns is None else set(columns) | set(SYSTEM_COLUMNS)
        # Keys that are not columns are reported per line (the other lines land); only the
        # table's own columns are extracted.
        self._known = sorted(known) if known is not None else None
        self.columns = [k for k in found if known is None or k in known]
        self._names = self.columns
        if not found:
            lines = con.execute(
                f"SELECT count(*) FROM read_csv(?, {base}, ignore_errors=true) WHERE trim(line) <> ''", [str(path)]
            ).fetchone()[0]
            if lines:
                raise IngestError(f"{display}: no JSON object on any line; nothing was ingested")
            raise IngestError(f"{display}: no data rows (empty file); nothing was ingested")

    def dialect_hint(self) -> str:
        return ""

    def chunks(self):
        cols = self.columns
        extract = ", ".join(
            f"json_extract_string(jo, '$.\"{c}\"') AS \"{c}\"" for c in cols if '"' not in c and "'" not in c
        )
        unknown = ""
        if self._known is not None:
            known = "[" + ", ".join(_lit(k) for k in self._known) + "]::VARCHAR[]"
            bad = f"list_filter(json_keys(jo), k -> NOT list_contains({known}, k))"
            unknown = (f"WHEN len({bad}) > 0 THEN '{ERR_SEP}unknown key' || CASE WHEN len({bad}) > 1 THEN 's ' "
                       f"ELSE ' ' END || array_to_string(list_transform({bad}, k -> '''' || k || ''''), ', ') "
                       "|| ' (not a column of this table)' ")
        sql = (
            f"SELECT _rn, line AS _line, CASE WHEN invalid THEN '{ERR_SEP}not valid JSON' "
            f"WHEN jo IS NULL THEN '{ERR_SEP}not a JSON object' {unknown}END AS _pre_err"
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
        try:
            rows = self.con.execute(
                f"SELECT line, first(column_name), first(error_type), first(csv_line), min(line_byte_position) "
                f"FROM {self._rej} GROUP BY line ORDER BY line"
            ).fetchall()
        except duckdb.Error:
            return []
        out = []
        for line, column, etype, csv_line, byte_pos in rows:
            reason = _REJECT_REASONS.get(str(etype), str(etype).lower())
            field = column if str(etype) == "INVALID ENCODING" else None
            # No header line in JSONL: row N is line N.
            out.append((int(line), None if field == "line" else field, f"line {int(line)} {reason}",
                        self._raw_line(self._line_start(byte_pos), csv_line)))
        return out

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


def open_source(path: Path, con: duckdb.DuckDBPyConnection, display: str, *, dialect: CsvDialect | None = None,
                columns: list[str] | None = None, resync: bool = False) -> _Source:
    """The reader for ``path`` by its suffix (IngestError for an unknown one).

    ``dialect`` splits CSV files (default :class:`CsvDialect`); ``columns`` are the target
    table's columns (a headerless CSV's columns; JSONL keys outside them are quarantined per
    line); ``resync`` reads a CSV on the slow, line-resynchronising path.
    """
    fmt = format_of(path)
    cls = {"csv": _CsvSource, "jsonl": _JsonlSource, "parquet": _ParquetSource}.get(fmt or "")
    if cls is None:
        raise IngestError(
            f"{display}: unsupported file type; use .csv, .jsonl/.ndjson or .parquet (optionally .gz for text)"
        )
    if fmt == "parquet":
        return cls(path, con, display)
    if fmt == "csv" and resync:
        cls = _ResilientCsvSource
    return cls(path, con, display, dialect=dialect, columns=columns)

"""Import presets: the standard CSV exports of common CX and commerce tools mapped onto our tables.

``insightroi ingest --preset NAME FILE`` reads a vendor's export as the vendor writes it and lands
it through :func:`~insightroi.ingest.ingest_frame`, so the same validation, dedupe, quarantine and
PII redaction apply as to a file in our own columns.

Design
------
- **Declarative.** Each preset in :data:`PRESETS` is a plain dict: the vendor's export and its
  source URL, the header columns the export must carry, and per target table a mapping
  ``our column -> rule``. A rule is one small dict (``{"col": ...}`` rename, ``{"const": ...}``,
  ``{"map": ..., "values": ...}`` value map, ``{"time": ..., "formats": ..., "tz": ...}``,
  ``{"epoch": ...}``, ``{"join": [...]}``, ``{"hash": [...], "prefix": ...}`` id from stable
  columns, ``{"line_id": ...}``, ``{"line_total": ...}``, ``{"html": ...}``); :func:`_apply`
  is the only interpreter. A vendor changing a header is a one-line edit of data (the presets are
  written in :mod:`insightroi.ingest._preset_specs`).
- **One output row per input record, in file order.** The frame handed to the engine has the
  file's records in order, so the quarantine's ``row_number`` of a bad row is its record number
  in the ORIGINAL file, counted as ``ingest_path`` counts a CSV (header excluded: row 1 is the
  first record). Presets therefore never drop or reorder rows: a record that cannot become a
  valid row of our table is quarantined with its reason, never skipped. Messages printed by the
  CLI add the record's physical line (it differs from ``row + 1`` when a quoted value spans
  lines) and the vendor column a failing field came from.
- **Preset-level checks go through the engine.** A value the vendor's format forbids but our
  contract would accept (a Play star rating of 7 lands within ``feedback.rating``'s 0..10) is
  passed on as ``"7 (Star Rating must be 1-5)"``: the engine quarantines it as unparseable, with
  the original value and why in the reason, and ``--retry-quarantine`` never lands it. A record
  with more or fewer fields than the header gets the same treatment on its time column.
- **Unknown columns are kept, known personal columns are not.** Every header column no rule
  reads and the preset does not list in ``drop`` is kept in the user table
  ``user_<preset>_attributes`` (columns ``id`` = the row's id in the preset's main table,
  ``row_table``, ``attributes`` = JSON object of the non-empty unknown values), ingested through
  the same engine with ``attributes`` declared as free text, so e-mails, phones, cards and
  addresses in it are redacted. ``drop`` lists the export columns that hold a person's name,
  postal address or phone and that no analysis here needs (Shopify's billing and shipping
  blocks): keeping them would store personal data the redactor cannot recognise (names).
- **One batch per table.** Each target table (and the attributes table) is its own batch and
  transaction, as when ingesting several files; re-ingesting the same export lands nothing new
  (keys dedupe) and adds no quarantine rows (their ids hash the file, row and content).
- **Time stamps.** Each time rule lists the vendor's formats; a value that parses and carries
  no offset gets the preset's zone when the vendor documents one (Play and Trustpilot write
  UTC), else it stays naive and the engine applies ``program.timezone`` (or quarantines it
  naming that setting). A value that does not parse is passed on unchanged, so the engine's
  reason quotes it.

Exports whose column set could not be confirmed against a published list say so in the
preset's ``note`` (printed by ``insightroi ingest --list-presets`` and in ``docs/presets.md``).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import html
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from insightroi.ingest._preset_specs import PRESETS
from insightroi.errors import IngestError
from insightroi.ingest._engine import ingest_frame
from insightroi.ingest._report import IngestReport
from insightroi.program import UserTable
from insightroi.store import TABLES, USER_TABLE_PREFIX, Store

__all__ = ["PRESETS", "PresetReport", "preset_names", "preset_attributes_table", "ingest_preset",
           "presets_markdown"]

_ATTR_COLUMNS = {"id": "string", "row_table": "string", "attributes": "string"}


def preset_names() -> list[str]:
    """The preset names, in the order :data:`PRESETS` lists them."""
    return list(PRESETS)


def _get(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_attributes_table(name: str) -> UserTable:
    """The user table that keeps a preset's unknown columns: ``user_<name>_attributes``.

    Parameters
    ----------
    name : str
        A preset name (:func:`preset_names`).

    Returns
    -------
    UserTable
        Columns ``id`` (the key: the row's id in the preset's main table), ``row_table`` and
        ``attributes`` (JSON text, redacted as free text).
    """
    _get(name)
    main = next(iter(PRESETS[name]["tables"]))
    return UserTable(
        name=f"{name}_attributes", columns=dict(_ATTR_COLUMNS), key="id", required=["attributes"],
        text_columns=["attributes"],
        description=f"Columns of the {PRESETS[name]['vendor']} export that {main} has no place for, "
                    f"as JSON, by {main}.id.",
    )


def _source_columns(rule: dict[str, Any]) -> list[str]:
    cols: list[str] = []
    for k in ("col", "map", "time", "epoch", "html", "line_id", "minus"):
        if isinstance(rule.get(k), str):
            cols.append(rule[k])
    for k in ("join", "first", "hash", "line_total"):
        cols.extend(rule.get(k) or [])
    cols.extend((rule.get("fallback") or {}).values())
    return cols


def _used_columns(preset: dict[str, Any]) -> set[str]:
    used = {c for t in preset["tables"].values() for r in t.values() for c in _source_columns(r)}
    if preset.get("group"):
        used.add(preset["group"])
    return used


def source_of(preset: str, table: str, column: str) -> str | None:
    """The export column(s) our ``table.column`` is read from in ``preset`` (None for a constant)."""
    rule = PRESETS[preset]["tables"].get(table, {}).get(column)
    if rule is None:
        return None
    cols = _source_columns(rule)
    return " + ".join(repr(c) for c in cols) if cols else None


# ---- reading ---------------------------------------------------------------------------------
@dataclass
class _Records:
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # physical line where each record starts (1-based; the header is line 1)


def _decode(data: bytes, display: str) -> str:
    # Play reports are UTF-16 with a BOM; the others UTF-8, sometimes with a BOM (Excel).
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{display}: not UTF-8 or UTF-16 text ({exc}); nothing was ingested") from None


def _read(path: Path, display: str) -> _Records:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{display}: cannot read the file: {exc}") from None
    if not data.strip():
        raise IngestError(f"{display}: empty file; nothing was ingested")
    reader = csv.reader(io.StringIO(_decode(data, display), newline=""), strict=False)
    try:
        header = [h.strip() for h in next(reader)]
        rows, lines, end = [], [], reader.line_num
        for rec in reader:
            if not rec:
                end = reader.line_num  # a blank line is no record (as the CSV reader treats it)
                continue
            rows.append(rec)
            lines.append(end + 1)
            end = reader.line_num
    except csv.Error as exc:
        raise IngestError(f"{display}: cannot read as CSV near line {reader.line_num}: {exc}") from None
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise IngestError(f"{display}: repeated header column(s) {', '.join(map(repr, repeated))}; nothing was ingested")
    if not rows:
        raise IngestError(f"{display}: no data rows (empty file); nothing was ingested")
    return _Records(header, rows, lines)


# ---- the rules -------------------------------------------------------------------------------
def _blank(v: str | None) -> bool:
    return v is None or not v.strip()


def _time(v: str | None, formats: list[str], tz: str | None) -> str | None:
    if _blank(v):
        return None
    s = v.strip()
    parsed = None
    try:
        parsed = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        for fmt in formats:
            try:
                parsed = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return s  # the engine quarantines it, quoting the value
    if parsed.tzinfo is None:
        if tz is None:
            return parsed.isoformat()  # naive: program.timezone applies (or the engine says to set it)
        parsed = parsed.replace(tzinfo=ZoneInfo(tz))
    return parsed.isoformat()


def _number(v: str | None) -> float | None:
    try:
        return float(v.strip().replace(",", "")) if not _blank(v) else None
    except ValueError:
        return None


_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/li)\s*/?\s*>", re.I)


def _apply(rule: dict[str, Any], row: dict[str, str | None], ctx: dict[str, Any]) -> str | None:
    """One of our values from one export record (as text: the engine parses and checks it)."""
    if "const" in rule:
        return rule["const"]
    if "col" in rule:
        v = row.get(rule["col"])
        if _blank(v):
            return None
        v = v.strip()
        if "range" in rule:
            lo, hi = rule["range"]
            x = _number(v)
            if x is not None and not (lo <= x <= hi):
                return f"{v} ({rule['col']} must be {lo}-{hi})"
        return rule.get("prefix", "") + v
    if "map" in rule:
        v = row.get(rule["map"])
        if _blank(v):
            return None
        values = rule["values"]
        if isinstance(values, str):  # another table's map, by "table.column"
            t, c = values.split(".")
            values = ctx["preset"]["tables"][t][c]["values"]
        return values.get(v.strip().lower(), v.strip().lower())
    if "time" in rule:
        return _time(row.get(rule["time"]), rule.get("formats", []), rule.get("tz"))
    if "epoch" in rule:
        v = row.get(rule["epoch"])
        x = _number(v)
        if x is None:
            return None if _blank(v) else v.strip()
        # Intercom writes seconds; a 13-digit value is milliseconds.
        return datetime.fromtimestamp(x / 1000 if x > 1e11 else x, timezone.utc).isoformat()
    if "join" in rule:
        parts = [row.get(c).strip() for c in rule["join"] if not _blank(row.get(c))]
        return "\n".join(parts) if parts else None
    if "first" in rule:
        return next((row[c].strip() for c in rule["first"] if not _blank(row.get(c))), None)
    if "html" in rule:
        v = row.get(rule["html"])
        if _blank(v):
            return None
        text = html.unescape(_TAGS.sub("", _BREAKS.sub("\n", v)))
        return "\n".join(line.strip() for line in text.splitlines() if line.strip()) or None
    if "hash" in rule:
        fallback = rule.get("fallback", {})

        def cell(c: str) -> str:
            return (row.get(c) or "").strip()

        key = "\x1f".join(cell(c) or (cell(fallback[c]) if c in fallback else "") for c in rule["hash"])
        return rule.get("prefix", "") + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    if "line_id" in rule:
        name = row.get(rule["line_id"])
        if _blank(name):
            return None
        return f"{name.strip()}/{ctx['line_no']}"
    if "line_total" in rule:
        price_col, qty_col = rule["line_total"]
        price, qty = row.get(price_col), row.get(qty_col)
        p, q = _number(price), _number(qty)
        if p is None or q is None:
            bad = price if p is None else qty
            return None if _blank(bad) else bad.strip()  # unparseable: the engine names it
        total = p * q - (_number(row.get(rule.get("minus") or "")) or 0.0)
        return repr(round(total, 2))
    raise AssertionError(f"unknown rule {rule!r}")  # pragma: no cover - PRESETS is checked by tests


# ---- the batch -------------------------------------------------------------------------------
@dataclass
class PresetReport:
    """What ``ingest --preset`` did: one :class:`~insightroi.ingest.IngestReport` per table.

    Attributes
    ----------
    preset : str
        The preset name.
    file : str
        The export file.
    rows_read : int
        Records in the export (header excluded).
    reports : dict of str to IngestReport
        Per table landed into (ours, then ``user_<preset>_attributes``).
    lines : list of int
        The physical line each record starts on (record ``n`` is ``lines[n - 1]``).
    unknown_columns : list of str
        Header columns kept as attributes.
    """

    preset: str
    file: str
    rows_read: int
    reports: dict[str, IngestReport] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)

    @property
    def landed(self) -> dict[str, int]:
        """Rows landed per table."""
        return {t: r.landed for t, r in self.reports.items()}

    @property
    def quarantined(self) -> dict[str, int]:
        """Rows quarantined per table."""
        return {t: r.quarantined for t, r in self.reports.items()}

    @property
    def ok(self) -> bool:
        """False when a table's batch failed as a whole."""
        return all(r.ok for r in self.reports.values())

    def errors(self) -> list[str]:
        """The first quarantine messages of each table, with the physical line and export column.

        ``shopify.csv row 3, field 'order_time'`` becomes ``shopify.csv row 3 (line 4), field
        'order_time' (from 'Created at')``.
        """
        out = []
        for table, rep in self.reports.items():
            for msg in rep.errors:
                out.append(f"[{table}] " + self._annotate(table, msg))
        return out

    def _annotate(self, table: str, msg: str) -> str:
        m = re.search(r" row (\d+)(, field '([^']+)')?: ", msg)
        if not m:
            return msg
        n = int(m.group(1))
        where = f" row {n}" + (f" (line {self.lines[n - 1]})" if 0 < n <= len(self.lines) else "")
        if m.group(3):
            src = source_of(self.preset, table, m.group(3))
            where += f", field '{m.group(3)}'" + (f" (from {src})" if src else "")
        return msg[:m.start()] + where + ": " + msg[m.end():]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the preset, file, records read, and each table's report."""
        return {"preset": self.preset, "file": self.file, "rows_read": self.rows_read,
                "unknown_columns": self.unknown_columns, "errors": self.errors(),
                "tables": {t: r.to_dict() for t, r in self.reports.items()}}


def _frames(name: str, recs: _Records, display: str) -> tuple[dict[str, pa.Table], list[str]]:
    preset = PRESETS[name]
    header, width = recs.header, len(recs.header)
    missing = [c for c in preset["required"] if c not in header]
    if missing:
        raise IngestError(
            f"{display}: not a {preset['vendor']} {name} export: missing column(s) {', '.join(map(repr, missing))}; "
            f"found {', '.join(map(repr, header))}. Nothing was ingested (is it another preset's file?)")
    used = _used_columns(preset)
    drop = set(preset.get("drop", ()))
    unknown = [c for c in header if c not in used and c not in drop]
    tables = list(preset["tables"])
    main = tables[0]
    out: dict[str, dict[str, list]] = {t: {c: [] for c in preset["tables"][t]} for t in tables}
    attrs: dict[str, list] = {"id": [], "row_table": [], "attributes": []}
    group, fill = preset.get("group"), preset.get("fill", [])
    carried: dict[str, str] = {}
    counts: dict[str, int] = {}
    maps = preset.get("attribute_maps", {})
    for rec, line in zip(recs.rows, recs.lines):
        row: dict[str, str | None] = {h: (rec[i] if i < len(rec) else None) for i, h in enumerate(header)}
        ctx: dict[str, Any] = {"preset": preset}
        if group:
            g = (row.get(group) or "").strip()
            if g and g != carried.get("\x00group"):
                carried = {"\x00group": g}
            for c in fill:
                if not _blank(row.get(c)):
                    carried[c] = row[c]
                elif c in carried:
                    row[c] = carried[c]
            counts[g] = counts.get(g, 0) + 1
            ctx["line_no"] = counts[g]
        for t in tables:
            spec = TABLES[t]
            for col, rule in preset["tables"][t].items():
                out[t][col].append(_apply(rule, row, ctx))
            if len(rec) != width:
                # A record split wrongly cannot be mapped column by column: quarantine it.
                tcol = spec.time_column if spec.time_column in out[t] else next(iter(out[t]))
                out[t][tcol][-1] = f"line {line} has {len(rec)} fields, the header has {width}"
        if unknown:
            kept = {c: row[c] for c in unknown if not _blank(row.get(c))}
            for c, mapping in maps.items():
                if c in kept and kept[c].strip().lower() in mapping:
                    kept[c] = mapping[kept[c].strip().lower()]
            attrs["id"].append(out[main]["id"][-1])
            attrs["row_table"].append(main)
            # A misaligned record's values sit under the wrong names: keep none of them.
            attrs["attributes"].append(json.dumps(kept, ensure_ascii=False, sort_keys=True)
                                       if len(rec) == width else None)
    frames = {t: pa.table({c: pa.array(v, pa.string()) for c, v in cols.items()}) for t, cols in out.items()}
    if unknown:
        frames[USER_TABLE_PREFIX + f"{name}_attributes"] = pa.table(
            {c: pa.array(v, pa.string()) for c, v in attrs.items()})
    return frames, unknown


def ingest_preset(
    store: Store,
    preset: str,
    path: str | PathLike,
    *,
    program: Any = None,
    redact: bool = True,
) -> PresetReport:
    """Ingest a vendor's CSV export with a preset: map it to our tables, then validate and land it.

    Each target table, and ``user_<preset>_attributes`` for the export's unknown columns, is one
    :func:`~insightroi.ingest.ingest_frame` batch with the file's records in file order, so a
    quarantined row's ``row_number`` is its record number in the export (header excluded, as
    :func:`~insightroi.ingest.ingest_path` counts), ``file`` is the export's path, and e-mails,
    phones and cards in text are redacted and e-mail customer ids pseudonymised as for any file.

    Parameters
    ----------
    store : Store
        From :func:`insightroi.store.open_store`.
    preset : str
        A name of :data:`PRESETS` (:func:`preset_names`).
    path : str or path
        The export, a CSV file as the vendor writes it (UTF-8 or UTF-16 with a BOM).
    program : Program or path, optional
        The program file: its ``program.timezone`` localises vendor times written without an
        offset (Zendesk, Shopify without one); its ``[ingest]`` rules apply.
    redact : bool
        Redact PII in text and pseudonymise PII ids (default True).

    Returns
    -------
    PresetReport

    Raises
    ------
    ValueError
        For an unknown preset (the message lists the available ones).
    IngestError
        When the file is unreadable, empty, or lacks the export's required columns (it names
        them and the columns found); nothing lands.
    """
    _get(preset)
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file (a preset reads one export file)")
    display = str(path)
    recs = _read(path, path.name)
    frames, unknown = _frames(preset, recs, path.name)
    report = PresetReport(preset=preset, file=display, rows_read=len(recs.rows), lines=recs.lines,
                          unknown_columns=unknown)
    main = next(iter(frames))
    for table, frame in frames.items():
        kind: Any = preset_attributes_table(preset) if table.startswith(USER_TABLE_PREFIX) else table
        if table.startswith(USER_TABLE_PREFIX) and report.reports[main].quarantined:
            # One attributes row per record: a record the main table quarantined has no row for
            # them to describe, so they would point at an id that does not exist.
            frame = _without_records(frame, _quarantined_records(store, [f.batch_id for f in report.reports[main].files]))
        report.reports[table] = ingest_frame(store, kind, frame, source=display, program=program, redact=redact)
    return report


def _quarantined_records(store: Store, batch_ids: list[str]) -> set[int]:
    q = store.table("quarantine")
    rows = q.filter(q.batch_id.isin(batch_ids)).select("row_number").execute()
    return {int(r) for r in rows.row_number}


def _without_records(frame: pa.Table, records: set[int]) -> pa.Table:
    """``frame`` (one row per record, in file order) without the rows of ``records`` (1-based)."""
    keep = [i for i in range(frame.num_rows) if i + 1 not in records]
    return frame.take(pa.array(keep, pa.int64()))


def presets_markdown() -> str:
    """``docs/presets.md``'s table part: each preset, its target tables, mappings and source URL."""
    out = []
    for name, p in PRESETS.items():
        out.append(f"## `{name}` — {p['vendor']}\n")
        out.append(f"Export: {p['export']}. Source: <{p['url']}>\n")
        out.append(f"{p['note']}\n")
        out.append(f"Required export columns: {', '.join(f'`{c}`' for c in p['required'])}.\n")
        out.append("| our column | from the export |\n|---|---|")
        for table, cols in p["tables"].items():
            for col, rule in cols.items():
                out.append(f"| `{table}.{col}` | {_describe(rule)} |")
        out.append("")
        if p.get("drop"):
            out.append(f"Not kept (personal data no analysis needs): {', '.join(f'`{c}`' for c in p['drop'])}.\n")
        out.append(f"Every other column: kept as JSON in `user_{name}_attributes` by the row's id.\n")
    return "\n".join(out)


def _describe(rule: dict[str, Any]) -> str:
    if "const" in rule:
        return f"constant `{rule['const']}`"
    if "col" in rule:
        extra = f", must be {rule['range'][0]}-{rule['range'][1]}" if "range" in rule else ""
        pre = f" prefixed `{rule['prefix']}`" if rule.get("prefix") else ""
        return f"`{rule['col']}`{pre}{extra}"
    if "map" in rule:
        vals = rule["values"]
        shown = (f"same map as `{vals}`" if isinstance(vals, str)
                 else "; ".join(f"{k} → {v}" for k, v in vals.items()))
        return f"`{rule['map']}` mapped ({shown}; other values lower-cased)"
    if "time" in rule:
        fmts = ", ".join(f"`{f}`" for f in rule.get("formats", []))
        tz = f"; no offset means {rule['tz']}" if rule.get("tz") else "; no offset: program.timezone"
        return f"`{rule['time']}` (ISO 8601{', ' + fmts if fmts else ''}{tz})"
    if "epoch" in rule:
        return f"`{rule['epoch']}` (Unix seconds, UTC)"
    if "join" in rule:
        return " + ".join(f"`{c}`" for c in rule["join"]) + " (joined by a line break)"
    if "first" in rule:
        return "first non-empty of " + ", ".join(f"`{c}`" for c in rule["first"])
    if "html" in rule:
        return f"`{rule['html']}` (HTML tags removed)"
    if "hash" in rule:
        blank = "".join(f"; a blank `{a}` is replaced by `{b}`" for a, b in (rule.get("fallback") or {}).items())
        return (f"`{rule.get('prefix', '')}` + SHA-256 of " + ", ".join(f"`{c}`" for c in rule["hash"])
                + f" (first 16 hex digits{blank})")
    if "line_id" in rule:
        return f"`{rule['line_id']}` + `/` + line number within the order"
    if "line_total" in rule:
        a, b = rule["line_total"]
        minus = f" − `{rule['minus']}`" if rule.get("minus") else ""
        return f"`{a}` × `{b}`{minus}"
    return repr(rule)  # pragma: no cover

"""The data contract: what each ingestible table accepts, read from the rules ingestion enforces.

Nothing here is written by hand about a column: names, types and required columns come from
:data:`insightroi.store.TABLES`, meanings, examples, allowed values and ranges from each column's
:class:`~insightroi.store._schema.ColumnInfo` (which the validator also reads), and the accepted
cell formats from :data:`insightroi.ingest._validate.TYPE_FORMATS`. ``insightroi schema`` prints
it and ``docs/data-contract.md`` is :func:`data_contract_markdown`'s output, so the documentation
cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from insightroi.errors import check_option
from insightroi.ingest._engine import INGESTIBLE
from insightroi.ingest._sources import CsvDialect
from insightroi.ingest._validate import (
    EARLIEST,
    ENUMS,
    LATEST,
    MAX_TEXT_BYTES,
    NOT_BEFORE,
    RANGES,
    REDACT_COLUMNS,
    SYSTEM_COLUMNS,
    TYPE_FORMATS,
)
from insightroi.store import TABLES, TableSpec

__all__ = ["data_contract", "data_contract_markdown", "contract_tables", "TYPE_NAMES", "CSV_RULES"]

_D = CsvDialect()
#: How CSV files are read (Markdown bullet lines; also printed by ``insightroi schema``).
CSV_RULES = (
    f"- **CSV dialect** (the same for every file, never guessed): delimiter `{_D.delimiter}`, quote `{_D.quote}`,",
    "  a quote inside a quoted value doubled (`\"\"`), the first line a header naming each column once,",
    "  UTF-8 (a byte-order mark is skipped; UTF-16/32 with a byte-order mark are read too). The",
    "  program file's `[ingest] delimiter`, `quote`, `escape`, `header` change it. A quoted value may",
    "  span lines. A line whose quote never closes, or with too many or too few fields, is",
    "  quarantined alone with its line number; the rest of the file is read as if it were not there.",
)

#: Column types as users read them.
TYPE_NAMES = {
    "string": "text", "float64": "number", "int64": "integer", "boolean": "boolean",
    "date": "date", "timestamp": "timestamp",
}


def _num(x: float) -> str:
    return f"{x:g}"


def _rule(table: str, column: str) -> str:
    """Allowed values of a column, in words ('' when any value of its type is accepted)."""
    if (table, column) in NOT_BEFORE:
        return f"not before {NOT_BEFORE[(table, column)]}"
    if (table, column) in ENUMS:
        return ", ".join(ENUMS[(table, column)])
    if (table, column) in RANGES:
        lo, hi = RANGES[(table, column)]
        if lo is not None and hi is not None:
            return f"{_num(lo)} to {_num(hi)}"
        return f">= {_num(lo)}" if lo is not None else f"<= {_num(hi)}"
    return ""


def data_contract(table: str | None = None, *, user_tables: Sequence[TableSpec] = ()) -> list[dict[str, Any]]:
    """Each ingestible table's columns, types, required or optional, allowed values and examples.

    Parameters
    ----------
    table : str, optional
        One ingestible table (or one of ``user_tables``); all of them (in the store's order,
        then ``user_tables``) when None.
    user_tables : sequence of TableSpec
        The program file's user tables (:func:`insightroi.store.user_table_spec`), listed after ours.

    Returns
    -------
    list of dict
        One dict per table: ``name``, ``description``, ``key``, ``time_column`` and ``columns``,
        a list of dicts with ``name``, ``type`` (text, number, integer, boolean, date, timestamp),
        ``store_type`` (the Ibis type), ``format`` (what a cell may hold), ``required``,
        ``set_by_ingestion``, ``redacted``, ``allowed`` (list or None), ``minimum``, ``maximum``,
        ``rule`` (allowed values in words), ``example`` and ``description``.

    Raises
    ------
    ValueError
        For a table that is not ingestible (the message lists those that are).
    """
    specs = {**{n: TABLES[n] for n in INGESTIBLE}, **{u.name: u for u in user_tables}}
    names = tuple(specs) if table is None else (check_option("table", table, tuple(specs)),)
    out = []
    for name in names:
        spec = specs[name]
        redacted = spec.text_columns if name not in TABLES else REDACT_COLUMNS.get(name, ())
        columns = []
        for col, ibis_type in spec.columns.items():
            info = spec.column_info[col]
            lo, hi = RANGES.get((name, col), (None, None))
            columns.append({
                "name": col,
                "type": TYPE_NAMES[ibis_type],
                "store_type": ibis_type,
                "format": TYPE_FORMATS[ibis_type],
                "required": col in spec.required,
                "set_by_ingestion": col in SYSTEM_COLUMNS,
                "redacted": col in redacted,
                "allowed": list(ENUMS[(name, col)]) if (name, col) in ENUMS else None,
                "minimum": lo,
                "maximum": hi,
                "rule": _rule(name, col),
                "example": info.example,
                "description": info.description,
            })
        out.append({
            "name": name, "description": spec.description, "key": spec.key, "time_column": spec.time_column,
            "columns": columns,
        })
    return out


def _required_word(col: dict[str, Any]) -> str:
    if col["set_by_ingestion"]:
        return "set by ingestion"
    return "required" if col["required"] else "optional"


def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _code(text: str | None) -> str:
    return f"`{text}`" if text else ""


def data_contract_markdown(table: str | None = None, *, user_tables: Sequence[TableSpec] = ()) -> str:
    """The data contract as Markdown: with no ``table``, the text of ``docs/data-contract.md``.

    Parameters
    ----------
    table : str, optional
        Only this ingestible table's section (after the rules that hold for every table).
    user_tables : sequence of TableSpec
        The program file's user tables, as for :func:`data_contract` (none in the committed file).

    Returns
    -------
    str
        A Markdown document ending in a newline; regenerate the committed file with
        ``insightroi schema --markdown > docs/data-contract.md``.

    Raises
    ------
    ValueError
        For a table that is not ingestible.
    """
    lines = [
        "# Data contract",
        "",
        "<!-- Generated by `insightroi schema --markdown > docs/data-contract.md` from the rules that",
        "     ingestion enforces (src/insightroi/store/_tables.py, src/insightroi/ingest/_validate.py).",
        "     Do not edit by hand: change the code and regenerate; a test fails when they differ. -->",
        "",
        "What `insightroi ingest TABLE PATH` accepts, table by table. `insightroi schema [TABLE]` prints",
        "the same in the terminal (`--json` for programs).",
        "",
        "## Rules for every table",
        "",
        "- **Files**: CSV with a header row, JSONL (one JSON object per line) or Parquet (CSV and JSONL",
        "  may be gzip-compressed), or a directory of them. Each file lands in one transaction.",
        *CSV_RULES,
        "- **Columns**: a file must have every *required* column and no column the table does not",
        "  have, otherwise the whole file is refused and nothing lands. *Optional* columns may be left",
        "  out. Columns *set by ingestion* are ignored when a file carries them.",
        "- **Rows**: a row that breaks a rule below (a missing required value, a value that does not",
        "  parse as its type, a value outside its allowed values or range) goes to the store's `quarantine`",
        "  table with its file, row number, field, reason and raw text; the other rows land.",
        "- **Duplicates and conflicts**: a row whose key is already stored, or repeated in the file,",
        "  with the same values is skipped; with different values it is a conflict: the program file's",
        "  `[ingest] on_conflict` keeps the first (`first-wins`, default) or the file's last",
        "  (`last-wins`) and the other goes to the quarantine (reason `conflict: ...`). Ingesting the",
        "  same file twice changes nothing.",
        f"- **Dates and timestamps** outside {EARLIEST} .. {LATEST} (inclusive; `[ingest] earliest` /",
        "  `latest` in the program file) are quarantined.",
        "- **NUL bytes**: text holding a NUL byte (`\\x00`) is quarantined, never silently stripped.",
        "- **JSONL**: a line that is not valid JSON, not an object, or has a key that is not a column",
        "  is quarantined with its line number; the other lines land.",
        "- **Allowed values** are compared after trimming spaces and lower-casing (`Chat ` is `chat`).",
        f"- **Text** is kept exactly; a value over {MAX_TEXT_BYTES:,} UTF-8 bytes quarantines its row.",
        "  E-mails, phone and card numbers, IBANs, street addresses and secrets in redacted columns become",
        "  `[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`, `[ADDRESS]`, `[SECRET]`; an id column holding an e-mail",
        "  or phone number (e.g. customer_id, chain_events.actor) gets a keyed pseudonym `pii_<32 hex>`",
        "  (key: $INSIGHTROI_PII_KEY, else ~/.config/insightroi/pii.key). Turn off with `--no-redact`.",
        "- **Time zones**: timestamps are stored in UTC. A timestamp written without an offset is read",
        "  in the program file's `program.timezone`; without one it is quarantined. After setting it,",
        "  `insightroi ingest --retry-quarantine [TABLE]` lands the rows that now pass.",
        "",
        "Cell formats by type:",
        "",
        "| type | a cell may hold |",
        "|---|---|",
    ]
    for ibis_type, fmt in TYPE_FORMATS.items():
        lines.append(f"| {TYPE_NAMES[ibis_type]} | {_md(fmt)} |")
    for t in data_contract(table, user_tables=user_tables):
        lines += ["", f"## {t['name']}", ""]
        if t["description"]:
            lines += [_md(t["description"]), ""]
        facts = [f"Key: `{t['key']}`"]
        if t["time_column"]:
            facts.append(f"event time: `{t['time_column']}`")
        lines += ["; ".join(facts) + ".", ""]
        lines += [
            "| column | type | required | allowed values | example | description |",
            "|---|---|---|---|---|---|",
        ]
        for c in t["columns"]:
            desc = c["description"] + (" Redacted." if c["redacted"] else "")
            lines.append(
                f"| `{c['name']}` | {c['type']} | {_required_word(c)} | {_md(c['rule'])} | "
                f"{_md(_code(c['example']))} | {_md(desc)} |"
            )
    return "\n".join(lines) + "\n"


def contract_tables(table: str | None = None, *, user_tables: Sequence[TableSpec] = ()) -> list:
    """The contract as ``rich.table.Table`` objects, one per table (for ``insightroi schema``)."""
    from rich.markup import escape
    from rich.table import Table

    from rich.text import Text

    out: list = [Text("\n".join(line.replace("**", "").replace("`", "'") for line in CSV_RULES) + "\n")]
    for t in data_contract(table, user_tables=user_tables):
        facts = f"key {t['key']}" + (f"; event time {t['time_column']}" if t["time_column"] else "")
        rt = Table(title=f"[bold]{t['name']}[/]" + (f" - {escape(t['description'])}" if t["description"] else ""),
                   caption=facts, title_justify="left", caption_justify="left")
        rt.add_column("column", style="bold", no_wrap=True)
        rt.add_column("type", no_wrap=True)
        rt.add_column("required")
        rt.add_column("allowed values", overflow="fold")
        rt.add_column("example", overflow="fold")
        rt.add_column("description", overflow="fold")
        for c in t["columns"]:
            req = _required_word(c)
            style = {"required": "[green]required[/]", "set by ingestion": "[dim]set by ingestion[/]"}
            rt.add_row(
                escape(c["name"]), c["type"], style.get(req, req), escape(c["rule"]), escape(c["example"] or ""),
                escape(c["description"] + (" Redacted." if c["redacted"] else "")),
            )
        out.append(rt)
    return out

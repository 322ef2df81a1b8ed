"""``insightroi ingest KIND PATH``: load files into the store with a progress bar and a summary;
``insightroi ingest --table NAME FILE [--schema schema.toml]``: the same into a user table;
``insightroi ingest --retry-quarantine [KIND]``: land quarantined rows that now pass;
``insightroi ingest --preset NAME FILE``: a vendor's export (Zendesk, Intercom, App Store, Google Play,
Trustpilot, Shopify) mapped onto our tables; ``--list-presets`` (or ``--preset list``) names them;
``insightroi schema [TABLE]``: the data contract each table is validated against."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    err_console,
    fail,
    fail_with,
    store_url,
)
from insightroi.ingest._preset_specs import PRESETS
from insightroi.store._tables import INGESTIBLE, USER_TABLE_PREFIX
from insightroi.errors import InsightRoiError

if TYPE_CHECKING:
    from insightroi.ingest._report import FileReport
    from insightroi.program import UserTable

_SHOW_REASONS = 5
_RETRY_HINT = "after fixing the program file (e.g. program.timezone), 'insightroi ingest --retry-quarantine' lands those that pass"


def _program(ctx: typer.Context, path: Path) -> Any:
    """The program file, or None when the default ./insightroi.toml is absent.

    Ingest works without a program (timestamps then need offsets), so only a file the user
    named (option or $INSIGHTROI_PROGRAM) must exist.
    """
    # By name: Typer vendors its own copy of click, so click's ParameterSource is another enum.
    source = ctx.get_parameter_source("program")
    named = getattr(source, "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    if not named and not path.exists():
        return None
    from insightroi.program import load_program

    try:
        return load_program(path)
    except InsightRoiError as exc:
        fail_with(exc)


def _user_table(name: str, schema_path: Path | None, prog: Any, program_path: Path) -> UserTable:
    """The user table NAME: from ``--schema``, else from the program file's ``[[tables]]``."""
    if schema_path is not None:
        from insightroi.ingest._engine import load_user_table

        try:
            return load_user_table(schema_path, name)
        except InsightRoiError as exc:
            fail_with(exc)
    if prog is None:
        fail(f"no program file declares table {name!r}: {program_path} is absent; declare it in a [[tables]] "
             "entry there (or pass --program), or give its columns with --schema FILE")
    declared = [t.name for t in prog.tables]
    if name not in declared:
        fail(f"table {name!r} is not declared in {program_path}; declared tables: "
             f"{', '.join(declared) if declared else 'none'} (add a [[tables]] entry, or give --schema FILE)")
    return prog.user_table(name)


def ingest(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Argument(metavar="KIND", show_default=False, help=f"Target table: {', '.join(INGESTIBLE)} (with --retry-quarantine: default all).")
    ] = None,
    path: Annotated[
        Path | None, typer.Argument(metavar="PATH", show_default=False, help="A .csv, .jsonl or .parquet file, or a directory of them.")
    ] = None,
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    table: Annotated[
        str | None,
        typer.Option("--table", "-t", metavar="NAME", show_default=False,
                     help="Ingest into the user table NAME (a \\[\\[tables]] entry of the program file, or --schema); "
                          "give only FILE then. Stored as user_NAME."),
    ] = None,
    schema_file: Annotated[
        Path | None,
        typer.Option("--schema", metavar="FILE", show_default=False,
                     help="With --table: a TOML file whose \\[table] section declares the table (the keys of a "
                          "\\[\\[tables]] entry: columns, key, time_column, required, text_columns, id_columns)."),
    ] = None,
    retry: Annotated[
        bool,
        typer.Option("--retry-quarantine",
                     help="Validate the quarantined rows of KIND (default: every table) again with the current "
                          "program file; rows that now pass land and leave the quarantine."),
    ] = False,
    preset: Annotated[
        str | None,
        typer.Option("--preset", metavar="NAME", show_default=False,
                     help="Read FILE as a vendor's export and map it onto our tables: "
                          f"{', '.join(PRESETS)} ('--preset list' names them with their tables); give only FILE."),
    ] = None,
    list_presets: Annotated[
        bool, typer.Option("--list-presets", help="List the import presets, their target tables and export formats.")
    ] = False,
    no_redact: Annotated[
        bool, typer.Option("--no-redact", help="Keep e-mails, phone and card numbers in text (default: redact).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest KIND rows from PATH: bad rows are quarantined with their reason, duplicates skipped.

    Reads ./insightroi.toml when it exists: its program.timezone localises timestamps without an offset.
    'insightroi ingest --table surveys FILE' loads a user table declared there (or in --schema FILE),
    with the same checks, quarantine and PII redaction. 'insightroi ingest --preset shopify_orders
    orders_export.csv' reads a vendor's export as written ('--list-presets' names the presets).

    Exits non-zero only when a whole file could not be ingested (unreadable, empty, wrong columns).
    'insightroi schema' lists the columns each table accepts.
    """
    target: Any = kind
    if list_presets or preset == "list":
        _print_presets(as_json)
        return
    if preset is not None:
        _ingest_preset(ctx, preset, kind, path, store, program, table, schema_file, retry, no_redact, as_json)
        return
    if table is not None:
        # With --table the only argument is the file (it arrives in KIND's slot).
        if path is not None:
            fail(f"with --table give only the FILE (e.g. 'insightroi ingest --table {table} {path}'), not a KIND too")
        if retry and kind is not None:
            fail("--retry-quarantine re-reads the rows kept in the quarantine; give --table NAME without a FILE")
        if not retry and kind is None:
            fail(f"give the FILE to ingest into table {table!r} (e.g. 'insightroi ingest --table {table} {table}.csv')")
        path, kind = (Path(kind) if kind is not None else None), USER_TABLE_PREFIX + table
    elif schema_file is not None:
        fail("--schema declares a user table: use it with --table NAME")
    elif kind is not None and kind not in INGESTIBLE:
        fail(f"unknown kind {kind!r}; use one of: {', '.join(INGESTIBLE)} (a user table: --table NAME)")
    if retry and path is not None:
        fail("--retry-quarantine takes a table, not a PATH: it re-reads the rows kept in the quarantine")
    if not retry and (kind is None or path is None):
        fail("give KIND and PATH (e.g. 'insightroi ingest feedback exports/feedback.csv'), or --retry-quarantine")
    prog = _program(ctx, program)
    if table is not None:
        target = _user_table(table, schema_file, prog, program)
    tz = getattr(getattr(prog, "program", None), "timezone", None)
    from insightroi.ingest._engine import ingest_path, retry_quarantine
    from insightroi.store import open_store

    try:
        st = open_store(store_url(store))
    except InsightRoiError as exc:
        fail_with(exc)
    with st:
        if retry:
            try:
                rr = retry_quarantine(st, target, program=prog, redact=not no_redact)
            except InsightRoiError as exc:
                fail_with(exc)
            _print_retry(rr, tz, as_json)
            return
        with Progress(
            TextColumn("[bold]ingest[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err_console, transient=True, disable=as_json,
        ) as bar:
            task = bar.add_task(kind, total=None)

            def step(done: int, total: int, fr: FileReport) -> None:
                bar.update(task, total=total, completed=done, description=escape(f"{kind}: {Path(fr.file).name}"))

            try:
                report = ingest_path(st, target, path, program=prog, redact=not no_redact, progress=step)
            except InsightRoiError as exc:
                fail_with(exc)
    if as_json:
        console.print_json(json.dumps(report.to_dict(), default=str))
    else:
        console.print(report.summary_table())
        if tz:
            console.print(f"[dim]Timestamps without an offset, if any, are read in {escape(tz)} (program.timezone).[/]")
        reasons = report.errors[:_SHOW_REASONS]
        if reasons:
            console.print(f"[yellow]{report.quarantined:,} row(s) quarantined[/]; first reasons:")
            for line in reasons:
                console.print(f"  - {line}", markup=False, highlight=False)
            console.print(
                "[dim]All of them are in the store's 'quarantine' table (file, row, field, reason, raw); "
                f"{_RETRY_HINT}.[/]"
            )
        for err in report.file_errors:
            err_console.print(f"[bold red]error:[/] {escape(err)}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def _print_presets(as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"presets": [
            {"name": n, "vendor": p["vendor"], "export": p["export"], "tables": list(p["tables"]),
             "attributes_table": f"{USER_TABLE_PREFIX}{n}_attributes", "url": p["url"]} for n, p in PRESETS.items()
        ]}, indent=2))
        return
    from rich.table import Table

    rt = Table(title="Import presets ('insightroi ingest --preset NAME FILE')")
    for col in ("preset", "vendor export", "tables"):
        rt.add_column(col)
    rt.add_column("format", overflow="fold")
    for n, p in PRESETS.items():
        rt.add_row(escape(n), escape(f"{p['vendor']}: {p['export']}"),
                   escape(", ".join(p["tables"]) + f" (+ {USER_TABLE_PREFIX}{n}_attributes)"), escape(p["url"]))
    console.print(rt)
    console.print("[dim]Column mappings and what each export's format rests on: docs/presets.md.[/]")


def _ingest_preset(ctx, preset, kind, path, store, program, table, schema_file, retry, no_redact, as_json) -> None:
    """``ingest --preset NAME FILE``: the file arrives in KIND's slot, as with --table."""
    if preset not in PRESETS:
        fail(f"unknown preset {preset!r}; available presets: {', '.join(PRESETS)} (or 'list')")
    if table is not None or schema_file is not None or retry:
        fail("--preset maps a vendor export onto our tables: use it without --table, --schema and --retry-quarantine")
    if path is not None:
        fail(f"with --preset give only the FILE (e.g. 'insightroi ingest --preset {preset} {path}'), not a KIND too")
    if kind is None:
        fail(f"give the export FILE (e.g. 'insightroi ingest --preset {preset} export.csv')")
    prog = _program(ctx, program)
    from insightroi.ingest._presets import ingest_preset
    from insightroi.store import open_store

    try:
        st = open_store(store_url(store))
    except InsightRoiError as exc:
        fail_with(exc)
    with st:
        try:
            with err_console.status(escape(f"ingest --preset {preset}: {Path(kind).name}"), spinner="dots") \
                    if not as_json else nullcontext():
                report = ingest_preset(st, preset, kind, program=prog, redact=not no_redact)
        except InsightRoiError as exc:
            fail_with(exc)
    if as_json:
        console.print_json(json.dumps(report.to_dict(), default=str))
    else:
        for name, rep in report.reports.items():
            console.print(rep.summary_table(title=f"{preset} -> {name}"))
        if report.unknown_columns:
            console.print(f"[dim]Kept as attributes in {USER_TABLE_PREFIX}{escape(preset)}_attributes: "
                          f"{escape(', '.join(report.unknown_columns))}.[/]")
        quarantined = sum(report.quarantined.values())
        if quarantined:
            console.print(f"[yellow]{quarantined:,} row(s) quarantined[/]; first reasons:")
            for line in report.errors()[:_SHOW_REASONS * 2]:
                console.print(f"  - {line}", markup=False, highlight=False)
            console.print(
                "[dim]All of them are in the store's 'quarantine' table (file, row = the record's number in the "
                f"export, field, reason, raw); {_RETRY_HINT}.[/]"
            )
        for err in (e for rep in report.reports.values() for e in rep.file_errors):
            err_console.print(f"[bold red]error:[/] {escape(err)}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def _print_retry(rr, tz: str | None, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(rr.to_dict(), default=str))
        return
    if not rr.tables:
        console.print("Nothing in quarantine.")
        return
    console.print(rr.summary_table())
    if tz:
        console.print(f"[dim]Timestamps without an offset were read in {escape(tz)} (program.timezone).[/]")
    if rr.still_quarantined:
        console.print(f"[yellow]{rr.still_quarantined:,} row(s) still quarantined[/]; first reasons:")
        for line in rr.errors[:_SHOW_REASONS]:
            console.print(f"  - {line}", markup=False, highlight=False)
        stuck = sum(t.not_rereadable for t in rr.tables)
        if stuck:
            console.print(f"[dim]Not re-readable without the file ({stuck:,}): lines the reader could not split into "
                          "columns or that are not JSON objects; fix the file and ingest it again.[/]")


def schema(
    ctx: typer.Context,
    table: Annotated[str | None, typer.Argument(metavar="TABLE", show_default=False, help=f"One table: {', '.join(INGESTIBLE)}, or a user table (default: all).")] = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    as_json: JsonOption = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print Markdown (the text of docs/data-contract.md).")
    ] = False,
) -> None:
    """The data contract: each table's columns, types, required or optional, allowed values, examples.

    It is read from the rules 'insightroi ingest' enforces, so what it prints is what is checked.
    The user tables of the program file (./insightroi.toml when it exists) follow ours.
    """
    from insightroi.ingest._contract import contract_tables, data_contract, data_contract_markdown
    from insightroi.store import user_table_spec

    prog = _program(ctx, program)
    try:
        users = [user_table_spec(t) for t in getattr(prog, "tables", [])]
    except InsightRoiError as exc:
        fail_with(exc)
    if table is not None and table not in INGESTIBLE and USER_TABLE_PREFIX + table in {u.name for u in users}:
        table = USER_TABLE_PREFIX + table  # 'schema surveys' for user_surveys
    known = [*INGESTIBLE, *(u.name for u in users)]
    if table is not None and table not in known:
        # One line even on a narrow terminal, so scripts can grep it.
        err_console.print(f"[bold red]error:[/] {escape(f'unknown table {table!r}')}; tables: {', '.join(known)}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if as_json and markdown:
        fail("choose one of --json and --markdown")
    if markdown:
        # Plain text: Rich would re-wrap lines and read [EMAIL] as markup.
        typer.echo(data_contract_markdown(table, user_tables=users), nl=False)
    elif as_json:
        typer.echo(json.dumps({"tables": data_contract(table, user_tables=users)}, indent=2))
    else:
        for rt in contract_tables(table, user_tables=users):
            console.print(rt)
            console.print()


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(schema)

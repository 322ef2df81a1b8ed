"""``insightroi ingest KIND PATH``: load files into the store with a progress bar and a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from insightroi._cli_common import JsonOption, StoreOption, console, err_console, fail, store_url
from insightroi.errors import InsightRoiError
from insightroi.ingest._engine import INGESTIBLE, ingest_path
from insightroi.ingest._report import FileReport

_SHOW_REASONS = 5


def ingest(
    kind: Annotated[str, typer.Argument(help=f"Target table: {', '.join(INGESTIBLE)}.")],
    path: Annotated[Path, typer.Argument(help="A .csv, .jsonl or .parquet file, or a directory of them.")],
    store: StoreOption = None,
    program: Annotated[
        Path | None,
        typer.Option("--program", "-p", envvar="INSIGHTROI_PROGRAM",
                     help="Program file; its program.timezone localises naive timestamps."),
    ] = None,
    no_redact: Annotated[
        bool, typer.Option("--no-redact", help="Keep e-mails, phone and card numbers in text (default: redact).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest KIND rows from PATH: bad rows are quarantined with their reason, duplicates skipped.

    Exits non-zero only when a whole file could not be ingested (unreadable, empty, wrong columns).
    """
    from insightroi.program import load_program
    from insightroi.store import open_store

    if kind not in INGESTIBLE:
        fail(f"unknown kind {kind!r}; use one of: {', '.join(INGESTIBLE)}")
    try:
        prog = load_program(program) if program is not None else None
    except InsightRoiError as exc:
        fail(str(exc))
    try:
        st = open_store(store_url(store))
    except InsightRoiError as exc:
        fail(str(exc))
    with st:
        with Progress(
            TextColumn("[bold]ingest[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err_console, transient=True, disable=as_json,
        ) as bar:
            task = bar.add_task(kind, total=None)

            def step(done: int, total: int, fr: FileReport) -> None:
                bar.update(task, total=total, completed=done, description=f"{kind}: {Path(fr.file).name}")

            try:
                report = ingest_path(st, kind, path, program=prog, redact=not no_redact, progress=step)
            except InsightRoiError as exc:
                fail(str(exc))
    if as_json:
        console.print_json(json.dumps(report.to_dict(), default=str))
    else:
        console.print(report.summary_table())
        reasons = report.errors[:_SHOW_REASONS]
        if reasons:
            console.print(f"[yellow]{report.quarantined:,} row(s) quarantined[/]; first reasons:")
            for line in reasons:
                console.print(f"  - {line}", markup=False, highlight=False)
            console.print("[dim]All of them are in the store's 'quarantine' table (file, row, field, reason, raw).[/]")
        for err in report.file_errors:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(ingest)

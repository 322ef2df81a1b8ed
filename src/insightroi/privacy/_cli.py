"""``insightroi retention`` and ``insightroi erase``: thin wrappers over :mod:`insightroi.privacy`."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    fail,
    run_or_fail,
    store_url,
)


def retention(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    today: Annotated[Optional[str], typer.Option("--today", help="Count ages from this day (YYYY-MM-DD) instead of today (UTC).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Delete rows older than the days the program keeps them (its retention table), by each table's time column.

    A row dated exactly N days before today is kept; older ones go, with the insights of deleted
    feedback and the table's quarantined rows of the same age. Records what it did (no row data)
    as a saved result of kind "retention".
    """
    from insightroi.privacy import apply_retention
    from insightroi.program import load_program
    from insightroi.store import open_store

    try:
        day = date.fromisoformat(today) if today else None
    except ValueError:
        fail(f"--today must be a date such as 2025-03-31; got {today!r}")
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        report = run_or_fail(apply_retention, st, prog, today=day, dry_run=dry_run)
    if as_json:
        print(json.dumps(report.to_dict(), indent=1))
        return
    if not report.rules:
        console.print("No [retention] rules in the program: every row is kept.")
        return
    verb = "to delete" if dry_run else "deleted"
    t = Table(title=f"Retention as of {report.today.isoformat()}" + (" (dry run)" if dry_run else ""))
    for col in ("table", "keep (days)", "time column", "older than", verb):
        t.add_column(col, justify="right" if col in ("keep (days)", verb) else "left")
    shown = set()
    for r in report.rules:
        shown.add(r.table)
        t.add_row(escape(r.table), str(r.days), r.time_column, r.cutoff.isoformat(),
                  "absent" if r.table in report.missing else f"{report.deleted.get(r.table, 0):,}")
    for table, n in report.deleted.items():
        if table not in shown:
            t.add_row(escape(table), "-", "-", "(with the tables above)", f"{n:,}")
    console.print(t)
    console.print(f"{report.total:,} rows " + ("would be deleted" if dry_run else "deleted") + (f"; record {report.record_id}" if report.record_id else ""))


def erase(
    customer: Annotated[str, typer.Option("--customer", help="The customer's id, e-mail or phone number.")],
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (kept in the erasure record).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Erase one customer: every row tied to them, and their ids and texts in what stays.

    Leaves an erasure record (saved result of kind "erasure": when, why, counts, a keyed hash of
    the id) and says which saved results were computed before it.
    """
    from insightroi.privacy import erase_customer
    from insightroi.program import load_program
    from insightroi.store import open_store

    if not customer.strip():
        fail("--customer: give the customer's id, e-mail or phone number")
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        report = run_or_fail(erase_customer, st, prog, customer, reason=reason)
    n_old = len(report.predating)
    note = (f"{n_old} saved results predate this erasure; re-run the stages to recompute"
            if n_old else "no saved results predate this erasure")
    if as_json:
        print(json.dumps({**report.to_dict(), "note": note}, indent=1))
        return
    t = Table(title=f"Erased customer {report.subject}")
    for col in ("table", "rows deleted", "rows scrubbed"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for table in sorted(set(report.deleted) | set(report.scrubbed)):
        t.add_row(escape(table), f"{report.deleted.get(table, 0):,}", f"{report.scrubbed.get(table, 0):,}")
    console.print(t)
    if report.total_deleted == 0:
        console.print("[yellow]No rows of this customer were found[/] (check the id's spelling); the request is recorded.")
    console.print(escape(f"Record: {report.record_id}"))
    console.print(note)


def register(app: typer.Typer) -> None:
    """Add ``retention`` and ``erase`` to the CLI."""
    app.command("retention")(retention)
    app.command("erase")(erase)

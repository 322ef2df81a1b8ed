"""``insightroi assign``: assign the program's experiment units to arms and store the assignments."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from insightroi.experiments._assign import AssignmentPlan, Units


def _as_stored(units: Units) -> Units:
    """``units`` with each id as ingestion will store it (an e-mail or phone as id pseudonymised).

    The hash and the stored-arm lookup must see the id the store holds, or a customer listed by
    e-mail would be assigned once under the e-mail and again under its pseudonym.
    """
    import pyarrow as pa

    from insightroi.ingest import redact_table

    ids = redact_table(pa.table({"unit_id": pa.array(units.ids, pa.string())}), "assignments").column(0).to_pylist()
    if ids == list(units.ids):
        return units
    merged: dict[str, tuple[str, ...]] = {}
    for uid, s in zip(ids, units.strata):
        merged.setdefault(uid, s)
    order = sorted(merged)
    note = f"{sum(a != b for a, b in zip(ids, units.ids))} unit id(s) carry PII and are assigned under their pseudonym"
    return replace(units, ids=tuple(order), strata=tuple(merged[u] for u in order), notes=(*units.notes, note))


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--assigned-at {value!r} is not an ISO date or date-time (e.g. 2025-07-01 or 2025-07-01T00:00:00Z)")


def _share(x: float) -> str:
    return "-" if x != x else f"{x:.1%}"


def _print(plan: AssignmentPlan, written: int | None, duplicates: int, dry_run: bool) -> None:
    cols = plan.units.columns
    strata = ", ".join(cols) if cols else "none (Bernoulli hash per unit)"
    t = Table(title=f"Assignment of experiment {escape(plan.experiment)} ({plan.unit_type}; salt {escape(plan.salt)!r}; "
                    f"treatment share {plan.treatment_share:g}; strata: {escape(strata)})")
    for c in cols or ("stratum",):
        t.add_column(escape(c))
    for c in ("units", "treated", "control", "share treated", "treated - target"):
        t.add_column(c, justify="right")
    for r in plan.balance:
        label = [escape(v) for v in r.stratum] if r.stratum else ["[bold]overall[/]", *[""] * (max(len(cols), 1) - 1)]
        t.add_row(*label, f"{r.n:,}", f"{r.treated:,}", f"{r.control:,}", _share(r.share), f"{r.off_by:+.1f}")
    console.print(t)
    color = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}[plan.srm.status]
    console.print(f"SRM check: [{color}]{plan.srm.status}[/] ({escape(plan.srm.message)})")
    kept = int(plan.kept.sum())
    line = (f"{len(plan.units.ids):,} units from {escape(plan.units.source)}: {kept:,} keep the arm stored earlier, "
            f"{plan.n_new:,} new (assigned at {plan.assigned_at.isoformat()})")
    console.print(line)
    if plan.stored_elsewhere:
        console.print(f"{plan.stored_elsewhere:,} unit(s) assigned earlier are not in this list; "
                      "their rows are left as they are")
    for n in plan.notes:
        console.print(f"[dim]note: {escape(n)}[/]")
    if dry_run:
        console.print("[yellow]dry run: nothing written[/]")
    else:
        console.print(f"wrote {written:,} row(s) to the assignments table"
                      + (f" ({duplicates:,} already there)" if duplicates else ""))


def assign_cmd(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    units: Annotated[Path | None, typer.Option("--units", help="CSV of units: a unit id column and the "
                                                "program's experiment.strata columns (default: read the store).")] = None,
    unit_column: Annotated[str | None, typer.Option("--unit-column", help="The id column of --units (default: unit_id, "
                                                     "else the unit's column, e.g. customer_id).")] = None,
    from_table: Annotated[list[str] | None, typer.Option("--from-table", help="Store table to read the units from "
                                                          "(repeatable; default orders).")] = None,
    assigned_at: Annotated[str | None, typer.Option("--assigned-at", help="When new assignments take effect "
                                                     "(ISO; default the experiment's start, midnight UTC).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the assignment and balance; write nothing.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Assign the program's experiment units to arms (salted hash, stratified) and store them.

    Units come from the store (distinct ids of experiment.unit in --from-table, default orders;
    strata columns looked up where they live, e.g. a SKU family's category in products) or from
    a CSV file (--units). Arms hash each unit id with experiment.salt; with experiment.strata the
    arms are balanced within one unit per stratum. A unit the store already assigns for this
    experiment keeps its arm, so re-running never moves a unit and adds no duplicate rows.
    Prints the balance per stratum and a sample-ratio-mismatch check.
    """
    from insightroi.experiments._assign import plan_assignment, read_units_csv, store_units, stored_arms
    from insightroi.ingest import ingest_frame
    from insightroi.program import load_program
    from insightroi.store import open_store

    if units is not None and from_table:
        fail("give either --units FILE or --from-table TABLE, not both")
    at = _parse_time(assigned_at)
    prog = run_or_fail(load_program, program)
    e = prog.experiment
    if units is not None:
        found = run_or_fail(read_units_csv, units, e.unit, e.strata, id_column=unit_column)
        found = _as_stored(found)
    with run_or_fail(open_store, store_url(store)) as st:
        if units is None:
            found = run_or_fail(store_units, st, prog, tuple(from_table or ("orders",)))
        existing = run_or_fail(stored_arms, st, e.name, e.unit)
        plan = run_or_fail(plan_assignment, found, prog, existing=existing, assigned_at=at)
        written = duplicates = 0
        if not dry_run and plan.n_new:
            report = run_or_fail(ingest_frame, st, "assignments", plan.new_rows(), source="insightroi assign",
                                 program=prog)
            if report.quarantined:
                fail(f"{report.quarantined} assignment row(s) were quarantined: " + "; ".join(report.errors[:3]))
            written, duplicates = report.landed, report.duplicates
    if json_out:
        console.print_json(json.dumps({
            "experiment": plan.experiment, "unit": plan.unit_type, "salt": plan.salt,
            "treatment_share": plan.treatment_share, "strata": list(plan.units.columns),
            "source": plan.units.source, "units": len(plan.units.ids), "kept": int(plan.kept.sum()),
            "new": plan.n_new, "written": written, "duplicates": duplicates, "dry_run": dry_run,
            "assigned_at": plan.assigned_at.isoformat(), "stored_elsewhere": plan.stored_elsewhere,
            "balance": [{"stratum": list(r.stratum), "n": r.n, "treated": r.treated, "control": r.control,
                         "share": r.share, "target": r.target} for r in plan.balance],
            "srm": {"status": plan.srm.status, "statistic": plan.srm.statistic, "p_value": plan.srm.p_value,
                    "message": plan.srm.message},
            "notes": list(plan.notes),
        }))
        return
    _print(plan, written, duplicates, dry_run)


def register(app: typer.Typer) -> None:
    app.command("assign")(assign_cmd)

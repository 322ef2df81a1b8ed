"""``insightroi report``: write the HTML/JSON report (and PDF) from the sections the stages saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

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


def report(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the report into.")] = Path("report"),
    view: Annotated[Optional[str], typer.Option("--view", help="Write only this view: full, executive, finance, support, product.")] = None,
    cadence: Annotated[Optional[str], typer.Option(
        "--cadence", help="Add the window period by period: week (ISO, Mon-Sun), month or quarter (weekly, monthly, "
                          "quarterly also accepted). One analysis of the primary KPI per period.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print the executive view to PDF (headless Chromium).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the report (report.html, report.json, one page per audience) from the stages' saved sections."""
    from insightroi.program import load_program
    from insightroi.report import CADENCE_ALIASES, CADENCE_UNITS, VIEWS, cadence_unit
    from insightroi.services import run_report
    from insightroi.store import open_store

    if view is not None and view not in VIEWS:
        fail(f"--view must be one of {', '.join(VIEWS)}; got {view!r}")
    unit = None
    if cadence is not None:
        if cadence not in CADENCE_UNITS + tuple(CADENCE_ALIASES):
            fail(f"--cadence must be one of {', '.join(CADENCE_UNITS + tuple(CADENCE_ALIASES))}; got {cadence!r}")
        unit = cadence_unit(cadence)
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        if unit is not None:
            _cadence_series(st, prog, unit, quiet=as_json)  # saved as result cadence:<unit>
        try:
            bundle, paths = run_or_fail(run_report, st, prog, out, view=view, cadence=unit, pdf=pdf)
        except RuntimeError as exc:
            fail(str(exc))
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))  # what was written, series included
    if as_json:
        print(json.dumps(data, indent=1))
        return
    missing = [s for s in ("analyze", "roi", "monitor") if s not in bundle.provenance]
    if missing:
        console.print(f"[yellow]not in the store yet:[/] {', '.join(missing)} (run `insightroi run` for every stage)")
    for name, path in paths.items():
        console.print(f"{name:>10}  {path}")


def _cadence_series(st, prog, unit: str, *, quiet: bool) -> dict:
    from insightroi.report import run_cadence

    if quiet:
        return run_or_fail(run_cadence, st, prog, unit)
    with Progress(TextColumn(f"analysing the primary KPI to date, {unit} by {unit}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("cadence", total=None)
        series = run_or_fail(run_cadence, st, prog, unit,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    n = len(series["periods"])
    per = series["analysis_seconds"] / max(n, 1)
    console.print(f"cadence: {n} {unit}{'s' if n != 1 else ''} of {series['kpi']} in {series['seconds']:.1f} s "
                  f"({per:.2f} s per analysis); saved as result cadence:{unit}")
    if unit == "week" and n > 13:
        console.print(f"[yellow]weekly is the slow cadence:[/] one analysis per week ({n} here); month or quarter "
                      "reads the same cumulative effect with fewer analyses")
    for note in series.get("notes") or ():
        console.print(f"[yellow]note:[/] {escape(note)}")
    return series


def register(app: typer.Typer) -> None:
    app.command()(report)

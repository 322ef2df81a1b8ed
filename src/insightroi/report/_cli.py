"""``insightroi report``: write the HTML/JSON report (and PDF) from the sections the stages saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

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
from insightroi.program import load_program
from insightroi.report import CADENCES, VIEWS
from insightroi.services import run_report
from insightroi.store import open_store


def report(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the report into.")] = Path("report"),
    view: Annotated[Optional[str], typer.Option("--view", help="Write only this view: full, executive, finance, support, product.")] = None,
    cadence: Annotated[Optional[str], typer.Option("--cadence", help="Reporting period preset: weekly, monthly, quarterly.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print the executive view to PDF (headless Chromium).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the report (report.html, report.json, one page per audience) from the stages' saved sections."""
    if view is not None and view not in VIEWS:
        fail(f"--view must be one of {', '.join(VIEWS)}; got {view!r}")
    if cadence is not None and cadence not in CADENCES:
        fail(f"--cadence must be one of {', '.join(CADENCES)}; got {cadence!r}")
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        try:
            bundle, paths = run_or_fail(run_report, st, prog, out, view=view, cadence=cadence, pdf=pdf)
        except RuntimeError as exc:
            fail(str(exc))
    if as_json:
        print(json.dumps(bundle.to_report(), indent=1))
        return
    missing = [s for s in ("analyze", "roi", "monitor") if s not in bundle.provenance]
    if missing:
        console.print(f"[yellow]not in the store yet:[/] {', '.join(missing)} (run `insightroi run` for every stage)")
    for name, path in paths.items():
        console.print(f"{name:>10}  {path}")


def register(app: typer.Typer) -> None:
    app.command()(report)

"""``insightroi report``: write the HTML/JSON report (and PDF) from the latest bundle in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from insightroi._cli_common import StoreOption, console, fail, run_or_fail, store_url
from insightroi.store import open_store


def report(
    store: StoreOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the report into.")] = Path("report"),
    view: Annotated[Optional[str], typer.Option("--view", help="Write only this view: full, executive, finance, support, product.")] = None,
    cadence: Annotated[Optional[str], typer.Option("--cadence", help="Reporting period preset: weekly, monthly, quarterly.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print the executive view to PDF (headless Chromium).")] = False,
) -> None:
    """Write the report (report.html, report.json, one page per audience) from the store's latest results."""
    from insightroi.report import VIEWS, render_html, write_report
    from insightroi.report._render import CADENCES

    if view is not None and view not in VIEWS:
        fail(f"--view must be one of {', '.join(VIEWS)}; got {view!r}")
    if cadence is not None and cadence not in CADENCES:
        fail(f"--cadence must be one of {', '.join(CADENCES)}; got {cadence!r}")
    with run_or_fail(open_store, store_url(store)) as st:
        bundle = st.load_result("bundle:latest")
    if bundle is None:
        fail("no report bundle in the store: run insightroi demo or the stages first")
    if view is None:
        try:
            paths = write_report(bundle, out, cadence=cadence, pdf=pdf)
        except RuntimeError as exc:
            fail(str(exc))
    else:
        out.mkdir(parents=True, exist_ok=True)
        target = out / ("report.html" if view == "full" else f"report-{view}.html")
        target.write_text(render_html(bundle, view=view, cadence=cadence), encoding="utf-8")
        paths = {view: target}
        if pdf:
            from insightroi.report import export_pdf

            try:
                paths["pdf"] = export_pdf(target, out / f"report-{view}.pdf")
            except RuntimeError as exc:
                fail(str(exc))
    for name, path in paths.items():
        console.print(f"{name:>10}  {path}")


def register(app: typer.Typer) -> None:
    app.command()(report)

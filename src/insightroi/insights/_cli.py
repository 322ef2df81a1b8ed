"""CLI: ``insightroi classify``, ``detect``, ``themes``, ``validate-model``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from insightroi._cli_common import DEFAULT_PROGRAM, JsonOption, ProgramOption, StoreOption, console, run_or_fail, store_url
from insightroi.insights import discover_themes, validate_csv
from insightroi.program import load_program
from insightroi.services import run_classify, run_detect
from insightroi.store import open_store


def _dump(obj) -> None:
    console.print_json(json.dumps(obj, default=str))


def classify(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    method: Annotated[str, typer.Option(help="lexicon (VADER + keyword rules) | embedding | seeded (taxonomy-seeded "
                                             "topics, trained on the review queue's labels once there are 50; "
                                             "cross-domain sentiment) | auto")] = "lexicon",
    batch_size: Annotated[int, typer.Option(help="Feedback rows per transaction.")] = 5000,
    jobs: Annotated[int, typer.Option(help="Worker processes; -1 = one per core (lexicon models).")] = -1,
    as_json: JsonOption = False,
) -> None:
    """Classify feedback not yet classified by this model version (sentiment, topic, severity)."""
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        if as_json:
            sec = run_or_fail(run_classify, st, prog, method=method, batch_size=batch_size, jobs=jobs)
            _dump(sec.model_dump(mode="json"))
            return
        with Progress(TextColumn("classifying"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task("classify", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            sec = run_or_fail(run_classify, st, prog, method=method, batch_size=batch_size, jobs=jobs,
                              progress=progress)
    x = sec.model_dump()
    console.print(
        f"classified {sec.n_classified} of {sec.n_feedback} feedback rows ({sec.method}); wrote "
        f"{x.get('n_rows_written', 0)} insight rows in {x.get('classify_seconds', 0):.1f}s; "
        f"{x.get('n_unclassifiable', 0)} unclassifiable"
    )
    for task_name, v in sec.model_versions.items():
        console.print(f"  {task_name}: {v}")


def detect(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    start: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First day alerts may fire.")] = None,
    end: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day alerts may fire.")] = None,
    alpha: Annotated[float, typer.Option(help="Tail-probability threshold per series-day.")] = 1e-3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print alerts without writing chain events.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Detect topic spikes per SKU family and day; route them to owners (never to control units)."""
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        sec = run_or_fail(run_detect, st, prog, start=start.date() if start else None,
                          end=end.date() if end else None, alpha=alpha, dry_run=dry_run)
    if as_json:
        _dump(sec.model_dump(mode="json"))
        return
    title = f"{len(sec.alerts)} alerts ({sec.n_written} new chain events)"
    if sec.withheld_control:
        title += f"; {sec.withheld_control} about control units withheld"
    table = Table(title=title)
    for col in ("alert", "day", "topic", "sku_family", "days", "observed", "expected", "p", "owner", "evidence"):
        table.add_column(col)
    for a in sec.alerts[:100]:
        table.add_row(a["alert_id"], a["day"], a["topic"], a["sku_family"], str(a["window_days"]), str(a["observed"]),
                      f"{a['expected']:.2f}", f"{a['p_value']:.1e}", a["owner"],
                      f"{len(a.get('feedback_ids', []))} rows")
    console.print(table)


def themes(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    days: Annotated[int, typer.Option(help="Look-back window in days (compared with the window before it).")] = 56,
    method: Annotated[str, typer.Option(help="tfidf | embedding")] = "tfidf",
    as_json: JsonOption = False,
) -> None:
    """Propose new topics from recent 'other' and low-confidence feedback."""
    import numpy as np

    prog = run_or_fail(load_program, program)

    with run_or_fail(open_store, store_url(store)) as st:
        found = run_or_fail(discover_themes, st, prog, days=days, method=method, rng=np.random.default_rng(0))
    if as_json:
        _dump([t.to_dict() for t in found])
        return
    for t in found:
        console.print(f"[bold]{t.size} items[/]: {', '.join(t.terms)}")
        for ex in t.examples:
            console.print(f"   - {ex[:160]}")


def validate_model_cmd(
    labels: Annotated[Path, typer.Argument(help="CSV with columns text, label (optional time).")],
    program: ProgramOption = DEFAULT_PROGRAM,
    task: Annotated[str, typer.Option(help="auto | topic | sentiment")] = "auto",
    method: Annotated[str, typer.Option(help="lexicon | embedding | auto")] = "lexicon",
    as_json: JsonOption = False,
) -> None:
    """Precision / recall / F1 per label, confusion matrix and calibration on a labelled CSV."""
    prog = run_or_fail(load_program, program)

    rep = run_or_fail(validate_csv, labels, prog, task=task, method=method)
    if as_json:
        _dump(rep.to_dict())
        return
    console.print(f"n = {rep.n}, accuracy {rep.accuracy:.3f}, macro-F1 {rep.macro_f1:.3f}"
                  + (f", ECE {rep.ece:.3f}" if rep.ece is not None else ""))
    table = Table(title="per label")
    for col in ("label", "precision", "recall", "F1", "support"):
        table.add_column(col)
    for r in rep.per_class:
        table.add_row(r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
    console.print(table)
    cm = Table(title="confusion (rows = true, columns = predicted)")
    cm.add_column("")
    for lab in rep.labels:
        cm.add_column(lab[:12])
    for lab, row in zip(rep.labels, rep.confusion):
        cm.add_row(lab, *[str(v) for v in row])
    console.print(cm)
    for s in rep.by_slice:
        console.print(f"  {s['slice']}: n={s['n']} accuracy {s['accuracy']:.3f} macro-F1 {s['macro_f1']:.3f}")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
    app.command("detect")(detect)
    app.command("themes")(themes)
    app.command("validate-model")(validate_model_cmd)




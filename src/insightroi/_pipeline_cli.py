"""``insightroi run`` (every stage on your store) and ``insightroi demo`` (generate + run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rich.markup import escape

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    err_console,
    fail,
    run_or_fail,
    store_url,
)
from insightroi._constants import STAGES


def _num(v, fmt="{:,.3g}") -> str:
    return "-" if v is None else fmt.format(v)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the world, the store and the report.")] = Path("demo"),
    seed: Annotated[int, typer.Option(help="Seed of the simulated company.")] = 7,
    scale: Annotated[str, typer.Option(help="tiny | small | demo | an order count such as 1000000.")] = "demo",
    store: Annotated[str | None, typer.Option("--store", help="Store URL (default: a fresh DuckDB file in --out).")] = None,
    bad_rows: Annotated[int, typer.Option(help="Inject this many bad rows (they must be quarantined).")] = 0,
    bad_assignment: Annotated[bool, typer.Option(help="Corrupt the assignment (the SRM check must fire).")] = False,
    jobs: Annotated[int, typer.Option(help="Classification worker processes; -1 = one per core.")] = -1,
    as_json: JsonOption = False,
) -> None:
    """Generate the demo company, ingest it, run every stage, and print effects next to the truth."""
    from insightroi.pipeline import run_demo

    scale_arg: str | int = int(scale) if scale.isdigit() else scale
    with err_console.status("starting") as status:
        run = run_or_fail(
            run_demo, out, seed=seed, scale=scale_arg, store_url=store, bad_rows=bad_rows, bad_assignment=bad_assignment,
            classify_jobs=jobs, progress=lambda stage: status.update(f"[bold]{stage}[/] ..."),
        )
    if as_json:
        print(json.dumps(run.headline(), indent=1, default=str))
        return
    b = run.bundle
    console.print(f"[bold]{escape(str((b.get('program') or {}).get('name', 'demo')))}[/] - demo world seed {seed}, scale {scale}")
    kt = Table(title="KPI effects (treatment - control) next to the true effect")
    for col in ("KPI", "layer", "estimate", "95% CI", "relative", "p (adj.)", "truth", "covered"):
        kt.add_column(col, justify="left" if col in ("KPI", "layer") else "right")
    for k in b.get("kpis", []):
        truth = k.get("truth")
        covered = "-" if truth is None else ("yes" if k["ci_low"] <= truth <= k["ci_high"] else "[red]no[/]")
        kt.add_row(
            escape(k["name"]), k.get("layer", ""), _num(k["estimate"]), escape(f"[{_num(k['ci_low'])}, {_num(k['ci_high'])}]"),
            _num(k.get("relative"), "{:+.1%}"), _num(k.get("p_adjusted", k.get("p_value")), "{:.3g}"),
            _num(truth), covered,
        )
    console.print(kt)
    roi = b.get("roi")
    if roi:
        cur = (b.get("program") or {}).get("currency", "")
        console.print(
            f"[bold]ROI[/] over {roi.get('months', 0):.1f} months: conservative headline (P10) "
            f"[bold]{roi['conservative']:.0%}[/], median {roi['median']:.0%}, 90% interval "
            f"[{roi['ci_low']:.0%}, {roi['ci_high']:.0%}], P(ROI > 0) = {roi['p_positive']:.0%}"
            + (f"; true ROI {roi['truth']:.0%}" if roi.get("truth") is not None else "")
            + escape(f". Hard benefit {cur} {roi['benefit']:,.0f} vs cost {cur} {roi['cost']:,.0f}.")
        )
    mon = b.get("monitor")
    if mon:
        console.print(f"[bold]Monitoring decision:[/] {mon['decision']} - " + escape("; ".join(mon.get("reasons", [])[:2])))
    for f in run.failures:
        colour = "yellow" if f["status"] == "skipped" else "red"
        err_console.print(f"[{colour}]{f['status']}[/] {f['stage']}: {escape(f['error'])}")
    report = run.out_dir / "report.html"
    if report.exists():
        console.print(escape(f"Report: {report}"))
    console.print(escape(f"Store: {run.store_url}  (try: insightroi status --store {run.store_url})"))
    if any(f["status"] == "failed" for f in run.failures):
        fail("some stages failed (see above)")


def run(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html, report.json and the views.")] = Path("report"),
    start_from: Annotated[str | None, typer.Option("--from", help=f"Resume from this stage ({', '.join(STAGES)}).")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this stage (repeatable).")] = None,
    jobs: Annotated[int, typer.Option(help="Classification worker processes; -1 = one per core.")] = -1,
    cadence: Annotated[str | None, typer.Option(
        "--cadence", help="The report adds the window period by period: week, month or quarter "
                          "(as `insightroi report --cadence`).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run every stage on your store, in flow order: classify, detect, insights, chain, analyze, roi, quasi, monitor, report.

    Each stage saves its section in the store; --from resumes after a failure or a fix, --only
    reruns one stage. A failing stage is reported and the others go on.
    """
    from insightroi.program import load_program
    from insightroi.report import CADENCE_ALIASES, CADENCE_UNITS
    from insightroi.services import run_all
    from insightroi.store import open_store

    for name in [start_from, *(only or [])]:
        if name is not None and name not in STAGES:
            fail(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    if cadence is not None and cadence not in CADENCE_UNITS + tuple(CADENCE_ALIASES):
        fail(f"--cadence must be one of {', '.join(CADENCE_UNITS + tuple(CADENCE_ALIASES))}; got {cadence!r}")
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        with err_console.status("starting") as status:
            rep = run_or_fail(run_all, st, prog, out_dir=out, start_from=start_from, only=only or None,
                              classify_jobs=jobs, progress=lambda stage: status.update(f"[bold]{stage}[/] ..."),
                              cadence=cadence)
    failed = {f["stage"]: f for f in rep.failures}
    if as_json:
        b = rep.bundle.to_report() if rep.bundle is not None else {}
        print(json.dumps({
            "stages": {s: {"status": "failed" if s in failed else "ok", "seconds": round(t, 3)}
                       for s, t in rep.timings.items()},
            "kpis": b.get("kpis", []), "roi": b.get("roi"), "decision_rules": b.get("decision_rules", []),
            "failures": [{k: v for k, v in f.items() if k != "traceback"} for f in rep.failures],
            "report": {k: str(v) for k, v in rep.paths.items()},
        }, indent=1, default=str))
    else:
        t = Table(title="Stages")
        for col in ("stage", "status", "seconds"):
            t.add_column(col)
        for stage, secs in rep.timings.items():
            status_txt = "[red]failed[/]" if stage in failed else "[green]ok[/]"
            t.add_row(stage, status_txt, f"{secs:.1f}")
        console.print(t)
        b = rep.bundle.to_report() if rep.bundle is not None else {}
        primary = next((k for k in b.get("kpis", []) if k["name"] == prog.experiment.primary_kpi), None)
        if primary is not None:
            console.print(escape(f"Primary KPI {primary['name']}: {_num(primary.get('estimate'))} "
                                 f"[{_num(primary.get('ci_low'))}, {_num(primary.get('ci_high'))}], relative "
                                 f"{_num(primary.get('relative'), '{:+.1%}')}, Holm p {_num(primary.get('p_adjusted'), '{:.3g}')}"))
        roi = b.get("roi")
        if roi:
            console.print(f"ROI over {roi['months']:.1f} months: conservative (P10) {_num(roi.get('conservative'), '{:.0%}')}, "
                          f"median {_num(roi.get('median'), '{:.0%}')}, P(ROI > 0) {_num(roi.get('p_positive'), '{:.0%}')}")
        for name, path in rep.paths.items():
            console.print(escape(f"{name:>10}  {path}"))
        for f in rep.failures:
            err_console.print(f"[red]failed[/] {f['stage']}: {escape(f['error'])}")
    if rep.failures:
        fail("some stages failed (see above); fix and rerun with --from STAGE")


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command("run")(run)

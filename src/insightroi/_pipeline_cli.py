"""``insightroi demo``: the main job on the simulated company, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from insightroi._cli_common import JsonOption, console, err_console, fail


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
        run = run_demo(
            out, seed=seed, scale=scale_arg, store_url=store, bad_rows=bad_rows, bad_assignment=bad_assignment,
            classify_jobs=jobs, progress=lambda stage: status.update(f"[bold]{stage}[/] ..."),
        )
    if as_json:
        print(json.dumps(run.headline(), indent=1, default=str))
        return
    b = run.bundle
    console.print(f"[bold]{b['program']['name']}[/] - demo world seed {seed}, scale {scale}")
    kt = Table(title="KPI effects (treatment - control) next to the true effect")
    for col in ("KPI", "layer", "estimate", "95% CI", "relative", "p (adj.)", "truth", "covered"):
        kt.add_column(col, justify="left" if col in ("KPI", "layer") else "right")
    for k in b.get("kpis", []):
        truth = k.get("truth")
        covered = "-" if truth is None else ("yes" if k["ci_low"] <= truth <= k["ci_high"] else "[red]no[/]")
        kt.add_row(
            k["name"], k.get("layer", ""), _num(k["estimate"]), f"[{_num(k['ci_low'])}, {_num(k['ci_high'])}]",
            _num(k.get("relative"), "{:+.1%}"), _num(k.get("p_adjusted", k.get("p_value")), "{:.3g}"),
            _num(truth), covered,
        )
    console.print(kt)
    roi = b.get("roi")
    if roi:
        cur = b["program"].get("currency", "")
        console.print(
            f"[bold]ROI[/] over {roi.get('months', 0):.1f} months: conservative headline (P10) "
            f"[bold]{roi['conservative']:.0%}[/], median {roi['median']:.0%}, 90% interval "
            f"[{roi['ci_low']:.0%}, {roi['ci_high']:.0%}], P(ROI > 0) = {roi['p_positive']:.0%}"
            + (f"; true ROI {roi['truth']:.0%}" if roi.get("truth") is not None else "")
            + f". Hard benefit {cur} {roi['benefit']:,.0f} vs cost {cur} {roi['cost']:,.0f}."
        )
    mon = b.get("monitor")
    if mon:
        console.print(f"[bold]Monitoring decision:[/] {mon['decision']} - " + "; ".join(mon.get("reasons", [])[:2]))
    for f in run.failures:
        colour = "yellow" if f["status"] == "skipped" else "red"
        err_console.print(f"[{colour}]{f['status']}[/] {f['stage']}: {f['error']}")
    report = run.out_dir / "report.html"
    if report.exists():
        console.print(f"Report: {report}")
    console.print(f"Store: {run.store_url}  (try: insightroi status --store {run.store_url})")
    if any(f["status"] == "failed" for f in run.failures):
        fail("some stages failed (see above)")


def register(app: typer.Typer) -> None:
    app.command()(demo)

"""``insightroi monitor``: the retrain / retire / keep decision with its evidence and thresholds."""

from __future__ import annotations

import json

from rich.table import Table

from typing import Annotated, Optional

import typer

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    GATE_EXIT,
    gate,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    run_or_fail,
    store_url,
)
from insightroi._constants import MONITOR_GATES


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.4g}"
    return str(x)


def monitor(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    json_out: JsonOption = False,
    fail_on: Annotated[Optional[str], typer.Option(
        "--fail-on", help=f"Exit {GATE_EXIT} when the run reaches this level ({', '.join(MONITOR_GATES)}; each "
                          "includes the later ones), to gate a CI job.")] = None,
) -> None:
    """Drift, quality and effect decay, and whether to keep, retrain or retire the model.

    Thresholds come from the program file's \\[monitoring] and \\[retraining] tables (defaults:
    PSI warn 0.1 / alert 0.25, ECE 0.05, "other" share 0.15, low-confidence share 0.25 below
    confidence 0.5, OOV rate of repeated new terms 0.05, Jensen-Shannon 0.1 shown for reference;
    retrain cost 5000 over 90 days, retire after 3 periods of 28 days). The weekly scan flags a
    week when PSI >= psi_warn and the chi-square p < 0.001, or a category absent from the
    reference appears improbably often. The result is saved as result "monitor:latest".
    """
    from insightroi.monitor import monitor_gate_failures
    from insightroi.program import load_program
    from insightroi.services import run_monitor
    from insightroi.store import open_store

    if fail_on is not None:
        run_or_fail(monitor_gate_failures, {}, fail_on)  # an unknown gate is refused before any work
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        section = run_or_fail(run_monitor, st, prog)
    payload = section.model_dump(mode="json", exclude={"provenance"})
    if json_out:
        console.print_json(json.dumps(payload))
    else:
        _print_tables(payload)
    if fail_on is not None:
        gate(monitor_gate_failures(payload, fail_on), f"--fail-on {fail_on}")


def _print_tables(payload: dict) -> None:
    console.print(f"[bold]Decision: {payload['decision'].upper()}[/] (KPI {payload.get('kpi') or '-'})")
    for r in payload["reasons"]:
        console.print(f"  - {r}")
    ev = Table(title="Decision rules and evidence")
    for col in ("rule", "value", "threshold", "triggered", "detail"):
        ev.add_column(col)
    for e in payload["evidence"]:
        ev.add_row(e["name"], _fmt(e.get("value")), _fmt(e.get("threshold")), _fmt(e.get("triggered")),
                   e.get("detail") or "")
    console.print(ev)
    dt = Table(title=f"Input drift: current {payload['windows'].get('current')} vs reference "
                     f"{payload['windows'].get('reference')}")
    for col in ("feature", "PSI", "p-value", "value", "threshold", "status"):
        dt.add_column(col)
    th = payload["policy"]
    for d in payload["drift"]:
        thr = d.get("threshold", th.get("monitoring_psi_alert"))
        dt.add_row(d["feature"], _fmt(d.get("psi")), _fmt(d.get("p_value")), _fmt(d.get("value")), _fmt(thr),
                   d.get("status", "-"))
    console.print(dt)
    if payload["decay"]:
        kpi = payload.get("decay_kpi") or "the decision KPI"
        de = Table(title=f"Effect on {kpi} by period vs the persistent holdout (treatment - control, KPI units)")
        for col in ("period", "estimate", "ci_low", "ci_high"):
            de.add_column(col)
        for r in payload["decay"]:
            de.add_row(r["period"], _fmt(r.get("estimate")), _fmt(r.get("ci_low")), _fmt(r.get("ci_high")))
        console.print(de)
    flagged = [w for w in payload["weekly"] if w["onset"]]
    if flagged:
        console.print("Weeks where drift began: " + ", ".join(f"{w['week']} ({', '.join(w['onset_features'])})"
                                                           for w in flagged))


def register(app) -> None:
    """Add ``monitor`` to the CLI."""
    app.command("monitor")(monitor)

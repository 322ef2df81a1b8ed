"""``insightroi analyze``: run the program's experiment on the store and save the results."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from insightroi._cli_common import DEFAULT_PROGRAM, JsonOption, ProgramOption, StoreOption, console, run_or_fail, store_url
from insightroi.program import load_program
from insightroi.store import open_store


def _pct(x) -> str:
    return "-" if x is None or x != x else f"{x:+.1%}"


def _num(x) -> str:
    return "-" if x is None or x != x else f"{x:,.4g}"


def analyze(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    json_out: JsonOption = False,
    kpi: Annotated[list[str] | None, typer.Option("--kpi", help="Analyse only this KPI (repeatable).")] = None,
    segment: Annotated[list[str] | None, typer.Option("--segment", help="Break down by this column (repeatable).")] = None,
) -> None:
    """Run the program's experiment on the store: effects per KPI, adjusted p-values, checks."""
    from insightroi.experiments import analyze_experiment

    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        res = run_or_fail(analyze_experiment, st, prog, kpis=kpi or None, segments=segment or None)
        for name, r in res.results.items():
            st.save_result("experiment", name, r.to_dict())
        st.save_result("experiment_checks", res.name, res.experiment_section())
    if json_out:
        console.print_json(json.dumps(res.to_dict(), default=str))
        return
    t = Table(title=f"Experiment {res.name} ({res.design} on {res.unit}: {res.n_treatment} treated, "
                    f"{res.n_control} control; {res.window[0]} to {res.window[1]})")
    for col in ("KPI", "control", "treatment", "effect", "relative", f"{round(100 * (1 - res.alpha))}% CI (rel.)",
                "p", "p (Holm)", "method", "checks"):
        t.add_column(col, justify="left" if col in ("KPI", "method", "checks") else "right")
    for name, r in res.results.items():
        x = r.extra
        bad = [c.name for c in r.diagnostics if c.status in ("fail", "warn")]
        t.add_row(name, _num(x.get("control_mean")), _num(x.get("treatment_mean")), _num(r.estimate),
                  _pct(x.get("relative")), f"{_pct(x.get('relative_ci_low'))} to {_pct(x.get('relative_ci_high'))}",
                  _num(r.p_value), _num(x.get("p_adjusted")), r.method + (" +CUPED" if x.get("cuped") else ""),
                  ", ".join(bad) or "ok")
    console.print(t)
    ct = Table(title="Checks")
    for col in ("check", "status", "message"):
        ct.add_column(col)
    colors = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for c in res.checks:
        ct.add_row(c.name, f"[{colors[c.status]}]{c.status}[/]", c.message)
    console.print(ct)


def register(app: typer.Typer) -> None:
    app.command()(analyze)

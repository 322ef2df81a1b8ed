"""``insightroi analyze``: run the program's experiment on the store and save the results."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    GATE_EXIT,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    gate,
    run_or_fail,
    store_url,
)
from insightroi._constants import ANALYZE_GATES


def _pct(x) -> str:
    return "-" if x is None or x != x else f"{x:+.1%}"


def _share(x, digits: int = 1) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}%}"


def _num(x) -> str:
    return "-" if x is None or x != x else f"{x:,.4g}"


def analyze(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    json_out: JsonOption = False,
    kpi: Annotated[list[str] | None, typer.Option("--kpi", help="Analyse only this KPI (repeatable).")] = None,
    segment: Annotated[list[str] | None, typer.Option("--segment", help="Break down by this column (repeatable).")] = None,
    fail_on: Annotated[list[str] | None, typer.Option(
        "--fail-on", help=f"Exit {GATE_EXIT} on this condition, to gate a CI job (repeatable): "
                          f"{', '.join(ANALYZE_GATES)}.")] = None,
) -> None:
    """Run the program's experiment on the store: effects per KPI, adjusted p-values, checks, decision rules.

    Every design the program file accepts: ab / cluster / holdout / switchback (randomized),
    did, synthetic_control and its (quasi-experimental). The section saved is what `roi`,
    `report` and the dashboard read.
    """
    from insightroi.experiments import analyze_gate_failures
    from insightroi.program import load_program
    from insightroi.services import run_analyze
    from insightroi.store import open_store

    gates = list(fail_on or [])
    run_or_fail(analyze_gate_failures, {}, gates)  # an unknown gate is refused before any work
    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        sec = run_or_fail(run_analyze, st, prog, kpis=kpi or None, segments=segment or None)
    data = sec.model_dump(mode="json")
    if json_out:
        console.print_json(json.dumps(data, default=str))
    else:
        _print_tables(sec, data, prog)
    gate(analyze_gate_failures(data, gates), " ".join(f"--fail-on {g}" for g in gates))


# Short enough that the method column is not cut on an 80-column terminal; the covariates
# themselves are in the covariate_adjustment check and the JSON.
_METHOD_LABELS = {"regression_adjusted": "reg. adj.", "cupac": "CUPAC"}


def _method_label(method: str | None, extra: dict) -> str:
    label = _METHOD_LABELS.get(method or "", method or "")
    # select_covariates: say the set was chosen, so CUPED is not read as adjustment switched off.
    chosen = ", selected" if extra.get("covariate_selection") else ""
    if method in _METHOD_LABELS and extra.get("covariates"):
        return f"{label} ({len(extra['covariates'])} cov.{chosen})"
    return label + (" +CUPED" if extra.get("cuped") else "") + (" (selected)" if chosen else "")


def _print_tables(sec, data: dict, prog) -> None:
    w = sec.window or {}
    t = Table(title=f"Experiment {sec.name} ({sec.design} on {sec.unit}: {sec.n_treatment} treated, "
                    f"{sec.n_control} control; {w.get('start')} to {w.get('end')})")
    bayes = any(r.get("chance_to_win") is not None for r in data["kpis"])
    cols = ("KPI", "control", "treatment", "effect", "relative", f"{round(100 * (1 - sec.alpha))}% CI (rel.)",
            "p", "p (Holm)", *(("chance to win", "risk (ship)") if bayes else ()), "method", "checks")
    for col in cols:
        t.add_column(col, justify="left" if col in ("KPI", "method", "checks") else "right")
    for r in data["kpis"]:
        bad = [c["name"] for c in r.get("checks", []) if c.get("status") in ("fail", "warn")]
        primary = " (primary)" if r["name"] == prog.experiment.primary_kpi else ""
        t.add_row(r["name"] + primary, _num(r.get("control_mean")), _num(r.get("treatment_mean")),
                  _num(r.get("estimate")), _pct(r.get("relative")),
                  f"{_pct(r.get('relative_ci_low'))} to {_pct(r.get('relative_ci_high'))}",
                  _num(r.get("p_value")), _num(r.get("p_adjusted")),
                  *((_share(r.get("chance_to_win")), _share(r.get("risk_treatment"), 2)) if bayes else ()),
                  _method_label(r.get("method"), sec.results.get(r["name"], {}).get("extra", {})),
                  ", ".join(bad) or "ok")
    console.print(t)
    ct = Table(title="Checks")
    for col in ("check", "status", "message"):
        ct.add_column(col)
    colors = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for c in sec.checks:
        ct.add_row(c["name"], f"[{colors.get(c['status'], 'white')}]{c['status']}[/]", escape(c.get("message", "")))
    console.print(ct)
    if data.get("arms"):
        console.print(arm_table(data["arms"], sec.alpha))
    for col, by_kpi in (data.get("segments") or {}).items():
        for name, cells in by_kpi.items():
            console.print(segment_table(col, name, cells, sec.alpha))
    if sec.decision_rules:
        rt = Table(title="Decision rules (program file), on Holm-adjusted results")
        for col in ("KPI", "rule", "status", "evidence"):
            rt.add_column(col)
        rc = {"pass": "green", "fail": "red", "inconclusive": "yellow", "not_evaluable": "dim"}
        for r in sec.decision_rules:
            rt.add_row(r.kpi, escape(r.rule), f"[{rc[r.status]}]{r.status}[/]", escape(r.message))
        console.print(rt)


def arm_table(arms: dict, alpha: float) -> Table:
    """A/B/n: each treatment arm against control per KPI, p Holm-adjusted across the arms."""
    level = f"{round(100 * (1 - alpha))}%"
    t = Table(title="Each arm vs control (A/B/n; the table above pools the arms); p Holm-adjusted across arms")
    for c in ("KPI", "arm", "units", "control", "arm mean", "effect", f"{level} CI", "p", "p (Holm, arms)"):
        t.add_column(c, justify="left" if c in ("KPI", "arm") else "right")
    for kpi, by_arm in arms.items():
        for arm, r in by_arm.items():
            ex = r.get("extra") or {}
            ci = r.get("ci") or (None, None)
            t.add_row(escape(kpi), escape(arm), _num(ex.get("treatment_n")), _num(ex.get("control_mean")),
                      _num(ex.get("treatment_mean")), _num(r.get("estimate")), f"{_num(ci[0])} to {_num(ci[1])}",
                      _num(r.get("p_value")), _num(ex.get("p_adjusted")))
    return t


def segment_table(col: str, kpi: str, cells: dict, alpha: float) -> Table:
    """One KPI's effect per value of ``col``: raw (BH-adjusted p) beside the partially pooled estimate."""
    level = f"{round(100 * (1 - alpha))}%"
    t = Table(title=f"{escape(kpi)} by {escape(col)}: relative effect per segment; p BH-adjusted across segments; "
                    "pooled = empirical-Bayes partial pooling")
    for c in ("segment", "units", "effect", f"{level} CI", "p (BH)", "pooled", f"pooled {level} CI", "shrinkage"):
        t.add_column(c, justify="left" if c == "segment" else "right")
    for seg, r in cells.items():
        ex = r.get("extra") or {}
        ci, pci = r.get("ci") or (None, None), ex.get("pooled_ci") or (None, None)
        t.add_row(escape(seg), _num(r.get("n")), _pct(r.get("estimate")), f"{_pct(ci[0])} to {_pct(ci[1])}",
                  _num(ex.get("p_adjusted")), _pct(ex.get("pooled_estimate")),
                  f"{_pct(pci[0])} to {_pct(pci[1])}" if ex.get("pooled_ci") else "-",
                  "-" if ex.get("shrinkage") is None else f"{ex['shrinkage']:.0%}")
    return t


def register(app: typer.Typer) -> None:
    app.command()(analyze)

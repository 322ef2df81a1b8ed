"""``insightroi roi``: the program's ROI from the saved experiment results, with its uncertainty."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    run_or_fail,
    store_url,
)
from insightroi._constants import ROI_DRAWS, ROI_SEED

__all__ = ["register", "print_roi"]


def _money(x: float | None, cur: str) -> str:
    if x is None:
        return "-"
    return f"{cur} {x:,.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:,.1f}%"


def _payback(months: float | None) -> str:
    # JSON has no infinity: a payback that never comes is saved as null.
    return "never" if months is None or months == float("inf") else f"{months:.1f} months"


def print_roi(res: dict[str, Any]) -> None:
    """Rich rendering of a saved ROI section: headline, hard vs soft, scenarios, tornado, pools, costs."""
    cur = res.get("currency", "")
    console.print(
        f"[bold]ROI over {res['months']:.1f} months (hard value only; program horizon)[/]\n"
        f"  conservative headline (10th percentile): [bold]{_pct(res['conservative'])}[/]\n"
        f"  median {_pct(res['median'])}, 90% interval [{_pct(res['ci_low'])}, {_pct(res['ci_high'])}], "
        f"P(ROI > 0) = {res['p_positive']:.1%}\n"
        f"  expected scenario: ROI {_pct(res['estimate'])}, benefit-cost ratio {res['bcr']:.2f}, "
        f"payback {_payback(res.get('payback_months'))}"
    )
    console.print(
        f"  hard benefit {_money(res['benefit'], cur)} vs cost {_money(res['cost'], cur)}; "
        f"soft value (reported separately, not in the ROI): {_money((res.get('soft') or {}).get('benefit'), cur)}"
    )
    t = Table(title="Scenarios")
    for c in ("scenario", "ROI", "hard benefit", "cost", "B/C"):
        t.add_column(c)
    for s in res['scenarios']:
        t.add_row(s["name"], _pct(s["roi"]), _money(s["benefit"], cur), _money(s["cost"], cur), f"{s['bcr']:.2f}")
    console.print(t)
    t = Table(title="Sensitivity (one input at a time, others expected)")
    for c in ("input", "ROI at low", "ROI at high", "swing"):
        t.add_column(c)
    for r in res['tornado']:
        t.add_row(r["input"], _pct(r["low_roi"]), _pct(r["high_roi"]), _pct(r["swing"]))
    console.print(t)
    t = Table(title="Value pools (attribution)")
    for c in ("pool", "function", "KPI", "hard", "avoided / recovered", "benefit (median)", "90% interval", "share"):
        t.add_column(c)
    for p in res['pools']:
        t.add_row(
            p["name"], p["function"], p["kpi"], "hard" if p["hard"] else "soft",
            f"{p['avoided_events']:,.0f} events" if p.get("avoided_events") is not None
            else f"{_pct(p.get('share_recovered'))} of value at risk",
            _money(p["benefit_median"], cur),
            f"[{_money(p['benefit_ci_low'], cur)}, {_money(p['benefit_ci_high'], cur)}]",
            _pct(p["share"]) + ("" if p["hard"] else " of soft"),
        )
    console.print(t)
    t = Table(title="Cost stack")
    for c in ("line", "category", "kind", "total (low / mode / high)"):
        t.add_column(c)
    for c in res['costs']:
        t.add_row(c["name"], c["category"], c["kind"],
                  f"{c['total_low']:,.0f} / {c['total_mode']:,.0f} / {c['total_high']:,.0f}")
    console.print(t)
    cs = res['cost_summary']
    per_fb = cs.get("per_1000_feedback_mode")
    console.print(
        f"  cost per month {_money(cs['per_month_mode'], cur)}; one-off {_money(cs['one_off_mode'], cur)}; "
        f"recurring {_money(cs['recurring_mode'], cur)}; per 1,000 feedback {_money(per_fb, cur)}"
    )
    for n in res['notes']:
        console.print(f"[dim]note: {n}[/]")
    _print_gap(res.get("projection"), cur)


def _print_gap(proj: dict[str, Any] | None, cur: str) -> None:
    if not proj:
        return
    p = proj["projected"]
    console.print(escape(f"Projected at plan time ({proj.get('basis')}): expected ROI {_pct(p['estimate'])}, "
                         f"conservative {_pct(p['conservative'])}."))
    w = proj.get("waterfall")
    if not w:
        if proj.get("note"):
            console.print(f"[dim]note: {escape(proj['note'])}[/]")
        return
    t = Table(title="Projected vs realized ROI (expected case): the gap by driver (Shapley shares; they add up)")
    for c in ("", "ROI", "net hard value"):
        t.add_column(c, justify="left" if not c else "right")
    t.add_row("projected", _pct(w["projected_roi"]), _money(w["projected_net"], cur))
    for step in w["steps"]:
        t.add_row(f"  {step['label']}", f"{100 * step['roi']:+,.1f} pts", _money(step["net"], cur))
    t.add_row("realized", _pct(w["realized_roi"]), _money(w["realized_net"], cur))
    console.print(t)


def roi(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    json_out: JsonOption = False,
    draws: Annotated[int, typer.Option("--draws", min=100, help="Monte Carlo draws.")] = ROI_DRAWS,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (the default is every other stage's).")] = ROI_SEED,
    method: Annotated[str | None, typer.Option("--method", help="Use only experiment results of this method.")] = None,
    horizon: Annotated[float | None, typer.Option("--horizon", help="Horizon in months (default: the program's horizon_months).")] = None,
) -> None:
    """ROI of the program from the saved analysis: conservative headline, interval, scenarios, tornado, value pools."""
    from insightroi.program import load_program
    from insightroi.services import run_roi
    from insightroi.store import open_store

    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        sec = run_or_fail(run_roi, st, prog, draws=draws, seed=seed, horizon_months=horizon, method=method)
    payload = sec.model_dump(mode="json", exclude={"provenance"})
    if json_out:
        typer.echo(json.dumps(payload, indent=2))
        return
    print_roi(payload)


def register(app: typer.Typer) -> None:
    """Add ``insightroi roi`` to the CLI."""
    app.command("roi")(roi)

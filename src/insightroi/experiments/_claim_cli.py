"""``insightroi validate-claim``: check a before/after claim against the control group in the store."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Annotated, Any

import typer

from insightroi._cli_common import DEFAULT_PROGRAM, JsonOption, ProgramOption, StoreOption, console, run_or_fail, store_url
from insightroi.errors import DataError
from insightroi.program import Program, load_program

__all__ = ["register", "claim_panel", "validate_claim_in_store"]


def claim_panel(store: Any, program: Program, kpis: list[str], *, end: date | None = None):
    """Unit x week panel of the numerators and denominators of ``kpis`` (plus ``treated``).

    Weeks are whole weeks counted from the start of the pre-period, which is
    ``experiment.pre_period_days`` before ``experiment.start`` rounded up to whole weeks, so the
    rollout falls on a week boundary. ``treated`` is the unit's first assigned arm ==
    ``"treatment"`` (intention to treat). Built with ``insightroi.metrics.unit_metrics`` (Ibis),
    so it runs on any backend the store supports.

    Returns
    -------
    (DataFrame, int)
        The panel (``unit, period, treated, <measure>...``) and the rollout week index.
    """
    from insightroi.metrics import unit_measures_expr

    e = program.experiment
    pre_weeks = max(1, -(-e.pre_period_days // 7))
    start = e.start - timedelta(days=7 * pre_weeks)
    stop = end or e.end or date.today()
    measures = []
    for name in kpis:
        k = program.kpi(name)
        measures += [k.numerator, k.denominator]
    measures = [m for m in dict.fromkeys(measures) if m != "units"]
    t = unit_measures_expr(store, program, measures, window=(start, stop), by=("week",))
    df = t.execute()
    if df.empty:
        raise DataError("validate-claim: no rows in the store for the experiment's units and window; ingest data and assignments first")
    df = df.rename(columns={"unit_id": "unit", "week": "period"})
    df["treated"] = df["arm"] == "treatment"
    # Last week may be partial: drop it unless the window ends on a week boundary.
    n_days = (stop - start).days + 1
    if n_days % 7:
        df = df[df["period"] < n_days // 7]
    df = df.sort_values(["unit", "period"], kind="stable").reset_index(drop=True)
    keep = ["unit", "period", "treated", *measures]
    return df[keep], pre_weeks


def validate_claim_in_store(store: Any, program: Program, claim: str, kpi: str, *, window: int = 4, alpha: float | None = None):
    """Run :func:`validate_claim` for a program KPI on the store's unit x week panel.

    Adjacent signals are the program's other KPIs measured on the same unit (their own good
    direction from the program file).
    """
    from insightroi.experiments._claim import validate_claim

    k = program.kpi(kpi)
    others = [o for o in program.kpis if o.name != k.name and o.unit == k.unit and "units" not in (o.numerator, o.denominator)]
    panel, rollout = claim_panel(store, program, [k.name] + [o.name for o in others])
    adjacent = {o.name: (o.numerator, o.denominator, o.direction, o.scale) for o in others}
    return validate_claim(
        claim, panel, rollout=rollout, unit="unit", period="period", numerator=k.numerator, denominator=k.denominator,
        treated="treated", scale=k.scale, kpi=k.name, window=window, adjacent=adjacent, kpi_direction=k.direction,
        alpha=alpha if alpha is not None else program.experiment.alpha,
    )


def validate_claim_cmd(
    claim: Annotated[str, typer.Argument(help='The claim, e.g. "negative reviews down 40%".')],
    kpi: Annotated[str, typer.Option("--kpi", "-k", help="Program KPI the claim is about.")],
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    window: Annotated[int, typer.Option("--window", "-w", help="Weeks on each side of the rollout for the before/after.")] = 4,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Save the report (kind 'claim'); saved claims appear in the report.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Check a before/after claim: denominator, control group, DiD, regression to the mean, persistence, triangulation."""
    from insightroi.services import run_claim
    from insightroi.store import open_store

    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        report = run_or_fail(run_claim, st, prog, claim, kpi, window=window, save=save)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        colour = {"supported": "green", "weak": "yellow", "not supported": "red"}[report.verdict]
        console.print(report.summary(), markup=False, highlight=False)
        console.print(f"[bold {colour}]{report.verdict.upper()}[/]")


def register(app: typer.Typer) -> None:
    """Add ``validate-claim`` to the CLI."""
    app.command("validate-claim")(validate_claim_cmd)

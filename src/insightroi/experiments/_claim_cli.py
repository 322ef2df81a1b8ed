"""``insightroi validate-claim``: check a before/after claim against the control group in the store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from insightroi._cli_common import DEFAULT_PROGRAM, JsonOption, ProgramOption, StoreOption, console, run_or_fail, store_url

__all__ = ["register"]


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
    from insightroi.program import load_program
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

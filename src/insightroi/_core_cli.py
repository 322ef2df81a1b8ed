"""Commands that need only the foundation: ``init``, ``plan`` and ``status``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    ProgramOption,
    StoreOption,
    console,
    fail,
    run_or_fail,
    store_url,
)


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write insightroi.toml.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter program file (insightroi.toml)."""
    from insightroi.program import starter_program_text

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "insightroi.toml"
    if target.exists() and not force:
        fail(f"{target} exists; pass --force to overwrite it")
    target.write_text(starter_program_text(), encoding="utf-8")
    console.print(f"wrote {escape(str(target))}: edit the value hypothesis, taxonomy, KPIs and costs, then run 'insightroi plan'")


def _adjustment_plan(e) -> str:
    """The plan's sentence on covariates and the synthetic-control variant, as the analysis will use them."""
    out = ""
    if e.covariates or e.covariates_by_kpi or e.cupac:
        cands = ", ".join(e.covariates) or "none"
        per_kpi = "".join(f"; {k}: {', '.join(v)}" for k, v in e.covariates_by_kpi.items())
        out += f" Covariates: {cands}{per_kpi}" + (" + CUPAC" if e.cupac else "")
        out += (" (selected per KPI on data before assignment: CUPED unless a set predicted the pre-period "
                "clearly better)." if e.select_covariates else " (all used beside each KPI's pre-period value).")
    if e.design == "synthetic_control":
        out += (f" Synthetic control variant: {e.synth_variant} (experiment.synth_variant)." if e.synth_variant else
                " Synthetic control variant: plain or demeaned, picked by the pre-period fit.")
        out += (" Placebo groups: matched on the pre-period fit (experiment.placebo_groups; the treated set was "
                "chosen for its fit)." if e.placebo_groups == "matched_fit" else
                " Placebo groups: random groups of as many units.")
    return out


def plan(
    program: ProgramOption = DEFAULT_PROGRAM,
    store: StoreOption = None,
) -> None:
    """Print the measurement plan (and the power table when the store has pre-period data)."""
    from insightroi.experiments import MAX_WEEKS, power_table
    from insightroi.metrics import describe_measures
    from insightroi.privacy import resolve_retention
    from insightroi.program import load_program
    from insightroi.services import save_roi_projection
    from insightroi.store import duckdb_file, open_store

    prog = run_or_fail(load_program, program)
    # Names and text are the user's: escaped, so '[/bold]' in a name prints as written.
    console.print(f"[bold]{escape(prog.program.name)}[/]\n[italic]{escape(prog.program.value_hypothesis)}[/]\n")
    table = Table(title="Measurement plan", show_lines=False)
    for col in ("layer", "metric", "definition", "unit", "instrumentation point", "owner", "decision rule"):
        table.add_column(col)
    order = {"model": 0, "workflow": 1, "business": 2}
    for k in sorted(prog.kpis, key=lambda k: order[k.layer]):
        scale = "" if k.scale == 1 else f" x {k.scale:g}"
        primary = " (primary)" if k.name == prog.experiment.primary_kpi else ""
        table.add_row(*map(escape, (
            k.layer, k.name + primary, f"{k.numerator} / {k.denominator}{scale}", k.unit,
            k.instrumentation or "-", k.owner, k.decision_rule or "-",
        )))
    console.print(table)
    # The user's measures are checked against their tables' declared columns and types here,
    # before any data is read: a bad one stops the plan with the measure and column named.
    measures = run_or_fail(describe_measures, prog)
    if measures:
        mt = Table(title=escape("Measures defined in the program ([[measures]])"))
        cols = ("name", "definition", "time", "unit_column", "unit", "description")
        for col in cols:
            mt.add_column(col)
        for row in measures:
            mt.add_row(*[escape(row[c]) for c in cols])
        console.print(mt)
    # A [retention] key naming no table, or one whose rows have no date, stops the plan here
    # rather than at the first 'insightroi retention'.
    for rule in run_or_fail(resolve_retention, prog):
        console.print(escape(f"Retention: {rule.table} rows kept {rule.days} days (by {rule.time_column})."))
    e = prog.experiment
    console.print(escape(
        f"Design: {e.design} on {e.unit}, {e.treatment_share:.0%} treated, salt {e.salt!r}, "
        f"from {e.start}{' to ' + str(e.end) if e.end else ''}; alpha {e.alpha}, power {e.power}, "
        f"MDE {e.mde_relative:.0%} on {e.primary_kpi}."
        + (f" Inference: always valid (sequential, N* = {e.sequential_tuning:g}): read results at any look."
           if e.sequential else " Inference: fixed horizon: read the results once, at the planned end.")
        + (" Baseline: each unit's KPI over the same weeks last year (52 weeks before the window) adjusts its "
           "result; the power table below still measures correlation between adjacent pre-period windows."
           if e.baseline == "same_period_last_year" else "")
        + _adjustment_plan(e)
    ))
    url = store_url(store)
    db_file = duckdb_file(url) if url.startswith("duckdb://") else None
    if db_file is not None and not db_file.exists():
        console.print("[dim]No store yet: ingest pre-period data to get the power table.[/]")
        return
    with run_or_fail(open_store, url) as st:
        rows = run_or_fail(power_table, prog, st)
        projection = run_or_fail(save_roi_projection, st, prog, rows) if rows else None
    if not rows:
        return
    # Side by side: what a plain comparison would need and what the analysis, which is
    # CUPED-adjusted, will need; planning on the plain column alone calls effects that the
    # analysis can detect hopeless.
    cols = [("kpi", "kpi"), ("baseline", "baseline"), ("units\nt/c", None), ("weeks\nplain", "weeks_needed"),
            ("weeks\nCUPED", "weeks_needed_cuped"), ("rho", "rho")]
    if e.end:
        cols += [("MDE at end\nplain", "mde_at_planned_end"), ("MDE at end\nCUPED", "mde_at_planned_end_cuped"),
                 ("power at end\nplain", "power_at_planned_end"),
                 ("power at end\nCUPED", "power_at_planned_end_cuped")]
    cols += [("ICC", "icc")]

    def cell(r: dict, key: str | None) -> str:
        if key is None:
            return f"{r['units_treatment']}/{r['units_control']}"
        v = r.get(key)
        if v is None:  # a searched-for duration that does not exist reads as "more than the search"
            return f"> {MAX_WEEKS}" if key.startswith("weeks_needed") and r["baseline"] else "-"
        if key.startswith(("mde_", "power_")):
            return f"{v:.1%}"
        return f"{v:,.4g}" if isinstance(v, float) else str(v)

    pt = Table(title="Power (from the store's pre-period data)")
    for header, key in cols:
        pt.add_column(header, justify="left" if key == "kpi" else "right")
    for r in rows:
        pt.add_row(*[escape(cell(r, key)) for _, key in cols])
    console.print(pt)
    for r in rows:
        adj = (f"; rho between two adjacent {r['rho_window_weeks']}-week pre-period windows: {r['rho_adjacent']:.2f}"
               if r.get("rho_adjacent") is not None else "")
        console.print(f"- {r['kpi']}: {r['verdict']}{adj}", markup=False)
    arms = arm_power_table(rows)
    if arms is not None:
        console.print(arms)
    console.print(
        f"The analysis (insightroi analyze) will use CUPED: it adjusts each KPI by the unit's value in the "
        f"{e.pre_period_days}-day pre-period, so plan on the CUPED columns (plain: without CUPED). rho is the "
        "correlation of a unit's KPI in the planned window with its pre-period KPI, extrapolated from the one "
        "measured between two adjacent pre-period windows; CUPED leaves (1 - rho^2) of the plain variance. "
        f"Units are the randomization units ({e.unit}), so the between-unit (intra-cluster) variance is included."
    )
    _print_projection(projection, prog.program.currency)


def arm_power_table(rows: list[dict]) -> Table | None:
    """A/B/n plan: each arm's MDE against control per KPI (``power_table`` rows' ``arms``); None for two arms.

    Parameters
    ----------
    rows : list of dict
        :func:`insightroi.experiments.power_table`'s rows.

    Returns
    -------
    rich.table.Table or None
    """
    with_arms = [r for r in rows if r.get("arms")]
    if not with_arms:
        return None
    corr = with_arms[0]["arms"][0]["correction"]
    t = Table(title=f"Power per arm (A/B/n): MDE of each arm vs control, {corr}-adjusted across arms "
                    "(Bonferroni level alpha / arms)")
    for c in ("KPI", "arm", "units", "weeks", "MDE plain", "MDE CUPED"):
        t.add_column(c, justify="left" if c in ("KPI", "arm") else "right")
    for r in with_arms:
        for a in r["arms"]:
            t.add_row(escape(r["kpi"]), escape(a["arm"]), f"{a['units']:,}", f"{r['arms_weeks']:.3g}",
                      _pct(a["mde_relative"]), _pct(a["mde_relative_cuped"]))
    return t


def _pct(x) -> str:
    return "-" if x is None or x != x else f"{x:.1%}"


def _print_projection(projection: dict | None, currency: str) -> None:
    # What plan saved as the projected ROI, or why it saved none.
    if projection is None:
        return
    if not projection.get("saved"):
        console.print(escape(f"No projected ROI saved: {projection.get('reason', '')}."), style="dim")
        return
    r = projection["roi"]
    console.print(escape(
        f"Projected ROI over {r['months']:.1f} months ({projection['basis']}; volumes from "
        f"{projection['window'][0]} to {projection['window'][1]}): expected {r['estimate']:.1%}, median "
        f"{r['median']:.1%}, conservative (10th pct.) {r['conservative']:.1%}, P(ROI > 0) {r['p_positive']:.1%}; "
        f"hard benefit {currency} {r['benefit']:,.0f} vs cost {currency} {r['cost']:,.0f}. Saved: "
        "`insightroi roi` and the report set the realized ROI beside it."
    ))


def status(store: StoreOption = None) -> None:
    """What is in the store: rows per table, date ranges, quarantine counts."""
    from insightroi.store import TABLES, open_store

    with run_or_fail(open_store, store_url(store)) as st:
        table = Table(title=escape(f"Store {st.url} (schema v{st.schema_version()})"))
        for col in ("table", "rows", "from", "to", "quarantined"):
            table.add_column(col, justify="right" if col in ("rows", "quarantined") else "left")
        q = st.table("quarantine")
        qcounts = dict(q.group_by("target_table").aggregate(n=q.count()).execute().itertuples(index=False))
        for name, spec in TABLES.items():
            t = st.table(name)
            if spec.time_column:
                agg = t.aggregate(n=t.count(), lo=t[spec.time_column].min(), hi=t[spec.time_column].max()).execute()
                n, lo, hi = int(agg.n.iloc[0]), agg.lo.iloc[0], agg.hi.iloc[0]
            else:
                n, lo, hi = st.count(name), None, None
            fmt = lambda v: "-" if v is None or v != v else str(v)[:19]  # noqa: E731  (NaT != NaT)
            table.add_row(name, f"{n:,}", fmt(lo), fmt(hi), f"{qcounts.get(name, 0):,}" if spec.ingestible else "")
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(plan)
    app.command()(status)

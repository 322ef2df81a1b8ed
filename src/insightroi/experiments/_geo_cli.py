"""``insightroi geo-design``: choose the treated markets and the duration of a geo test by backtest power.

Reads every market's KPI per pre-period week from the store (the weeks and sums the
synthetic-control analysis will read), ranks candidate treated sets and durations
(:func:`insightroi.experiments.design_geo`), prints the table, stores the chosen markets as the
experiment's assignments (treated markets ``treatment``, every other market ``control``) and
prints the program's ``[experiment]`` keys (``--write`` sets them in the program file in place).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    fail,
    run_or_fail,
    store_url,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from insightroi.experiments._geo import GeoDesign
    from insightroi.program import Program


def geo_seed(program: Program) -> int:
    """Seed of the candidate draws: the experiment's salt and name, so a re-run draws the same sets."""
    e = program.experiment
    return int(hashlib.sha256(f"{e.salt}\x1fgeo-design\x1f{e.name}".encode()).hexdigest()[:16], 16)


def experiment_keys(program: Program, design: GeoDesign, unit: str) -> dict[str, str]:
    """The ``[experiment]`` keys (TOML literals) that the chosen design sets."""
    e = program.experiment
    end = e.start + timedelta(days=7 * design.chosen.weeks - 1)
    # The designer picked the treated set for its fit: the analysis' placebo groups must be
    # comparable sets, not random ones of noisier markets (whose p-value is then conservative).
    return {"design": '"synthetic_control"', "unit": json.dumps(unit), "end": end.isoformat(),
            "placebo_groups": '"matched_fit"'}


def toml_snippet(program: Program, design: GeoDesign, unit: str) -> str:
    c = design.chosen
    keys = experiment_keys(program, design, unit)
    head = (f"# geo design: treat {', '.join(c.markets)} for {c.weeks} weeks from {program.experiment.start}; "
            f"MDE {c.mde:.4g} ({c.mde_relative:.1%}) at {design.power:.0%} power, alpha {design.alpha:g}, "
            f"from backtests on {design.n_weeks} pre-period weeks")
    return "\n".join([head, "[experiment]", *(f"{k} = {v}" for k, v in keys.items())]) + "\n"


def set_experiment_keys(text: str, keys: dict[str, str]) -> str:
    """``text`` with ``keys`` set in its ``[experiment]`` table, every other line (comments too) kept.

    A key already there has its line replaced; a missing one is added after the table's last
    key. Only plain ``key = value`` lines are recognised, which is what the starter file has.
    """
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(r"\s*\[experiment\]\s*(#.*)?$", ln)), None)
    if start is None:
        return text.rstrip("\n") + "\n\n[experiment]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines))
    todo = dict(keys)
    last_key = start
    for i in range(start + 1, end):
        m = re.match(r"(\s*)([A-Za-z0-9_]+)\s*=", lines[i])
        if m:
            last_key = i
            if m.group(2) in todo:
                lines[i] = f"{m.group(1)}{m.group(2)} = {todo.pop(m.group(2))}\n"
    lines[last_key + 1:last_key + 1] = [f"{k} = {v}\n" for k, v in todo.items()]
    return "".join(lines)


def _write_program(path: Path, text: str) -> None:
    from insightroi.program import parse_program

    # Parse before replacing, and replace atomically, so a failed edit never leaves a broken file.
    parse_program(text, str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _assignment_rows(program: Program, markets: list[str], treated: set[str], existing: dict[str, str]) -> pa.Table:
    import pyarrow as pa

    from insightroi.experiments._assign import assignment_id
    from insightroi.experiments._common import CONTROL, TREATMENT

    e = program.experiment
    at = datetime.combine(e.start, time(0), tzinfo=timezone.utc)
    new = [m for m in markets if m not in existing]
    return pa.table({
        "id": pa.array([assignment_id(e.name, e.unit, m) for m in new], pa.string()),
        "experiment": pa.array([e.name] * len(new), pa.string()),
        "unit_type": pa.array([e.unit] * len(new), pa.string()),
        "unit_id": pa.array(new, pa.string()),
        "arm": pa.array([TREATMENT if m in treated else CONTROL for m in new], pa.string()),
        "assigned_at": pa.array([at] * len(new), pa.timestamp("us", tz="UTC")),
    })


def _fmt(x: float, pct: bool = False) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.1%}" if pct else f"{x:.4g}"


def _print(design: GeoDesign, top: int, kpi: str, dropped: list[str]) -> None:
    t = Table(title=f"Geo designs for {escape(kpi)}: {len(design.markets)} markets, {design.n_weeks} pre-period weeks "
                    f"(ranked by MDE at {design.power:.0%} power, then fit)")
    for col in ("rank", "treated markets", "weeks", "MDE", "MDE %", "backtest power", "backtests", "pre MSPE",
                "imbalance"):
        t.add_column(col, justify="left" if col == "treated markets" else "right")
    shown = design.ranked[:top]
    if design.chosen not in shown:
        shown = [*shown, design.chosen]
    for c in shown:
        mark = "[bold green]*[/] " if c is design.chosen else ""
        t.add_row(f"{mark}{design.ranked.index(c) + 1}", escape(", ".join(c.markets)), str(c.weeks), _fmt(c.mde),
                  _fmt(c.mde_relative, True), _fmt(c.backtest_power, True), str(c.n_backtests), _fmt(c.pre_mspe),
                  f"{c.imbalance:.2f}")
    console.print(t)
    c = design.chosen
    why = (f"the shortest duration that detects {design.target_mde_relative:.1%}" if design.meets_target
           else "the smallest MDE")
    console.print(f"chosen (*): {escape(', '.join(c.markets))} for {c.weeks} weeks, {why}")
    for n in design.notes:
        console.print(f"[dim]note: {escape(n)}[/]")
    if dropped:
        console.print(f"[dim]note: {len(dropped)} market(s) without the KPI's denominator in some pre-period week "
                      f"left out: {escape(', '.join(dropped[:10]))}[/]")


def geo_design_cmd(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    kpi: Annotated[str | None, typer.Option("--kpi", help="KPI to power the test on (default the primary KPI).")] = None,
    treated_count: Annotated[list[int] | None, typer.Option("--treated-count", "-k", help="Treated markets per "
                                                             "candidate set (repeatable; default 2 and 3).")] = None,
    weeks: Annotated[list[int] | None, typer.Option("--weeks", "-w", help="Test durations in weeks (repeatable; "
                                                     "default 4 and 8).")] = None,
    candidates: Annotated[int, typer.Option("--candidates", help="Candidate sets per treated count (all when "
                                             "there are fewer).")] = 100,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="A market that must not be treated "
                                                      "(repeatable); it stays a donor.")] = None,
    from_table: Annotated[list[str] | None, typer.Option("--from-table", help="Store table the markets are read "
                                                          "from (repeatable; default orders).")] = None,
    top: Annotated[int, typer.Option("--top", help="Rows of the ranking to print.")] = 10,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the candidate draws (default from the "
                                              "experiment's salt and name).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the ranking; store no assignments.")] = False,
    write: Annotated[bool, typer.Option("--write", help="Set the experiment keys in the program file (comments "
                                         "kept) instead of printing them.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Choose the treated markets and duration of a synthetic-control geo test by simulated power.

    For candidate sets of --treated-count markets (experiment.unit, e.g. region) and each
    --weeks duration, the demeaned synthetic control is backtested on the pre-period
    (experiment.pre_period_days before experiment.start): fake launches inside the history
    give the estimator's error with no effect, hence the minimum detectable effect at the
    program's alpha and power. Candidates are ranked by relative MDE, then by pre-period fit;
    the chosen one is the shortest duration whose MDE meets experiment.mde_relative (else the
    smallest MDE). Its markets are stored as the experiment's assignments (treated markets in
    'treatment', the others 'control'; re-running stores nothing new), and the experiment
    keys (design, unit, end, and placebo_groups = "matched_fit": the analysis compares the chosen
    set with placebo groups of like pre-period fit) are printed, or set in the program file with
    --write. The MDE is that of the backtests' time-placebo test; analyze's conformal interval and
    its group-permutation p-value are somewhat more conservative on a low-noise set (see the
    module notes).
    """
    import numpy as np

    from insightroi.experiments._assign import store_units, stored_arms
    from insightroi.experiments._common import CONTROL, TREATMENT
    from insightroi.experiments._design_analysis import market_panel
    from insightroi.experiments._geo import design_geo
    from insightroi.ingest import ingest_frame
    from insightroi.program import load_program

    prog = run_or_fail(load_program, program)
    e = prog.experiment
    k = run_or_fail(prog.kpi, kpi) if kpi else run_or_fail(prog.kpi, e.primary_kpi)
    with run_or_fail(open_store_ctx, store) as st:
        units = run_or_fail(store_units, st, prog.model_copy(update={"experiment": e.model_copy(
            update={"strata": []})}), tuple(from_table or ("orders",)))
        markets = list(units.ids)
        Y, _, pre_window = run_or_fail(market_panel, st, prog, k, markets)
        ok = np.all(np.isfinite(Y), axis=0)
        dropped = [m for m, good in zip(markets, ok) if not good]
        markets = [m for m, good in zip(markets, ok) if good]
        Y = Y[:, ok]
        unknown = sorted(set(exclude or ()) - set(markets))
        if unknown:
            fail(f"--exclude names markets not in the panel: {unknown}")
        eligible = [m for m in markets if m not in set(exclude or ())]
        design = run_or_fail(design_geo, Y, markets, treated_counts=tuple(treated_count or (2, 3)),
                             weeks=tuple(weeks or (4, 8)), alpha=e.alpha, power=e.power,
                             target_mde_relative=e.mde_relative, n_candidates=candidates,
                             eligible=eligible if exclude else None,
                             seed=geo_seed(prog) if seed is None else seed)
        treated = set(design.chosen.markets)
        existing = run_or_fail(stored_arms, st, e.name, e.unit)
        clash = sorted(m for m, a in existing.items() if m in set(markets)
                       and a != (TREATMENT if m in treated else CONTROL))
        written = duplicates = 0
        if not dry_run:
            if clash:
                fail(f"experiment {e.name!r} already stores other arms for {clash[:10]}; a stored arm never moves "
                     f"(rename experiment.name to store a new design, or use --dry-run)")
            rows = _assignment_rows(prog, markets, treated, existing)
            if rows.num_rows:
                rep = run_or_fail(ingest_frame, st, "assignments", rows, source="insightroi geo-design", program=prog)
                if rep.quarantined:
                    fail(f"{rep.quarantined} assignment row(s) were quarantined: " + "; ".join(rep.errors[:3]))
                written, duplicates = rep.landed, rep.duplicates
    keys = experiment_keys(prog, design, e.unit)
    snippet = toml_snippet(prog, design, e.unit)
    if write:
        path = Path(program)
        run_or_fail(_write_program, path, set_experiment_keys(path.read_text(encoding="utf-8"), keys))
    c = design.chosen
    if json_out:
        def row(x):
            return {"markets": list(x.markets), "weeks": x.weeks, "mde": x.mde, "mde_relative": x.mde_relative,
                    "sigma": x.sigma, "sigma_backtest": x.sigma_backtest, "bias": x.bias,
                    "backtest_power": x.backtest_power, "n_backtests": x.n_backtests, "pre_mspe": x.pre_mspe,
                    "imbalance": x.imbalance, "level": x.level}
        console.print_json(json.dumps({
            "experiment": e.name, "unit": e.unit, "kpi": k.name, "pre_window": [d.isoformat() for d in pre_window],
            "markets": len(markets), "dropped": dropped, "alpha": design.alpha, "power": design.power,
            "target_mde_relative": design.target_mde_relative, "meets_target": design.meets_target,
            "chosen": row(c), "ranked": [row(x) for x in design.ranked[:top]], "notes": list(design.notes),
            "written": written, "duplicates": duplicates, "dry_run": dry_run, "program_written": write,
            "experiment_keys": keys, "snippet": snippet,
        }, default=str))
        return
    _print(design, top, k.name, dropped)
    if dry_run:
        console.print("[yellow]dry run: no assignments stored[/]")
    else:
        console.print(f"stored {written:,} assignment row(s) for experiment {escape(e.name)}"
                      + (f" ({duplicates:,} already there)" if duplicates else "")
                      + (f"; {len(existing):,} were stored before" if existing and not written else ""))
    if write:
        console.print(f"set {', '.join(keys)} in [experiment] of {escape(str(program))}")
    else:
        console.print("Paste into the program file (or re-run with --write):")
        console.print(snippet, highlight=False, markup=False, soft_wrap=True)


def open_store_ctx(store: str | None):
    from insightroi.store import open_store

    return open_store(store_url(store))


def register(app: typer.Typer) -> None:
    app.command("geo-design")(geo_design_cmd)

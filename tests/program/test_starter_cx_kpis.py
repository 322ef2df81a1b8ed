"""The starter program's CX KPIs (issue 22: "the CX KPIs out of the box in the starter program"):
the commented block between ``# >>> CX KPIs`` and ``# <<< CX KPIs`` is valid as soon as it is
uncommented, every measure in it compiles, and the KPIs over the store's own tables run on a demo
world, where the resolution-time truth is known: tickets' handling hours are drawn from one
distribution under both policies (demo/_rows.py: lognormal, median 20 h), so the true effect on the
mean and the median resolution time is zero.

The block reads two tables of the user's own (``surveys``, ``customers``), so it ships commented
out: analyze refuses a KPI over a user table the store does not hold, and a fresh ``insightroi
init`` store holds none. The demo world writes both tables and runs the block active
(tests/demo/test_demo_cx_kpis.py checks its estimates against the planted truth)."""

from __future__ import annotations

import math

import pytest

from insightroi.demo._cx import activate_cx_block
from insightroi.experiments import analyze_experiment
from insightroi.metrics import describe_measures
from insightroi.pipeline import ingest_world
from insightroi.program import load_program, parse_program, starter_program_text
from insightroi.store import open_store

OWN_TABLES = ("star_rating_avg", "mean_resolution_hours", "median_resolution_hours")


def uncommented(text: str) -> str:
    head, rest = text.split("# >>> CX KPIs\n", 1)
    block, tail = rest.split("# <<< CX KPIs\n", 1)
    lines = [ln[2:] if ln.startswith("# ") else ln.removeprefix("#") for ln in block.splitlines()]
    return head + "\n".join(lines) + "\n" + tail


def test_the_block_parses_and_every_measure_compiles():
    shipped = parse_program(starter_program_text())
    prog = parse_program(uncommented(starter_program_text()))
    names = [k.name for k in prog.kpis]
    cx = ("nps_score", "csat_top2", *OWN_TABLES, "repeat_purchase_rate", "churn_90d")
    for k in cx:
        assert k in names and k not in [s.name for s in shipped.kpis]
    assert not shipped.tables
    defs = {m["name"]: m["definition"] for m in describe_measures(prog)}
    assert defs["median_resolution"].startswith("0.5 quantile of hours_between(opened_at, closed_at) over tickets")
    assert defs["repeat_buyers"] == ("count of rows of customers where "
                                     "days_between(first_order_at, repeat_order_at) <= 90")
    assert [t.name for t in prog.tables] == ["surveys", "customers"]
    # Every KPI runs under the starter's experiment: its tables carry the experiment unit's column.
    unit = prog.experiment.unit
    assert unit == "sku_family"
    for t in prog.tables:
        assert unit in t.columns, t.name
    # Per-customer KPIs say so: a claim about a family KPI does not take them as adjacent signals
    # (its pre-period covariates), where sparse answers per family-week would leave too few units.
    assert {k: prog.kpi(k).unit for k in cx} == {
        "nps_score": "customer", "csat_top2": "customer", "star_rating_avg": "sku_family",
        "mean_resolution_hours": "sku_family", "median_resolution_hours": "sku_family",
        "repeat_purchase_rate": "customer", "churn_90d": "customer"}
    # The demo runs exactly this block.
    demo = parse_program(activate_cx_block(starter_program_text()))
    assert (demo.tables, demo.measures, demo.kpis) == (prog.tables, prog.measures, prog.kpis)


def test_own_table_cx_kpis_run_on_the_demo_world_and_cover_a_zero_resolution_effect(demo_world, tmp_path):
    world = demo_world("tiny", 4)
    prog = load_program(world.program_path)  # the demo's program: the block active
    assert set(OWN_TABLES) <= {k.name for k in prog.kpis}
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        ingest_world(st, world, load_program(world.program_path))
        res = analyze_experiment(st, prog, kpis=list(OWN_TABLES), weekly=False)
        tickets = st.sql("SELECT median(epoch(closed_at) - epoch(opened_at)) / 3600 AS h FROM tickets").column(0)[0].as_py()
    for k in OWN_TABLES:
        r = res.results[k]
        assert math.isfinite(r.estimate) and r.se > 0, k
    # Ratings 1-5; the demo's reviews average between the negative (1.35) and the rest (4.35).
    stars = res.results["star_rating_avg"].extra
    assert 3.0 < stars["control_mean"] < 4.35 and 3.0 < stars["treatment_mean"] < 4.35
    for k in ("mean_resolution_hours", "median_resolution_hours"):
        lo, hi = res.results[k].ci
        assert lo < 0 < hi, (k, lo, hi)
    assert res.results["median_resolution_hours"].extra["control_mean"] == pytest.approx(tickets, rel=0.15)

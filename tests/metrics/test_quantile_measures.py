"""Quantile and capped measures ([[measures]] metric types, issue 22) on a real DuckDB store.

A user table ``cases`` (customer_id, opened_at, resolved_at) with customers as the randomized
units; resolution hours are gamma-distributed with a customer effect (rows of one customer are
correlated) and 30% shorter under treatment, with a heavy tail of a few very long cases.

- Median resolution hours (``aggregation = "quantile"``): the rows the metrics layer reads equal
  a pandas recomputation from the raw table; ``analyze_experiment`` gives exactly
  ``numpy.median(treatment rows) - numpy.median(control rows)`` and the standard error of
  :func:`insightroi.stats.quantile_effect` on those pandas rows, with the no-CUPED note.
- Capped means (``cap = 0.99``): the cap equals ``numpy.percentile`` of the window's values pooled
  over both arms, and the KPI's estimate equals a direct pandas computation on the clipped rows.
- Refusals name the measure and say what to do.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import numpy as np
import pandas as pd
import pytest

from helpers.cx_tables import CASE_COLUMNS, CASES_TABLE, CUSTOMER_AB, assign_units, create_user_table, two_month_program
from insightroi.errors import DataError, EstimationError, ProgramError
from insightroi.experiments import analyze_experiment, power_table
from insightroi.metrics import (
    block_measures_expr,
    describe_measures,
    measure_caps,
    measure_rows_expr,
    measure_specs,
    unit_metrics,
)
from insightroi.monitor import store_period_effects
from insightroi.program import parse_program, starter_program_text
from insightroi.stats import quantile_effect
from insightroi.store import open_store

CASES = CASES_TABLE + """
[[measures]]
name = "median_resolution"
table = "cases"
aggregation = "quantile"
quantile = 0.5
value = "hours_between(opened_at, resolved_at)"
filter = "resolved_at is not null"
unit = "hours"

[[measures]]
name = "capped_resolution"
table = "cases"
aggregation = "mean"
cap = 0.99
value = "hours_between(opened_at, resolved_at)"
filter = "resolved_at is not null"

[[measures]]
name = "capped_hours"
table = "cases"
aggregation = "sum"
cap = 0.95
value = "hours_between(opened_at, resolved_at)"

[[kpis]]
name = "median_resolution_hours"
layer = "business"
numerator = "median_resolution"
unit = "customer"
owner = "support"

[[kpis]]
name = "capped_mean_resolution_hours"
layer = "business"
numerator = "capped_resolution"
unit = "customer"
owner = "support"

[[kpis]]
name = "capped_hours_per_customer"
layer = "business"
numerator = "capped_hours"
unit = "customer"
owner = "support"
"""


def _program(extra: str = CASES, design: str = CUSTOMER_AB):
    return two_month_program(extra, design=design)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    prog = _program()
    e = prog.experiment
    rng = np.random.default_rng(22)
    n = 1000
    ids = np.array([f"c{i:04d}" for i in range(n)])
    arm = np.where(rng.random(n) < 0.5, "treatment", "control")
    launch = datetime(e.start.year, e.start.month, e.start.day)
    per = rng.poisson(2.5, n)
    cust = np.repeat(np.arange(n), per)
    m = cust.size
    # Opened from 30 days before launch to 70 days after: pre-period, window and after the end.
    opened = launch + pd.to_timedelta(rng.integers(-30 * 86400, 70 * 86400, m), unit="s")
    effect = np.exp(rng.normal(0, 0.5, n))[cust]
    hours = rng.gamma(2.0, 10.0, m) * effect * np.where(arm[cust] == "treatment", 0.7, 1.0)
    hours[rng.random(m) < 0.01] *= 50  # the heavy tail a cap is for
    cases = pd.DataFrame({"id": [f"k{i}" for i in range(m)], "customer_id": ids[cust], "opened_at": opened,
                          "resolved_at": opened + pd.to_timedelta(np.round(hours * 3600), unit="s")})
    cases.loc[rng.random(m) < 0.1, "resolved_at"] = pd.NaT
    # Cases of a customer outside the experiment never count.
    cases.loc[len(cases)] = {"id": "stray", "customer_id": "zzz", "opened_at": launch, "resolved_at": launch}
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('q') / 'q.duckdb'}")
    assign_units(st, e.name, ids, arm, launch)
    create_user_table(st, "cases", CASE_COLUMNS, cases)
    yield prog, st, cases, pd.Series(arm, index=ids)
    st.close()


def _window_hours(prog, cases, arms, resolved_only=True):
    e = prog.experiment
    ts = cases.opened_at
    d = cases[(ts >= pd.Timestamp(e.start)) & (ts < pd.Timestamp(e.end) + pd.Timedelta(days=1))
              & cases.customer_id.isin(arms.index)]
    if resolved_only:
        d = d.dropna(subset=["resolved_at"])
    return d.assign(hours=(d.resolved_at - d.opened_at).dt.total_seconds() / 3600,
                    arm=arms.reindex(d.customer_id).to_numpy())


def test_rows_equal_the_raw_table(world):
    prog, st, cases, arms = world
    got = measure_rows_expr(st, prog, "median_resolution").execute()
    want = _window_hours(prog, cases, arms)
    assert len(got) == len(want) > 1200
    key = ["unit_id", "arm", "value"]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.rename(columns={"customer_id": "unit_id", "hours": "value"})[key].sort_values(key).reset_index(drop=True)
    assert got.unit_id.tolist() == want.unit_id.tolist() and got.arm.tolist() == want.arm.tolist()
    np.testing.assert_allclose(got.value.to_numpy(), want.value.to_numpy(), rtol=1e-12)
    # The same expression translates to Spark SQL (no JVM needed).
    ibis.pyspark  # noqa: B018  (loads the backend's options)
    assert "SELECT" in ibis.to_sql(measure_rows_expr(st, prog, "median_resolution"), dialect="pyspark")


def test_median_resolution_end_to_end(world):
    prog, st, cases, arms = world
    res = analyze_experiment(st, prog, kpis=["median_resolution_hours", "capped_mean_resolution_hours"])
    r, rel = res.results["median_resolution_hours"], res.relative["median_resolution_hours"]
    rows = _window_hours(prog, cases, arms)
    c, t = rows[rows.arm == "control"], rows[rows.arm == "treatment"]
    assert r.method == rel.method == "quantile_delta"
    assert r.estimate == pytest.approx(np.median(t.hours) - np.median(c.hours), rel=1e-12)
    assert rel.estimate == pytest.approx(np.median(t.hours) / np.median(c.hours) - 1, rel=1e-12)
    direct = quantile_effect(c.hours, c.customer_id, t.hours, t.customer_id, alpha=prog.experiment.alpha)
    assert (r.se, *r.ci) == pytest.approx((direct.se, *direct.ci), rel=1e-12)
    assert r.extra["control_mean"] == pytest.approx(np.median(c.hours), rel=1e-12)
    assert r.extra["quantile"] == 0.5 and r.extra["numerator"] == "median_resolution"
    assert r.extra["control_rows"] == len(c) and r.n == rows.customer_id.nunique()
    # Simulated: 30% shorter under treatment; the interval sees it.
    assert -0.42 < rel.estimate < -0.18 and r.ci[1] < 0
    note = next(ch for ch in r.diagnostics if ch.name == "cuped")
    assert note.status == "skip" and note.message.startswith("CUPED does not apply to a quantile KPI")
    assert not any(ch.name == "pre_period_equivalence" for ch in r.diagnostics)
    # The report shape: a KPI row per result, JSON-able.
    assert {row["name"]: row["method"] for row in res.kpi_rows()}["median_resolution_hours"] == "quantile_delta"


def test_cap_is_numpys_percentile_of_the_pooled_window(world):
    prog, st, cases, arms = world
    caps = measure_caps(st, prog, ["capped_resolution", "capped_hours", "median_resolution", "orders"])
    assert set(caps) == {"capped_resolution", "capped_hours"}
    hours = _window_hours(prog, cases, arms).hours
    assert caps["capped_resolution"] == pytest.approx(np.percentile(hours, 99), rel=1e-12)
    assert caps["capped_hours"] == pytest.approx(np.percentile(hours, 95), rel=1e-12)
    assert caps["capped_resolution"] < hours.max() / 5  # the tail is cut
    # The capped rows, and a switchback's blocks, cap at the same value.
    rows = measure_rows_expr(st, prog, "capped_resolution").execute()
    assert rows.value.max() == pytest.approx(caps["capped_resolution"], rel=1e-12)
    assert (rows.value == rows.value.max()).sum() == (hours >= caps["capped_resolution"]).sum()
    blocks = block_measures_expr(st, prog, ["capped_hours"], caps=caps).execute()
    e = prog.experiment
    ts = cases.opened_at
    window = cases[(ts >= pd.Timestamp(e.start)) & (ts < pd.Timestamp(e.end) + pd.Timedelta(days=1))]
    want = ((window.resolved_at - window.opened_at).dt.total_seconds() / 3600).clip(upper=caps["capped_hours"])
    assert blocks.capped_hours.sum() == pytest.approx(want.sum(), rel=1e-12)


def test_capped_mean_equals_pandas(world):
    prog, st, cases, arms = world
    e = prog.experiment
    res = analyze_experiment(st, prog, kpis=["capped_mean_resolution_hours", "capped_hours_per_customer"],
                             cuped=False)
    rows = _window_hours(prog, cases, arms)
    cap = np.percentile(rows.hours, 99)
    clipped = rows.hours.clip(upper=cap)
    means = {a: clipped[rows.arm == a].sum() / (rows.arm == a).sum() for a in ("treatment", "control")}
    r = res.results["capped_mean_resolution_hours"]
    assert r.method == "ratio_delta"
    assert r.estimate == pytest.approx(means["treatment"] - means["control"], rel=1e-12)
    assert r.extra["caps"] == {"capped_resolution": pytest.approx(cap, rel=1e-12)}
    note = next(ch for ch in r.diagnostics if ch.name == "capped_values")
    assert note.details["cap"] == pytest.approx(cap, rel=1e-12) and note.details["percentile"] == 0.99
    assert "the 99th percentile of its values in the analysis window" in note.message
    # The uncapped mean differs: the cap did something.
    raw = {a: rows.hours[rows.arm == a].mean() for a in ("treatment", "control")}
    assert abs((raw["treatment"] - raw["control"]) - r.estimate) > 0.1
    # A capped sum per customer: unresolved cases add nothing; every assigned customer counts.
    all_rows = _window_hours(prog, cases, arms, resolved_only=False)
    cap95 = np.percentile(rows.hours, 95)
    per = all_rows.hours.clip(upper=cap95).fillna(0).groupby(all_rows.customer_id).sum()
    per = per.reindex(arms.index, fill_value=0.0)
    want = {a: per[arms == a].mean() for a in ("treatment", "control")}
    s = res.results["capped_hours_per_customer"]
    assert s.estimate == pytest.approx(want["treatment"] - want["control"], rel=1e-12)
    units = unit_metrics(st, prog, "capped_hours_per_customer").set_index("unit_id")
    np.testing.assert_allclose(units.num.to_numpy(), per.reindex(units.index).to_numpy(), rtol=1e-12)
    assert e.pre_period_days == 30


def test_describe_and_specs():
    prog = _program()
    specs = measure_specs(prog)
    assert (specs["median_resolution"].quantile, specs["capped_resolution"].cap) == (0.5, 0.99)
    assert specs["capped_resolution_count"].cap is None
    rows = {r["name"]: r["definition"] for r in describe_measures(prog)}
    assert rows["median_resolution"] == ("0.5 quantile of hours_between(opened_at, resolved_at) over cases where "
                                         "resolved_at is not null (rows pooled over each arm's units)")
    assert rows["capped_resolution"] == (
        "mean of hours_between(opened_at, resolved_at) over cases where resolved_at is not null, each value capped "
        "at the window's 99th percentile (a KPI divides capped_resolution by capped_resolution_count)")


TABLE = CASES_TABLE
Q = '\n[[measures]]\nname = "q"\ntable = "cases"\naggregation = "quantile"\nquantile = 0.5\nvalue = "hours_between(opened_at, resolved_at)"\n'


def _kpi(num, den=None):
    return (f'\n[[kpis]]\nname = "x"\nlayer = "business"\nnumerator = "{num}"\nowner = "cx"\nunit = "customer"\n'
            + (f'denominator = "{den}"\n' if den else ""))


@pytest.mark.parametrize(("extra", "expected"), [
    (Q.replace("quantile = 0.5\n", ""),
     "measures[0]: measure 'q': aggregation 'quantile' needs quantile (0 < quantile < 1; 0.5 for the median)"),
    (Q.replace("0.5", "1.0"), "measures[0].quantile: Input should be less than 1"),
    (Q.replace('"quantile"', '"sum"'), "measures[0]: measure 'q': quantile applies only to aggregation 'quantile', "
                                      "not 'sum'"),
    (Q.replace("quantile = 0.5", "quantile = 0.5\ncap = 0.9"),
     "measures[0]: measure 'q': cap applies to aggregation 'sum' or 'mean' (it caps each row's value), not 'quantile'"),
    (Q + _kpi("q", "units"),
     "(top level): kpis[7].denominator: a KPI over the quantile measure 'q' is the quantile of its rows in each arm "
     "and takes no denominator; leave it out"),
    (Q + _kpi("orders", "q"),
     "(top level): kpis[7].denominator: 'q' is a quantile measure; a quantile of rows is a KPI of its own and can "
     "only be a numerator"),
    (Q + _kpi("q") + '\n[[value_pools]]\nname = "faster"\nfunction = "support"\nkpi = "x"\n'
     'unit_value = { low = 1, mode = 2, high = 3 }\n',
     "(top level): value_pools[3].kpi 'x' is a quantile KPI; a shift in a quantile is not a volume the ROI can "
     "value: value a sum or mean KPI of the same measure"),
])
def test_refusals_at_parse_time(extra, expected):
    with pytest.raises(ProgramError) as info:
        parse_program(starter_program_text() + TABLE + extra, source="p.toml")
    assert f"  {expected}" in str(info.value).splitlines(), str(info.value)


def test_quantile_of_text_is_refused_at_plan_time():
    prog = parse_program(starter_program_text() + TABLE + Q.replace("hours_between(opened_at, resolved_at)",
                                                                    "customer_id"))
    with pytest.raises(ProgramError) as info:
        measure_specs(prog)
    assert str(info.value) == "measure 'q': value 'customer_id' is string; aggregation 'quantile' needs a number"


def test_quasi_design_refuses_a_quantile_kpi(world):
    _, st, *_ = world
    prog = _program(design='design = "did"\nunit = "customer"')
    with pytest.raises(EstimationError) as info:
        analyze_experiment(st, prog, kpis=["median_resolution_hours"])
    assert str(info.value) == ("KPI 'median_resolution_hours' is a quantile of rows ('median_resolution'); quantile "
                               "KPIs are analysed for randomized unit designs ['ab', 'cluster', 'holdout'], not 'did'")


def test_power_table_and_monitor_leave_a_quantile_kpi_out_with_the_reason(world):
    # Both model a ratio of per-unit totals: a quantile KPI gets a reason, never a figure.
    prog, st, *_ = world
    [row] = power_table(prog, st, kpis=["median_resolution_hours"])
    assert row["verdict"].startswith("quantile KPI: not in the power table")
    assert row["weeks_needed"] is None and row["mde_at_planned_end"] is None
    with pytest.raises(DataError) as info:
        store_period_effects(st, prog, "median_resolution_hours")
    assert "'median_resolution' is a quantile measure" in str(info.value)


def test_treated_volumes_from_the_analysis_totals_equal_the_stores_for_a_capped_measure(world):
    # run_analyze passes the analysis' per-unit totals to treated_volumes instead of a second
    # query; a capped measure is capped at the same percentile on both paths (and the cap binds).
    from insightroi.metrics import treated_volumes, volume_measures

    prog, st, cases, arms = world
    kpis = ["capped_hours_per_customer"]
    analysis = analyze_experiment(st, prog, kpis=kpis, volume_measures=volume_measures(prog, kpis))
    reused = treated_volumes(st, prog, window=analysis.window, kpis=kpis, totals=analysis.treated_totals)
    from_store = treated_volumes(st, prog, window=analysis.window, kpis=kpis)
    got, want = reused["capped_hours_per_customer"], from_store["capped_hours_per_customer"]
    assert got["numerator"] == pytest.approx(want["numerator"], rel=1e-12)
    assert got["denominator"] == want["denominator"] and got["units"] == want["units"]
    rows = _window_hours(prog, cases, arms, resolved_only=False)
    treated = rows.hours[rows.arm == "treatment"]
    winsorised = treated.clip(upper=np.percentile(rows.hours.dropna(), 95)).sum()
    assert winsorised < 0.95 * treated.sum()  # the cap binds
    assert got["numerator"] == pytest.approx(winsorised, rel=1e-9)

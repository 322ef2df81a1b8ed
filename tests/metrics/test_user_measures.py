"""User-defined measures ([[measures]], issue 22) on a real DuckDB store.

- A measure defined by hand equal to a built-in one (negative reviews from feedback with a filter,
  handle minutes as a sum) gives the same per-unit values, bit for bit, and the same arm
  statistics and analysis to 1e-12: both sides sum the same rows.
- NPS from a user table ``surveys`` (customer_id, answered_at, nps) as a ``mean`` of
  ``case when nps >= 9 then 1 when nps <= 6 then -1 else 0 end`` over customers: per-customer
  totals equal a pandas recomputation from the raw rows, and the effect and its variance equal a
  direct computation: the difference of the two arms' row means (numpy) and statsmodels' OLS
  with customer-clustered errors (CR0, ``use_correction=False``) times ``n / (n - 1)`` per arm,
  the sample-covariance factor of the delta method over the arm's ``n`` assigned customers
  (Deng, Knoblich & Lu 2018): algebraically the same number, so to 1e-10.
- Every refusal (program parse and plan time) gives its exact message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.cx_tables import (
    CASE_COLUMNS, CASES_TABLE, CUSTOMER_AB, SURVEY_COLUMNS, SURVEYS_TABLE, assign_units, create_user_table,
    two_month_program,
)
from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.cli import app
from insightroi.errors import ProgramError
from insightroi.experiments import analyze_experiment, kpi_effect, power_table
from insightroi.metrics import (
    compile_expression,
    arm_statistics,
    block_measures_expr,
    describe_measures,
    measure_specs,
    treated_volumes,
    unit_measures_expr,
    unit_metrics,
)
from insightroi.monitor import store_period_effects
from insightroi.program import parse_expression, parse_program, starter_program_text
from insightroi.store import TABLES, open_store

BY_HAND = """
[[measures]]
name = "bad_reviews"
table = "feedback"
aggregation = "count"
filter = "source = 'review' and rating <= 2"
description = "negative_reviews, written by hand"

[[measures]]
name = "minutes_handled"
table = "tickets"
aggregation = "sum"
value = "handle_minutes"
unit = "minutes"

[[measures]]
name = "buyers"
table = "orders"
aggregation = "count_distinct"
value = "customer_id"

[[measures]]
name = "daily_sessions"
table = "traffic"
aggregation = "sum"
value = "sessions"
description = "sessions, by hand (a date time column)"

[[measures]]
name = "big_orders"
table = "orders"
aggregation = "mean"
value = "case when revenue >= 50 then 1 else 0 end"

[[kpis]]
name = "bad_reviews_per_1000_orders"
layer = "business"
numerator = "bad_reviews"
denominator = "orders"
scale = 1000
owner = "product"

[[kpis]]
name = "minutes_per_ticket"
layer = "business"
numerator = "minutes_handled"
denominator = "tickets"
owner = "support"

[[kpis]]
name = "big_order_share"
layer = "business"
numerator = "big_orders"
owner = "finance"
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    prog = two_month_program(BY_HAND)
    tables = simulate_experiment_tables(prog, n_units=30, seed=5, orders_per_unit_day=2.0)
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('um') / 'm.duckdb'}")
    write_tables(st, tables)
    yield prog, st, tables
    st.close()


def test_by_hand_measures_equal_builtins_unit_by_unit(world):
    prog, st, tables = world
    got = unit_measures_expr(st, prog, ["bad_reviews", "negative_reviews", "minutes_handled", "handle_minutes",
                                        "buyers", "big_orders", "big_orders_count", "orders", "daily_sessions",
                                        "sessions"]).execute()
    got = got.set_index("unit_id").sort_index()
    assert len(got) == 30
    for mine, builtin in (("bad_reviews", "negative_reviews"), ("minutes_handled", "handle_minutes"),
                          ("daily_sessions", "sessions")):
        for suffix in ("", "_pre"):
            assert np.array_equal(got[mine + suffix].to_numpy(), got[builtin + suffix].to_numpy()), mine + suffix
    assert got.bad_reviews.sum() > 50 and got.minutes_handled.sum() > 1000  # the comparison compares something
    # Distinct buyers and the big-order mean, recomputed from the raw rows.
    e = prog.experiment
    o = tables["orders"]
    ts = pd.to_datetime(o.order_time)
    post = (ts >= pd.Timestamp(e.start)) & (ts < pd.Timestamp(e.end) + pd.Timedelta(days=1))
    pre = (ts >= pd.Timestamp(e.start) - pd.Timedelta(days=30)) & (ts < pd.Timestamp(e.start))
    for mask, suffix in ((post, ""), (pre, "_pre")):
        d = o[mask]
        buyers = d.groupby("sku_family").customer_id.nunique().reindex(got.index, fill_value=0)
        big = (d.revenue >= 50).groupby(d.sku_family).sum().reindex(got.index, fill_value=0)
        n = d.groupby("sku_family").size().reindex(got.index, fill_value=0)
        assert np.array_equal(got["buyers" + suffix].to_numpy(), buyers.to_numpy().astype(float))
        assert np.array_equal(got["big_orders" + suffix].to_numpy(), big.to_numpy().astype(float))
        assert np.array_equal(got["big_orders_count" + suffix].to_numpy(), n.to_numpy().astype(float))
        assert np.array_equal(got["orders" + suffix].to_numpy(), n.to_numpy().astype(float))
    # Distinct counts are per unit: a customer buying in two families counts in both.
    assert got.buyers.sum() > o[post].customer_id.nunique()


def test_by_hand_measure_gives_identical_statistics_and_analysis(world):
    prog, st, _ = world
    mine = arm_statistics(st, prog, "bad_reviews_per_1000_orders")
    builtin = arm_statistics(st, prog, "negative_reviews_per_1000_orders")
    assert set(mine) == set(builtin) == {("treatment",), ("control",)}
    for arm, s in mine.items():
        b = builtin[arm]
        assert s.n == b.n
        np.testing.assert_allclose(s.sums, b.sums, rtol=1e-12, atol=0)
        np.testing.assert_allclose(np.array(s.products), np.array(b.products), rtol=1e-12, atol=0)
    res = analyze_experiment(st, prog, kpis=["bad_reviews_per_1000_orders", "negative_reviews_per_1000_orders"],
                             weekly=False)
    a, b = res.results["bad_reviews_per_1000_orders"], res.results["negative_reviews_per_1000_orders"]
    assert a.method == b.method == "cuped_ratio"
    for field in ("estimate", "se", "p_value"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-12, abs=0), field
    assert res.relative["bad_reviews_per_1000_orders"].estimate == pytest.approx(
        res.relative["negative_reviews_per_1000_orders"].estimate, rel=1e-12)


def test_roi_volumes_and_power_table_read_user_measures(world):
    prog, st, _ = world
    vol = treated_volumes(st, prog)
    mine, builtin = vol["bad_reviews_per_1000_orders"], vol["negative_reviews_per_1000_orders"]
    assert (mine["numerator"], mine["denominator"], mine["units"]) == (
        builtin["numerator"], builtin["denominator"], builtin["units"])
    assert mine["numerator_measure"] == "bad_reviews" and builtin["numerator"] > 10
    assert vol["big_order_share"]["denominator_measure"] == "big_orders_count"
    rows = {r["kpi"]: r for r in power_table(prog, st, kpis=["bad_reviews_per_1000_orders",
                                                                "negative_reviews_per_1000_orders"])}
    a, b = rows["bad_reviews_per_1000_orders"], rows["negative_reviews_per_1000_orders"]
    assert a["baseline"] == pytest.approx(b["baseline"], rel=1e-12) and a["baseline"] > 0
    assert (a["weeks_needed"], a["weeks_needed_cuped"]) == (b["weeks_needed"], b["weeks_needed_cuped"])


def test_switchback_blocks_and_monitor_read_user_measures(world):
    prog, st, _ = world
    blocks = block_measures_expr(st, prog, ["bad_reviews", "negative_reviews"], switched_blocks=[3, 4],
                                 burn_in_hours=6).execute()
    assert blocks.negative_reviews.sum() > 20 and blocks.negative_reviews_burn.sum() > 0
    assert np.array_equal(blocks.bad_reviews.to_numpy(), blocks.negative_reviews.to_numpy())
    assert np.array_equal(blocks.bad_reviews_burn.to_numpy(), blocks.negative_reviews_burn.to_numpy())
    mine = store_period_effects(st, prog, "bad_reviews_per_1000_orders")
    builtin = store_period_effects(st, prog, "negative_reviews_per_1000_orders")
    assert len(mine) == len(builtin) == 3
    for a, b in zip(mine, builtin):
        assert (a.estimate, a.se) == pytest.approx((b.estimate, b.se), rel=1e-12)


# ---- NPS and resolution hours from user tables, customers as units ----------------------------------
SURVEYS = SURVEYS_TABLE + CASES_TABLE + """
[[measures]]
name = "nps"
table = "surveys"
aggregation = "mean"
value = "case when nps >= 9 then 1 when nps <= 6 then -1 else 0 end"
# A CASE is never null (an unanswered score falls to ELSE 0): the filter keeps such rows out of
# the mean, as SQL would.
filter = "nps is not null"
description = "promoters minus detractors"

[[measures]]
name = "resolution_hours"
table = "cases"
aggregation = "mean"
value = "hours_between(opened_at, resolved_at)"
filter = "resolved_at is not null"
unit = "hours"

[[kpis]]
name = "nps_score"
layer = "business"
numerator = "nps"
unit = "customer"
owner = "cx"
direction = "increase"

[[kpis]]
name = "mean_resolution_hours"
layer = "business"
numerator = "resolution_hours"
unit = "customer"
owner = "support"
"""


@pytest.fixture(scope="module")
def customers(tmp_path_factory):
    prog = two_month_program(SURVEYS, design=CUSTOMER_AB)
    e = prog.experiment
    rng = np.random.default_rng(22)
    n = 400
    ids = np.array([f"c{i:03d}" for i in range(n)])
    arm = np.where(rng.random(n) < 0.5, "treatment", "control")
    launch = datetime(e.start.year, e.start.month, e.start.day)
    first = launch - timedelta(days=30)
    rows = []
    for i in range(n):
        # 0, 1 or 2 answers in the window (clustered), 0 or 1 in the pre-period, a few after the end.
        k_post = rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2])
        shift = 0.8 if arm[i] == "treatment" else 0.0
        base = rng.normal(7.0, 1.5)
        for where, k, lo, days in (("post", k_post, launch, 62), ("pre", int(rng.random() < 0.5), first, 30),
                                   ("late", int(rng.random() < 0.1), launch + timedelta(days=70), 10)):
            for j in range(k):
                score = int(np.clip(np.round(base + (shift if where == "post" else 0) + rng.normal(0, 1.5)), 0, 10))
                when = lo + timedelta(seconds=int(rng.integers(0, days * 86400)))
                rows.append({"id": f"s{i}-{where}-{j}", "customer_id": ids[i], "answered_at": when,
                             "nps": None if rng.random() < 0.05 else score})
    surveys = pd.DataFrame(rows)
    surveys["nps"] = surveys.nps.astype("Int64")
    opened = launch + pd.to_timedelta(rng.integers(0, 62 * 86400, 300), unit="s")
    hours = rng.gamma(2.0, 10.0, 300) * np.where(arm[rng.integers(0, n, 300)] == "treatment", 0.8, 1.0)
    cases = pd.DataFrame({"id": [f"k{i}" for i in range(300)], "customer_id": ids[rng.integers(0, n, 300)],
                          "opened_at": opened, "resolved_at": opened + pd.to_timedelta(np.round(hours * 3600), unit="s")})
    cases.loc[rng.random(300) < 0.1, "resolved_at"] = pd.NaT
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('nps') / 'c.duckdb'}")
    assign_units(st, e.name, ids, arm, launch)
    create_user_table(st, "surveys", SURVEY_COLUMNS, surveys)
    create_user_table(st, "cases", CASE_COLUMNS, cases)
    yield prog, st, surveys, cases, pd.Series(arm, index=ids)
    st.close()


def _window_rows(df, time_col, e):
    ts = pd.to_datetime(df[time_col])
    return df[(ts >= pd.Timestamp(e.start)) & (ts < pd.Timestamp(e.end) + pd.Timedelta(days=1))]


def test_nps_unit_totals_equal_the_raw_rows(customers):
    prog, st, surveys, cases, arms = customers
    e = prog.experiment
    got = unit_metrics(st, prog, "nps_score").set_index("unit_id")
    assert list(got.index) == sorted(arms.index) and (got.arm == arms.loc[got.index]).all()
    for d, suffix in ((_window_rows(surveys, "answered_at", e), ""),
                      (surveys[(surveys.answered_at >= pd.Timestamp(e.start) - pd.Timedelta(days=30))
                               & (surveys.answered_at < pd.Timestamp(e.start))], "_pre")):
        d = d[d.nps.notna()]
        score = np.select([d.nps >= 9, d.nps <= 6], [1, -1], 0)
        num = pd.Series(score, index=d.index).groupby(d.customer_id).sum().reindex(got.index, fill_value=0)
        den = d.groupby("customer_id").size().reindex(got.index, fill_value=0)
        assert np.array_equal(got["num" + suffix].to_numpy(), num.to_numpy().astype(float))
        assert np.array_equal(got["den" + suffix].to_numpy(), den.to_numpy().astype(float))
    assert got.den.sum() > 300 and (got.den == 2).sum() > 40 and (got.den == 0).sum() > 80
    # Resolution hours: only resolved cases, exact to the second.
    hours = unit_metrics(st, prog, "mean_resolution_hours").set_index("unit_id")
    c = _window_rows(cases, "opened_at", e).dropna(subset=["resolved_at"])
    h = ((c.resolved_at - c.opened_at).dt.total_seconds() / 3600).groupby(c.customer_id).sum()
    np.testing.assert_allclose(hours.num.to_numpy(), h.reindex(hours.index, fill_value=0).to_numpy(), rtol=1e-12)
    assert hours.den.sum() == len(c) and len(c) < len(_window_rows(cases, "opened_at", e))


def test_nps_effect_and_variance_equal_statsmodels_clustered(customers):
    sm = pytest.importorskip("statsmodels.api")
    prog, st, surveys, _, arms = customers
    e = prog.experiment
    units = unit_metrics(st, prog, "nps_score")
    res, _ = kpi_effect(units, prog.kpi("nps_score"), alpha=e.alpha, cuped=False)
    assert res.method == "ratio_delta"
    d = _window_rows(surveys, "answered_at", e)
    d = d[d.nps.notna()]
    y = np.select([d.nps >= 9, d.nps <= 6], [1.0, -1.0], 0.0)
    arm = arms.loc[d.customer_id].to_numpy()
    means, var = {}, 0.0
    for a in ("treatment", "control"):
        ya, ga = y[arm == a], d.customer_id.to_numpy()[arm == a]
        fit = sm.OLS(ya, np.ones((ya.size, 1))).fit(cov_type="cluster",
                                                    cov_kwds={"groups": pd.factorize(ga)[0], "use_correction": False})
        means[a] = float(fit.params[0])
        n_units = int((arms == a).sum())  # every assigned customer is a unit, answering or not
        var += float(fit.bse[0]) ** 2 * n_units / (n_units - 1)
        assert means[a] == pytest.approx(ya.mean(), rel=1e-12)
    assert res.estimate == pytest.approx(means["treatment"] - means["control"], rel=1e-12)
    assert res.se ** 2 == pytest.approx(var, rel=1e-10)
    # The simulated shift is visible, and clustering matters: the iid row variance differs.
    assert res.estimate > 0.15 and res.p_value < 0.01
    iid = sum(y[arm == a].var(ddof=1) / (arm == a).sum() for a in ("treatment", "control"))
    assert abs(iid / var - 1) > 0.02
    # CUPED on the same measure's pre-period runs and keeps the estimate close.
    cuped, _ = kpi_effect(units, prog.kpi("nps_score"), alpha=e.alpha)
    assert cuped.method == "cuped_ratio" and abs(cuped.estimate - res.estimate) < 2 * res.se


def test_analyze_experiment_runs_a_customer_level_experiment_on_user_measures(customers):
    # Chain events carry no customer: a customer-level analysis must not read alerts per customer.
    prog, st, *_ = customers
    got = analyze_experiment(st, prog, kpis=["nps_score"], cuped=False)
    units = unit_metrics(st, prog, "nps_score")
    direct, _ = kpi_effect(units, prog.kpi("nps_score"), alpha=prog.experiment.alpha, cuped=False)
    assert got.results["nps_score"].estimate == pytest.approx(direct.estimate, rel=1e-12)
    assert got.results["nps_score"].se == pytest.approx(direct.se, rel=1e-12)
    contamination = next(c for c in got.checks if c.name == "exposure_contamination")
    assert contamination.details["control_units_exposed"] == 0


def test_a_declared_table_not_ingested_reads_as_empty(customers, tmp_path):
    # Declared but not loaded yet: no rows (its KPIs are not estimable; analyze names the table,
    # tests/metrics/test_missing_user_table.py), rather than an error that stops every KPI.
    prog, *_ = customers
    with open_store(f"duckdb:///{tmp_path / 'empty.duckdb'}") as st:
        df = unit_metrics(st, prog, "nps_score")
        assert "user_surveys" not in st.user_tables()
    # An empty store has no assigned units either: no rows, the KPI's columns present.
    assert len(df) == 0 and {"num", "den", "num_pre", "den_pre"} <= set(df.columns)


# ---- refusals -----------------------------------------------------------------------------------------
def _measure(name="m", table="feedback", aggregation="count", **fields) -> str:
    lines = [f'name = "{name}"', f'table = "{table}"', f'aggregation = "{aggregation}"']
    lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in fields.items()]
    return "\n[[measures]]\n" + "\n".join(lines) + "\n"


FEEDBACK_COLUMNS = ", ".join(TABLES["feedback"].columns)
SURVEY_COLUMN_LIST = ", ".join(SURVEY_COLUMNS)
ALLOWED = "coalesce, abs, least, greatest, round, lower, upper, hours_between, minutes_between, days_between"
SURVEY_TABLE = SURVEYS_TABLE + CASES_TABLE


@pytest.mark.parametrize(("extra", "expected"), [
    (_measure(filter="rating <= 2; drop table feedback"),
     "measures[0]: measure 'm': filter 'rating <= 2; drop table feedback': ';' is not allowed: one expression, "
     "not statements"),
    (_measure(filter="id in (select feedback_id from insights)"),
     "measures[0]: measure 'm': filter 'id in (select feedback_id from insights)': a subquery "
     "('id IN (SELECT feedback_id FROM insights)') is not allowed"),
    (_measure(aggregation="sum", value="exp(rating)"),
     f"measures[0]: measure 'm': value 'exp(rating)': function 'exp' is not allowed; allowed functions: {ALLOWED}"),
    (_measure(aggregation="sum", value="read_csv('/etc/passwd')"),
     f"measures[0]: measure 'm': value \"read_csv('/etc/passwd')\": function 'read_csv' is not allowed; "
     f"allowed functions: {ALLOWED}"),
    (_measure(filter="f.rating <= 2"),
     "measures[0]: measure 'm': filter 'f.rating <= 2': column 'f.rating' is not allowed: name a column of the "
     "measure's table, unqualified"),
    (_measure(aggregation="sum", value="cast(rating as double)"),
     f"measures[0]: measure 'm': value 'cast(rating as double)': function 'cast' is not allowed; "
     f"allowed functions: {ALLOWED}"),
    (_measure(value="rating"),
     "measures[0]: measure 'm': a count measure takes no value (it counts the rows that pass its filter); use "
     "aggregation 'sum' or 'count_distinct' with a value"),
    (_measure(aggregation="mean"), "measures[0]: measure 'm': aggregation 'mean' needs a value"),
    (_measure(aggregation="median", value="rating"),
     "measures[0].aggregation: Input should be 'count', 'sum', 'mean', 'count_distinct', 'quantile' or "
     "'time_to_first'"),
    (_measure(name="orders"), "measures[0].name: 'orders' is a built-in measure; give the measure another name"),
    (SURVEY_TABLE + _measure(table="surveys", aggregation="mean", value="npz"),
     f"(top level): measure 'm': value 'npz': unknown column 'npz' in table surveys; columns: {SURVEY_COLUMN_LIST}"),
    (SURVEY_TABLE + _measure(table="surveys", unit_column="cust"),
     f"(top level): measure 'm': unit_column 'cust' is not a column of table surveys; columns: {SURVEY_COLUMN_LIST}"),
    (SURVEY_TABLE + _measure(name="nps", table="surveys", aggregation="mean", value="nps")
     + '\n[[kpis]]\nname = "x"\nlayer = "business"\nnumerator = "orders"\ndenominator = "nps"\nowner = "cx"\n',
     "(top level): kpis[7].denominator: 'nps' is a mean measure; a mean is a ratio (nps / nps_count) and can only "
     "be a numerator"),
    (SURVEY_TABLE + _measure(name="nps", table="surveys", aggregation="mean", value="nps")
     + '\n[[kpis]]\nname = "x"\nlayer = "business"\nnumerator = "nps"\ndenominator = "units"\nowner = "cx"\n',
     "(top level): kpis[7].denominator: a KPI over the mean measure 'nps' divides by 'nps_count' (its rows with "
     "a value); leave the denominator out or write 'nps_count', not 'units'"),
])
def test_program_refusals_name_the_measure(extra, expected):
    with pytest.raises(ProgramError) as info:
        parse_program(starter_program_text() + extra, source="p.toml")
    assert f"  {expected}" in str(info.value).splitlines(), str(info.value)


@pytest.mark.parametrize(("extra", "expected"), [
    (_measure(filter="source = 'review' and ratin <= 2"),
     f"measure 'm': filter \"source = 'review' and ratin <= 2\": unknown column 'ratin' in table feedback; "
     f"columns: {FEEDBACK_COLUMNS}"),
    (_measure(filter="rating + 1"), "measure 'm': filter 'rating + 1' is float64, not a boolean condition"),
    (_measure(aggregation="sum", value="source"),
     "measure 'm': value 'source' is string; aggregation 'sum' needs a number or a boolean"),
    (_measure(aggregation="mean", value="hours_between(event_time, rating)"),
     "measure 'm': value 'hours_between(event_time, rating)': 'hours_between(event_time, rating)' does not "
     "type-check: hours_between needs date or timestamp arguments, got float64"),
    (_measure(table="insights"),
     "measure 'm': unknown table 'insights'; store tables: orders, feedback, tickets, refunds, traffic, "
     "chain_events; user tables ([[tables]]): none"),
    (_measure(time="rating"), "measure 'm': time column 'rating' of feedback is float64, not a date or timestamp"),
])
def test_plan_time_refusals_name_the_measure_and_column(extra, expected):
    prog = parse_program(starter_program_text() + extra)  # the store's columns are checked at plan time
    with pytest.raises(ProgramError) as info:
        measure_specs(prog)
    assert str(info.value) == expected


def test_plan_prints_measures_and_refuses_a_bad_one(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(starter_program_text() + BY_HAND, encoding="utf-8")
    url = f"duckdb:///{tmp_path / 'none.duckdb'}"
    out = CliRunner().invoke(app, ["plan", "--program", str(good), "--store", url])
    assert out.exit_code == 0, out.output
    assert "Measures defined in the program ([[measures]])" in out.output
    assert all(f"│ {name} " in out.output for name in ("bad_reviews", "minutes_handled", "buyers", "big_orders"))
    assert "count of rows of feedback where" in out.output
    rows = describe_measures(parse_program(good.read_text()))
    assert [(r["name"], r["definition"], r["time"]) for r in rows] == [
        ("bad_reviews", "count of rows of feedback where source = 'review' and rating <= 2", "event_time"),
        ("minutes_handled", "sum of handle_minutes over tickets", "opened_at"),
        ("buyers", "distinct customer_id in orders", "order_time"),
        ("daily_sessions", "sum of sessions over traffic", "date"),
        ("big_orders", "mean of case when revenue >= 50 then 1 else 0 end over orders (a KPI divides big_orders by "
                       "big_orders_count)", "order_time"),
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text(starter_program_text() + _measure(filter="ratin <= 2"), encoding="utf-8")
    out = CliRunner().invoke(app, ["plan", "--program", str(bad), "--store", url])
    assert out.exit_code == 1
    assert "measure 'm': filter 'ratin <= 2': unknown column 'ratin' in table feedback" in out.output


# ---- the grammar's semantics: each construct compiled to Ibis equals DuckDB evaluating the SQL ----
GRAMMAR_CASES = [
    "a + b * 2 - a / 4", "a % 3", "-b", "(a + 1) * (b - 1)",
    "case when a >= 5 then 'hi' when a is null then 'none' else 'lo' end",
    "case a when 1 then 10 when 5 then 50 else 0 end", "case when b > 0 then b end",
    "a in (1, 10)", "a not in (1, 10)", "b between -1 and 2.5", "b not between -1 and 2.5",
    "a is not null and not (b < 0)", "a is null or b is null", "a <> 5", "a != 5 and a = a",
    "lower(s) = 'review' or s like 'ch%'", "s ilike 'REV%'", "s not like '%e%'", "upper(s)",
    "coalesce(a, 0) + abs(b)", "coalesce(b)", "least(a, 3) + greatest(b, 0)", "round(b / 3, 2)", "round(b)",
    "true", "a > 2.5 and s in ('chat', 'review')",
]


@pytest.fixture(scope="module")
def grammar_table():
    import ibis

    df = pd.DataFrame({
        "a": pd.array([1, 5, None, 10, 2], dtype="Int64"),
        "b": [2.5, -1.0, 3.0, None, 0.0],
        "s": ["Review", "chat", None, "review", "email"],
        "t0": pd.to_datetime(["2025-07-01 00:00:00", "2025-07-01 10:30:00", "2025-07-02 00:00:00", None, "2025-07-03 23:59:59"]),
        "t1": pd.to_datetime(["2025-07-01 12:00:00", "2025-07-03 10:30:00", None, "2025-07-04 00:00:00", "2025-07-04 00:00:29"]),
    })
    return df, ibis.memtable(df)


@pytest.mark.parametrize("text", GRAMMAR_CASES)
def test_each_construct_means_what_duckdb_says(grammar_table, text):
    import duckdb

    df, t = grammar_table
    tree = parse_expression(text, list(df.columns), "g")
    got = t.select(v=compile_expression(tree, t)).execute().v.tolist()
    con = duckdb.connect()
    con.register("g", df)
    want = [r[0] for r in con.execute(f"SELECT {text} AS v FROM g").fetchall()]
    con.close()
    assert len(got) == len(want) == 5
    for g, w in zip(got, want):
        if w is None:
            assert g is None or g != g, (text, got, want)  # SQL null (pandas may show NaN / None)
        else:
            assert g == pytest.approx(w, rel=1e-12) if isinstance(w, float) else g == w, (text, got, want)


def test_time_helpers_and_spark_translation(grammar_table):
    import ibis

    df, t = grammar_table
    cols = list(df.columns)
    for fn, seconds in (("hours_between", 3600), ("minutes_between", 60), ("days_between", 86400)):
        got = t.select(v=compile_expression(parse_expression(f"{fn}(t0, t1)", cols), t)).execute().v
        want = (df.t1 - df.t0).dt.total_seconds() / seconds
        assert got.isna().tolist() == want.isna().tolist() == [False, False, True, True, False]
        np.testing.assert_allclose(got[want.notna()].to_numpy(float), want[want.notna()].to_numpy(), rtol=1e-12)
    # Every construct also translates to Spark SQL (the pyspark backend's compiler, no JVM).
    ibis.pyspark  # noqa: B018  (loads the backend's options)
    for text in [*GRAMMAR_CASES, "hours_between(t0, t1)"]:
        sql = ibis.to_sql(t.select(v=compile_expression(parse_expression(text, cols), t)), dialect="pyspark")
        assert "SELECT" in sql


# The starter program's commented CX block: tests/program/test_starter_cx_kpis.py.


README_EXAMPLE = '''
[[measures]]
name = "resolution_hours"
table = "tickets"
aggregation = "mean"
value = "hours_between(opened_at, closed_at)"
filter = "closed_at is not null and not deflected"
description = "hours from opening to closing a ticket a person handled"

[[kpis]]
name = "mean_resolution_hours"
layer = "business"
numerator = "resolution_hours"     # divided by resolution_hours_count (tickets with a value)
owner = "support"
'''


def test_readme_example_is_a_valid_measure():
    # The example proposed for the README's "Using it on your data" (the lead pastes it there).
    prog = parse_program(starter_program_text() + README_EXAMPLE)
    k = prog.kpi("mean_resolution_hours")
    assert (k.numerator, k.denominator) == ("resolution_hours", "resolution_hours_count")
    specs = measure_specs(prog)
    assert (specs["resolution_hours"].table, specs["resolution_hours"].time) == ("tickets", "opened_at")


def test_a_declaration_that_no_longer_matches_the_stored_table_is_named(customers):
    """The program file changed after ingest (nps now a float, a new column): a measure over that
    table failed deep in Ibis ('does not type-check'); it names the columns, as ingest does."""
    from helpers.cx_tables import table_toml

    from insightroi.errors import DataError

    _, st, *_ = customers
    changed = SURVEYS.replace(SURVEYS_TABLE, table_toml(
        "surveys", {**SURVEY_COLUMNS, "nps": "float64", "channel": "string"}, time_column="answered_at"))
    prog = two_month_program(changed, design=CUSTOMER_AB)
    with pytest.raises(DataError) as info:
        unit_metrics(st, prog, "nps_score")
    assert str(info.value).startswith(
        "user table 'user_surveys' is stored with other columns than the program file declares: "
        "nps (declared float64, stored int64); channel (declared string, not stored) (read by measure(s) ['nps'])")

"""metrics/: per-unit KPI numbers from a real DuckDB file equal a pandas recomputation.

Exact equality (to 1e-9) is expected: both sides count the same rows.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.experiments import analyze_experiment
from insightroi.metrics import (
    arm_statistics,
    measure_totals,
    treated_volumes,
    unit_measures_expr,
    unit_metrics,
    unit_metrics_expr,
    volume_measures,
)
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

EXCLUDE = (date(2025, 7, 20), date(2025, 7, 23))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    text = starter_program_text().replace("end = 2026-03-31", "end = 2025-08-31").replace(
        "exclude_windows = []", f"exclude_windows = [[{EXCLUDE[0]}, {EXCLUDE[1]}]]")
    prog = parse_program(text)
    tables = simulate_experiment_tables(prog, n_units=30, seed=3, orders_per_unit_day=2.0)
    fb = tables["feedback"]
    rng = np.random.default_rng(0)
    pick = fb.id.to_numpy()[rng.random(len(fb)) < 0.3]
    old = fb.id.to_numpy()[rng.random(len(fb)) < 0.5]
    tables["insights"] = pd.DataFrame({
        "id": [f"i{i}" for i in range(len(pick))] + [f"j{i}" for i in range(len(old))],
        "feedback_id": list(pick) + list(old), "task": "topic",
        "label": ["product_defect"] * len(pick) + ["product_defect"] * len(old),
        "model_version": ["v2"] * len(pick) + ["v1"] * len(old),
        "created_at": [datetime(2025, 9, 2)] * len(pick) + [datetime(2025, 9, 1)] * len(old),
    })
    path = tmp_path_factory.mktemp("store") / "m.duckdb"
    st = open_store(f"duckdb:///{path}")
    write_tables(st, tables)
    yield prog, st, tables, pick
    st.close()


def _in(ts, lo, hi):
    ts = pd.to_datetime(ts)
    out = (ts >= pd.Timestamp(lo)) & (ts < pd.Timestamp(hi) + pd.Timedelta(days=1))
    return out & ~((ts >= pd.Timestamp(EXCLUDE[0])) & (ts < pd.Timestamp(EXCLUDE[1]) + pd.Timedelta(days=1)))


def _pandas_unit(tables, prog, filt, table, time_col, lo, hi, value=None):
    d = tables[table]
    d = d[_in(d[time_col], lo, hi) & filt(d)]
    v = d[value] if value else pd.Series(1.0, index=d.index)
    return v.groupby(d.sku_family).sum()


def test_unit_metrics_equal_pandas(world):
    prog, st, tables, pick = world
    e = prog.experiment
    lo, hi = e.start, e.end
    pre_lo, pre_hi = e.start - timedelta(days=e.pre_period_days), e.start - timedelta(days=1)
    got = unit_metrics(st, prog, "negative_reviews_per_1000_orders").set_index("unit_id")
    fams = tables["assignments"].unit_id
    neg = lambda d: (d.source == "review") & (d.rating <= 2)  # noqa: E731
    allrows = lambda d: pd.Series(True, index=d.index)  # noqa: E731
    exp_num = _pandas_unit(tables, prog, neg, "feedback", "event_time", lo, hi).reindex(fams, fill_value=0)
    exp_den = _pandas_unit(tables, prog, allrows, "orders", "order_time", lo, hi).reindex(fams, fill_value=0)
    exp_num_pre = _pandas_unit(tables, prog, neg, "feedback", "event_time", pre_lo, pre_hi).reindex(fams, fill_value=0)
    assert len(got) == len(fams)
    assert np.allclose(got.loc[fams, "num"], exp_num.to_numpy())
    assert np.allclose(got.loc[fams, "den"], exp_den.to_numpy())
    assert np.allclose(got.loc[fams, "num_pre"], exp_num_pre.to_numpy())
    arms = tables["assignments"].set_index("unit_id").arm
    assert (got.loc[fams, "arm"] == arms.loc[fams]).all()
    # The exclusion window really removed rows.
    o = tables["orders"]
    ts = pd.to_datetime(o.order_time)
    assert ((ts >= pd.Timestamp(EXCLUDE[0])) & (ts < pd.Timestamp(EXCLUDE[1]))).sum() > 0


def test_value_and_insight_measures(world):
    prog, st, tables, pick = world
    e = prog.experiment
    got = unit_metrics(st, prog, "revenue_per_sku_family").set_index("unit_id")
    fams = tables["assignments"].unit_id
    rev = _pandas_unit(tables, prog, lambda d: pd.Series(True, index=d.index), "orders", "order_time", e.start, e.end,
                       value="revenue").reindex(fams, fill_value=0)
    assert np.allclose(got.loc[fams, "num"], rev.to_numpy())
    assert (got.den == 1.0).all()
    # defect mentions: only the latest model version's labels count.
    dm = unit_metrics(st, prog, "defect_mentions_per_1000_feedback").set_index("unit_id")
    flagged = set(pick)
    exp = _pandas_unit(tables, prog, lambda d: d.id.isin(flagged), "feedback", "event_time", e.start, e.end)
    assert np.allclose(dm.loc[fams, "num"], exp.reindex(fams, fill_value=0).to_numpy())
    conv = unit_metrics(st, prog, "conversion_rate").set_index("unit_id")
    tr = tables["traffic"]
    d = tr[(pd.to_datetime(tr.date) >= pd.Timestamp(e.start)) & (pd.to_datetime(tr.date) <= pd.Timestamp(e.end))
           & ~((pd.to_datetime(tr.date) >= pd.Timestamp(EXCLUDE[0])) & (pd.to_datetime(tr.date) <= pd.Timestamp(EXCLUDE[1])))]
    assert np.allclose(conv.loc[fams, "den"], d.groupby("sku_family").sessions.sum().reindex(fams, fill_value=0).to_numpy())


def test_segments_and_arm_statistics(world):
    prog, st, tables, pick = world
    e = prog.experiment
    by = unit_metrics(st, prog, "tickets_per_1000_orders", by=("region",))
    t = tables["tickets"]
    t = t[_in(t.opened_at, e.start, e.end)]
    exp = t.groupby(["sku_family", "region"]).size()
    got = by.set_index(["unit_id", "region"]).num
    assert np.allclose(got.reindex(exp.index, fill_value=0).to_numpy(), exp.to_numpy())
    stats = arm_statistics(st, prog, "tickets_per_1000_orders")
    um = unit_metrics(st, prog, "tickets_per_1000_orders")
    for arm in ("treatment", "control"):
        d = um[um.arm == arm]
        s = stats[(arm,)]
        assert s.n == len(d)
        assert s.sums[0] == pytest.approx(d.num.sum()) and s.sums[1] == pytest.approx(d.den.sum())
        assert s.products[0][1] == pytest.approx((d.num * d.den).sum())
        assert s.products[2][3] == pytest.approx((d.num_pre * d.den_pre).sum())


def test_treated_volumes_and_totals(world):
    prog, st, tables, pick = world
    e = prog.experiment
    vol = treated_volumes(st, prog)
    treated = set(tables["assignments"].unit_id[tables["assignments"].arm == "treatment"])
    o = tables["orders"]
    o = o[_in(o.order_time, e.start, e.end) & o.sku_family.isin(treated)]
    assert vol["negative_reviews_per_1000_orders"]["denominator"] == len(o)
    assert vol["revenue_per_sku_family"]["denominator"] == len(treated)
    f = tables["feedback"]
    assert vol["_feedback"]["feedback"] == (_in(f.event_time, e.start, e.end) & f.sku_family.isin(treated)).sum()
    tot = measure_totals(st, prog, ["orders"], arm=None)
    o_all = tables["orders"]
    assert tot["orders"] == _in(o_all.order_time, e.start, e.end).sum()


def test_treated_volumes_of_some_kpis_and_from_the_analysis_totals(world):
    # The ROI projection counts only the priced KPIs, and run_analyze reuses the analysis'
    # per-unit totals: both must give the volumes the full store query gives.
    prog, st, _, _ = world
    full = treated_volumes(st, prog)
    some = treated_volumes(st, prog, kpis=["tickets_per_1000_orders"])
    assert set(some) == {"tickets_per_1000_orders", "_feedback"}
    assert some["tickets_per_1000_orders"] == full["tickets_per_1000_orders"]
    assert some["_feedback"] == full["_feedback"]
    analysis = analyze_experiment(st, prog, volume_measures=volume_measures(prog))
    reused = treated_volumes(st, prog, window=analysis.window, totals=analysis.treated_totals)
    assert reused.keys() == full.keys()
    for name, v in full.items():
        for field, x in v.items():
            assert reused[name][field] == (pytest.approx(x, rel=1e-12) if isinstance(x, float) else x), (name, field)
    # Totals that lack a needed measure are not used: the store is read instead.
    partial = treated_volumes(st, prog, totals={"units": analysis.treated_totals["units"]})
    assert {k: v["denominator"] for k, v in partial.items() if k != "_feedback"} == \
        {k: v["denominator"] for k, v in full.items() if k != "_feedback"}


def test_two_insight_measures_from_one_table_in_one_pass(world):
    # Regression: the second insight join used to invalidate the first measure's flag expression.
    prog, st, *_ = world
    both = unit_measures_expr(st, prog, ["negative_feedback", "defect_mentions", "feedback"]).execute()
    alone = {m: unit_measures_expr(st, prog, [m, "feedback"]).execute().set_index("unit_id")[m]
             for m in ("negative_feedback", "defect_mentions")}
    both = both.set_index("unit_id")
    assert both["defect_mentions"].sum() > 0
    for m, series in alone.items():
        pd.testing.assert_series_equal(both[m].sort_index(), series.sort_index(), check_names=False)


def test_expression_is_backend_neutral_ibis(world):
    prog, st, *_ = world
    expr = unit_measures_expr(st, prog, ["orders", "negative_reviews", "tickets"], by=("week",))
    df = expr.execute()
    assert (df.week >= 0).all() and {"orders", "negative_reviews", "tickets"} <= set(df.columns)


def test_compiles_for_databricks_without_a_connection(world):
    prog, *_ = world
    from insightroi.store import UnboundStore

    ub = UnboundStore("databricks")
    for kpi in ("negative_reviews_per_1000_orders", "defect_mentions_per_1000_feedback", "conversion_rate"):
        sql = ub.compile(unit_metrics_expr(ub, prog, kpi, by=("week",)))
        assert "GROUP BY" in sql.upper() and "assignments" in sql


@pytest.mark.slow
@pytest.mark.spark
def test_same_numbers_on_pyspark(world, tmp_path):
    pytest.importorskip("pyspark")
    prog, st, tables, pick = world
    from insightroi.store import copy_store

    spark = open_store(f"pyspark:///{tmp_path / 'wh'}")
    try:
        copy_store(st, spark, ["orders", "feedback", "assignments", "insights"])
        for kpi in ("negative_reviews_per_1000_orders", "defect_mentions_per_1000_feedback"):
            a = unit_metrics(st, prog, kpi)
            b = unit_metrics(spark, prog, kpi)
            pd.testing.assert_frame_equal(a.drop(columns="n_arms"), b.drop(columns="n_arms"), check_dtype=False)
    finally:
        spark.close()

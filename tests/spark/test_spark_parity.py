"""Spark parity: the demo world measured on DuckDB and on local Spark gives the same numbers.

One Spark session (a JVM takes about a minute to start on a 2-core machine) serves every test in
this file. The tiny demo world is ingested into DuckDB and classified there; every table but
``insights`` is copied to Spark, where :func:`classify_spark` writes the insights as a Spark job.
Then the Spark store must give the same insights (ids, labels, confidences), the same sufficient
statistics for every KPI, the same treated volumes, the same KPI effects and the same decision
chain. Tolerance 1e-9 relative: both engines sum the same float64 values, only in a different
order (the measured differences are ~1e-15).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from insightroi.chain import chain_summary  # noqa: E402
from insightroi.experiments import analyze_experiment  # noqa: E402
from insightroi.insights import build_models, classify_store  # noqa: E402
from insightroi.insights._spark import classify_spark  # noqa: E402
from insightroi.metrics import arm_statistics, treated_volumes, unit_measures_expr  # noqa: E402
from insightroi.pipeline import ingest_world  # noqa: E402
from insightroi.program import Program, load_program  # noqa: E402
from insightroi.store import TABLES, copy_store, open_store  # noqa: E402

pytestmark = [pytest.mark.spark, pytest.mark.slow]
REL = 1e-9


@pytest.fixture(scope="module")
def stores(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("spark_parity")
    world = demo_world("tiny", 11)
    program = load_program(world.program_path)
    duck = open_store(f"duckdb:///{root / 'd.duckdb'}")
    ingest_world(duck, world, program)
    classify_store(duck, program)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = open_store(f"pyspark:///{root / 'warehouse'}?spark.ui.showConsoleProgress=false")
    # The demo's own user tables (the CX surveys and customers) too: its KPIs read them.
    copy_store(duck, spark, [*(t for t in TABLES if t != "insights"), *duck.user_tables()])
    written = classify_spark(spark, program)
    yield program, duck, spark, written
    duck.close()
    spark.close()


def _close(a, b, what):
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        assert (a is None and b is None) or (math.isnan(a) and math.isnan(b)), what
        return
    assert a == pytest.approx(b, rel=REL, abs=1e-12), f"{what}: duckdb {a!r} vs spark {b!r}"


def _insights(store):
    cols = ["id", "feedback_id", "task", "label", "score", "confidence", "evidence", "method", "model_version"]
    return store.table("insights").select(*cols).to_pandas().sort_values("id").reset_index(drop=True)


def test_classify_spark_matches_classify_store(stores):
    program, duck, spark, written = stores
    a, b = _insights(duck), _insights(spark)
    assert written == len(a) == 3 * duck.count("feedback") > 0
    assert (a.id.to_numpy() == b.id.to_numpy()).all()
    for c in ("feedback_id", "task", "label", "method", "model_version", "evidence"):
        assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
    for c in ("score", "confidence"):
        pd.testing.assert_series_equal(a[c], b[c], rtol=1e-12, atol=1e-12)
    assert set(a.model_version) == set(build_models(program).versions.values())
    # Nothing left to do for this model version: a re-run writes nothing.
    assert classify_spark(spark, program) == 0
    assert spark.count("insights") == len(a)


def test_sufficient_statistics_equal(stores):
    program, duck, spark, _ = stores
    for kpi in program.kpis:
        sa, sb = arm_statistics(duck, program, kpi.name), arm_statistics(spark, program, kpi.name)
        assert set(sa) == set(sb) == {("treatment",), ("control",)}, kpi.name
        for arm in sa:
            x, y = sa[arm], sb[arm]
            assert x.n == y.n > 0
            for i in range(4):
                _close(x.sums[i], y.sums[i], f"{kpi.name} {arm} sum[{i}]")
                for j in range(4):
                    _close(x.products[i][j], y.products[i][j], f"{kpi.name} {arm} prod[{i}][{j}]")
    # Something was actually counted (the comparison is not between two sets of zeros).
    neg = arm_statistics(duck, program, program.kpis[0].name)
    assert neg[("control",)].sums[0] > 0 and neg[("control",)].sums[1] > 0


def test_treated_volumes_equal(stores):
    program, duck, spark, _ = stores
    va, vb = treated_volumes(duck, program), treated_volumes(spark, program)
    assert set(va) == set(vb)
    for k in va:
        for f, x in va[k].items():
            if isinstance(x, (int, float)):
                _close(float(x), float(vb[k][f]), f"volumes {k}.{f}")
            else:
                assert x == vb[k][f]
    assert va["_feedback"]["feedback"] > 0


def test_kpi_effects_equal(stores):
    program, duck, spark, _ = stores
    ra, rb = analyze_experiment(duck, program), analyze_experiment(spark, program)
    assert (ra.n_treatment, ra.n_control) == (rb.n_treatment, rb.n_control)
    assert set(ra.results) == set(rb.results) == {k.name for k in program.kpis}
    for name in ra.results:
        for a, b in ((ra.results[name], rb.results[name]), (ra.relative[name], rb.relative[name])):
            for f in ("estimate", "se", "p_value"):
                _close(getattr(a, f), getattr(b, f), f"{name}.{f}")
            _close(a.ci[0], b.ci[0], f"{name}.ci_low")
            _close(a.ci[1], b.ci[1], f"{name}.ci_high")
            assert a.n == b.n
            assert [c.status for c in a.diagnostics] == [c.status for c in b.diagnostics]
    assert [c.status for c in ra.checks] == [c.status for c in rb.checks]


def test_chain_summary_equal(stores):
    program, duck, spark, _ = stores
    owners = {t.topic: t.owner for t in program.taxonomy}
    sa, sb = chain_summary(duck, owners=owners), chain_summary(spark, owners=owners)
    assert sa["funnel"]["alerts"] > 0
    assert sa == sb


def test_user_defined_measures_equal(stores):
    # [[measures]] compile to Ibis expressions, not SQL text: the same definitions on both engines.
    program, duck, spark, _ = stores
    prog = Program.model_validate({**program.model_dump(exclude_unset=True, by_alias=True), "measures": [
        *program.model_dump(exclude_unset=True, by_alias=True)["measures"],
        {"name": "bad_reviews", "table": "feedback", "aggregation": "count",
         "filter": "source = 'review' and rating <= 2"},
        {"name": "buyers", "table": "orders", "aggregation": "count_distinct", "value": "customer_id"},
        {"name": "big_order_revenue", "table": "orders", "aggregation": "sum", "value": "revenue",
         "filter": "revenue between 50 and 10000 and coalesce(segment, 'none') not in ('none', '')"},
        {"name": "days_to_refund", "table": "refunds", "aggregation": "time_to_first", "filter": "amount > 0"},
        {"name": "repeat_sellers", "table": "orders", "aggregation": "count", "per_unit": ">= 10"},
    ]})
    names = ["bad_reviews", "buyers", "big_order_revenue", "days_to_refund", "repeat_sellers"]
    d = unit_measures_expr(duck, prog, names).execute().sort_values("unit_id").reset_index(drop=True)
    s = unit_measures_expr(spark, prog, names).execute().sort_values("unit_id").reset_index(drop=True)
    assert list(d.unit_id) == list(s.unit_id) and len(d) > 10
    for col in [c for c in d.columns if c.split("_pre")[0] in names]:
        assert d[col].sum() > 0, col
        for a, b in zip(d[col], s[col]):
            _close(float(a), float(b), col)


def test_a_warehouse_table_is_read_in_place_on_spark_as_on_duckdb(stores, tmp_path):
    # [[tables]] source: Spark reads a table its warehouse already holds, DuckDB a Parquet file;
    # neither is ingested, and a sum over them equals the built-in revenue measure of the same rows.
    program, duck, spark, _ = stores
    raw = (duck.table("orders").select("id", "sku_family", "order_time", "revenue").to_pandas()
           .rename(columns={"order_time": "ordered_at", "revenue": "amount"}))
    spark.con._session.createDataFrame(raw).write.saveAsTable("crm_orders_raw")
    raw.to_parquet(tmp_path / "crm_orders.parquet")

    def declared(source):
        return Program.model_validate({**program.model_dump(exclude_unset=True, by_alias=True), "tables": [
            *program.model_dump(exclude_unset=True, by_alias=True)["tables"],
            {"name": "crm_orders", "columns": {"id": "string", "sku_family": "string", "ordered_at": "timestamp",
                                               "amount": "float64"},
             "key": "id", "time_column": "ordered_at", "source": source}], "measures": [
            *program.model_dump(exclude_unset=True, by_alias=True)["measures"],
            {"name": "crm_revenue", "table": "crm_orders", "aggregation": "sum", "value": "amount"}]})

    names = ["crm_revenue", "revenue"]
    d = unit_measures_expr(duck, declared(str(tmp_path / "crm_orders.parquet")), names).execute()
    s = unit_measures_expr(spark, declared("crm_orders_raw"), names).execute()
    d, s = (x.sort_values("unit_id").reset_index(drop=True) for x in (d, s))
    assert list(d.unit_id) == list(s.unit_id) and d.crm_revenue.sum() > 0
    for frame in (d, s):
        np.testing.assert_allclose(frame.crm_revenue, frame.revenue, rtol=1e-12)
        np.testing.assert_allclose(frame.crm_revenue_pre, frame.revenue_pre, rtol=1e-12)
    np.testing.assert_allclose(d.crm_revenue, s.crm_revenue, rtol=1e-9)
    assert spark.source_of("user_crm_orders") == "crm_orders_raw"

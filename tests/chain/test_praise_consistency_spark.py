"""The praise rule of the chain measures (a regular expression over the JSON payload) on local
Spark: the same store copied from DuckDB gives the same alert_adoption_rate measures."""

from __future__ import annotations

import os

import pandas as pd
import pytest

pytest.importorskip("pyspark")

from test_praise_consistency import PROGRAM, WINDOW, assignment_rows, chain_rows  # noqa: E402

from insightroi.chain._links import praise_event  # noqa: E402
from insightroi.metrics import unit_metrics  # noqa: E402
from insightroi.program import PRAISE_OWNER  # noqa: E402
from insightroi.store import copy_store, open_store  # noqa: E402

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_spark_leaves_out_the_same_praise_alerts(tmp_path):
    duck = open_store(f"duckdb:///{tmp_path / 'd.duckdb'}")
    with duck.transaction():
        duck.append("chain_events", pd.DataFrame(chain_rows()))
        duck.append("assignments", pd.DataFrame(assignment_rows()))
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = open_store(f"pyspark:///{tmp_path / 'warehouse'}?spark.ui.showConsoleProgress=false")
    try:
        copy_store(duck, spark, ["chain_events", "assignments"])
        ev = spark.table("chain_events")
        assert sorted(ev.filter(praise_event(ev)).select("id").execute()["id"]) == [
            "praise-0", "praise-0-acknowledged", "praise-0-action_taken", "praise-1", "praise-2"]
        got = unit_metrics(spark, PROGRAM, "alert_adoption_rate", window=WINDOW)
        assert {r.unit_id: (float(r.num), float(r.den)) for r in got.itertuples()} == {
            "logistics": (3.0, 4.0), "support": (1.0, 2.0), PRAISE_OWNER: (0.0, 0.0)}
    finally:
        spark.close()
        duck.close()

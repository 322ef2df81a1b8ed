"""A ``[[tables]]`` entry with ``source`` is read in place (issue 22: "on Spark/Databricks a registered
warehouse table is read in place"): on DuckDB from a Parquet file or a table the database already
holds, as a view with the declared columns; the same measure gives the same figures as over an
ingested copy. Spark's warehouse table: tests/spark/test_spark_parity.py."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from insightroi.errors import DataError, ProgramError
from insightroi.experiments import analyze_experiment
from insightroi.ingest import ingest_frame
from insightroi.privacy import resolve_retention
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

TABLE = """
[[tables]]
name = "surveys"
columns = {{ id = "string", customer_id = "string", answered_at = "timestamp", score = "int64" }}
key = "id"
time_column = "answered_at"
id_columns = ["customer_id"]
{source}

[[measures]]
name = "score"
table = "surveys"
aggregation = "mean"
value = "score"

[[kpis]]
name = "mean_score"
layer = "business"
numerator = "score"
unit = "customer"
owner = "cx"
direction = "increase"
"""


def _program(source: str = ""):
    text = (starter_program_text().replace("end = 2026-03-31", "end = 2025-08-31")
            .replace('design = "cluster"\nunit = "sku_family"', 'design = "ab"\nunit = "customer"'))
    return parse_program(text + TABLE.format(source=source))


def _world(seed: int = 5, n: int = 200):
    rng = np.random.default_rng(seed)
    ids = [f"C{i:04d}" for i in range(n)]
    arm = np.where(rng.random(n) < 0.5, "treatment", "control")
    assignments = pd.DataFrame({"id": [f"a{i}" for i in range(n)], "experiment": "theme-alerts-2025",
                                "unit_type": "customer", "unit_id": ids, "arm": arm,
                                "assigned_at": datetime(2025, 7, 1)})
    cust = rng.integers(0, n, 3 * n)
    surveys = pd.DataFrame({
        "id": [f"s{i}" for i in range(cust.size)], "customer_id": np.array(ids)[cust],
        "answered_at": datetime(2025, 7, 1) + pd.to_timedelta(rng.integers(0, 60 * 86400, cust.size), unit="s"),
        "score": rng.integers(0, 11, cust.size) + (arm[cust] == "treatment"),
    })
    return assignments, surveys


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("inplace")
    assignments, surveys = _world()
    surveys.to_parquet(root / "surveys.parquet")
    ingested = open_store(f"duckdb:///{root / 'ingested.duckdb'}")
    ingested.append("assignments", assignments)
    ingest_frame(ingested, "user_surveys", surveys, program=_program())
    in_place = open_store(f"duckdb:///{root / 'in_place.duckdb'}")
    in_place.append("assignments", assignments)
    in_place.sql("CREATE TABLE crm_surveys AS SELECT * FROM read_parquet(?)", [str(root / "surveys.parquet")])
    yield root, ingested, in_place
    ingested.close()
    in_place.close()


@pytest.mark.parametrize("source", ["parquet", "table"])
def test_a_source_is_read_in_place_with_the_figures_of_an_ingested_copy(stores, source):
    root, ingested, in_place = stores
    src = str(root / "surveys.parquet") if source == "parquet" else "crm_surveys"
    prog = _program(f'source = "{src}"')
    want = analyze_experiment(ingested, _program(), kpis=["mean_score"], cuped=False, weekly=False).results["mean_score"]
    got = analyze_experiment(in_place, prog, kpis=["mean_score"], cuped=False, weekly=False).results["mean_score"]
    assert (got.estimate, got.se) == pytest.approx((want.estimate, want.se), rel=1e-12)
    assert got.estimate == pytest.approx(1.0, abs=0.3)  # the simulated +1 point
    # Nothing was copied: user_surveys is a view over the source, with the declared types.
    kind = in_place.sql("SELECT table_type FROM information_schema.tables WHERE table_name = 'user_surveys'")
    assert kind.column(0).to_pylist() == ["VIEW"]
    assert in_place.source_of("user_surveys") == src


def test_in_place_tables_are_not_ingested_retained_or_missing_silently(stores):
    root, _, in_place = stores
    prog = _program('source = "crm_surveys"')
    with pytest.raises(ValueError, match="read in place from 'crm_surveys'"):
        ingest_frame(in_place, "user_surveys", _world()[1], program=prog)
    with pytest.raises(ProgramError, match="retention is the warehouse's"):
        resolve_retention(parse_program(starter_program_text() + TABLE.format(source='source = "crm_surveys"')
                                        + "\n[retention]\nsurveys = 30\n"))
    bad = _program('source = "no_such_table"')
    with pytest.raises(DataError, match="cannot read its source 'no_such_table' in place"):
        analyze_experiment(in_place, bad, kpis=["mean_score"], cuped=False, weekly=False)

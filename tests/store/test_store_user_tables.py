"""User tables in the store (issue 22): ``user_<name>`` created from a program's declaration,
checked against it on every later use, never migrated, beside ours without touching the schema
version; appends, counts and copies like our own tables. Real DuckDB files."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pytest

from insightroi.errors import StoreError
from insightroi.program import UserTable
from insightroi.store import SCHEMA_VERSION, TABLES, UnboundStore, copy_store, open_store, user_table_spec

SURVEYS = UserTable(
    name="surveys",
    columns={"survey_id": "string", "customer_id": "string", "answered_at": "timestamp", "nps": "int64",
             "comment": "string"},
    key="survey_id", time_column="answered_at", required=["nps"], text_columns=["comment"],
    id_columns=["customer_id"],
)


def test_spec_of_a_user_table():
    spec = user_table_spec(SURVEYS)
    assert spec.name == "user_surveys"
    assert list(spec.columns) == ["survey_id", "customer_id", "answered_at", "nps", "comment", "ingested_at", "batch_id"]
    assert spec.columns["ingested_at"] == "timestamp" and spec.columns["batch_id"] == "string"
    assert (spec.key, spec.required, spec.time_column) == ("survey_id", ("survey_id", "nps"), "answered_at")
    assert (spec.text_columns, spec.id_columns, spec.ingestible) == (("comment",), ("customer_id",), True)
    assert "user_surveys" not in TABLES
    bad = SURVEYS.model_copy(update={"columns": {**SURVEYS.columns, "batch_id": "string", "rowid": "int64"}})
    with pytest.raises(StoreError, match=r"column name\(s\) 'batch_id', 'rowid' are reserved"):
        user_table_spec(bad)


def test_created_beside_ours_without_changing_the_schema_version(tmp_path):
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with open_store(url) as st:
        versions = st.sql("SELECT count(*) AS n FROM _schema_version").to_pylist()
        st.ensure_table(user_table_spec(SURVEYS))
        with st.transaction():
            n = st.append("user_surveys", pa.table({"survey_id": ["a", "b"], "nps": [9, 3],
                                                    "answered_at": [datetime(2025, 3, 1)] * 2}))
        assert n == 2 and st.count("user_surveys") == 2
        assert st.schema_version() == SCHEMA_VERSION
        assert st.sql("SELECT count(*) AS n FROM _schema_version").to_pylist() == versions
        with pytest.raises(StoreError, match="no columns"):
            st.append("user_surveys", pa.table({"survey_id": ["c"], "bogus": [1]}))
    # Another process (no program at hand) still reads and appends by the stored columns.
    with open_store(url) as st:
        assert st.user_tables() == ["user_surveys"]
        assert list(st.spec("user_surveys").columns) == list(user_table_spec(SURVEYS).columns)
        st.append("user_surveys", pa.table({"survey_id": ["c"], "nps": [7]}))
        assert st.table("user_surveys").count().execute() == 3
        assert st.schema_version() == SCHEMA_VERSION
        with pytest.raises(KeyError, match="user_surveys"):
            st.table("user_nope")


def test_columns_changed_after_data_landed_is_an_error_naming_table_and_columns(tmp_path):
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        st.ensure_table(user_table_spec(SURVEYS))
        st.append("user_surveys", pa.table({"survey_id": ["a"], "nps": [9]}))
        cols = {k: v for k, v in SURVEYS.columns.items() if k != "comment"}
        changed = SURVEYS.model_copy(update={"columns": {**cols, "nps": "float64", "channel": "string"},
                                             "text_columns": []})
        with pytest.raises(StoreError) as err:
            st.ensure_table(user_table_spec(changed))
        assert str(err.value) == (
            "user table 'user_surveys' holds 1 row(s) stored with other columns than declared: declared but not "
            "stored: channel (string); stored but not declared: comment (string); type changed: nps (stored int64, "
            "declared float64). User tables are not migrated: declare the columns as stored, or move the data away "
            "first (e.g. ALTER TABLE \"user_surveys\" RENAME TO \"user_surveys_old\" in DuckDB)")
        assert st.count("user_surveys") == 1  # nothing was touched
        # The same columns in another order are the same table; appends follow the stored order.
        reordered = SURVEYS.model_copy(update={"columns": dict(reversed(list(SURVEYS.columns.items())))})
        assert list(st.ensure_table(user_table_spec(reordered)).columns)[:2] == ["survey_id", "customer_id"]
        st.append("user_surveys", pa.table({"nps": [4], "survey_id": ["b"]}))
        assert st.sql("SELECT survey_id, nps FROM user_surveys ORDER BY 1").to_pylist() == [
            {"survey_id": "a", "nps": 9}, {"survey_id": "b", "nps": 4}]


def test_an_empty_user_table_is_created_again_with_the_new_columns(tmp_path):
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        st.ensure_table(user_table_spec(SURVEYS))
        fewer = SURVEYS.model_copy(update={"columns": {"survey_id": "string", "nps": "float64"}, "time_column": None,
                                           "text_columns": [], "id_columns": []})
        st.ensure_table(user_table_spec(fewer))
        assert st.spec("user_surveys").columns == {"survey_id": "string", "nps": "float64",
                                                   "ingested_at": "timestamp", "batch_id": "string"}
        assert list(st.table("user_surveys").columns) == ["survey_id", "nps", "ingested_at", "batch_id"]


def test_table_expressions_are_reused_until_the_schema_changes(tmp_path):
    # A held store answers table() from memory (Ibis asks DuckDB for the schema each time); every
    # way a schema changes through the store must drop what it remembered.
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        st.migrate()
        assert st.table("feedback") is st.table("feedback")
        st.ensure_table(user_table_spec(SURVEYS))
        before = st.table("user_surveys")
        assert "nps" in before.columns and st.table("user_surveys") is before
        fewer = SURVEYS.model_copy(update={"columns": {"survey_id": "string", "score": "float64"}, "time_column": None,
                                           "text_columns": [], "id_columns": [], "required": []})
        st.ensure_table(user_table_spec(fewer))
        assert list(st.table("user_surveys").columns) == ["survey_id", "score", "ingested_at", "batch_id"]
        st.sql('ALTER TABLE "user_surveys" ADD COLUMN extra INTEGER', fetch=False)
        assert "extra" in st.table("user_surveys").columns
        with pytest.raises(RuntimeError), st.transaction():
            st.ensure_table(user_table_spec(SURVEYS.model_copy(update={"name": "later"})))
            assert "nps" in st.table("user_later").columns
            raise RuntimeError("roll the batch back")
        with pytest.raises(KeyError, match="user_later"):
            st.table("user_later")


def test_only_user_tables_go_through_ensure_table(tmp_path):
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        with pytest.raises(StoreError, match="'orders' is not a user table"):
            st.ensure_table(TABLES["orders"])


def test_a_detached_store_and_copy_store_carry_user_tables(tmp_path):
    src_url, dst_url = f"duckdb:///{tmp_path / 'a.duckdb'}", f"duckdb:///{tmp_path / 'b.duckdb'}"
    with open_store(src_url) as st:
        st.ensure_table(user_table_spec(SURVEYS))
        st.append("user_surveys", pa.table({"survey_id": ["a", "b"], "nps": [1, 2]}))
    server = open_store(src_url, hold=False)
    try:
        with server.attached():
            assert server.user_tables() == ["user_surveys"]
            assert server.count("user_surveys") == 2
    finally:
        server.close()
    with open_store(src_url) as a, open_store(dst_url) as b:
        copied = copy_store(a, b)
        assert copied["user_surveys"] == 2 and copied["orders"] == 0
        assert b.sql("SELECT survey_id, nps FROM user_surveys ORDER BY 1").to_pylist() == [
            {"survey_id": "a", "nps": 1}, {"survey_id": "b", "nps": 2}]


def test_unbound_store_compiles_over_a_declared_user_table():
    ub = UnboundStore("databricks")
    ub.ensure_table(user_table_spec(SURVEYS))
    t = ub.table("user_surveys")
    sql = ub.compile(t.filter(t.nps >= 9).count())
    assert "user_surveys" in sql and "nps" in sql
    with pytest.raises(KeyError, match="user_surveys"):
        ub.table("user_other")


@pytest.mark.spark
@pytest.mark.slow
def test_spark_store_creates_checks_and_finds_user_tables_in_its_warehouse(tmp_path):
    pytest.importorskip("pyspark")
    import pyarrow.parquet as pq

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    url = f"pyspark:///{tmp_path / 'warehouse'}"
    st = open_store(url)
    # An earlier Spark test in this process made the session, and its warehouse is the one used.
    warehouse = Path(urlparse(st.con._session.conf.get("spark.sql.warehouse.dir")).path)
    try:
        st.ensure_table(user_table_spec(SURVEYS))
        st.append("user_surveys", pa.table({"survey_id": ["a", "b"], "nps": [9, 3],
                                            "answered_at": [datetime(2025, 3, 1)] * 2}))
        assert st.count("user_surveys") == 2
        assert st.table("user_surveys").filter(st.table("user_surveys").nps > 5).count().execute() == 1
        changed = SURVEYS.model_copy(update={"columns": {**SURVEYS.columns, "nps": "float64"}})
        with pytest.raises(StoreError, match=r"'user_surveys' holds 2 row\(s\).*type changed: nps \(stored int64, "
                                             r"declared float64\)"):
            st.ensure_table(user_table_spec(changed))
        # What a new process finds: a warehouse folder of Parquet files the in-memory catalog does
        # not know (written here by hand), and the empty folder of a table that never got rows.
        (warehouse / "user_crm").mkdir()
        pq.write_table(pa.table({"account": ["x", "y", "z"], "seats": pa.array([1, 2, 3], pa.int64())}),
                       warehouse / "user_crm" / "part-00000.parquet")
        (warehouse / "user_empty").mkdir()
        st = open_store(url)  # the same session: its warehouse folders are registered again
        assert st.user_tables() == ["user_crm", "user_surveys"]
        assert st.spec("user_crm").columns == {"account": "string", "seats": "int64"}
        assert st.count("user_crm") == 3
        empty = UserTable(name="empty", columns={"k": "string"}, key="k")
        st.ensure_table(user_table_spec(empty))
        st.append("user_empty", pa.table({"k": ["only"]}))
        assert st.count("user_empty") == 1
        assert st.schema_version() == SCHEMA_VERSION
    finally:
        st.close()

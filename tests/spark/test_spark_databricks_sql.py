"""Databricks without a workspace: the metrics and chain aggregations compile to Databricks SQL.

No JVM and no network. Every query the KPI statistics (``arm_statistics`` for each KPI of the
starter program, ``treated_volumes``) and the decision-chain summary (``chain_summary``) send to
the backend is captured on an :class:`UnboundStore` and checked: sqlglot parses it in the
Databricks dialect and regenerating it round-trips to the same tree; identifiers are quoted
with backticks; no DuckDB-only function or syntax is left in it. The same checker flags the
DuckDB compilation of the same expression, so it is not vacuous.
"""

from __future__ import annotations

import re

import ibis.expr.types as ir
import pandas as pd
import pytest
import sqlglot

from insightroi.chain import alert_chains, chain_summary, linked_events
from insightroi.errors import StoreError
from insightroi.metrics import arm_statistics, treated_volumes, unit_measures_expr
from insightroi.program import MEASURES, parse_program, starter_program_text
from insightroi.store import UnboundStore, open_store

# Functions and syntax DuckDB accepts that Databricks SQL does not (Databricks spells argmax
# MAX_BY, epoch seconds UNIX_TIMESTAMP, lists ARRAY, ...).
_DUCKDB_ONLY = re.compile(
    r"\b(ARG_MAX|ARG_MIN|ARGMAX|ARGMIN|LIST_\w+|LIST_VALUE|STRUCT_PACK|EPOCH|EPOCH_MS|STRFTIME|STRPTIME|"
    r"REGEXP_MATCHES|QUANTILE_CONT|QUANTILE_DISC|TRY_STRPTIME|TODAY|ARRAY_LENGTH|GEN_RANDOM_UUID)\s*\(|::",
    re.I,
)


def _problems(sql: str) -> list[str]:
    out = [f"DuckDB-only: {m.group(0)}" for m in _DUCKDB_ONLY.finditer(sql)]
    # A double quote inside a string literal (a regular expression over JSON) is not an identifier.
    if '"' in re.sub(r"'(?:[^'\\]|\\.|'')*'", "''", sql):
        out.append("double-quoted identifier (Databricks quotes with backticks)")
    if "`" not in sql:
        out.append("no backtick-quoted identifiers")
    tree = sqlglot.parse_one(sql, read="databricks")
    again = tree.sql(dialect="databricks")
    if sqlglot.parse_one(again, read="databricks") != tree:
        out.append("does not round-trip through sqlglot's Databricks dialect")
    return out


@pytest.fixture(scope="module")
def program():
    return parse_program(starter_program_text())


@pytest.fixture()
def captured(monkeypatch):
    """Every query the library runs, compiled for Databricks instead of executed."""
    store = UnboundStore("databricks")
    queries: list[str] = []

    def fake_execute(self, *args, **kwargs):
        queries.append(store.compile(self))
        if isinstance(self, ir.Table):
            # measure_totals reads row 0 of its one-row aggregate; everything else takes empty frames.
            rows = 1 if "_n" in self.columns else 0
            return pd.DataFrame({c: [0.0] * rows for c in self.columns})
        if isinstance(self, ir.Column):
            return pd.Series([], dtype=object)
        return 0

    monkeypatch.setattr(ir.Expr, "execute", fake_execute)
    return store, queries


def test_kpi_statistics_compile_to_databricks_sql(captured, program):
    store, queries = captured
    for kpi in program.kpis:
        assert arm_statistics(store, program, kpi.name) == {}
    treated_volumes(store, program)
    assert len(queries) == len(program.kpis) + 1
    for sql in queries:
        assert _problems(sql) == [], sql[:400]
    joined = "\n".join(queries)
    # The pieces a Databricks warehouse must see: the arms' first assignment, the window filter.
    assert "MIN_BY(" in joined and "`assignments`" in joined and "`order_time`" in joined


def test_chain_summary_compiles_to_databricks_sql(captured):
    store, queries = captured
    chain_summary(store)
    assert len(queries) >= 3
    for sql in queries:
        assert _problems(sql) == [], sql[:400]
    for expr in (alert_chains(store), linked_events(store)):
        sql = store.compile(expr)
        assert "ROW_NUMBER() OVER" in sql and _problems(sql) == []


def test_all_measures_weekly_compile_and_checker_flags_duckdb(program):
    store = UnboundStore("databricks")
    # Every base measure except the second insight-flag measure (see the report: two insight
    # measures from the same table in one call hit an Ibis relation error in metrics).
    measures = sorted(m for m in MEASURES if m != "negative_feedback")
    expr = unit_measures_expr(store, program, measures, by=("week",))
    sql = store.compile(expr)
    assert _problems(sql) == []
    assert "UNIX_TIMESTAMP(" in sql.upper() and "MAX_BY(" in sql.upper()
    duck = UnboundStore("duckdb").compile(unit_measures_expr(UnboundStore("duckdb"), program, measures, by=("week",)))
    assert any("DuckDB-only" in p or "double-quoted" in p for p in _problems(duck))


@pytest.mark.parametrize(
    "url",
    [
        "databricks://adb-123.azuredatabricks.net/main/insightroi",  # no http_path
        "databricks://adb-123.azuredatabricks.net/main?http_path=/sql/1.0/warehouses/abc",  # no schema
        "databricks:///main/insightroi?http_path=/sql/1.0/warehouses/abc",  # no host
    ],
)
def test_malformed_databricks_url_says_what_is_expected(url, monkeypatch):
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-not-used")
    with pytest.raises(StoreError, match=r"expected databricks://<workspace-host>/<catalog>/<schema>\?http_path="):
        open_store(url)


def test_missing_token_is_a_clear_error_and_never_in_the_url(monkeypatch):
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    url = "databricks://adb-123.azuredatabricks.net/main/insightroi?http_path=/sql/1.0/warehouses/abc"
    with pytest.raises(StoreError, match="set DATABRICKS_TOKEN") as info:
        open_store(url)
    assert url in str(info.value)

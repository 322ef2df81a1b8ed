"""The program file and the store: the contracts every other stage builds on."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from insightroi.errors import ProgramError, StoreError, check_option
from insightroi.program import parse_program, starter_program_text
from insightroi.stats import Check, Result
from insightroi.store import SCHEMA_VERSION, TABLES, duckdb_file, open_store


def test_starter_program_is_valid_and_complete():
    prog = parse_program(starter_program_text())
    assert prog.experiment.primary_kpi == "negative_reviews_per_1000_orders"
    assert {k.layer for k in prog.kpis} == {"model", "workflow", "business"}
    assert any(not p.hard for p in prog.value_pools), "the starter shows a soft value pool"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('denominator = "orders"', 'denominator = "orderz"', "kpis[0].denominator: unknown measure 'orderz'"),
        ('layer = "business"', 'layer = "finance"', "kpis[0].layer: Input should be 'model', 'workflow' or 'business'"),
        ('primary_kpi = "negative_reviews_per_1000_orders"', 'primary_kpi = "nope"',
         "experiment: experiment.primary_kpi 'nope' is not a KPI"),
        ('unit_value = { low = 4.0, mode = 6.5, high = 9.0 }', 'unit_value = { low = 9.0, mode = 6.5, high = 4.0 }',
         "value_pools[0].unit_value: need low <= mode <= high"),
        ('timezone = "UTC"', 'timezone = "Mars/Olympus"', "program.timezone: unknown time zone 'Mars/Olympus'"),
        ('horizon_months = 12', 'horizon_months = 12\nsurprise = 1', "program.surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_program_names_the_key(old, new, expected):
    text = starter_program_text()
    assert old in text
    with pytest.raises(ProgramError) as info:
        parse_program(text.replace(old, new, 1), source="insightroi.toml")
    assert "insightroi.toml: invalid program file" in str(info.value)
    # The cross-reference check is a model-level validator, so pydantic reports it at the top level.
    assert expected.split(": ", 1)[-1] in str(info.value)
    if not expected.startswith("experiment:"):
        assert expected.split(": ", 1)[0] in str(info.value)


def test_bad_toml_is_reported_with_source():
    with pytest.raises(ProgramError, match="x.toml: not valid TOML"):
        parse_program("[program\n", source="x.toml")


def test_check_option_message_follows_sklearn_template():
    with pytest.raises(ValueError, match=r"The 'method' parameter must be one of \['a', 'b'\]. Got 'c' instead."):
        check_option("method", "c", ["a", "b"])


def test_store_creates_schema_appends_atomically_and_reopens(tmp_path):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    with open_store(url) as st:
        assert st.schema_version() == SCHEMA_VERSION
        assert set(TABLES) <= set(st.con.list_tables())
        with st.transaction():
            st.append("orders", pa.table({"id": ["o1", "o2"], "revenue": [10.0, 12.5]}))
        with pytest.raises(RuntimeError):
            with st.transaction():
                st.append("orders", pa.table({"id": ["o3"], "revenue": [1.0]}))
                raise RuntimeError("crash mid-batch")
        assert st.count("orders") == 2, "the failed batch left nothing behind"
        with pytest.raises(StoreError, match="no columns"):
            st.append("orders", pa.table({"id": ["x"], "bogus": [1]}))
    with open_store(url) as st:
        assert st.count("orders") == 2
        assert st.schema_version() == SCHEMA_VERSION


def test_store_refuses_newer_schema(tmp_path):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    with open_store(url) as st:
        st.con.con.execute("INSERT INTO _schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match="newer than this insightroi understands"):
        open_store(url)


def test_duckdb_url_query_sets_duckdb_settings(tmp_path):
    url = f"duckdb:///{tmp_path / 'capped.duckdb'}?memory_limit=1GB&threads=1"
    with open_store(url) as st:
        limit, threads = st.con.con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()
        assert limit == "953.6 MiB" and int(threads) == 1
        assert st.path == tmp_path / "capped.duckdb"  # the query is not part of the file name
    assert duckdb_file(url) == tmp_path / "capped.duckdb"
    assert duckdb_file("duckdb:///rel/x.duckdb") == Path("rel/x.duckdb") and duckdb_file("duckdb://:memory:") is None
    with pytest.raises(StoreError, match="no_such_setting"):
        open_store(f"duckdb:///{tmp_path / 'other.duckdb'}?no_such_setting=3")


def test_unknown_scheme():
    with pytest.raises(StoreError, match="unknown store scheme 'mysql'"):
        open_store("mysql://x")


def test_results_round_trip(tmp_path):
    r = Result(1.5, 0.5, (0.52, 2.48), 0.0027, "welch_t", 200, metric="m",
               diagnostics=(Check("srm", "pass", "ok", p_value=0.4),))
    with open_store(f"duckdb:///{tmp_path}/s.duckdb") as st:
        st.save_result("experiment", "m", r.to_dict())
        st.save_result("experiment", "m", r.to_dict())  # replaces, does not duplicate
        assert st.count("results") == 1
        back = Result.from_dict(st.load_result("experiment:m"))
    assert back == r
    assert "[1] srm: PASS - ok" in r.summary()
    assert "<ol class=\"notes\">" in r.summary("html")
    assert r.to_frame().loc[0, "ci_high"] == 2.48


def test_plan_sees_no_store_behind_a_url_with_settings(tmp_path):
    # The query (DuckDB settings) is not part of the file name: without the file, plan says so.
    from typer.testing import CliRunner

    from insightroi.cli import app

    (tmp_path / "insightroi.toml").write_text(starter_program_text())
    url = f"duckdb:///{tmp_path / 'none.duckdb'}?threads=1"
    out = CliRunner().invoke(app, ["plan", "--store", url, "--program", str(tmp_path / "insightroi.toml")])
    assert out.exit_code == 0, out.output
    assert "No store yet" in out.output and not (tmp_path / "none.duckdb").exists()

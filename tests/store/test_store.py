"""The store: schema, atomic appends, settings in the URL, results that round-trip."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from insightroi.errors import StoreError
from insightroi.program import starter_program_text
from insightroi.stats import Check, Result
from insightroi.store import SCHEMA_VERSION, TABLES, duckdb_file, open_store


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


def test_duckdb_store_without_a_memory_limit_gets_a_fifth_of_the_machine(tmp_path, monkeypatch):
    # DuckDB's own default (80% of RAM) let the 100M-order pipeline reach 11.1 GiB on 24 GiB.
    from insightroi.store import _store

    monkeypatch.setattr(_store, "machine_memory_bytes", lambda: 10 * 2**30)
    with open_store(f"duckdb:///{tmp_path / 'a.duckdb'}") as st:
        assert st.con.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "2.0 GiB"
    with open_store("duckdb://:memory:") as st:
        assert st.con.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "2.0 GiB"
    # A small machine still gets 1 GiB; a limit in the URL wins; an unreadable machine: DuckDB's.
    monkeypatch.setattr(_store, "machine_memory_bytes", lambda: 2 * 2**30)
    assert _store.default_duckdb_memory_limit() == "1024MiB"
    with open_store(f"duckdb:///{tmp_path / 'b.duckdb'}?max_memory=3GB") as st:
        assert st.con.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "2.7 GiB"
    monkeypatch.setattr(_store, "machine_memory_bytes", lambda: None)
    assert _store.default_duckdb_memory_limit() is None
    # The real machine: no more than the physical memory (and the cgroup's limit, where one is set).
    monkeypatch.undo()
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < _store.machine_memory_bytes() <= physical


def test_unknown_scheme():
    with pytest.raises(StoreError, match="unknown store scheme 'mysql'"):
        open_store("mysql://x")


def test_results_round_trip(tmp_path):
    r = Result(estimate=1.5, se=0.5, ci=(0.52, 2.48), p_value=0.0027, method="welch_t", n=200, metric="m",
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

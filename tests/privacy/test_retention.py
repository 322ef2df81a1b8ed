"""``insightroi retention`` on a small hand-made store: exact rows deleted at the cutoff.

Boundary (documented in :func:`insightroi.privacy.apply_retention`): with ``feedback = 30`` and
today 2025-07-01 the cutoff day is 2025-06-01; a row dated any time on 2025-06-01 (exactly 30
days old) is KEPT, one dated 2025-05-31 23:59:59 is deleted.
"""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.program import starter_program_text
from insightroi.store import open_store

TODAY = "2025-07-01"
SURVEYS = """
[[tables]]
name = "surveys"
key = "id"
time_column = "answered_at"
columns = { id = "string", answered_at = "timestamp", score = "int64" }

[[tables]]
name = "crm"
key = "id"
columns = { id = "string", tier = "string" }
"""
RULES = """
[retention]
feedback = 30
traffic = 10
results = 5
surveys = 30
"""


def _ts(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


def _rows(**cols) -> pa.Table:
    return pa.table(cols)


@pytest.fixture
def setup(tmp_path):
    program = tmp_path / "insightroi.toml"
    program.write_text(starter_program_text() + SURVEYS + RULES)
    url = f"duckdb:///{tmp_path / 'store.duckdb'}"
    with open_store(url) as st:
        st.append("feedback", _rows(
            id=["f-old1", "f-old2", "f-edge", "f-edge2", "f-new", "f-undated"], source=["review"] * 6,
            text=["a", "b", "c", "d", "e", "f"],
            event_time=pa.array([_ts(t) for t in ("2025-05-31T23:59:59", "2025-01-01T00:00:00", "2025-06-01T00:00:00",
                                                  "2025-06-01T23:00:00", "2025-06-30T12:00:00", None)], pa.timestamp("us"))))
        # Insights are recent (classified lately) but go with their old feedback.
        st.append("insights", _rows(
            id=["i1", "i2", "i3", "i4"], feedback_id=["f-old1", "f-old1", "f-edge", "f-new"], task=["topic"] * 4,
            label=["x"] * 4, model_version=["m"] * 4,
            created_at=pa.array([_ts("2025-06-30T00:00:00")] * 4, pa.timestamp("us"))))
        st.append("quarantine", _rows(
            id=["q1", "q2", "q3"], target_table=["feedback", "feedback", "orders"], reason=["bad"] * 3,
            raw=["old bad feedback", "recent bad feedback", "old bad order"],
            quarantined_at=pa.array([_ts(t) for t in ("2025-05-01T00:00:00", "2025-06-15T00:00:00", "2025-01-01T00:00:00")],
                                    pa.timestamp("us"))))
        st.append("traffic", _rows(
            id=["t1", "t2", "t3"], sessions=[1, 2, 3], conversions=[0, 0, 1],
            date=pa.array([datetime(2025, 6, d).date() for d in (20, 21, 22)], pa.date32())))
        st.append("orders", _rows(
            id=["o1"], revenue=[10.0], order_time=pa.array([_ts("2020-01-01T00:00:00")], pa.timestamp("us"))))
        st.append("results", _rows(
            id=["section:old", "section:new", "erasure:old"], kind=["section", "section", "erasure"],
            name=["old", "new", "old"], payload=["{}", "{}", "{}"],
            created_at=pa.array([_ts(t) for t in ("2025-06-25T00:00:00", "2025-06-26T00:00:00", "2025-01-01T00:00:00")],
                                pa.timestamp("us"))))
        st.sql("CREATE TABLE user_surveys (id VARCHAR, answered_at TIMESTAMP, score BIGINT)")
        st.sql("INSERT INTO user_surveys VALUES ('s1', '2025-05-15', 3), ('s2', '2025-06-10', 9)")
    return program, url


def _retention(program, url, *extra):
    res = CliRunner().invoke(app, ["retention", "--program", str(program), "--store", url, "--today", TODAY, *extra])
    return res.exit_code, res.stdout, res.stderr


def _ids(url: str) -> dict[str, list[str]]:
    with open_store(url) as st:
        return {t: sorted(st.sql(f'SELECT {"id"} FROM "{t}"').column("id").to_pylist())
                for t in ("feedback", "insights", "quarantine", "traffic", "orders", "results", "user_surveys")}


EXPECTED = {"feedback": 2, "insights": 2, "quarantine": 1, "traffic": 1, "results": 1, "user_surveys": 1}


def test_dry_run_counts_and_deletes_nothing(setup):
    program, url = setup
    before = _ids(url)
    code, out, err = _retention(program, url, "--dry-run", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["dry_run"] is True and rep["record_id"] is None
    assert rep["deleted"] == EXPECTED
    assert {r["table"]: r["cutoff"] for r in rep["rules"]} == {
        "feedback": "2025-06-01", "traffic": "2025-06-21", "results": "2025-06-26", "user_surveys": "2025-06-01"}
    assert _ids(url) == before


def test_rows_older_than_the_cutoff_day_go_and_the_boundary_day_stays(setup):
    program, url = setup
    code, out, err = _retention(program, url, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["deleted"] == EXPECTED and rep["total"] == 8
    after = _ids(url)
    # f-edge / f-edge2 are dated on the cutoff day (exactly 30 days old): kept; undated is kept.
    assert after["feedback"] == ["f-edge", "f-edge2", "f-new", "f-undated"]
    assert after["insights"] == ["i3", "i4"]
    assert after["quarantine"] == ["q2", "q3"]  # orders have no rule: their bad rows stay
    assert after["traffic"] == ["t2", "t3"]
    assert after["orders"] == ["o1"]
    assert after["user_surveys"] == ["s2"]
    # The old erasure record is kept; the run's own record is added.
    assert after["results"] == sorted(["erasure:old", "section:new", rep["record_id"]])
    with open_store(url) as st:
        record = st.load_result(rep["record_id"])
    assert record["deleted"] == EXPECTED and record["today"] == TODAY
    assert not {"f-old1", "f-old2", "i1", "q1", "t1", "s1"} & set(json.dumps(record).replace('"', " ").split())
    # Nothing is left to delete on a second run.
    code, out, _ = _retention(program, url, "--json")
    assert json.loads(out)["total"] == 0


@pytest.mark.parametrize(("rule", "message"), [
    ("reviews = 30", "retention.reviews: no table 'reviews'"),
    ("products = 30", "retention.products: table 'products' has no time column"),
    ("crm = 30", "retention.crm: table 'user_crm' has no time column"),
])
def test_a_rule_on_an_unknown_or_undated_table_is_refused_by_name(setup, rule, message):
    program, url = setup
    program.write_text(program.read_text() + rule + "\n")
    before = _ids(url)
    code, _, err = _retention(program, url)
    assert code == 1
    assert message in " ".join(err.split())
    assert _ids(url) == before
    # plan refuses the same program, before any data is read.
    res = CliRunner().invoke(app, ["plan", "--program", str(program)])
    assert res.exit_code == 1 and message in " ".join(res.output.split())


def test_table_output_names_the_cascades(setup):
    program, url = setup
    code, out, err = _retention(program, url, "--dry-run")
    assert code == 0, err
    assert "8 rows would be deleted" in out
    assert "insights" in out and "quarantine" in out

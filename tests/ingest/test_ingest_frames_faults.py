"""In-memory frames (the server's path), crash mid-batch, and the CLI."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.errors import IngestError
from insightroi.ingest import IngestReport, ingest_frame, ingest_path
from insightroi.store import open_store


def _state(store):
    return tuple(store.count(t) for t in ("feedback", "quarantine", "ingest_batches"))


def test_single_event_frame_lands_and_reposting_it_is_a_duplicate(store):
    event = {"id": "ev-1", "source": "in_app", "event_time": "2025-04-01T09:30:00-04:00",
             "text": "Call me at 555-201-3344", "rating": 2}
    r1 = ingest_frame(store, "feedback", [event], source="POST /events")
    assert (r1.landed, r1.quarantined, r1.duplicates) == (1, 0, 0)
    r2 = ingest_frame(store, "feedback", event, source="POST /events")
    assert (r2.landed, r2.duplicates) == (0, 1)
    assert store.sql("SELECT text, event_time, rating FROM feedback").to_pylist() == [
        {"text": "Call me at [PHONE]", "event_time": datetime(2025, 4, 1, 13, 30), "rating": 2.0}
    ]


def test_pandas_frame_with_aware_datetimes_and_mixed_types(store):
    df = pd.DataFrame({
        "id": [1, "two", 3.0],  # mixed object column: rendered as text, then validated
        "source": ["review", "chat", "call"],
        "event_time": pd.to_datetime(["2025-01-01 10:00", "2025-01-01 11:00", "2025-01-01 12:00"]).tz_localize("Europe/Paris"),
        "text": ["a", "b", None],
    })
    report = ingest_frame(store, "feedback", df, source="df")
    assert report.errors == ["df row 3, field 'text': missing required value"]
    assert store.sql("SELECT id, event_time FROM feedback ORDER BY event_time").to_pylist() == [
        {"id": "1", "event_time": datetime(2025, 1, 1, 9)}, {"id": "two", "event_time": datetime(2025, 1, 1, 10)},
    ]


def test_arrow_frame_and_bad_frames(store):
    table = pa.table({"id": ["x"], "source": ["review"], "text": ["t"],
                      "event_time": pa.array([datetime(2025, 1, 1, tzinfo=timezone.utc)], pa.timestamp("us", tz="UTC"))})
    assert ingest_frame(store, "feedback", table).landed == 1
    with pytest.raises(IngestError, match=r"^<frame>: no rows; nothing was ingested$"):
        ingest_frame(store, "feedback", table.slice(0, 0))
    with pytest.raises(IngestError, match=r"^api: columns do not match table 'feedback': missing required column\(s\) 'event_time'"):
        ingest_frame(store, "feedback", pd.DataFrame({"id": ["y"], "source": ["review"], "text": ["t"]}), source="api")
    with pytest.raises(IngestError, match="cannot ingest a int"):
        ingest_frame(store, "feedback", 42)


def test_system_columns_in_an_export_are_ignored(store):
    df = pd.DataFrame({"id": ["e1"], "source": ["review"], "event_time": ["2025-01-01T00:00:00Z"], "text": ["t"],
                       "ingested_at": ["whenever"], "batch_id": ["old"]})
    report = ingest_frame(store, "feedback", df)
    row = store.sql("SELECT batch_id FROM feedback").to_pylist()[0]
    assert row["batch_id"] == report.files[0].batch_id


def test_crash_mid_batch_leaves_the_store_as_before(store, tmp_path, monkeypatch):
    import insightroi.ingest._sources as sources

    path = tmp_path / "fb.csv"
    path.write_text("id,source,event_time,text\n" + "".join(
        f"r{i},review,2025-01-01T00:00:00Z,{'' if i == 3 else 'text'}\n" for i in range(10)
    ))
    ingest_frame(store, "feedback", pd.DataFrame({"id": ["pre"], "source": ["chat"], "event_time": ["2025-01-01T00:00:00Z"], "text": ["t"]}))
    before = _state(store)
    monkeypatch.setattr(sources, "CHUNK_ROWS", 4)
    real_append = type(store).append
    calls = []

    def flaky(self, name, data):
        calls.append(name)
        if len(calls) == 2:  # the first chunk has landed inside the transaction; now crash
            raise RuntimeError("disk on fire")
        return real_append(self, name, data)

    monkeypatch.setattr(type(store), "append", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest_path(store, "feedback", path)
    assert calls[:2] == ["feedback", "feedback"]
    monkeypatch.setattr(type(store), "append", real_append)
    assert _state(store) == before
    # Nothing half-done blocks a retry: the file is not marked as ingested.
    report = ingest_path(store, "feedback", path)
    assert (report.landed, report.quarantined) == (9, 1)


def test_report_is_rich_printable_and_json_able(store):
    report = ingest_frame(store, "feedback", [{"id": "a", "source": "review", "event_time": "2025-01-01T00:00:00Z", "text": "t"}])
    assert isinstance(report, IngestReport)
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(report)
    text = console.export_text()
    assert "landed" in text and "quarantined" in text and "<frame>" in text
    d = report.to_dict()
    assert (d["landed"], d["rows_read"], d["ok"]) == (1, 1, True)


def test_cli_ingest_prints_summary_and_exit_codes(tmp_path):
    url = f"duckdb:///{tmp_path}/cli.duckdb"
    good = tmp_path / "fb.csv"
    good.write_text("id,source,event_time,text\n1,review,2025-01-01T00:00:00Z,mail me a@b.co\n2,review,bad,x\n")
    runner = CliRunner()

    def flat(result):  # Rich wraps long lines to the terminal width
        return " ".join(result.output.split())

    res = runner.invoke(app, ["ingest", "feedback", str(good), "--store", url])
    assert res.exit_code == 0, res.output
    assert "fb.csv row 2, field 'event_time': cannot parse 'bad' as a timestamp" in flat(res)
    assert "quarantined" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,x\n")
    res = runner.invoke(app, ["ingest", "feedback", str(bad), "--store", url])
    assert res.exit_code == 1
    assert "missing required column(s) 'source', 'event_time'" in flat(res)
    res = runner.invoke(app, ["ingest", "feedback", str(good), "--store", url, "--json"])
    assert res.exit_code == 0 and '"skipped": true' in flat(res)
    res = runner.invoke(app, ["ingest", "nonsense", str(good), "--store", url])
    assert res.exit_code == 1 and "unknown kind 'nonsense'" in flat(res)
    with open_store(url) as st:
        assert st.sql("SELECT text FROM feedback").to_pylist() == [{"text": "mail me [EMAIL]"}]


def test_cli_no_redact_keeps_text(tmp_path):
    url = f"duckdb:///{tmp_path}/cli.duckdb"
    path = tmp_path / "fb.csv"
    path.write_text("id,source,event_time,text\n1,review,2025-01-01T00:00:00Z,mail me a@b.co\n")
    res = CliRunner().invoke(app, ["ingest", "feedback", str(path), "--store", url, "--no-redact"])
    assert res.exit_code == 0, res.output
    with open_store(url) as st:
        assert st.sql("SELECT text FROM feedback").to_pylist() == [{"text": "mail me a@b.co"}]

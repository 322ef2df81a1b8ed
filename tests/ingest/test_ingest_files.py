"""Ingesting files into a real DuckDB store: every bad-input class, exact messages, nothing lost."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from insightroi.errors import IngestError
from insightroi.ingest import ingest_frame, ingest_path
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

HEADER = "id,source,channel,event_time,rating,text\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def good_rows(n: int, start: int = 1) -> str:
    return "".join(
        f"fb-{i},review,web,2025-03-0{1 + i % 9}T10:00:00+00:00,{1 + i % 5},Row {i} is fine\n"
        for i in range(start, start + n)
    )


def quarantine(store) -> list[dict]:
    return store.sql("SELECT file, row_number, field, reason, raw FROM quarantine ORDER BY row_number").to_pylist()


def accounted(report) -> bool:
    return all(f.landed + f.duplicates + f.quarantined == f.rows_read for f in report.files)


def counts(store) -> tuple[int, int, int]:
    return store.count("feedback"), store.count("quarantine"), store.count("ingest_batches")


# ---- good input -------------------------------------------------------------------------------
def test_csv_lands_typed_rows_with_offsets_converted_to_utc(store, tmp_path):
    path = write(tmp_path / "feedback.csv", HEADER + (
        "a,review,web,2025-03-01T10:00:00+02:00,5,Great\n"
        "b,Chat ,app,2025-03-01 23:30:00-05:00,2.5,Meh\n"
        "c,in_app,,2025-03-02T00:00:00Z,,ok\n"
    ))
    report = ingest_path(store, "feedback", path)
    assert (report.rows_read, report.landed, report.quarantined, report.duplicates) == (3, 3, 0, 0)
    rows = store.sql("SELECT id, source, channel, event_time, rating, text, batch_id FROM feedback ORDER BY id").to_pylist()
    assert [r["event_time"] for r in rows] == [
        datetime(2025, 3, 1, 8, 0), datetime(2025, 3, 2, 4, 30), datetime(2025, 3, 2, 0, 0)
    ]
    assert [r["source"] for r in rows] == ["review", "chat", "in_app"]  # enum normalised
    assert rows[1]["rating"] == 2.5 and rows[2]["rating"] is None and rows[2]["channel"] is None
    assert {r["batch_id"] for r in rows} == {report.files[0].batch_id}
    batch = store.sql("SELECT * FROM ingest_batches").to_pylist()[0]
    assert (batch["rows_read"], batch["landed"], batch["quarantined"], batch["file"]) == (3, 3, 0, str(path))
    assert len(batch["sha256"]) == 64


def test_raw_text_is_preserved_exactly(store, tmp_path):
    text = '  Leading spaces, "quotes", ünïcødé ✓, tabs\tand\nnewlines kept  '
    frame = pd.DataFrame({"id": ["x"], "source": ["review"], "event_time": ["2025-01-01T00:00:00Z"], "text": [text]})
    ingest_frame(store, "feedback", frame, redact=False)
    assert store.sql("SELECT text FROM feedback").to_pylist()[0]["text"] == text


# ---- bad rows: each class quarantined with the exact message ------------------------------------
@pytest.mark.parametrize(
    ("bad_line", "field", "reason"),
    [
        ("fb-x,review,web,2025-03-01T10:00:00Z,4,", "text", "missing required value"),
        (",review,web,2025-03-01T10:00:00Z,4,no id", "id", "missing required value"),
        ("fb-x,review,web,2025-03-01T10:00:00Z,five,hi", "rating", "cannot parse 'five' as a number"),
        ("fb-x,review,web,2025-13-45,4,hi", "event_time", "cannot parse '2025-13-45' as a timestamp"),
        ("fb-x,review,web,2025-03-01T10:00:00Z,11,hi", "rating", "'11' is outside the allowed range 0 to 10"),
        ("fb-x,tweet,web,2025-03-01T10:00:00Z,4,hi", "source",
         "'tweet' is not one of review, ticket, chat, call, social, in_app, return"),
        ("fb-x,review,web,2025-03-01 10:00:00,4,hi", "event_time",
         "'2025-03-01 10:00:00' has no time zone; write it with an offset (e.g. +00:00) or set program.timezone"),
    ],
)
def test_bad_row_is_quarantined_with_exact_message_and_good_rows_land(store, tmp_path, bad_line, field, reason):
    # The bad row is data row 7 (the header is not counted).
    path = write(tmp_path / "feedback.csv", HEADER + good_rows(6) + bad_line + "\n" + good_rows(3, start=7))
    report = ingest_path(store, "feedback", path)
    assert report.errors == [f"feedback.csv row 7, field '{field}': {reason}"]
    assert (report.rows_read, report.landed, report.quarantined, report.duplicates) == (10, 9, 1, 0)
    assert accounted(report)
    (q,) = quarantine(store)
    assert (q["file"], q["row_number"], q["field"], q["reason"]) == (str(path), 7, field, reason)
    raw = json.loads(q["raw"])
    assert raw["id"] == (bad_line.split(",")[0] or None)
    assert store.count("feedback") == 9


def test_duplicate_ids_within_file_and_across_files(store, tmp_path):
    first = write(tmp_path / "a.csv", HEADER + good_rows(3) + "fb-2,review,web,2025-03-01T10:00:00Z,1,again\n")
    r1 = ingest_path(store, "feedback", first)
    # fb-2 again with other values is a conflict, not a silent duplicate; the first occurrence wins.
    assert (r1.rows_read, r1.landed, r1.duplicates, r1.quarantined, r1.files[0].conflicts) == (4, 3, 0, 1, 1)
    assert store.sql("SELECT text FROM feedback WHERE id = 'fb-2'").to_pylist() == [{"text": "Row 2 is fine"}]
    assert quarantine(store)[0]["row_number"] == 4 and quarantine(store)[0]["field"] == "id"
    assert quarantine(store)[0]["reason"] == (
        "conflict: id 'fb-2' appears again with different values; kept this file's first row with it "
        "(on_conflict = first-wins)")
    second = write(tmp_path / "b.csv", HEADER + good_rows(5))  # fb-1..3 already stored, identical
    r2 = ingest_path(store, "feedback", second)
    assert (r2.rows_read, r2.landed, r2.duplicates, r2.quarantined) == (5, 2, 3, 0)
    assert store.count("feedback") == 5


def test_duplicates_across_chunks_keep_the_first_row(store, tmp_path, monkeypatch):
    # Keys repeated in later chunks of one file, and keys already stored (one of them appended
    # outside ingest, with no batch id): the file's first row of a new key lands, nothing else.
    import insightroi.ingest._sources as sources

    monkeypatch.setattr(sources, "CHUNK_ROWS", 3)
    with store.transaction():
        store.append("feedback", pd.DataFrame({"id": ["fb-9"], "source": ["chat"], "text": ["outside ingest"],
                                               "event_time": [pd.Timestamp("2025-03-01")]}))
    rows = good_rows(7) + "fb-2,review,web,2025-03-01T10:00:00Z,1,second fb-2\n" + good_rows(3, 8)
    rows += "fb-5,review,web,2025-03-01T10:00:00Z,1,second fb-5\n" + "fb-2,review,web,2025-03-01T10:00:00Z,1,third fb-2\n"
    r = ingest_path(store, "feedback", write(tmp_path / "dups.csv", HEADER + rows))
    # 13 rows: fb-1..fb-10 once each (fb-9 already stored with other values), fb-2 twice more,
    # fb-5 once more, all with other values: conflicts, the first row kept.
    assert (r.rows_read, r.landed, r.duplicates, r.quarantined) == (13, 9, 0, 4)
    assert [(q["row_number"], q["reason"].split(";")[0]) for q in quarantine(store)] == [
        (8, "conflict: id 'fb-2' appears again with different values"),
        (10, "conflict: id 'fb-9' appears again with different values"),
        (12, "conflict: id 'fb-5' appears again with different values"),
        (13, "conflict: id 'fb-2' appears again with different values"),
    ]
    texts = dict(store.sql("SELECT id, text FROM feedback").to_pandas().itertuples(index=False))
    assert len(texts) == 10 and store.count("feedback") == 10
    assert texts["fb-2"] == "Row 2 is fine" and texts["fb-5"] == "Row 5 is fine"
    assert texts["fb-9"] == "outside ingest"
    batches = store.sql("SELECT landed, duplicates FROM ingest_batches").to_pylist()
    assert batches == [{"landed": 9, "duplicates": 0}]


def test_reingesting_the_same_file_changes_nothing(store, tmp_path):
    path = write(tmp_path / "feedback.csv", HEADER + good_rows(4) + "fb-bad,review,web,nope,1,x\n")
    r1 = ingest_path(store, "feedback", path)
    assert (r1.landed, r1.quarantined) == (4, 1)
    before = counts(store)
    r2 = ingest_path(store, "feedback", path)
    f = r2.files[0]
    assert f.skipped and f.skipped_batch == r1.files[0].batch_id
    assert (f.rows_read, f.landed, f.duplicates, f.quarantined) == (5, 0, 5, 0)
    assert counts(store) == before
    # The same bytes under another name are recognised by their hash.
    copy = write(tmp_path / "copy" / "feedback.csv", path.read_text())
    assert ingest_path(store, "feedback", copy).files[0].skipped
    # The file grown by one row: only the new row lands; the known bad row is not quarantined twice.
    write(path, path.read_text() + "fb-new,chat,web,2025-03-01T10:00:00Z,3,new\n")
    r3 = ingest_path(store, "feedback", path)
    assert (r3.rows_read, r3.landed, r3.duplicates, r3.quarantined) == (6, 1, 5, 0)
    assert counts(store)[:2] == (before[0] + 1, before[1])


def test_requarantining_the_same_bad_row_adds_nothing(store):
    bad = pd.DataFrame({"id": ["q1"], "source": ["review"], "event_time": ["garbage"], "text": ["t"]})
    r1 = ingest_frame(store, "feedback", bad, source="POST /events")
    r2 = ingest_frame(store, "feedback", bad, source="POST /events")
    assert r1.quarantined == 1 and r1.errors == ["POST /events row 1, field 'event_time': cannot parse 'garbage' as a timestamp"]
    assert (r2.quarantined, r2.duplicates) == (0, 1)
    assert store.count("quarantine") == 1


def test_empty_files_are_clear_errors_and_land_nothing(store, tmp_path):
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(IngestError) as info:
        ingest_path(store, "feedback", empty)
    assert str(info.value) == "empty.csv: empty file (0 bytes); nothing was ingested"
    header_only = write(tmp_path / "header.csv", HEADER)
    with pytest.raises(IngestError) as info:
        ingest_path(store, "feedback", header_only)
    assert str(info.value) == "header.csv: no data rows (empty file); nothing was ingested"
    blank_jsonl = write(tmp_path / "blank.jsonl", "\n\n")
    with pytest.raises(IngestError, match=r"^blank.jsonl: no data rows \(empty file\); nothing was ingested$"):
        ingest_path(store, "feedback", blank_jsonl)
    not_jsonl = write(tmp_path / "text.jsonl", "hello\nworld\n")
    with pytest.raises(IngestError, match=r"^text.jsonl: no JSON object on any line; nothing was ingested$"):
        ingest_path(store, "feedback", not_jsonl)
    assert counts(store) == (0, 0, 0)


def test_wrong_columns_fail_the_whole_file_naming_the_columns(store, tmp_path):
    path = write(tmp_path / "feedback.csv", "id,origin,when,text\n1,review,2025-01-01T00:00:00Z,hi\n")
    with pytest.raises(IngestError) as info:
        ingest_path(store, "feedback", path)
    assert str(info.value) == (
        "feedback.csv: columns do not match table 'feedback': missing required column(s) 'source', "
        "'event_time'; unknown column(s) 'origin', 'when'. Expected columns: id, source, channel, locale, "
        "product_id, sku, sku_family, customer_id, segment, region, event_time, rating, text "
        "(required: id, source, event_time, text). Nothing was ingested."
    )
    assert counts(store) == (0, 0, 0)


def test_non_utf8_bytes_quarantine_the_row_and_keep_its_bytes(store, tmp_path):
    data = (HEADER + good_rows(2)).encode() + b"fb-9,review,web,2025-03-01T10:00:00Z,3,caf\xe9 cr\xe8me\n" + good_rows(2, 3).encode()
    path = write(tmp_path / "latin1.csv", data)
    report = ingest_path(store, "feedback", path)
    assert report.errors == ["latin1.csv row 3, field 'text': line 4 contains bytes that are not valid UTF-8"]
    assert (report.rows_read, report.landed, report.quarantined) == (5, 4, 1)
    (q,) = quarantine(store)
    assert json.loads(q["raw"]) == {"line": "fb-9,review,web,2025-03-01T10:00:00Z,3,caf\\xe9 cr\\xe8me"}


def test_ten_megabyte_text_field_is_quarantined_not_truncated(store, tmp_path):
    big = "x" * (10 * 2**20)
    path = write(tmp_path / "big.csv", HEADER + good_rows(1) + f"fb-big,review,web,2025-03-01T10:00:00Z,3,{big}\n" + good_rows(1, 2))
    report = ingest_path(store, "feedback", path)
    assert report.errors == [
        "big.csv row 2, field 'text': value is 10485760 bytes, over the 1,000,000-byte limit per text field"
    ]
    assert (report.rows_read, report.landed, report.quarantined) == (3, 2, 1)
    (q,) = quarantine(store)
    assert json.loads(q["raw"])["text"] == big  # kept whole in quarantine: nothing lost


def test_row_numbers_survive_rejected_lines_across_chunks(store, tmp_path, monkeypatch):
    import insightroi.ingest._sources as sources

    monkeypatch.setattr(sources, "CHUNK_ROWS", 3)
    lines = good_rows(4).encode() + b"fb-x,review,web,2025-03-01T10:00:00Z,3,\xff\n" + good_rows(3, 5).encode()
    lines += b"fb-y,review,web,bad-time,3,t\n"
    path = write(tmp_path / "chunks.csv", HEADER.encode() + lines)
    report = ingest_path(store, "feedback", path)
    assert report.errors == [
        "chunks.csv row 5, field 'text': line 6 contains bytes that are not valid UTF-8",
        "chunks.csv row 9, field 'event_time': cannot parse 'bad-time' as a timestamp",
    ]
    assert (report.rows_read, report.landed, report.quarantined) == (9, 7, 2)


# ---- time zones ------------------------------------------------------------------------------------
def _program(zone: str):
    text = starter_program_text()
    assert 'timezone = "UTC"' in text
    return parse_program(text.replace('timezone = "UTC"', f'timezone = "{zone}"'))


def test_naive_timestamps_rejected_without_zone_and_localised_with_one(store, tmp_path):
    path = write(tmp_path / "naive.csv", HEADER + "n1,review,web,2025-07-01 12:00:00,4,summer\n"
                 "n2,review,web,2025-01-15 12:00,4,winter\nn3,review,web,2025-01-15T12:00:00+01:00,4,offset\n")
    r1 = ingest_path(store, "feedback", path)
    assert (r1.landed, r1.quarantined) == (1, 2)
    store2 = open_store(f"duckdb:///{tmp_path}/zoned.duckdb")
    r2 = ingest_path(store2, "feedback", path, program=_program("Europe/Berlin"))
    assert (r2.landed, r2.quarantined) == (3, 0)
    times = dict((r["id"], r["event_time"]) for r in store2.sql("SELECT id, event_time FROM feedback").to_pylist())
    # Berlin is UTC+2 in July (DST) and UTC+1 in January; explicit offsets are kept as given.
    assert times == {"n1": datetime(2025, 7, 1, 10), "n2": datetime(2025, 1, 15, 11), "n3": datetime(2025, 1, 15, 11)}
    store2.close()


def test_program_file_path_is_accepted(store, tmp_path):
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text().replace('timezone = "UTC"', 'timezone = "America/New_York"'))
    path = write(tmp_path / "naive.csv", HEADER + "n1,review,web,2025-01-15 12:00:00,4,x\n")
    ingest_path(store, "feedback", path, program=prog)
    assert store.sql("SELECT event_time FROM feedback").to_pylist() == [{"event_time": datetime(2025, 1, 15, 17)}]


# ---- formats -----------------------------------------------------------------------------------------
def test_parquet_typed_columns(store, tmp_path):
    table = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),  # numeric ids become strings
        "source": ["review", "chat", "call"],
        "event_time": pa.array([datetime(2025, 5, 1, 12), None, datetime(2025, 5, 2)], pa.timestamp("us", tz="Asia/Tokyo")),
        "rating": pa.array([4.0, 3.0, float("nan")]),
        "text": ["good", "fine", "bad"],
    })
    path = tmp_path / "fb.parquet"
    pq.write_table(table, path)
    report = ingest_path(store, "feedback", path)
    assert report.errors == [
        "fb.parquet row 2, field 'event_time': missing required value",
        "fb.parquet row 3, field 'rating': cannot parse 'nan' as a number",
    ]
    assert store.sql("SELECT id, event_time FROM feedback").to_pylist() == [
        {"id": "1", "event_time": datetime(2025, 5, 1, 12)}  # tz-aware input is stored as UTC
    ]


def test_parquet_naive_timestamps_follow_the_zone_rule(store, tmp_path):
    table = pa.table({"id": ["p1"], "source": ["review"], "event_time": pa.array([datetime(2025, 1, 1, 9)], pa.timestamp("us")), "text": ["t"]})
    path = tmp_path / "naive.parquet"
    pq.write_table(table, path)
    r = ingest_path(store, "feedback", path)
    assert r.errors == [
        "naive.parquet row 1, field 'event_time': '2025-01-01 09:00:00' has no time zone; write it with an offset "
        "(e.g. +00:00) or set program.timezone"
    ]
    store2 = open_store(f"duckdb:///{tmp_path}/z.duckdb")
    ingest_path(store2, "feedback", path, program=_program("UTC"))
    assert store2.sql("SELECT event_time FROM feedback").to_pylist() == [{"event_time": datetime(2025, 1, 1, 9)}]
    store2.close()


def test_jsonl_rows_and_line_numbers(store, tmp_path):
    lines = [
        json.dumps({"id": "j1", "source": "chat", "event_time": "2025-02-01T08:00:00Z", "rating": 5, "text": "hi"}),
        "",  # blank lines are not rows, but keep the numbering (row N is line N)
        "{not json",
        json.dumps(["an", "array"]),
        json.dumps({"id": "j2", "source": "chat", "event_time": "2025-02-01T08:00:00Z"}),
        json.dumps({"id": "j3", "source": "review", "event_time": "2025-02-01T09:00:00+01:00", "text": "ok", "rating": "4"}),
    ]
    path = write(tmp_path / "events.jsonl", "\n".join(lines) + "\n")
    report = ingest_path(store, "feedback", path)
    assert report.errors == [
        "events.jsonl row 3: not valid JSON",
        "events.jsonl row 4: not a JSON object",
        "events.jsonl row 5, field 'text': missing required value",
    ]
    assert (report.rows_read, report.landed, report.quarantined) == (5, 2, 3)
    q = quarantine(store)
    assert q[0]["raw"] == "{not json" and q[0]["field"] is None


def test_jsonl_unknown_key_quarantines_its_line_and_the_others_land(store, tmp_path):
    good = [json.dumps({"id": f"j{i}", "source": "chat", "event_time": "2025-01-01T00:00:00Z", "text": "t"})
            for i in range(1, 10)]
    good[4] = json.dumps({"id": "j5", "source": "chat", "event_time": "2025-01-01T00:00:00Z", "text": "t", "mood": "sad"})
    report = ingest_path(store, "feedback", write(tmp_path / "x.jsonl", "\n".join(good) + "\n"))
    assert (report.rows_read, report.landed, report.quarantined) == (9, 8, 1)
    assert [(q["row_number"], q["reason"]) for q in quarantine(store)] == [
        (5, "unknown key 'mood' (not a column of this table)")]


def test_jsonl_lines_that_are_not_objects_or_not_json_are_quarantined_with_their_line(store, tmp_path):
    lines = [json.dumps({"id": f"j{i}", "source": "chat", "event_time": "2025-01-01T00:00:00Z", "text": "t"})
             for i in range(1, 6)]
    lines[1], lines[3] = "[1, 2]", '{"id": "j4", '
    report = ingest_path(store, "feedback", write(tmp_path / "x.jsonl", "\n".join(lines) + "\n"))
    assert (report.rows_read, report.landed, report.quarantined) == (5, 3, 2)
    assert [(q["row_number"], q["reason"]) for q in quarantine(store)] == [
        (2, "not a JSON object"), (4, "not valid JSON")]


def test_jsonl_whose_keys_never_name_a_required_column_fails_the_file(store, tmp_path):
    path = write(tmp_path / "x.jsonl", json.dumps({"mood": "sad"}) + "\n")
    with pytest.raises(IngestError, match=r"^x.jsonl: columns do not match table 'feedback': missing required column"):
        ingest_path(store, "feedback", path)
    assert counts(store) == (0, 0, 0)


def test_directory_of_mixed_files_recurses_and_records_file_errors(store, tmp_path):
    root = tmp_path / "exports"
    write(root / "2025" / "01" / "a.csv", HEADER + good_rows(3))
    pq.write_table(pa.table({"id": ["p1", "p2"], "source": ["review", "review"],
                             "event_time": pa.array([datetime(2025, 1, 1)] * 2, pa.timestamp("us", tz="UTC")),
                             "text": ["a", "b"]}), (root / "2025" / "b.parquet"))
    write(root / "c.jsonl", json.dumps({"id": "j1", "source": "chat", "event_time": "2025-01-01T00:00:00Z", "text": "t"}) + "\n")
    write(root / "bad.csv", "id,text\n1,x\n")
    write(root / ".hidden.csv", "junk")
    write(root / "_SUCCESS", "")
    write(root / "notes.txt", "ignored")
    seen = []
    report = ingest_path(store, "feedback", root, progress=lambda done, total, fr: seen.append((done, total)))
    assert [Path(f.file).name for f in report.files] == ["a.csv", "b.parquet", "bad.csv", "c.jsonl"]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert report.landed == 6 and not report.ok
    assert report.file_errors[0].startswith("bad.csv: columns do not match table 'feedback': missing required column(s) 'source', 'event_time'")
    with pytest.raises(IngestError):
        report.raise_for_errors()
    assert store.count("feedback") == 6


def test_single_missing_path_and_unknown_kind(store, tmp_path):
    with pytest.raises(IngestError, match="no such file or directory"):
        ingest_path(store, "feedback", tmp_path / "nope.csv")
    with pytest.raises(ValueError, match=r"The 'kind' parameter must be one of \[.*'feedback'.*\]. Got 'insights' instead."):
        ingest_path(store, "insights", tmp_path)
    odd = write(tmp_path / "data.xlsx", "x")
    with pytest.raises(IngestError, match="data.xlsx: unsupported file type"):
        ingest_path(store, "feedback", odd)


# ---- other tables ------------------------------------------------------------------------------------
def test_other_tables_types_and_rules(store, tmp_path):
    orders = write(tmp_path / "orders.csv", "id,customer_id,order_time,quantity,revenue\n"
                   "o1,c1,2025-01-01T00:00:00Z,2,19.99\no2,c1,2025-01-01T00:00:00Z,2.5,5\n"
                   "o3,c2,2025-01-01T00:00:00Z,-1,5\no4,c2,2025-01-01T00:00:00Z,3.0,\n")
    r = ingest_path(store, "orders", orders)
    assert r.errors == [
        "orders.csv row 2, field 'quantity': cannot parse '2.5' as an integer",
        "orders.csv row 3, field 'quantity': '-1' is outside the allowed range 0 to inf",
        "orders.csv row 4, field 'revenue': missing required value",
    ]
    tickets = write(tmp_path / "tickets.csv", "id,opened_at,deflected,handle_minutes\n"
                    "t1,2025-01-01T00:00:00Z,yes,3\nt2,2025-01-01T00:00:00Z,maybe,3\n")
    r = ingest_path(store, "tickets", tickets)
    assert r.errors == ["tickets.csv row 2, field 'deflected': cannot parse 'maybe' as a boolean"]
    assert store.sql("SELECT deflected FROM tickets").to_pylist() == [{"deflected": True}]
    traffic = write(tmp_path / "traffic.csv", "id,date,sessions,conversions\nd1,2025-01-01,10,2\nd2,2025-02-30,1,0\n")
    r = ingest_path(store, "traffic", traffic)
    assert r.errors == ["traffic.csv row 2, field 'date': cannot parse '2025-02-30' as a date"]
    chain = write(tmp_path / "chain.csv", "id,event_type,event_time,payload\n"
                  "e1,alert_delivered,2025-01-01T00:00:00Z,\"{\"\"to\"\": \"\"ops@example.com\"\"}\"\ne2,emailed,2025-01-01T00:00:00Z,\n")
    r = ingest_path(store, "chain_events", chain)
    assert r.errors == ["chain.csv row 2, field 'event_type': 'emailed' is not one of insight, alert_delivered, "
                        "acknowledged, action_taken, fix_deployed, outcome, ignored, overridden, "
                        "delivery_sent, delivery_failed, alert_updated"]
    assert store.sql("SELECT payload FROM chain_events").to_pylist() == [{"payload": '{"to": "[EMAIL]"}'}]


def test_padded_values_are_trimmed_for_typed_columns_only(store, tmp_path):
    path = write(tmp_path / "pad.csv", HEADER + 'p1, review ,web, 2025-03-01T10:00:00Z\t, 4 ,"  spaced text  "\n')
    report = ingest_path(store, "feedback", path)
    assert (report.landed, report.quarantined) == (1, 0), report.errors
    row = store.sql("SELECT source, event_time, rating, text FROM feedback").to_pylist()[0]
    assert row == {"source": "review", "event_time": datetime(2025, 3, 1, 10), "rating": 4.0, "text": "  spaced text  "}


def test_a_ticket_closed_before_it_opened_is_quarantined_naming_both_times(store, tmp_path):
    # A negative resolution time would land in the mean and median resolution-hours KPIs.
    path = write(tmp_path / "tickets.csv", "id,opened_at,closed_at\n"
                 "t1,2025-08-21T10:00:00Z,2025-08-20T10:00:00Z\n"
                 "t2,2025-08-20T10:00:00Z,2025-08-21T10:00:00+02:00\n"
                 "t3,2025-08-20T10:00:00Z,\n"
                 "t4,2025-08-20T10:00:00Z,garbage\n")
    report = ingest_path(store, "tickets", path)
    assert (report.landed, report.quarantined) == (2, 2)
    assert report.errors == [
        "tickets.csv row 1, field 'closed_at': '2025-08-20T10:00:00Z' is before opened_at '2025-08-21T10:00:00Z'",
        "tickets.csv row 4, field 'closed_at': cannot parse 'garbage' as a timestamp",
    ]
    assert sorted(store.table("tickets").execute().id) == ["t2", "t3"]

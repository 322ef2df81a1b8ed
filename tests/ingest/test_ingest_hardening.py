"""Every bad input the ingestion probe found (issue 16), each with its exact outcome: rows landed,
rows quarantined with their line number and reason, or the file refused with a message naming it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insightroi.errors import IngestError
from insightroi.ingest import NUL_REASON, CsvDialect, check_text, ingest_frame, ingest_path
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

HEADER = "id,source,channel,event_time,rating,text\n"
STRAY = "has a quoted value that is never closed (a stray quote?)"


def row(i: int, text: str | None = None) -> str:
    return f"fb-{i},review,web,2025-03-01T10:00:00+00:00,{1 + i % 5},{text or f'Row {i} is fine'}\n"


def rows(start: int, stop: int) -> str:
    return "".join(row(i) for i in range(start, stop))


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def quarantined(store) -> list[tuple[int, str | None, str]]:
    return [(q["row_number"], q["field"], q["reason"]) for q in store.sql(
        "SELECT row_number, field, reason FROM quarantine ORDER BY row_number, reason").to_pylist()]


def landed_ids(store) -> set[str]:
    return {r["id"] for r in store.sql("SELECT id FROM feedback").to_pylist()}


def program(**ingest) -> object:
    text = starter_program_text()
    for key, value in ingest.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(old, f"{key} = {value}", 1)
    return parse_program(text)


# ---- a stray quote never decides how the rest of the file is read ------------------------------
def test_stray_quote_at_row_501_quarantines_that_line_only(store, tmp_path):
    path = write(tmp_path / "f.csv", HEADER + rows(1, 501) + row(501, '"He said hi') + rows(502, 1001))
    report = ingest_path(store, "feedback", path)
    assert (report.rows_read, report.landed, report.quarantined, report.duplicates) == (1000, 999, 1, 0)
    assert quarantined(store) == [(501, None, f"line 502 {STRAY}")]
    assert landed_ids(store) == {f"fb-{i}" for i in range(1, 1001)} - {"fb-501"}
    raw = json.loads(store.sql("SELECT raw FROM quarantine").to_pylist()[0]["raw"])
    assert raw == {"line": row(501, '"He said hi').rstrip("\n")}


def test_stray_quote_on_the_last_line_quarantines_that_line_only(store, tmp_path):
    path = write(tmp_path / "f.csv", HEADER + rows(1, 1000) + row(1000, '"He said hi'))
    report = ingest_path(store, "feedback", path)
    assert (report.rows_read, report.landed, report.quarantined) == (1000, 999, 1)
    assert quarantined(store) == [(1000, None, f"line 1001 {STRAY}")]


def test_valid_multiline_quoted_row_lands_beside_an_unterminated_quote(store, tmp_path):
    text = HEADER + rows(1, 10) + row(10, '"multi\nline, ok"') + row(11, '"bad') + rows(12, 20)
    report = ingest_path(store, "feedback", write(tmp_path / "f.csv", text))
    assert (report.rows_read, report.landed, report.quarantined) == (19, 18, 1)
    # Row 11 starts on line 13 (the quoted value of row 10 spans lines 11-12).
    assert quarantined(store) == [(11, None, f"line 13 {STRAY}")]
    assert store.sql("SELECT text FROM feedback WHERE id = 'fb-10'").to_pylist() == [{"text": "multi\nline, ok"}]


def test_stray_quote_that_closes_rows_later_does_not_swallow_them(store, tmp_path):
    # The quote opened on row 5 closes at the end of row 9: strict CSV reads rows 6-9 as part of
    # one value; every line between is a whole record, so the quote is a stray one.
    text = HEADER + rows(1, 5) + row(5, '"He said hi') + rows(6, 9) + row(9, 'bye"') + rows(10, 12)
    report = ingest_path(store, "feedback", write(tmp_path / "f.csv", text))
    assert (report.rows_read, report.landed, report.quarantined) == (11, 10, 1)
    assert quarantined(store) == [
        (5, None, "line 6 has a quoted value that is never closed; it would swallow the rows after it (a stray quote?)")]
    assert store.sql("SELECT text FROM feedback WHERE id = 'fb-9'").to_pylist() == [{"text": 'bye"'}]


def test_ragged_lines_are_quarantined_once_each_with_their_line(store, tmp_path):
    text = HEADER + rows(1, 5) + row(5).rstrip("\n") + ",extra\n" + "fb-6,review,web\n" + rows(7, 9)
    report = ingest_path(store, "feedback", write(tmp_path / "f.csv", text))
    assert (report.rows_read, report.landed, report.quarantined) == (8, 6, 2)
    assert quarantined(store) == [
        (5, None, "line 6 has more fields than the header"), (6, None, "line 7 has fewer fields than the header")]


def test_ragged_line_beside_a_stray_quote_counts_its_fields(store, tmp_path):
    # Once the file is on the slow path, a ragged line's reason gives both counts.
    text = HEADER + rows(1, 3) + "fb-3,review,web\n" + row(4, '"open') + rows(5, 7)
    report = ingest_path(store, "feedback", write(tmp_path / "f.csv", text))
    assert (report.rows_read, report.landed, report.quarantined) == (6, 4, 2)
    assert quarantined(store) == [
        (3, None, "line 4 has fewer fields than the header (3, expected 6)"), (4, None, f"line 5 {STRAY}")]


# ---- dialect: explicit, never sniffed per file ---------------------------------------------------
def test_semicolon_file_is_refused_with_the_sniffed_dialect_only_as_a_suggestion(store, tmp_path):
    path = write(tmp_path / "semi.csv", HEADER.replace(",", ";") + rows(1, 4).replace(",", ";"))
    with pytest.raises(IngestError) as info:
        ingest_path(store, "feedback", path)
    assert str(info.value).startswith("semi.csv: columns do not match table 'feedback': missing required column(s)")
    assert str(info.value).endswith(
        "The file may use delimiter = ';' (a guess from its first lines, not applied): add delimiter = ';' under "
        "[ingest] in the program file (from Python: dialect=CsvDialect(...)).")
    assert store.count("feedback") == 0


def test_dialect_from_the_argument_and_from_the_program_file(store, tmp_path):
    path = write(tmp_path / "semi.csv", HEADER.replace(",", ";") + rows(1, 4).replace(",", ";"))
    assert ingest_path(store, "feedback", path, dialect=CsvDialect(delimiter=";")).landed == 3
    other = write(tmp_path / "semi2.csv", HEADER.replace(",", ";") + rows(4, 6).replace(",", ";"))
    assert ingest_path(store, "feedback", other, program=program(delimiter='";"')).landed == 2


def test_headerless_csv_takes_the_tables_columns_in_contract_order(store, tmp_path):
    line = "fb-1,review,web,en,p1,s1,fam,c1,seg,eu,2025-03-01T10:00:00Z,4,fine\n"
    report = ingest_path(store, "feedback", write(tmp_path / "h.csv", line), dialect=CsvDialect(header=False))
    assert (report.landed, report.quarantined) == (1, 0)
    assert store.sql("SELECT sku_family, text FROM feedback").to_pylist() == [{"sku_family": "fam", "text": "fine"}]


def test_dialect_rejects_ambiguous_characters():
    with pytest.raises(ValueError, match="CSV delimiter ',' cannot also be the quote or escape character"):
        CsvDialect(quote=",")
    with pytest.raises(ValueError, match="CSV delimiter must be one character"):
        CsvDialect(delimiter=";;")


# ---- encodings and headers -----------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_byte_order_marked_files_are_read(store, tmp_path, encoding):
    text = HEADER + rows(1, 4) + row(4, "Größe passt; café")
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    report = ingest_path(store, "feedback", write(tmp_path / "enc.csv", data))
    assert (report.landed, report.quarantined) == (4, 0)
    assert store.sql("SELECT text FROM feedback WHERE id = 'fb-4'").to_pylist() == [{"text": "Größe passt; café"}]


def test_utf16_without_a_byte_order_mark_is_refused_naming_the_encoding(store, tmp_path):
    path = write(tmp_path / "u16.csv", (HEADER + rows(1, 3)).encode("utf-16-le"))
    with pytest.raises(IngestError) as info:
        ingest_path(store, "feedback", path)
    assert str(info.value) == (
        "u16.csv: the file looks like UTF-16 (little-endian) without a byte-order mark; save it as UTF-8 "
        "(or as UTF-16 with a byte-order mark). Nothing was ingested.")


def test_utf16_jsonl_is_read(store, tmp_path):
    line = json.dumps({"id": "j1", "source": "chat", "event_time": "2025-01-01T00:00:00Z", "text": "grüß"}) + "\n"
    report = ingest_path(store, "feedback", write(tmp_path / "u.jsonl", line.encode("utf-16")))
    assert (report.landed, report.quarantined) == (1, 0)


def test_duplicated_header_is_refused_naming_it_and_the_file(store, tmp_path):
    path = write(tmp_path / "dup.csv", "id,source,event_time,text,text\nfb-1,chat,2025-01-01T00:00:00Z,a,b\n")
    with pytest.raises(IngestError) as info:
        ingest_path(store, "feedback", path)
    assert str(info.value) == (
        "dup.csv: duplicated header 'text' (columns 4 and 5); each column may appear once. Nothing was ingested.")


# ---- typed checks -------------------------------------------------------------------------------
def test_list_and_struct_in_a_parquet_text_column_are_quarantined(store, tmp_path):
    table = pa.table({
        "id": ["p1", "p2"], "source": ["chat", "chat"],
        "event_time": pa.array([datetime(2025, 1, 1), datetime(2025, 1, 2)], pa.timestamp("us", tz="UTC")),
        "text": pa.array([["list", "of", "str"], ["ok"]]),
    })
    pq.write_table(table, tmp_path / "l.parquet")
    report = ingest_path(store, "feedback", tmp_path / "l.parquet")
    assert (report.landed, report.quarantined) == (0, 2)
    assert quarantined(store) == [(1, "text", "is a list, not text"), (2, "text", "is a list, not text")]
    struct = table.set_column(3, "text", pa.array([{"a": 1}, None], pa.struct([("a", pa.int64())])))
    report = ingest_frame(store, "feedback", struct.set_column(0, "id", pa.array(["s1", "s2"])))
    assert (report.landed, report.quarantined) == (0, 2)
    assert [(q[0], q[2]) for q in quarantined(store) if q[0] > 0] == [
        (1, "is a list, not text"), (1, "is a struct, not text"),
        (2, "is a list, not text"), (2, "missing required value")]


def test_nul_byte_in_text_quarantines_the_row_in_files_and_frames(store, tmp_path):
    path = write(tmp_path / "nul.csv", (HEADER + rows(1, 3) + row(3, "bad\x00text")).encode())
    report = ingest_path(store, "feedback", path)
    assert (report.landed, report.quarantined) == (2, 1)
    assert quarantined(store) == [(3, "text", NUL_REASON)]
    report = ingest_frame(store, "feedback", [{"id": "x", "source": "chat", "event_time": "2025-01-01T00:00:00Z",
                                               "text": "a\x00b"}], source="POST /events")
    assert (report.landed, report.quarantined) == (0, 1)
    assert NUL_REASON == "contains a NUL byte (\\x00); remove it from the source"


def test_check_text_is_the_same_rule_for_one_value():
    assert check_text("fine") == "fine"
    with pytest.raises(ValueError, match=r"^payload contains a NUL byte \(\\x00\); remove it from the source$"):
        check_text("a\x00b", "payload")


def test_timestamps_outside_the_range_are_quarantined(store, tmp_path):
    text = HEADER + rows(1, 3) + "fb-3,review,web,99999-01-01T00:00:00Z,3,far\n" + "fb-4,review,web,1989-12-31T23:59:59Z,3,old\n"
    text += "fb-5,review,web,2100-12-31T23:59:59Z,3,last second\n"
    report = ingest_path(store, "feedback", write(tmp_path / "t.csv", text))
    assert (report.landed, report.quarantined) == (3, 2)
    assert quarantined(store) == [
        (3, "event_time", "'99999-01-01T00:00:00Z' is outside the accepted range 1990-01-01 to 2100-12-31 "
                          "(program file: [ingest] earliest / latest)"),
        (4, "event_time", "'1989-12-31T23:59:59Z' is outside the accepted range 1990-01-01 to 2100-12-31 "
                          "(program file: [ingest] earliest / latest)"),
    ]


def test_the_range_comes_from_the_program_file_and_applies_to_dates(store, tmp_path):
    prog = program(earliest="2024-01-01", latest="2025-12-31")
    text = HEADER + "a,review,web,2023-06-01T00:00:00Z,3,x\nb,review,web,2025-06-01T00:00:00Z,3,y\n"
    report = ingest_path(store, "feedback", write(tmp_path / "t.csv", text), program=prog)
    assert (report.landed, report.quarantined) == (1, 1)
    traffic = "id,date,sku,sessions,conversions\nt1,2026-01-01,s,10,1\nt2,2025-01-01,s,10,1\n"
    report = ingest_path(store, "traffic", write(tmp_path / "traffic.csv", traffic), program=prog)
    assert (report.landed, report.quarantined) == (1, 1)
    assert store.sql("SELECT reason FROM quarantine WHERE target_table = 'traffic'").to_pylist() == [
        {"reason": "'2026-01-01' is outside the accepted range 2024-01-01 to 2025-12-31 "
                   "(program file: [ingest] earliest / latest)"}]


# ---- conflicts ----------------------------------------------------------------------------------
def test_conflict_first_wins_keeps_the_first_and_quarantines_the_other(store, tmp_path):
    text = HEADER + rows(1, 4) + row(2) + row(2, "changed")
    report = ingest_path(store, "feedback", write(tmp_path / "c.csv", text))
    # Row 4 repeats fb-2 exactly (a duplicate); row 5 changes it (a conflict).
    assert (report.rows_read, report.landed, report.duplicates, report.quarantined) == (5, 3, 1, 1)
    assert report.files[0].conflicts == 1
    assert quarantined(store) == [(5, "id", "conflict: id 'fb-2' appears again with different values; kept this "
                                            "file's first row with it (on_conflict = first-wins)")]
    assert store.sql("SELECT text FROM feedback WHERE id = 'fb-2'").to_pylist() == [{"text": "Row 2 is fine"}]
    raw = json.loads(store.sql("SELECT raw FROM quarantine").to_pylist()[0]["raw"])
    assert raw["text"] == "changed" and raw["id"] == "fb-2"


def test_conflict_last_wins_keeps_the_files_last_row_and_replaces_a_stored_one(store, tmp_path):
    prog = program(on_conflict='"last-wins"')
    ingest_path(store, "feedback", write(tmp_path / "a.csv", HEADER + rows(1, 4)), program=prog)
    report = ingest_path(store, "feedback", write(tmp_path / "b.csv", HEADER + row(2, "v2") + row(2, "v3") + row(3)),
                         program=prog)
    assert (report.rows_read, report.landed, report.duplicates, report.quarantined) == (3, 1, 1, 1)
    assert (report.files[0].conflicts, report.files[0].replaced) == (1, 1)
    assert store.sql("SELECT text FROM feedback WHERE id = 'fb-2'").to_pylist() == [{"text": "v3"}]
    assert store.sql("SELECT file, row_number, reason FROM quarantine ORDER BY file").to_pylist() == [
        {"file": str(tmp_path / "a.csv"), "row_number": 0,
         "reason": "conflict: id 'fb-2' was replaced by a row with different values from b.csv (on_conflict = last-wins)"},
        {"file": str(tmp_path / "b.csv"), "row_number": 1,
         "reason": "conflict: id 'fb-2' appears again with different values; kept this file's last row with it "
                   "(on_conflict = last-wins)"},
    ]
    assert store.count("feedback") == 3


def test_conflict_row_numbers_skip_rows_that_failed_validation(store, tmp_path, monkeypatch):
    import insightroi.ingest._sources as sources

    monkeypatch.setattr(sources, "CHUNK_ROWS", 2)
    text = HEADER + row(1) + "x,review,web,bad,3,t\n" + row(2) + "y,review,web,bad,3,t\n" + row(3) + row(1, "other")
    report = ingest_path(store, "feedback", write(tmp_path / "c.csv", text))
    assert (report.landed, report.quarantined) == (3, 3)
    assert [q[0] for q in quarantined(store)] == [2, 4, 6]
    assert quarantined(store)[2][2].startswith("conflict: id 'fb-1' appears again")


def test_retry_leaves_conflicts_in_the_quarantine(store, tmp_path):
    from insightroi.ingest import retry_quarantine

    ingest_path(store, "feedback", write(tmp_path / "c.csv", HEADER + row(1) + row(1, "other")))
    rr = retry_quarantine(store, "feedback")
    assert rr.tables[0].retried == 0 and store.count("quarantine") == 1


# ---- property: one corrupted line never costs a valid row ---------------------------------------
_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters='"\\,'),
                min_size=1, max_size=20).filter(lambda t: t.strip() == t and t != "")
_CORRUPTIONS = st.sampled_from([
    lambda r: r.replace("web,", 'web,"', 1),             # a quote opened and never closed
    lambda r: r.rstrip("\n") + ',"tail\n',               # an extra field with a stray quote
    lambda r: r.rstrip("\n") + ",extra\n",               # too many fields
    lambda r: ",".join(r.split(",")[:3]) + "\n",         # too few fields
    lambda r: r.replace(",", ",\"", 1).rstrip("\n") + '"x\n',  # a closed quote followed by text
])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_TEXT, min_size=3, max_size=40), quoted=st.lists(st.booleans(), min_size=40, max_size=40),
       where=st.integers(min_value=0, max_value=39), corrupt=_CORRUPTIONS)
def test_any_valid_csv_with_one_corrupted_line_lands_every_valid_row(tmp_path_factory, texts, quoted, where, corrupt):
    tmp = tmp_path_factory.mktemp("prop")
    lines = []
    for i, t in enumerate(texts, 1):
        # Some values quoted (holding a comma, a doubled quote or a line break), as exports write them.
        value = f'"{t}, ""q""\n{t}"' if quoted[i - 1] else t
        lines.append(row(i, value))
    bad = where % len(lines)
    lines[bad] = corrupt(row(bad + 1, texts[bad]))
    with open_store(f"duckdb:///{tmp / 's.duckdb'}") as store:
        report = ingest_path(store, "feedback", write(tmp / "p.csv", HEADER + "".join(lines)))
        assert landed_ids(store) == {f"fb-{i}" for i in range(1, len(lines) + 1)} - {f"fb-{bad + 1}"}
        assert report.quarantined == 1 and report.landed == len(lines) - 1
        got = dict(store.sql("SELECT id, text FROM feedback").to_pandas().itertuples(index=False))
        for i, t in enumerate(texts, 1):
            if i != bad + 1:
                assert got[f"fb-{i}"] == (f'{t}, "q"\n{t}' if quoted[i - 1] else t)


@pytest.mark.parametrize(("rule", "kept", "counts"), [
    ('"first-wins"', "Row 2 is fine", (5, 2, 2, 1, 0)),
    ('"last-wins"', "edited", (5, 3, 2, 0, 1)),
])
def test_a_re_export_with_one_edited_row(store, tmp_path, rule, kept, counts):
    prog = program(on_conflict=rule)
    ingest_path(store, "feedback", write(tmp_path / "a.csv", HEADER + rows(1, 4)), program=prog)
    report = ingest_path(store, "feedback", write(tmp_path / "b.csv", HEADER + row(1) + row(2, "edited") + rows(3, 6)),
                         program=prog)
    f = report.files[0]
    assert (f.rows_read, f.landed, f.duplicates, f.quarantined, f.replaced) == counts
    assert store.sql("SELECT text FROM feedback WHERE id = 'fb-2'").to_pylist() == [{"text": kept}]
    assert store.count("feedback") == 5 and store.count("quarantine") == 1


def test_stray_quote_in_a_gzipped_csv_is_resynchronised_too(store, tmp_path):
    import gzip

    path = tmp_path / "f.csv.gz"
    path.write_bytes(gzip.compress((HEADER + rows(1, 4) + row(4, '"open') + rows(5, 8)).encode()))
    report = ingest_path(store, "feedback", path)
    assert (report.landed, report.quarantined) == (6, 1)
    assert quarantined(store) == [(4, None, f"line 5 {STRAY}")]


# ---- a quarantined row keeps its id's pseudonym, not a redaction token --------------------------
def test_a_quarantined_rows_pii_id_keeps_its_pseudonym_and_lands_under_it_on_retry(store, tmp_path, monkeypatch):
    from insightroi.ingest import pseudonymize, retry_quarantine

    monkeypatch.setenv("INSIGHTROI_PII_KEY", "quarantine-test-key-0123456789")
    email = "Jane.Doe@Example.com"
    csv = write(tmp_path / "ids.csv", "id,source,customer_id,event_time,text\n"
                f"q1,review,{email},2025-03-01T10:00:00Z,Fine\n"
                f"q2,review,{email},2025-03-01 11:00:00,Write to {email} please\n")
    rep = ingest_path(store, "feedback", csv)  # no program: a naive timestamp is quarantined
    assert (rep.landed, rep.quarantined) == (1, 1)
    raw = json.loads(store.sql("SELECT raw FROM quarantine").to_pylist()[0]["raw"])
    # The id as the landed row stores it (so an erasure of Jane finds the row and a retry joins
    # it to her other rows); the free text redacted as before.
    assert raw["customer_id"] == pseudonymize(email)
    assert raw["text"] == "Write to [EMAIL] please"
    assert email.lower() not in json.dumps(raw).lower()
    rr = retry_quarantine(store, "feedback", program=program())  # the starter program: timezone UTC
    assert (rr.tables[0].retried, rr.tables[0].landed) == (1, 1)
    assert store.sql("SELECT DISTINCT customer_id FROM feedback").column(0).to_pylist() == [pseudonymize(email)]
    assert store.count("quarantine") == 0

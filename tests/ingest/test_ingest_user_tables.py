"""User tables (issue 22): a program's ``[[tables]]`` entry, or a ``--schema`` file, ingested into
``user_<name>`` from CSV and from Parquet through the same engine as ours: typed checks, the
timestamp range, NUL bytes, missing keys, duplicates and conflicts on the key, quarantine with
file/row/field/reason, re-ingest adding nothing, retry of the quarantine, e-mail ids pseudonymised
and PII in free text redacted. Real DuckDB files; the CLI through Typer's runner."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.ingest import ingest_path, pseudonymize, retry_quarantine
from insightroi.program import UserTable, parse_program, starter_program_text
from insightroi.store import SCHEMA_VERSION, open_store

SURVEYS = """
[[tables]]
name = "surveys"
description = "Post-contact NPS survey answers."
columns = { survey_id = "string", customer_id = "string", answered_at = "timestamp", nps = "int64", comment = "string" }
key = "survey_id"
time_column = "answered_at"
required = ["answered_at", "nps"]
text_columns = ["comment"]
id_columns = ["customer_id"]
"""

HEADER = "survey_id,customer_id,answered_at,nps,comment\n"
# Three rows land (s1, s2, s8); one repeats s1 exactly (a duplicate); six are quarantined.
ROWS = (
    "s1,jane.doe@example.com,2025-03-01T10:00:00Z,9,\"Great help, mail me at jane.doe@example.com or call +1 415 555 2671\"\n"
    "s2,C-000002,2025-03-02T09:00:00+01:00,7,ok\n"
    "s3,C-000003,2025-03-02T09:00:00Z,seven,typo in the score\n"
    "s4,C-000004,yesterday,5,no date\n"
    ",C-000005,2025-03-02T10:00:00Z,8,no key\n"
    "s6,C-000006,1985-01-01T00:00:00Z,6,before the accepted range\n"
    "s7,C-000007,2025-03-02T11:00:00Z,9.5,half a point\n"
    "s1,jane.doe@example.com,2025-03-01T10:00:00Z,9,\"Great help, mail me at jane.doe@example.com or call +1 415 555 2671\"\n"
    "s2,C-000002,2025-03-02T09:00:00+01:00,3,changed my mind\n"
    "s8,JOHN.Smith@Example.com,2025-03-03T12:30:00Z,10,\n"
)
QUARANTINED = [
    (3, "nps", "cannot parse 'seven' as an integer"),
    (4, "answered_at", "cannot parse 'yesterday' as a timestamp"),
    (5, "survey_id", "missing required value"),
    (6, "answered_at", "'1985-01-01T00:00:00Z' is outside the accepted range 1990-01-01 to 2100-12-31 "
                       "(program file: [ingest] earliest / latest)"),
    (7, "nps", "cannot parse '9.5' as an integer"),
    (9, "survey_id", "conflict: survey_id 's2' appears again with different values; kept this file's first row "
                     "with it (on_conflict = first-wins)"),
]


@pytest.fixture(autouse=True)
def pii_key(monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "user-tables-test-key-0123456789")


def program_text(*, timezone_line: bool = True, on_conflict: str = "first-wins") -> str:
    text = starter_program_text()
    if not timezone_line:
        text = text.replace('timezone = "UTC"\n', "", 1)
    text = text.replace('on_conflict = "first-wins"', f'on_conflict = "{on_conflict}"', 1)
    return text + SURVEYS


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def setup(tmp_path):
    prog = write(tmp_path / "insightroi.toml", program_text())
    csv = write(tmp_path / "surveys.csv", HEADER + ROWS)
    return tmp_path, prog, csv, f"duckdb:///{tmp_path / 'store.duckdb'}"


def cli(*args: str):
    return CliRunner().invoke(app, ["ingest", *args])


def landed(url: str) -> list[dict]:
    with open_store(url) as st:
        return st.sql("SELECT survey_id, customer_id, answered_at, nps, comment FROM user_surveys "
                      "ORDER BY survey_id").to_pylist()


def quarantine(url: str) -> list[tuple]:
    with open_store(url) as st:
        rows = st.sql("SELECT target_table, file, row_number, field, reason FROM quarantine ORDER BY row_number, file")
    return [tuple(r.values()) for r in rows.to_pylist()]


def test_csv_lands_typed_rows_and_quarantines_bad_ones_with_file_row_field_reason(setup):
    tmp, prog, csv, url = setup
    res = cli("--table", "surveys", str(csv), "--program", str(prog), "--store", url, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert (report["rows_read"], report["landed"], report["duplicates"], report["quarantined"]) == (10, 3, 1, 6)
    rows = landed(url)
    assert [(r["survey_id"], r["answered_at"], r["nps"]) for r in rows] == [
        ("s1", datetime(2025, 3, 1, 10, 0), 9),
        ("s2", datetime(2025, 3, 2, 8, 0), 7),  # +01:00 stored as UTC
        ("s8", datetime(2025, 3, 3, 12, 30), 10),
    ]
    assert quarantine(url) == [("user_surveys", str(csv), rn, field, reason) for rn, field, reason in QUARANTINED]
    with open_store(url) as st:
        batch = st.sql("SELECT target_table, file, rows_read, landed, duplicates, quarantined FROM ingest_batches")
        assert batch.to_pylist() == [{"target_table": "user_surveys", "file": str(csv), "rows_read": 10, "landed": 3,
                                      "duplicates": 1, "quarantined": 6}]
        # The table went in beside ours: the store's schema version is unchanged.
        assert st.schema_version() == SCHEMA_VERSION
        assert st.count("user_surveys") == 3
        assert st.user_tables() == ["user_surveys"]


def test_email_ids_are_pseudonymised_and_pii_in_text_columns_redacted(setup):
    tmp, prog, csv, url = setup
    assert cli("--table", "surveys", str(csv), "--program", str(prog), "--store", url).exit_code == 0
    rows = {r["survey_id"]: r for r in landed(url)}
    # The same keyed pseudonym as feedback.customer_id gets, so survey answers join to orders.
    assert rows["s1"]["customer_id"] == pseudonymize("jane.doe@example.com")
    assert rows["s8"]["customer_id"] == pseudonymize("john.smith@example.com")
    assert rows["s2"]["customer_id"] == "C-000002"  # a plain id stays as it is
    assert rows["s1"]["comment"] == "Great help, mail me at [EMAIL] or call [PHONE]"
    assert rows["s8"]["comment"] is None
    with open_store(url) as st:
        dump = json.dumps(st.sql("SELECT * FROM user_surveys").to_pylist(), default=str)
        raws = json.dumps(st.sql("SELECT raw FROM quarantine").to_pylist())
    for secret in ("jane.doe@example.com", "JOHN.Smith@Example.com", "555 2671"):
        assert secret not in dump and secret not in raws


def test_reingesting_the_same_file_adds_nothing_and_a_later_conflict_is_quarantined(setup):
    tmp, prog, csv, url = setup
    assert cli("--table", "surveys", str(csv), "--program", str(prog), "--store", url).exit_code == 0
    before = (landed(url), quarantine(url))
    res = cli("--table", "surveys", str(csv), "--program", str(prog), "--store", url, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert (report["landed"], report["duplicates"], report["quarantined"]) == (0, 10, 0)
    assert (landed(url), quarantine(url)) == before
    # A later export: s8 again unchanged (a duplicate), s1 with another score (a conflict with
    # the stored row, which first-wins keeps), s9 new.
    later = write(tmp / "later.csv", HEADER + "s8,john.smith@example.com,2025-03-03T12:30:00Z,10,\n"
                  "s1,jane.doe@example.com,2025-03-01T10:00:00Z,2,\n" "s9,C-000009,2025-03-04T08:00:00Z,0,meh\n")
    res = cli("--table", "surveys", str(later), "--program", str(prog), "--store", url, "--json")
    report = json.loads(res.output)
    assert (report["landed"], report["duplicates"], report["quarantined"]) == (1, 1, 1)
    assert [r["survey_id"] for r in landed(url)] == ["s1", "s2", "s8", "s9"]
    assert {r["survey_id"]: r["nps"] for r in landed(url)}["s1"] == 9
    assert [q for q in quarantine(url) if q[1] == str(later)] == [(
        "user_surveys", str(later), 2, "survey_id",
        f"conflict: survey_id 's1' appears again with different values; kept the row stored earlier ({csv}) "
        "(on_conflict = first-wins)")]


def test_last_wins_replaces_the_stored_row_and_quarantines_it(setup):
    tmp, _, csv, url = setup
    prog = write(tmp / "lw.toml", program_text(on_conflict="last-wins"))
    one = write(tmp / "one.csv", HEADER + "s1,C-1,2025-03-01T10:00:00Z,9,first\n")
    two = write(tmp / "two.csv", HEADER + "s1,C-1,2025-03-01T10:00:00Z,4,second\n")
    for f in (one, two):
        assert cli("--table", "surveys", str(f), "--program", str(prog), "--store", url).exit_code == 0
    assert [(r["survey_id"], r["nps"], r["comment"]) for r in landed(url)] == [("s1", 4, "second")]
    assert quarantine(url) == [("user_surveys", str(one), 0, "survey_id",
                                f"conflict: survey_id 's1' was replaced by a row with different values from "
                                f"{two.name} (on_conflict = last-wins)")]


def test_parquet_with_native_types_is_checked_like_csv(setup, tmp_path):
    _, prog_path, _, url = setup
    utc = timezone.utc
    table = pa.table({
        "survey_id": pa.array(["p1", "p2", None, "p4", "p5", "p6", "p1"], pa.string()),
        "customer_id": pa.array(["Jane.Doe@Example.com", "C-2", "C-3", "C-4", "C-5", "C-6", "Jane.Doe@Example.com"]),
        "answered_at": pa.array([datetime(2025, 3, 1, 10, tzinfo=utc), datetime(2025, 3, 2, tzinfo=utc),
                                 datetime(2025, 3, 3, tzinfo=utc), datetime(1980, 5, 1, tzinfo=utc), None,
                                 datetime(2025, 3, 6, tzinfo=utc), datetime(2025, 3, 1, 10, tzinfo=utc)],
                                pa.timestamp("us", tz="UTC")),
        # A float column: 8.0 is an integer, 7.5 is not.
        "nps": pa.array([8.0, 7.5, 6.0, 5.0, 4.0, 3.0, 8.0], pa.float64()),
        "comment": pa.array(["card 4111 1111 1111 1111 declined", "x", "y", "z", "w", "nul\x00byte",
                             "card 4111 1111 1111 1111 declined"]),
    })
    path = tmp_path / "surveys.parquet"
    pq.write_table(table, path)
    program = parse_program(prog_path.read_text())
    with open_store(url) as st:
        report = ingest_path(st, "user_surveys", path, program=program)
    assert (report.rows_read, report.landed, report.duplicates, report.quarantined) == (7, 1, 1, 5)
    rows = landed(url)
    assert rows == [{"survey_id": "p1", "customer_id": pseudonymize("jane.doe@example.com"),
                     "answered_at": datetime(2025, 3, 1, 10), "nps": 8, "comment": "card [CARD] declined"}]
    assert [q[2:] for q in quarantine(url)] == [
        (2, "nps", "cannot parse '7.5' as an integer"),
        (3, "survey_id", "missing required value"),
        (4, "answered_at", "'1980-05-01 00:00:00+00' is outside the accepted range 1990-01-01 to 2100-12-31 "
                           "(program file: [ingest] earliest / latest)"),
        (5, "answered_at", "missing required value"),
        (6, "comment", "contains a NUL byte (\\x00); remove it from the source"),
    ]


def test_retry_quarantine_lands_a_user_tables_rows_once_the_program_names_a_zone(setup):
    tmp, _, _, url = setup
    no_zone = write(tmp / "nozone.toml", program_text(timezone_line=False))
    zoned = write(tmp / "zoned.toml", program_text())
    naive = write(tmp / "naive.csv", HEADER + "n1,C-1,2025-03-01 10:00:00,9,a\nn2,C-2,2025-03-01T11:00:00Z,8,b\n")
    res = cli("--table", "surveys", str(naive), "--program", str(no_zone), "--store", url, "--json")
    assert (json.loads(res.output)["landed"], json.loads(res.output)["quarantined"]) == (1, 1)
    assert quarantine(url)[0][3:] == (
        "answered_at", "'2025-03-01 10:00:00' has no time zone; write it with an offset (e.g. +00:00) "
                       "or set program.timezone")
    res = cli("--retry-quarantine", "--table", "surveys", "--program", str(zoned), "--store", url, "--json")
    assert res.exit_code == 0, res.output
    tables = json.loads(res.output)["tables"]
    assert [(t["kind"], t["retried"], t["landed"], t["still_quarantined"]) for t in tables] == [("user_surveys", 1, 1, 0)]
    assert [(r["survey_id"], r["answered_at"]) for r in landed(url)] == [
        ("n1", datetime(2025, 3, 1, 10)), ("n2", datetime(2025, 3, 1, 11))]
    assert quarantine(url) == []
    # Retrying every table (no NAME) includes the declared user tables, and now finds nothing.
    with open_store(url) as st:
        assert retry_quarantine(st, program=zoned).retried == 0


def test_schema_file_declares_a_table_without_a_program(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./insightroi.toml here
    schema = write(tmp_path / "surveys.toml", "[table]\n" + SURVEYS.split("[[tables]]\n", 1)[1].replace(
        'name = "surveys"\n', ""))
    csv = write(tmp_path / "s.csv", HEADER + "s1,C-1,2025-03-01T10:00:00Z,9,fine\ns2,C-2,2025-03-01T10:00:00Z,,x\n")
    url = f"duckdb:///{tmp_path / 'store.duckdb'}"
    res = cli("--table", "surveys", str(csv), "--schema", str(schema), "--store", url, "--json")
    assert res.exit_code == 0, res.output
    assert (json.loads(res.output)["landed"], json.loads(res.output)["quarantined"]) == (1, 1)
    assert quarantine(url)[0][2:] == (2, "nps", "missing required value")
    # A schema file that contradicts the stored table (nps now a float, a new column) is refused.
    changed = write(tmp_path / "changed.toml", schema.read_text().replace('nps = "int64"', 'nps = "float64", channel = "string"'))
    res = cli("--table", "surveys", str(csv), "--schema", str(changed), "--store", url)
    assert res.exit_code == 1
    assert " ".join(res.output.split()) == (
        "error: user table 'user_surveys' holds 1 row(s) stored with other columns than declared: declared but not "
        "stored: channel (string); type changed: nps (stored int64, declared float64). User tables are not migrated: "
        "declare the columns as stored, or move the data away first (e.g. ALTER TABLE \"user_surveys\" RENAME TO "
        "\"user_surveys_old\" in DuckDB)")
    # A [table] whose name differs from --table, and one with an unknown key column.
    res = cli("--table", "nps", str(csv), "--schema", str(write(tmp_path / "named.toml", SURVEYS.replace("[[tables]]", "[table]"))),
              "--store", url)
    assert res.exit_code == 1 and "[table] name 'surveys' differs from the table asked for ('nps')" in res.output
    bad = write(tmp_path / "bad.toml", schema.read_text().replace('key = "survey_id"', 'key = "id"'))
    res = cli("--table", "surveys", str(csv), "--schema", str(bad), "--store", url)
    assert res.exit_code == 1
    assert "bad.toml: invalid [table] section:" in res.output and "key 'id' is not a column of table 'surveys'" in res.output


def test_an_undeclared_table_names_the_declared_ones(setup):
    tmp, prog, csv, url = setup
    res = cli("--table", "nps", str(csv), "--program", str(prog), "--store", url)
    assert res.exit_code == 1
    assert " ".join(res.output.split()) == (
        f"error: table 'nps' is not declared in {prog}; declared tables: surveys "
        "(add a [[tables]] entry, or give --schema FILE)")
    # The KIND form is unchanged and points at --table.
    res = cli("surveys", str(csv), "--program", str(prog), "--store", url)
    assert res.exit_code == 1 and "unknown kind 'surveys'" in res.output and "--table NAME" in res.output
    # The Python API says the same.
    with open_store(url) as st, pytest.raises(
            ValueError, match=r"^user table 'user_nps' is not declared in the program file's \[\[tables\]\]; declared: "
                              r"user_surveys\. Pass program= or the UserTable itself$"):
        ingest_path(st, "user_nps", csv, program=parse_program(prog.read_text()))


def test_jsonl_lines_and_column_names_like_the_engines_own_helpers(tmp_path):
    # Columns named like the validator's and the conflict query's helper columns (x and s_x, key,
    # mine, rid) and a JSONL file: typed checks per line, a conflict reported with its values.
    odd = UserTable(name="odd", columns={"key": "string", "x": "float64", "s_x": "string", "mine": "boolean",
                                         "rid": "date"}, key="key")
    path = write(tmp_path / "odd.jsonl", "\n".join([
        '{"key": "k1", "x": 1.5, "s_x": "a", "mine": true, "rid": "2025-03-01"}',
        '{"key": "k2", "x": "2,5", "s_x": "b"}',
        '{"key": "k3", "mine": "maybe"}',
        '{"key": "k4", "rid": "2025-02-30"}',
        '[1, 2]',
        '{"key": "k1", "x": 9.0, "s_x": "changed"}',
        '{"key": "k5", "x": "3", "s_x": "c", "mine": "no", "rid": "2025-03-05"}',
    ]) + "\n")
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        report = ingest_path(st, odd, path)
        assert (report.rows_read, report.landed, report.duplicates, report.quarantined) == (7, 2, 0, 5)
        assert st.sql('SELECT "key", x, s_x, mine, rid FROM user_odd ORDER BY 1').to_pylist() == [
            {"key": "k1", "x": 1.5, "s_x": "a", "mine": True, "rid": date(2025, 3, 1)},
            {"key": "k5", "x": 3.0, "s_x": "c", "mine": False, "rid": date(2025, 3, 5)},
        ]
        got = st.sql("SELECT row_number, field, reason, raw FROM quarantine ORDER BY row_number").to_pylist()
    assert [(r["row_number"], r["field"], r["reason"]) for r in got[:3]] == [
        (2, "x", "cannot parse '2,5' as a number"),
        (3, "mine", "cannot parse 'maybe' as a boolean"),
        (4, "rid", "cannot parse '2025-02-30' as a date"),
    ]
    assert got[3]["row_number"] == 5 and got[3]["field"] is None and "not a JSON object" in got[3]["reason"]
    assert got[4]["row_number"] == 6 and got[4]["reason"].startswith("conflict: key 'k1' appears again")
    assert json.loads(got[4]["raw"]) == {"key": "k1", "x": 9.0, "s_x": "changed", "mine": None, "rid": None}


def test_schema_command_lists_the_programs_user_tables(setup):
    tmp, prog, _, _ = setup
    res = CliRunner().invoke(app, ["schema", "surveys", "--program", str(prog), "--json"])
    assert res.exit_code == 0, res.output
    (table,) = json.loads(res.output)["tables"]
    assert (table["name"], table["key"], table["time_column"]) == ("user_surveys", "survey_id", "answered_at")
    cols = {c["name"]: c for c in table["columns"]}
    assert [c["name"] for c in table["columns"]] == ["survey_id", "customer_id", "answered_at", "nps", "comment",
                                                     "ingested_at", "batch_id"]
    assert [n for n, c in cols.items() if c["required"]] == ["survey_id", "answered_at", "nps"]
    assert [n for n, c in cols.items() if c["redacted"]] == ["comment"]
    assert cols["nps"]["type"] == "integer" and cols["batch_id"]["set_by_ingestion"]


def test_an_integer_id_column_that_looks_like_a_phone_number_lands_as_a_number(tmp_path):
    # Only text ids can take a pseudonym (the declaration refuses a numeric id column), so a
    # numeric customer id is a plain column and a phone-like number in it lands as a number.
    with pytest.raises(ValueError, match="id column 'account' must be a string column, not int64"):
        UserTable(name="crm", columns={"account": "int64", "owner": "string"}, key="account",
                  id_columns=["account", "owner"])
    crm = UserTable(name="crm", columns={"account": "int64", "owner": "string"}, key="account", id_columns=["owner"])
    path = write(tmp_path / "crm.csv", "account,owner\n4155552671,ana@example.com\n17,bo\n")
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        assert ingest_path(st, crm, path).landed == 2
        assert st.sql("SELECT account, owner FROM user_crm ORDER BY 1").to_pylist() == [
            {"account": 17, "owner": "bo"}, {"account": 4155552671, "owner": pseudonymize("ana@example.com")}]


def test_the_programs_csv_dialect_and_a_utf16_file_apply_to_user_tables(setup):
    tmp, _, _, url = setup
    prog = write(tmp / "semi.toml", program_text().replace('delimiter = ","', 'delimiter = ";"', 1))
    text = HEADER.replace(",", ";") + "s1;C-1;2025-03-01T10:00:00Z;9;\"Très bien; merci\"\ns2;C-2;2025-03-01T10:00:00Z;x;non\n"
    path = tmp / "semi.csv"
    path.write_bytes(text.encode("utf-16"))  # with its byte-order mark
    res = cli("--table", "surveys", str(path), "--program", str(prog), "--store", url, "--json")
    assert res.exit_code == 0, res.output
    assert (json.loads(res.output)["landed"], json.loads(res.output)["quarantined"]) == (1, 1)
    assert [(r["survey_id"], r["comment"]) for r in landed(url)] == [("s1", "Très bien; merci")]
    assert quarantine(url)[0][2:] == (2, "nps", "cannot parse 'x' as an integer")

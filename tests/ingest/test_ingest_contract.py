"""The data contract users read (``insightroi schema``, docs/data-contract.md) is the one ingestion
enforces; ``insightroi ingest`` reads ./insightroi.toml; ``--retry-quarantine`` lands each fixed row once."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import insightroi.ingest._engine as engine
from insightroi.cli import app
from insightroi.ingest import INGESTIBLE, data_contract, data_contract_markdown, ingest_frame, pseudonymize, retry_quarantine
from insightroi.ingest._validate import ENUMS, NOT_BEFORE, RANGES, SYSTEM_COLUMNS
from insightroi.program import starter_program_text
from insightroi.store import FEEDBACK_SOURCES, TABLES, open_store

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,source,event_time,rating,text\n"
NAIVE = "no time zone; write it with an offset"


@pytest.fixture(autouse=True)
def _no_user_environment(monkeypatch):
    # A developer's own INSIGHTROI_PROGRAM / INSIGHTROI_STORE must not leak into these runs.
    monkeypatch.delenv("INSIGHTROI_PROGRAM", raising=False)
    monkeypatch.delenv("INSIGHTROI_STORE", raising=False)


def write_csv(path: Path, rows: str) -> Path:
    path.write_text(HEADER + rows)
    return path


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def flat(text: str) -> str:  # Rich wraps long lines to the terminal width
    return " ".join(text.split())


def write_program(directory: Path, timezone: str | None) -> Path:
    text = starter_program_text()
    assert 'timezone = "UTC"' in text
    text = text.replace('timezone = "UTC"', f'timezone = "{timezone}"' if timezone else "")
    path = directory / "insightroi.toml"
    path.write_text(text, encoding="utf-8")
    return path


def example_row(table: str) -> dict[str, str]:
    spec = TABLES[table]
    return {c: info.example for c, info in spec.column_info.items() if c not in SYSTEM_COLUMNS}


def counts(url: str) -> dict[str, int]:
    with open_store(url) as st:
        return {t: st.count(t) for t in ("feedback", "orders", "quarantine", "ingest_batches")}


# ---- the contract -------------------------------------------------------------------------------
def test_schema_json_is_the_validators_rules():
    res = cli("schema", "--json")
    assert res.exit_code == 0, res.output
    tables = {t["name"]: t for t in json.loads(res.stdout)["tables"]}
    assert tuple(tables) == INGESTIBLE == (
        "products", "feedback", "orders", "tickets", "refunds", "traffic", "chain_events", "assignments",
        "annotations", "review_labels",
    )
    for name, t in tables.items():
        spec = TABLES[name]
        assert [c["name"] for c in t["columns"]] == list(spec.columns)
        assert [c["store_type"] for c in t["columns"]] == list(spec.columns.values())
        assert {c["name"] for c in t["columns"] if c["required"]} == set(spec.required)
        assert t["key"] == spec.key and t["description"]
        for c in t["columns"]:
            assert c["description"], (name, c["name"])
            assert (c["example"] is None) == c["set_by_ingestion"], (name, c["name"])
    fb = {c["name"]: c for c in tables["feedback"]["columns"]}
    assert fb["source"]["allowed"] == list(FEEDBACK_SOURCES)
    assert (fb["rating"]["minimum"], fb["rating"]["maximum"], fb["rating"]["rule"]) == (0, 10, "0 to 10")
    assert fb["event_time"]["type"] == "timestamp" and "program.timezone" in fb["event_time"]["format"]
    assert fb["text"]["redacted"] and not fb["id"]["redacted"]
    # Every rule the validator enforces is printed, and nothing else.
    printed = {(n, c["name"]) for n, t in tables.items() for c in t["columns"] if c["allowed"]}
    assert printed == set(ENUMS) and len(ENUMS) == 4
    ordered = {(n, c["name"]) for n, t in tables.items() for c in t["columns"] if c["rule"].startswith("not before ")}
    assert ordered == set(NOT_BEFORE) == {("tickets", "closed_at")}
    ranged = {(n, c["name"]) for n, t in tables.items() for c in t["columns"] if c["rule"] and not c["allowed"]}
    assert ranged - ordered == set(RANGES) and len(RANGES) == 6


def test_schema_table_and_unknown_table():
    res = cli("schema", "refunds")
    assert res.exit_code == 0, res.output
    out = flat(res.stdout)
    assert "refunds" in out and "refund, return" in out and ">= 0" in out and "sessions" not in out
    res = cli("schema", "nope")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr == (
        "error: unknown table 'nope'; tables: products, feedback, orders, tickets, refunds, traffic, "
        "chain_events, assignments, annotations, review_labels\n"
    )
    assert cli("schema", "quarantine").exit_code == 1  # not ingestible
    with pytest.raises(ValueError, match="review_labels"):
        data_contract("insights")


def test_committed_data_contract_is_the_generated_one():
    committed = (ROOT / "docs" / "data-contract.md").read_text(encoding="utf-8")
    generated = data_contract_markdown()
    assert committed == generated, "regenerate: insightroi schema --markdown > docs/data-contract.md"
    res = cli("schema", "--markdown")
    assert res.exit_code == 0 and res.stdout == generated
    assert generated.count("\n## ") == len(INGESTIBLE) + 1  # the rules, then one section per table


def test_every_example_lands_and_every_printed_rule_quarantines(tmp_path):
    with open_store(f"duckdb:///{tmp_path}/c.duckdb") as st:
        for table in INGESTIBLE:
            rep = ingest_frame(st, table, [example_row(table)], source=f"example {table}")
            assert (rep.landed, rep.quarantined) == (1, 0), (table, rep.errors)
        broken = [((t, c), "not-allowed") for (t, c) in ENUMS]
        broken += [((t, c), str(lo - 1 if lo is not None else hi + 1)) for (t, c), (lo, hi) in RANGES.items()]
        for i, ((table, col), value) in enumerate(broken):
            row = example_row(table) | {col: value, TABLES[table].key: f"broken-{i}"}
            rep = ingest_frame(st, table, [row], source=f"broken {table}.{col}")
            assert rep.quarantined == 1, (table, col)
            assert f"field {col!r}" in rep.errors[0], rep.errors
        assert st.count("quarantine") == len(broken) == 10


# ---- the program file ----------------------------------------------------------------------------
def test_ingest_reads_default_program_and_fails_on_a_named_missing_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "fb.csv"
    csv.write_text(HEADER + "a,review,2025-03-01 10:00:00,5,naive\nb,review,2025-03-01T10:00:00Z,4,utc\n")
    # No ./insightroi.toml: ingest works without a program, naive times are quarantined.
    res = cli("ingest", "feedback", str(csv), "--store", "duckdb:///plain.duckdb")
    assert res.exit_code == 0, res.output
    assert counts("duckdb:///plain.duckdb")["feedback"] == 1
    # A program named explicitly (option or environment) must exist; nothing is opened or written.
    res = cli("ingest", "feedback", str(csv), "--store", "duckdb:///named.duckdb", "--program", "missing.toml")
    assert res.exit_code == 1 and "missing.toml: no program file here" in flat(res.stderr)
    res = cli("ingest", "feedback", str(csv), "--store", "duckdb:///named.duckdb",
              env={"INSIGHTROI_PROGRAM": "gone.toml"})
    assert res.exit_code == 1 and "gone.toml: no program file here" in flat(res.stderr)
    assert not (tmp_path / "named.duckdb").exists()
    # ./insightroi.toml is read by default: its time zone localises the naive time.
    write_program(tmp_path, "Europe/Berlin")
    res = cli("ingest", "feedback", str(csv), "--store", "duckdb:///tz.duckdb")
    assert res.exit_code == 0, res.output
    assert "read in Europe/Berlin" in flat(res.stdout)
    with open_store("duckdb:///tz.duckdb") as st:
        rows = st.sql("SELECT id, event_time FROM feedback ORDER BY id").to_pylist()
    assert rows == [{"id": "a", "event_time": datetime(2025, 3, 1, 9, 0)}, {"id": "b", "event_time": datetime(2025, 3, 1, 10, 0)}]
    # An invalid default program is an error too (not silently ignored).
    (tmp_path / "insightroi.toml").write_text("[program]\nname = 1\n")
    res = cli("ingest", "feedback", str(csv), "--store", "duckdb:///bad.duckdb")
    assert res.exit_code == 1 and "invalid program file" in flat(res.stderr)


# ---- retrying the quarantine ---------------------------------------------------------------------
def test_retry_lands_naive_rows_once_after_the_timezone_is_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "duckdb:///s.duckdb"
    csv = tmp_path / "fb.csv"
    csv.write_text(HEADER + (
        "a,review,2025-03-01T10:00:00Z,5,offset\n"
        "b,review,2025-03-01 10:00:00,4,naive one\n"
        "c,Chat ,2025-07-02 23:30:00,3,naive two mail x@y.org\n"
        "d,review,2025-03-03 08:00,11,naive and out of range\n"
        "e,bogus,2025-03-01T10:00:00Z,2,bad enum\n"
        'f,review,2025-03-01T10:00:00Z,2,"too,many",x\n'
    ))
    jsonl = tmp_path / "fb.jsonl"
    jsonl.write_text(
        '{"id": "j1", "source": "call", "event_time": "2025-03-04 12:00:00", "rating": 2, "text": "naive json"}\n'
        "{not json\n"
    )
    pq.write_table(pa.table({
        "id": ["p1", "p2"], "source": ["review", "review"],
        "event_time": pa.array([datetime(2025, 3, 5, 8, 0), datetime(2025, 3, 5, 9, 0)], pa.timestamp("us")),
        "text": ["naive parquet", "naive parquet again"],
    }), tmp_path / "fb.parquet")
    for path in (csv, jsonl, tmp_path / "fb.parquet"):
        res = cli("ingest", "feedback", str(path), "--store", url)
        assert res.exit_code == 0, res.output
    assert "--retry-quarantine" in flat(res.stdout)
    # A later file already carries p2 (fixed at the source): its quarantined copy is a duplicate.
    cli("ingest", "feedback", str(write_csv(tmp_path / "fix.csv", "p2,review,2025-03-05T08:00:00Z,,fixed\n")),
        "--store", url)
    before = counts(url)
    assert (before["feedback"], before["quarantine"]) == (2, 9)
    with open_store(url) as st:
        naive = st.sql(f"SELECT count(*) AS n FROM quarantine WHERE reason LIKE '%{NAIVE}%'").to_pylist()[0]["n"]
    assert naive == 6  # b, c, d, j1, p1, p2

    # Without a time zone a retry changes nothing.
    res = cli("ingest", "--retry-quarantine", "--store", url, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["landed"] == 0 and counts(url) == before

    write_program(tmp_path, "Europe/Berlin")
    res = cli("ingest", "--retry-quarantine", "--store", url, "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)["tables"]
    assert len(got) == 1
    t = got[0]
    assert (t["kind"], t["retried"], t["landed"], t["duplicates"], t["still_quarantined"]) == ("feedback", 9, 4, 1, 4)
    assert (t["reasons_changed"], t["not_rereadable"]) == (1, 2)  # d is now out of range; f and "{not json"
    after = counts(url)
    assert (after["feedback"], after["quarantine"]) == (6, 4)
    assert after["ingest_batches"] == before["ingest_batches"] + 1
    with open_store(url) as st:
        rows = {r["id"]: r for r in st.sql("SELECT id, source, event_time, text, batch_id FROM feedback").to_pylist()}
        left = st.sql("SELECT file, row_number, field, reason FROM quarantine ORDER BY file, row_number").to_pylist()
        batch = st.sql(f"SELECT * FROM ingest_batches WHERE batch_id = '{t['batch_id']}'").to_pylist()[0]
    assert sorted(rows) == ["a", "b", "c", "j1", "p1", "p2"]
    assert rows["b"]["event_time"] == datetime(2025, 3, 1, 9, 0)  # CET, +01:00
    assert rows["c"]["event_time"] == datetime(2025, 7, 2, 21, 30)  # CEST, +02:00
    assert rows["j1"]["event_time"] == datetime(2025, 3, 4, 11, 0)
    assert rows["p1"]["event_time"] == datetime(2025, 3, 5, 7, 0)
    assert rows["p2"]["text"] == "fixed"  # the stored row wins over its quarantined copy
    assert rows["c"]["source"] == "chat" and rows["c"]["text"] == "naive two mail [EMAIL]"
    assert {rows[k]["batch_id"] for k in ("b", "c", "j1", "p1")} == {t["batch_id"]}
    assert [(Path(r["file"]).name, r["row_number"], r["field"]) for r in left] == [
        ("fb.csv", 4, "rating"), ("fb.csv", 5, "source"), ("fb.csv", 6, None), ("fb.jsonl", 2, None),
    ]
    assert left[0]["reason"] == "'11' is outside the allowed range 0 to 10"
    assert left[3]["reason"] == "not valid JSON"
    assert (batch["file"], batch["rows_read"], batch["landed"], batch["duplicates"], batch["quarantined"]) == (
        "<quarantine retry>", 5, 4, 1, 0)

    # Running it again changes nothing: every row landed exactly once.
    res = cli("ingest", "--retry-quarantine", "feedback", "--store", url, "--json")
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert (again["retried"], again["landed"], again["duplicates"], again["still_quarantined"]) == (4, 0, 0, 4)
    assert counts(url) == after


def test_retry_one_table_leaves_the_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "duckdb:///s.duckdb"
    write_csv(tmp_path / "fb.csv", "a,review,2025-03-01 10:00,5,x\nb,review,2025-03-01 11:00,5,y\n")
    (tmp_path / "orders.csv").write_text(
        "id,order_time,revenue\no1,2025-03-01 10:00,10\no2,2025-03-01 11:00,12.5\no3,2025-03-01 12:00,7\n"
    )
    assert cli("ingest", "feedback", "fb.csv", "--store", url).exit_code == 0
    assert cli("ingest", "orders", "orders.csv", "--store", url).exit_code == 0
    assert counts(url)["quarantine"] == 5
    write_program(tmp_path, "America/New_York")
    res = cli("ingest", "--retry-quarantine", "orders", "--store", url)
    assert res.exit_code == 0, res.output
    assert "Quarantine retried" in res.stdout and "orders" in res.stdout
    c = counts(url)
    assert (c["orders"], c["feedback"], c["quarantine"]) == (3, 0, 2)
    res = cli("ingest", "feedback", "--retry-quarantine", "--store", url)  # flag after the table works too
    assert res.exit_code == 0, res.output
    c = counts(url)
    assert (c["feedback"], c["quarantine"]) == (2, 0)
    res = cli("ingest", "--retry-quarantine", "--store", url)
    assert res.exit_code == 0 and "Nothing in quarantine" in res.stdout
    # Usage errors name the fix.
    res = cli("ingest", "--retry-quarantine", "feedback", "fb.csv", "--store", url)
    assert res.exit_code == 1 and "takes a table, not a PATH" in flat(res.stderr)
    res = cli("ingest", "feedback", "--store", url)
    assert res.exit_code == 1 and "give KIND and PATH" in flat(res.stderr)


def test_retry_is_one_transaction_per_table(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    with open_store(url) as st:
        ingest_frame(st, "feedback", [
            {"id": f"n{i}", "source": "review", "event_time": f"2025-03-0{i} 10:00", "text": "naive"} for i in (1, 2, 3)
        ])
        # Quarantine keeps raw rows redacted outside the id columns: this SKU is stored as
        # [PHONE] (not re-readable); a customer id keeps its pseudonym and lands under it.
        ingest_frame(st, "orders", [
            {"id": "o1", "order_time": "2025-03-01 10:00", "revenue": "5", "customer_id": "c-1"},
            {"id": "o2", "order_time": "2025-03-01 10:00", "revenue": "5", "sku": "+1 415 555 2671"},
            {"id": "o3", "order_time": "2025-03-01 10:00", "revenue": "5", "customer_id": "+1 415 555 2671"},
        ])
    before = counts(url)
    assert (before["feedback"], before["orders"], before["quarantine"]) == (0, 0, 6)
    prog = write_program(tmp_path, "UTC")

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(engine, "_drop_duplicates_landed", crash)
    with open_store(url) as st, pytest.raises(RuntimeError, match="disk full"):
        retry_quarantine(st, program=prog)
    assert counts(url) == before  # the failed table rolled back: nothing lost, nothing doubled
    monkeypatch.undo()
    with open_store(url) as st:
        rep = retry_quarantine(st, program=prog)
    assert [(t.kind, t.landed, t.still_quarantined, t.not_rereadable) for t in rep.tables] == [
        ("feedback", 3, 0, 0), ("orders", 2, 1, 1)]
    c = counts(url)
    assert (c["feedback"], c["orders"], c["quarantine"]) == (3, 2, 1)
    with open_store(url) as st:
        assert st.sql("SELECT id, customer_id FROM orders ORDER BY id").to_pylist() == [
            {"id": "o1", "customer_id": "c-1"}, {"id": "o3", "customer_id": pseudonymize("+14155552671")}]
        assert NAIVE in st.sql("SELECT reason FROM quarantine").to_pylist()[0]["reason"]

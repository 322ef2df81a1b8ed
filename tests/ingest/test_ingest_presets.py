"""``insightroi ingest --preset NAME FILE`` (issue 23): vendor exports as written land in our tables.

Each preset ingests its sample under ``tests/data/presets/`` through the real CLI into a DuckDB
file, with exact counts per table and spot-checked values; a malformed copy of each lands its
good rows and quarantines the bad ones under their record number in the original file, with
the field and reason. The samples are invented people and orders written in each vendor's
column order and formats (see ``docs/presets.md`` for the sources).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.ingest import pseudonymize
from insightroi.ingest._presets import PRESETS, _apply, preset_names, presets_markdown

DATA = Path(__file__).resolve().parents[1] / "data" / "presets"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # No ./insightroi.toml from the checkout, and a fixed pseudonym key.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "presets-test-key-0123456789")


def run(*args: str):
    return CliRunner().invoke(app, ["ingest", *args])


def ingest(tmp_path: Path, preset: str, path: Path, *extra: str, db: str = "s.duckdb"):
    return run("--preset", preset, str(path), "--store", f"duckdb:///{tmp_path / db}", *extra)


def sql(tmp_path: Path, query: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def count(tmp_path: Path, table: str) -> int:
    return sql(tmp_path, f'SELECT count(*) FROM "{table}"')[0][0]


def quarantine(tmp_path: Path) -> list[tuple]:
    return sql(tmp_path, "SELECT target_table, file, row_number, field, reason FROM quarantine "
                         "ORDER BY target_table, row_number")


def read_sample(name: str) -> tuple[list[str], list[list[str]], str]:
    raw = (DATA / f"{name}.csv").read_bytes()
    enc = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
    rows = list(csv.reader(io.StringIO(raw.decode(enc), newline="")))
    return rows[0], rows[1:], enc


def write_variant(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the sample with ``edit(header, rows)`` applied, in the sample's encoding."""
    header, rows, enc = read_sample(name)
    edit(header, rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path = tmp_path / f"bad_{name}.csv"
    path.write_bytes(buf.getvalue().encode(enc))
    return path


def setcell(header: list[str], rows: list[list[str]], record: int, column: str, value: str) -> None:
    """Set a cell of record ``record`` (1-based, as the quarantine counts)."""
    rows[record - 1][header.index(column)] = value


# ---- every preset's sample lands whole ------------------------------------------------------
EXPECTED = {
    # preset: {table: rows}
    "zendesk_tickets": {"tickets": 12, "feedback": 12, "user_zendesk_tickets_attributes": 12},
    "intercom_conversations": {"feedback": 10, "user_intercom_conversations_attributes": 10},
    "app_store_reviews": {"feedback": 10},
    "google_play_reviews": {"feedback": 12, "user_google_play_reviews_attributes": 12},
    "trustpilot_reviews": {"feedback": 10, "user_trustpilot_reviews_attributes": 10},
    "shopify_orders": {"orders": 13, "user_shopify_orders_attributes": 13},
    "loop_returns": {"refunds": 8, "user_loop_returns_attributes": 8},
}


def test_every_preset_has_a_sample_and_an_expectation():
    assert sorted(EXPECTED) == sorted(preset_names())
    assert sorted(p.stem for p in DATA.glob("*.csv")) == sorted(preset_names())


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_sample_lands_with_nothing_quarantined(tmp_path, preset):
    res = ingest(tmp_path, preset, DATA / f"{preset}.csv", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {t: r["landed"] for t, r in out["tables"].items()} == EXPECTED[preset]
    assert all(r["quarantined"] == 0 for r in out["tables"].values())
    for table, n in EXPECTED[preset].items():
        assert count(tmp_path, table) == n
    assert quarantine(tmp_path) == []
    # Ingesting the same export again lands nothing and quarantines nothing.
    again = json.loads(ingest(tmp_path, preset, DATA / f"{preset}.csv", "--json").output)
    assert {t: r["landed"] for t, r in again["tables"].items()} == {t: 0 for t in EXPECTED[preset]}
    for table, n in EXPECTED[preset].items():
        assert count(tmp_path, table) == n


def test_zendesk_values(tmp_path):
    res = ingest(tmp_path, "zendesk_tickets", DATA / "zendesk_tickets.csv")
    assert res.exit_code == 0, res.output
    t = sql(tmp_path, "SELECT id, customer_id, channel, opened_at, closed_at, team FROM tickets WHERE id = 'zd-10231'")
    # 2025-03-03 09:12:44 +0100 is 08:12:44 UTC; solved five hours later.
    assert t == [("zd-10231", pseudonymize("anna.berg@example.com"), "email",
                  datetime(2025, 3, 3, 8, 12, 44), datetime(2025, 3, 3, 13, 12, 44), "Support")]
    # Via "Phone call (incoming)" and "Voicemail" both map to phone; Solved at 15:30:44 +0100 is
    # 14:30:44 UTC, and a ticket on hold has no closed_at.
    assert sql(tmp_path, "SELECT channel, closed_at FROM tickets WHERE id IN ('zd-10237', 'zd-10238') ORDER BY id") == [
        ("phone", datetime(2025, 3, 5, 14, 30, 44)), ("phone", None)]
    fb = sql(tmp_path, "SELECT source, channel, text FROM feedback WHERE id = 'zd-10232'")
    assert fb == [("ticket", "web", "Refund to [EMAIL] still not received after 10 days")]
    attrs = json.loads(sql(tmp_path, "SELECT attributes FROM user_zendesk_tickets_attributes WHERE id = 'zd-10238'")[0][0])
    assert attrs["Status"] == "hold" and attrs["Priority"] == "normal"
    assert attrs["Satisfaction Score"] == "Bad" and attrs["Requester id"] == "380007"
    # Agent and requester names are not kept anywhere.
    assert "Requester" not in attrs and "Assignee" not in attrs
    dump = str(sql(tmp_path, "SELECT * FROM user_zendesk_tickets_attributes"))
    assert "Ravi Patel" not in dump and "Lena Vogt" not in dump


def test_google_play_values(tmp_path):
    res = ingest(tmp_path, "google_play_reviews", DATA / "google_play_reviews.csv")
    assert res.exit_code == 0, res.output
    rows = sql(tmp_path, "SELECT id, source, channel, locale, product_id, event_time, rating, text FROM feedback "
                         "ORDER BY event_time LIMIT 2")
    assert rows[0][1:] == ("review", "google_play", "en", "com.example.shop", datetime(2025, 3, 1, 10, 15, 42), 5.0,
                           "Fast checkout, love the dark mode")
    assert rows[1][6] == 1.0 and rows[1][5] == datetime(2025, 3, 2, 15, 22, 42)
    # The id hashes the stable columns, so the first record's id is known in advance.
    rule = PRESETS["google_play_reviews"]["tables"]["feedback"]["id"]
    header, recs, _ = read_sample("google_play_reviews")
    assert rows[0][0] == _apply(rule, dict(zip(header, recs[0])), {})
    assert rows[0][0].startswith("gp-") and len(rows[0][0]) == 19
    attrs = json.loads(sql(tmp_path, "SELECT attributes FROM user_google_play_reviews_attributes WHERE id = ?",
                           [rows[0][0]])[0][0])
    assert attrs["App Version Name"] == "4.12.0"
    assert "reviewId=gp:AOqpTOH0000" in attrs["Review Link"]
    assert sql(tmp_path, "SELECT count(*) FROM feedback WHERE text LIKE '%kay.l@example.com%'") == [(0,)]
    assert sql(tmp_path, "SELECT count(*) FROM feedback WHERE text = 'Was charged but order not placed, email me at [EMAIL]'") == [(1,)]


def test_google_play_ids_tell_reviews_apart_when_the_millis_column_is_blank():
    # A user's report had the millis, device and version columns empty: two different reviews
    # got one id and the second was quarantined as a conflict. With millis present, ids are
    # what they were (re-exports keep matching rows already stored).
    rule = PRESETS["google_play_reviews"]["tables"]["feedback"]["id"]
    header, recs, _ = read_sample("google_play_reviews")
    row = dict(zip(header, recs[0]))
    blank = {**row, "Review Submit Millis Since Epoch": "", "Device": "", "App Version Code": ""}
    later = {**blank, "Review Submit Date and Time": "2025-03-09T08:00:00Z"}
    assert _apply(rule, blank, {}) != _apply(rule, later, {})
    legacy = {**rule, "fallback": {}}
    assert _apply(rule, row, {}) == _apply(legacy, row, {})


def test_app_store_values(tmp_path):
    res = ingest(tmp_path, "app_store_reviews", DATA / "app_store_reviews.csv")
    assert res.exit_code == 0, res.output
    assert sql(tmp_path, "SELECT channel, region, event_time, rating, text FROM feedback WHERE id = 'as-12050000000'") == [
        ("app_store", "USA", datetime(2025, 2, 14, 16, 21, 9), 5.0,
         "Love it\nCheckout is fast and the new size guide is spot on.")]
    # Every column is mapped or dropped (nickname): no attributes table.
    assert sql(tmp_path, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'user_app_store%'") == [(0,)]
    assert "runner88" not in str(sql(tmp_path, "SELECT * FROM feedback"))


def test_intercom_values(tmp_path):
    res = ingest(tmp_path, "intercom_conversations", DATA / "intercom_conversations.csv")
    assert res.exit_code == 0, res.output
    got = sql(tmp_path, "SELECT source, channel, customer_id, event_time, rating, text FROM feedback "
                        "WHERE id IN ('ic-148000001037', 'ic-148000002074', 'ic-148000003111') ORDER BY id")
    # created_at is Unix seconds; HTML paragraphs become lines and entities are decoded.
    assert got[0] == ("chat", "messenger", pseudonymize("sam.ortiz@example.com"), datetime(2025, 3, 7, 11, 30, 37), 2.0,
                      "The app crashes when I open my basket.\niPhone 13, latest version.")
    assert got[1][1] == "email" and got[1][4] is None
    assert "221B Baker Street" not in got[1][5]
    assert got[2][5] == "Your chat bot keeps sending me in circles & I just want a refund"
    attrs = json.loads(sql(tmp_path, "SELECT attributes FROM user_intercom_conversations_attributes "
                                     "WHERE id = 'ic-148000004148'")[0][0])
    assert attrs["conversation_rating.remark"] == "quick answer" and attrs["state"] == "open"


def test_trustpilot_values(tmp_path):
    res = ingest(tmp_path, "trustpilot_reviews", DATA / "trustpilot_reviews.csv")
    assert res.exit_code == 0, res.output
    assert sql(tmp_path, "SELECT channel, locale, customer_id, event_time, rating FROM feedback "
                         "WHERE id = 'tp-67c6f003e0a1b2c3d4e5f6a7'") == [
        ("trustpilot", "de", pseudonymize("kai.weber@example.de"), datetime(2025, 3, 8, 0, 33, 10), 2.0)]
    text = sql(tmp_path, "SELECT text FROM feedback WHERE id = 'tp-67c6f006e0a1b2c3d4e5f6a7'")[0][0]
    assert text == "Wrong item\nReceived a blue jacket instead of black. Call me at [PHONE]."
    attrs = json.loads(sql(tmp_path, "SELECT attributes FROM user_trustpilot_reviews_attributes "
                                     "WHERE id = 'tp-67c6f001e0a1b2c3d4e5f6a7'")[0][0])
    assert attrs["Reference Id"] == "#1041" and attrs["Company Reply Content"] == "We are sorry to hear this."
    assert "Paul Grant" not in str(sql(tmp_path, "SELECT * FROM user_trustpilot_reviews_attributes"))


def test_shopify_values(tmp_path):
    res = ingest(tmp_path, "shopify_orders", DATA / "shopify_orders.csv")
    assert res.exit_code == 0, res.output
    rows = sql(tmp_path, "SELECT id, customer_id, sku, region, order_time, quantity, revenue, margin FROM orders "
                         "WHERE id LIKE '#1043/%' ORDER BY id")
    sam = pseudonymize("sam.ortiz@example.com")
    # One row per line; the WELCOME10 discount sits on the first line: 89.90 x 1 - 10.00.
    assert rows == [
        ("#1043/1", sam, "SHO-3F2A1-002-44", "US", datetime(2025, 3, 2, 7, 45), 1, pytest.approx(79.9), None),
        ("#1043/2", sam, "ACC-55D10-001", "US", datetime(2025, 3, 2, 7, 45), 2, pytest.approx(28.0), None),
        ("#1043/3", sam, "ACC-55D12-002", "US", datetime(2025, 3, 2, 7, 45), 1, pytest.approx(24.0), None),
    ]
    # Order-level columns written on the first line only are carried to the order's other lines.
    attrs = json.loads(sql(tmp_path, "SELECT attributes FROM user_shopify_orders_attributes WHERE id = '#1043/3'")[0][0])
    assert attrs["Financial Status"] == "paid" and attrs["Currency"] == "EUR"
    assert attrs["Lineitem name"] == "Running Cap"
    # Names, street addresses and postcodes of the billing and shipping blocks are not kept.
    dump = str(sql(tmp_path, "SELECT * FROM user_shopify_orders_attributes"))
    assert "Example Street" not in dump and "Sam Ortiz" not in dump and "73301" not in dump
    # The same e-mail in Shopify and Zendesk is the same pseudonymous customer.
    assert ingest(tmp_path, "zendesk_tickets", DATA / "zendesk_tickets.csv").exit_code == 0
    # Anna's ticket joins her two orders' four lines (#1041 and #1047).
    assert sql(tmp_path, "SELECT o.id FROM orders o JOIN tickets t USING (customer_id) WHERE t.id = 'zd-10231' "
                         "ORDER BY o.id") == [("#1041/1",), ("#1041/2",), ("#1047/1",), ("#1047/2",)]


def test_loop_returns_values(tmp_path):
    res = ingest(tmp_path, "loop_returns", DATA / "loop_returns.csv")
    assert res.exit_code == 0, res.output
    rows = sql(tmp_path, "SELECT id, order_id, customer_id, sku, kind, event_time, amount, reason FROM refunds "
                         "WHERE id LIKE 'R-40025/%' ORDER BY id")
    anna = pseudonymize("anna.berg@example.com")
    # The return's second line carries the first line's order, customer and time.
    assert rows == [
        ("R-40025/1", "#1047", anna, "ACC-55D10-001", "return", datetime(2025, 3, 13, 10, 55, 9), 14.0,
         "Damaged in transit\nLid cracked; email me at [EMAIL]"),
        ("R-40025/2", "#1047", anna, "SOC-11B20-001", "return", datetime(2025, 3, 13, 10, 55, 9), 39.0, "Too small"),
    ]
    attrs = json.loads(sql(tmp_path, "SELECT attributes FROM user_loop_returns_attributes WHERE id = 'R-40022/1'")[0][0])
    assert attrs["Return Type"] == "Exchange" and attrs["Shipping Status"] == "In-transit"


# ---- malformed variants: good rows land, bad ones are named by record, field and reason -------
def _zendesk(h, r):
    setcell(h, r, 3, "Created at", "31/02/2025 25:61")
    setcell(h, r, 7, "Id", "")


def _intercom(h, r):
    setcell(h, r, 2, "created_at", "yesterday")
    setcell(h, r, 5, "conversation_rating.rating", "9")


def _app_store(h, r):
    setcell(h, r, 4, "rating", "7")
    setcell(h, r, 9, "createdDate", "2025-02-30T10:00:00Z")


def _google_play(h, r):
    setcell(h, r, 6, "Star Rating", "7")
    setcell(h, r, 10, "Review Text", "")  # a rating without words is not feedback


def _trustpilot(h, r):
    setcell(h, r, 1, "Review Stars", "0")
    setcell(h, r, 8, "Review Created (UTC)", "2025-13-45 10:00:00")


def _shopify(h, r):
    setcell(h, r, 2, "Lineitem price", "19,50 EUR")
    r[10] = r[10][:5]  # a record cut short (5 fields of 75)


def _loop(h, r):
    setcell(h, r, 1, "Refund Amount", "-89.90")
    setcell(h, r, 5, "Created At", "")


MALFORMED = {
    # preset: (edit, main table, {record: (field, reason fragment)}, rows landed in the main table)
    "zendesk_tickets": (_zendesk, "tickets", {3: ("opened_at", "cannot parse '31/02/2025 25:61' as a timestamp"),
                                              7: ("id", "missing required value")}, 10),
    "intercom_conversations": (_intercom, "feedback", {2: ("event_time", "cannot parse 'yesterday' as a timestamp"),
                                                       5: ("rating", "9 (conversation_rating.rating must be 1-5)")}, 8),
    "app_store_reviews": (_app_store, "feedback", {4: ("rating", "7 (rating must be 1-5)"),
                                                   9: ("event_time", "cannot parse '2025-02-30T10:00:00Z'")}, 8),
    "google_play_reviews": (_google_play, "feedback", {6: ("rating", "7 (Star Rating must be 1-5)"),
                                                       10: ("text", "missing required value")}, 10),
    "trustpilot_reviews": (_trustpilot, "feedback", {1: ("rating", "0 (Review Stars must be 1-5)"),
                                                     8: ("event_time", "cannot parse '2025-13-45 10:00:00'")}, 8),
    "shopify_orders": (_shopify, "orders", {2: ("revenue", "cannot parse '19,50 EUR' as a number"),
                                            11: ("order_time", "line 12 has 5 fields, the header has 75")}, 11),
    "loop_returns": (_loop, "refunds", {1: ("amount", "'-89.90' is outside the allowed range"),
                                        5: ("event_time", "missing required value")}, 6),
}


@pytest.mark.parametrize("preset", sorted(MALFORMED))
def test_malformed_export_lands_good_rows_and_names_bad_ones(tmp_path, preset):
    edit, main, bad, landed = MALFORMED[preset]
    path = write_variant(tmp_path, preset, edit)
    res = ingest(tmp_path, preset, path, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["tables"][main]["landed"] == landed
    assert out["tables"][main]["quarantined"] == len(bad)
    assert count(tmp_path, main) == landed
    q = [row for row in quarantine(tmp_path) if row[0] == main]
    assert [(r[1], r[2], r[3]) for r in q] == [(str(path), n, field) for n, (field, _) in sorted(bad.items())]
    for (_, _, n, field, reason), (rec, (f, frag)) in zip(q, sorted(bad.items())):
        assert frag in reason, (rec, reason)
    # A quarantined record leaves no attributes behind: each attributes row describes a stored row.
    attrs = f"user_{preset}_attributes"
    if sql(tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [attrs])[0][0]:
        orphans = sql(tmp_path, f'SELECT a.id FROM "{attrs}" a ANTI JOIN "{main}" m ON a.id = m.id')
        assert orphans == [], orphans
        assert count(tmp_path, attrs) <= landed
    # The printed reasons (a fresh store, so the rows are quarantined anew) add the physical line.
    text = " ".join(ingest(tmp_path, preset, path, db="printed.duckdb").output.split())
    for rec, (field, _) in bad.items():
        assert f"row {rec} (line {rec + 1}), field '{field}'" in text, text


def test_printed_reason_names_the_vendor_column(tmp_path):
    path = write_variant(tmp_path, "google_play_reviews", _google_play)
    res = ingest(tmp_path, "google_play_reviews", path)
    assert res.exit_code == 0, res.output
    assert "row 6 (line 7), field 'rating' (from 'Star Rating'): cannot parse '7 (Star Rating must be 1-5)'" \
        in " ".join(res.output.split())


def test_quarantined_raw_row_is_redacted(tmp_path):
    # A bad Zendesk row whose subject carries an e-mail: the quarantine keeps it redacted.
    path = write_variant(tmp_path, "zendesk_tickets", lambda h, r: setcell(h, r, 2, "Created at", "never"))
    assert ingest(tmp_path, "zendesk_tickets", path).exit_code == 0
    raws = [r[0] for r in sql(tmp_path, "SELECT raw FROM quarantine WHERE target_table = 'feedback'")]
    assert len(raws) == 1
    assert "anna.berg@example.com" not in raws[0] and "marco.rossi@example.org" not in raws[0]
    assert "[EMAIL]" in raws[0]


def test_quoted_multiline_value_reports_its_physical_line(tmp_path):
    # Record 2 spans lines 3-4, so record 3 starts on line 5: messages say so.
    def edit(h, r):
        setcell(h, r, 2, "Review Content", "First line\nsecond line")
        setcell(h, r, 3, "Review Stars", "6")
    path = write_variant(tmp_path, "trustpilot_reviews", edit)
    res = ingest(tmp_path, "trustpilot_reviews", path)
    assert "row 3 (line 5), field 'rating' (from 'Review Stars')" in " ".join(res.output.split())
    assert sql(tmp_path, "SELECT row_number FROM quarantine") == [(3,)]


def test_zendesk_description_is_the_text_when_present(tmp_path):
    def edit(h, r):
        h.append("Description")
        for i, row in enumerate(r):
            row.append("" if i else "The box was crushed and one shoe was missing. Call +49 30 1234567.")
    path = write_variant(tmp_path, "zendesk_tickets", edit)
    assert ingest(tmp_path, "zendesk_tickets", path).exit_code == 0
    texts = dict(sql(tmp_path, "SELECT id, text FROM feedback WHERE id IN ('zd-10231', 'zd-10233')"))
    assert texts == {"zd-10231": "The box was crushed and one shoe was missing. Call [PHONE].",
                     "zd-10233": "Sole came apart after one week of running"}


# ---- refusals -------------------------------------------------------------------------------
def test_unknown_preset_is_refused_naming_the_available_ones(tmp_path):
    res = ingest(tmp_path, "zendesk", DATA / "zendesk_tickets.csv")
    assert res.exit_code == 1
    one_line = " ".join(res.output.split())
    assert "unknown preset 'zendesk'" in one_line
    for name in PRESETS:
        assert name in one_line
    assert not (tmp_path / "s.duckdb").exists()


def test_another_vendors_file_is_refused_whole(tmp_path):
    res = ingest(tmp_path, "shopify_orders", DATA / "trustpilot_reviews.csv")
    assert res.exit_code == 1
    one_line = " ".join(res.output.split())
    assert "not a Shopify shopify_orders export: missing column(s) 'Name', 'Created at', 'Lineitem quantity', " \
           "'Lineitem price'" in one_line
    assert count(tmp_path, "orders") == 0 and quarantine(tmp_path) == []


def test_preset_takes_only_a_file(tmp_path):
    res = run("--preset", "shopify_orders", "orders", str(DATA / "shopify_orders.csv"))
    assert res.exit_code == 1
    assert "with --preset give only the FILE" in " ".join(res.output.split())
    res = run("--preset", "shopify_orders", "--table", "x", str(DATA / "shopify_orders.csv"))
    assert res.exit_code == 1 and "without --table" in " ".join(res.output.split())


@pytest.mark.parametrize("args", [["--list-presets"], ["--preset", "list"]])
def test_list_presets(args):
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    listed = {p["name"]: p["tables"] for p in json.loads(res.output)["presets"]}
    assert listed == {
        "zendesk_tickets": ["tickets", "feedback"], "intercom_conversations": ["feedback"],
        "app_store_reviews": ["feedback"], "google_play_reviews": ["feedback"],
        "trustpilot_reviews": ["feedback"], "shopify_orders": ["orders"], "loop_returns": ["refunds"],
    }
    text = run(*args).output
    assert "google_play_reviews" in text and "feedback" in text


def test_docs_list_every_preset_with_its_source():
    doc = (ROOT / "docs" / "presets.md").read_text(encoding="utf-8")
    assert presets_markdown() in doc
    for name, p in PRESETS.items():
        assert f"`{name}`" in doc and p["url"] in doc

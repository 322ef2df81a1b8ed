"""``insightroi erase`` on a real store: the tiny demo world plus one customer, Jane, whose id is an
e-mail and whose rows reach every table an erasure must clean (feedback with its insights and
review label, orders, tickets, a refund, a quarantined row, an alert's evidence, a user table,
saved results), and a plain-id demo customer named in a chain event and a quarantined row.

After both erasures a grep of every VARCHAR column of every table (from information_schema, not
a list kept here) finds none of their ids, e-mails or texts; everyone else's rows are untouched;
``insightroi run`` works on what is left.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.live_server import LiveServer
from insightroi.bundle import assemble_bundle
from insightroi.cli import app
from insightroi.ingest import ingest_frame, pseudonymize
from insightroi.privacy import ERASED, results_before_erasure, subject_hash
from insightroi.program import load_program
from insightroi.report import render_html
from insightroi.server import create_app
from insightroi.services import run_all
from insightroi.store import open_store

JANE = "Jane.Doe+vip@Example.com"
PLAIN = "C000000622"  # a demo customer with feedback, orders and tickets (seed 3)
JANE_TEXTS = {
    "FJ-0001": "My Zephyrine teapot lid shattered on the second use, utterly disappointed",
    "FJ-0002": "Courier left the parcel in the rain at Quillmore Lane, everything soaked",
    "FJ-0003": "Nobody answered my three messages about the Zephyrine refund for weeks",
}
JANE_REASON = "Zephyrine teapot arrived cracked along the spout, want my money back"
JANE_SURVEY = "Would not buy the Zephyrine range again after the lid broke"
OTHER_SURVEY = "Lovely kettle, quick delivery, five stars from Harrowgate"
KEY = "privacy-test-key-0123456789abcdef"

SURVEYS_TOML = """
[[tables]]
name = "crm_surveys"
key = "id"
time_column = "answered_at"
text_columns = ["comment"]
id_columns = ["respondent"]
columns = { id = "string", respondent = "string", answered_at = "timestamp", score = "int64", comment = "string" }
"""


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout


def _varchar_columns(con) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE data_type = 'VARCHAR' AND table_schema = 'main' ORDER BY 1, 2").fetchall()


def _grep(con, needles: list[str]) -> dict[str, list[str]]:
    """needle -> 'table.column' where some row contains it (case-insensitive), over every text column."""
    hits: dict[str, list[str]] = {}
    for t, c in _varchar_columns(con):
        for n in needles:
            q = f'SELECT count(*) FROM "{t}" WHERE contains(lower("{c}"), ?)'
            if con.execute(q, [n.lower()]).fetchone()[0]:
                hits.setdefault(n, []).append(f"{t}.{c}")
    return hits


def _counts(con) -> dict[str, int]:
    tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
    return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def _others(con) -> dict[str, list]:
    """Every row of the people not erased, per table (what must survive exactly)."""
    mine = [JANE, JANE.lower(), pseudonymize(JANE), PLAIN]
    out = {}
    for t in ("feedback", "orders", "tickets", "refunds"):
        # Jane's rows have ids FJ-, OJ-, TJ-, RJ- (TJ-0002 has no customer id: it is hers by its order).
        out[t] = con.execute(f"SELECT * EXCLUDE (ingested_at, batch_id) FROM {t} WHERE id NOT LIKE '_J-%' AND "
                             "(customer_id IS NULL OR customer_id NOT IN (SELECT unnest(?))) ORDER BY id",
                             [mine]).fetchall()
    out["user_crm_surveys"] = con.execute("SELECT * FROM user_crm_surveys WHERE respondent NOT IN (SELECT unnest(?)) ORDER BY id",
                                      [mine]).fetchall()
    return out


@pytest.fixture(scope="module")
def erased(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("INSIGHTROI_PII_KEY", KEY)
    out: Path = tmp_path_factory.mktemp("erase")
    code, _ = _cli("demo", "--out", str(out), "--scale", "tiny", "--seed", "3", "--jobs", "1", "--json")
    assert code == 0
    program = out / "world" / "insightroi.toml"
    # The demo's sections were saved under the demo's program; the report and dashboard show them
    # under that file (under another one they are stale and left out).
    demo_program = out / "demo-program.toml"
    demo_program.write_text(program.read_text())
    program.write_text(program.read_text() + SURVEYS_TOML)
    prog = load_program(program)
    url = f"duckdb:///{out / 'insightroi.duckdb'}"
    with open_store(url) as st:
        sku, fam = st.sql("SELECT sku, sku_family FROM products ORDER BY sku LIMIT 1").to_pylist()[0].values()
        plain_fb = st.sql(f"SELECT id FROM feedback WHERE customer_id = '{PLAIN}' ORDER BY id").column("id").to_pylist()
        base = {"sku": sku, "sku_family": fam, "region": "north", "segment": "returning"}
        fb = pd.DataFrame([{**base, "id": i, "source": "review", "customer_id": JANE, "rating": 1.0, "text": t,
                            "event_time": f"2025-06-0{n + 1}T10:00:00Z"} for n, (i, t) in enumerate(JANE_TEXTS.items())])
        # First sent with a rating out of range (quarantined with its text), then fixed.
        ingest_frame(st, "feedback", fb.iloc[:1].assign(rating=99.0), source="crm-export", program=prog)
        ingest_frame(st, "feedback", fb, program=prog)
        ingest_frame(st, "orders", pd.DataFrame([
            {**base, "id": f"OJ-000{n}", "customer_id": JANE, "order_time": "2025-05-30T09:00:00Z", "quantity": 1,
             "revenue": 40.0, "margin": 10.0} for n in (1, 2)]), program=prog)
        ingest_frame(st, "tickets", pd.DataFrame([
            {**base, "id": "TJ-0001", "customer_id": JANE, "opened_at": "2025-06-02T08:00:00Z", "handle_minutes": 5.0},
            # No customer id: tied to Jane through her order.
            {**base, "id": "TJ-0002", "order_id": "OJ-0002", "opened_at": "2025-06-03T08:00:00Z", "handle_minutes": 7.0},
        ]), program=prog)
        ingest_frame(st, "refunds", pd.DataFrame([
            {**base, "id": "RJ-0001", "order_id": "OJ-0001", "customer_id": JANE, "kind": "return",
             "event_time": "2025-06-04T10:00:00Z", "amount": 40.0, "reason": JANE_REASON}]), program=prog)
        ingest_frame(st, "review_labels", pd.DataFrame([
            {"id": "RL-J1", "feedback_id": "FJ-0001", "task": "topic", "label": "product_defect", "reviewer": "qa.chen",
             "reviewed_at": "2025-06-05T10:00:00Z"}]), program=prog)
        ingest_frame(st, "chain_events", pd.DataFrame([
            # An alert whose evidence lists Jane's feedback among another customer's: scrubbed, kept.
            {"id": "CE-J1", "event_type": "alert_delivered", "alert_id": "AL-J1", "event_time": "2025-06-03T00:00:00Z",
             "actor": "insightroi-detect", "team": "logistics", "topic": "shipping_delay", "sku_family": fam,
             "payload": json.dumps({"feedback_ids": ["FJ-0002", "F0000000001"], "observed": 4})},
            # A note naming the plain-id customer: removed.
            {"id": "CE-P1", "event_type": "action_taken", "alert_id": "AL-J1", "event_time": "2025-06-04T00:00:00Z",
             "actor": "logistics.ana", "team": "logistics", "topic": "shipping_delay", "sku_family": fam,
             "payload": json.dumps({"note": f"called {PLAIN} back about the late parcel"})},
        ]), program=prog)
        # A bad row of the plain-id customer's (its raw text holds the id).
        ingest_frame(st, "orders", pd.DataFrame([{**base, "id": "OP-BAD", "customer_id": PLAIN,
                                                  "order_time": "2025-06-01T00:00:00Z", "revenue": -5.0,
                                                  "quantity": -3}]), program=prog)
        # The user's own table (as `insightroi ingest --table crm_surveys` stores it: the e-mail id
        # pseudonymised); one row still carries the raw e-mail, as an unredacted load would.
        st.sql("CREATE TABLE user_crm_surveys (id VARCHAR, respondent VARCHAR, answered_at TIMESTAMP, score BIGINT, comment VARCHAR)")
        st.sql("INSERT INTO user_crm_surveys VALUES (?, ?, '2025-06-06', 2, ?), (?, ?, '2025-06-07', 1, ?), "
               "(?, ?, '2025-06-06', 9, ?), (?, ?, '2025-06-06', 8, NULL)",
               ["S1", pseudonymize(JANE), JANE_SURVEY, "S2", JANE.lower(), "again: " + JANE_SURVEY,
                "S3", "C000000397", OTHER_SURVEY, "S4", PLAIN])
        run_all(st, prog, only=["classify"])  # Jane's feedback gets its insights
        # An alert's evidence as the dashboard keeps it: ids, example snippets, the customer.
        st.save_result("evidence", "alert-AL-J1", {
            "alert_id": "AL-J1", "feedback_ids": ["FJ-0002", "FJ-0003", "F0000000001", *plain_fb],
            "examples": [JANE_TEXTS["FJ-0002"], JANE_TEXTS["FJ-0003"][:40] + "\u2026", "Box was fine, thanks"],
            "customers": {pseudonymize(JANE): 2, "C000000397": 1}, "note": f"escalated for {PLAIN}"})
    con = duckdb.connect(str(out / "insightroi.duckdb"), read_only=True)
    before, others_before = _counts(con), _others(con)
    jane_fb_insights = con.execute("SELECT count(*) FROM insights WHERE feedback_id LIKE 'FJ-%'").fetchone()[0]
    plain_rows = {t: con.execute(f"SELECT count(*) FROM {t} WHERE customer_id = ?", [PLAIN]).fetchone()[0]
                  for t in ("feedback", "orders", "tickets", "refunds")}
    # Demo texts repeat across customers; another customer's identical words are theirs and stay,
    # so only the plain-id customer's texts nobody else wrote are searched for.
    plain_texts = [r[0] for r in con.execute(
        "SELECT text FROM feedback GROUP BY text HAVING count(*) = 1 AND any_value(customer_id) = ?", [PLAIN]).fetchall()]
    plain_insights = con.execute("SELECT count(*) FROM insights WHERE feedback_id IN (SELECT unnest(?))",
                                 [plain_fb]).fetchone()[0]
    con.close()

    code_j, out_j = _cli("erase", "--customer", JANE, "--reason", f"GDPR art. 17 request from {JANE}",
                         "--program", str(program), "--store", url, "--json")
    code_p, out_p = _cli("erase", "--customer", PLAIN, "--program", str(program), "--store", url)
    con = duckdb.connect(str(out / "insightroi.duckdb"), read_only=True)
    after, others_after = _counts(con), _others(con)
    needles = [JANE, pseudonymize(JANE), PLAIN, *JANE_TEXTS, *JANE_TEXTS.values(), JANE_REASON, JANE_SURVEY,
               "OJ-0001", "OJ-0002", "TJ-0001", "TJ-0002", "RJ-0001", *plain_texts, *plain_fb]
    hits = _grep(con, needles)
    results = {r[0]: (r[1], json.loads(r[2])) for r in con.execute("SELECT id, kind, payload FROM results").fetchall()}
    payload_ce = con.execute("SELECT payload FROM chain_events WHERE id = 'CE-J1'").fetchone()
    con.close()
    with open_store(url) as st:
        marked = assemble_bundle(st, load_program(demo_program)).to_report()
        # Under the edited program every demo section is stale: the bundle still builds (on the
        # demo's window, which carries its length in days) and says why each one is left out.
        other = assemble_bundle(st, prog).to_report()
    with LiveServer(create_app(url, program=demo_program, public_read=True)) as srv:
        page = httpx.get(srv.url + "/", timeout=60).text
    code_run, out_run = _cli("run", "--program", str(program), "--store", url, "--out", str(out / "report-after"),
                             "--json")
    with open_store(url) as st:
        stale = results_before_erasure(st)
        unmarked = assemble_bundle(st, prog).to_report()
    yield {
        "out": out, "url": url, "jane": (code_j, out_j), "plain": (code_p, out_p), "before": before, "after": after,
        "others_before": others_before, "others_after": others_after, "hits": hits, "results": results,
        "jane_fb_insights": jane_fb_insights, "plain_rows": plain_rows, "plain_insights": plain_insights,
        "payload_ce": payload_ce, "run": (code_run, out_run), "needles": needles, "stale": stale,
        "marked": marked, "unmarked": unmarked, "page": page, "other": other,
    }
    mp.undo()


def test_erase_reports_exact_counts_per_table(erased):
    code, out = erased["jane"]
    assert code == 0, out
    rep = json.loads(out)
    assert erased["jane_fb_insights"] == 9  # three feedback rows x sentiment, topic, severity
    assert rep["deleted"] == {
        "assignments": 0, "chain_events": 0, "feedback": 3, "insights": 9, "orders": 2, "quarantine": 1,
        "refunds": 1, "review_labels": 1, "tickets": 2, "user_crm_surveys": 2,
        # The demo's own CX tables (surveys, customers) hold no row of Jane's.
        "user_customers": 0, "user_surveys": 0,
    }
    assert rep["total_deleted"] == 21
    # The alert keeps its row, loses Jane's feedback id; the saved evidence is rewritten.
    assert rep["scrubbed"]["chain_events"] == 1
    assert rep["scrubbed"]["results"] >= 1
    assert rep["subject"] == subject_hash(JANE) and rep["subject"] != pseudonymize(JANE)
    assert rep["reason"] == f"GDPR art. 17 request from {ERASED}"
    n = len(rep["predating"])
    assert n >= 20 and "bundle:latest" in rep["predating"]
    assert rep["note"] == f"{n} saved results predate this erasure; re-run the stages to recompute"


def test_plain_id_erasure_through_the_table_output(erased):
    code, out = erased["plain"]
    assert code == 0, out
    assert "saved results predate this erasure; re-run the stages to recompute" in out
    rec = [p for k, p in erased["results"].values() if k == "erasure" and p["subject"] == subject_hash(PLAIN)]
    assert len(rec) == 1
    rows = erased["plain_rows"]
    assert rows["feedback"] > 0 and rows["orders"] > 0
    deleted = rec[0]["deleted"]
    for t in ("feedback", "orders", "tickets", "refunds"):
        assert deleted[t] == rows[t], t
    assert deleted["insights"] == erased["plain_insights"] == 3 * rows["feedback"]
    assert deleted["chain_events"] == 1  # the note naming the id
    assert deleted["quarantine"] == 1  # the bad order row holding the id
    assert deleted["user_crm_surveys"] == 1


def test_no_table_holds_the_erased_ids_emails_or_texts(erased):
    assert erased["hits"] == {}
    # The search would have found them: every needle was in the store before.
    assert len(erased["needles"]) >= 18


def test_the_erasure_records_hold_no_data(erased):
    recs = [p for k, p in erased["results"].values() if k == "erasure"]
    assert len(recs) == 2
    for r in recs:
        assert set(r) >= {"erased_at", "reason", "subject", "deleted", "scrubbed", "predating"}
        assert r["subject"].startswith("erased_")


def test_alert_evidence_and_saved_results_are_scrubbed_not_dropped(erased):
    ce = json.loads(erased["payload_ce"][0])
    assert ce == {"feedback_ids": [ERASED, "F0000000001"], "observed": 4}
    _, ev = erased["results"]["evidence:alert-AL-J1"]
    assert ev["feedback_ids"][:3] == [ERASED, ERASED, "F0000000001"]
    assert set(ev["feedback_ids"][3:]) == {ERASED}
    assert ev["examples"] == [ERASED, ERASED, "Box was fine, thanks"]
    assert ev["customers"] == {ERASED: 2, "C000000397": 1}
    assert ev["note"] == f"escalated for {ERASED}"


def test_everyone_elses_rows_are_untouched(erased):
    before, after = erased["before"], erased["after"]
    jane = json.loads(erased["jane"][1])["deleted"]
    plain = next(p for k, p in erased["results"].values() if k == "erasure" and p["subject"] == subject_hash(PLAIN))
    for t in before:
        gone = jane.get(t, 0) + plain["deleted"].get(t, 0)
        added = 2 if t == "results" else 0  # the two erasure records
        assert after[t] == before[t] - gone + added, t
    assert erased["others_after"] == erased["others_before"]
    assert len(erased["others_before"]["feedback"]) > 700


def test_the_analysis_runs_again_after_erasure(erased):
    code, out = erased["run"]
    assert code == 0, out
    rep = json.loads(out)
    assert [s for s, v in rep["stages"].items() if v["status"] != "ok"] == []
    with open_store(erased["url"]) as st:
        ins = st.load_result("section:insights")
        n_feedback = st.count("feedback")
    assert ins["provenance"]["inputs"]["feedback"]["rows"] == n_feedback
    # The stages recomputed their sections; what no stage writes still predates the erasure, and
    # so does the projected ROI, which `run` keeps as the record of what was expected at plan time.
    assert erased["stale"]["results"] == ["demo:truth", "roi_projection:plan", "evidence:alert-AL-J1"]


def test_report_and_dashboard_mark_figures_computed_before_the_erasure(erased):
    mark = erased["marked"]["erasure"]
    # The demo saved every stage's section before both erasures (classify ran again, under the
    # program with the crm_surveys table, so the demo program's report leaves it out); the record is
    # the last erasure's.
    assert mark["stages"] == ["detect", "insights", "chain", "analyze", "roi", "quasi", "monitor"]
    records = sorted(i for i, (kind, _) in erased["results"].items() if kind == "erasure")
    assert len(records) == 2 and mark["record_id"] == records[-1]
    assert mark["rerun"] == "insightroi run --from detect"
    html = render_html(erased["marked"])
    assert "Computed before an erasure" in html and "insightroi run --from detect" in html
    for view in ("executive", "finance", "support", "product"):
        assert 'id="erasure"' in render_html(erased["marked"], view=view), view
    assert 'id="erasure-banner"' in erased["page"]
    assert "analyze, roi" in erased["page"]
    other = erased["other"]
    assert [f["stage"] for f in other["failures"] if f["status"] == "stale"] == mark["stages"]
    assert other["erasure"]["stages"] == ["classify"] and isinstance(other["window"]["days"], int)
    # After `insightroi run` every stage's section is recomputed: nothing shown predates the erasure.
    assert erased["unmarked"]["erasure"] is None
    assert "Computed before an erasure" not in render_html(erased["unmarked"])


def test_erase_refuses_an_empty_id(erased):
    code, _ = _cli("erase", "--customer", "  ", "--store", erased["url"])
    assert code == 1


def test_a_presets_attribute_rows_go_with_the_customers_rows(tmp_path):
    """A vendor export's unknown columns (tags, status) land in user_<preset>_attributes under the
    row's id; they seldom name the customer, so erasing by the customer's ids left them behind."""
    from insightroi.ingest import ingest_preset
    from insightroi.privacy import erase_customer

    export = tmp_path / "zendesk.csv"
    export.write_text(
        "Id,Requester,Requester email,Subject,Description,Status,Priority,Via,Ticket type,Created at,Solved at,Group,Tags\n"
        "101,Jane Doe,jane.doe@example.com,Charger broke,It stopped charging.,solved,high,Mail,problem,"
        "2025-08-20 10:00:00 +0200,2025-08-21 10:00:00 +0200,Tier 1,battery refund\n"
        "102,Bob,bob@example.com,Great,,open,low,Web Widget,question,2025-08-20 11:00:00 +0200,,Tier 2,sizing\n",
        encoding="utf-8")
    with open_store(f"duckdb:///{tmp_path / 'p.duckdb'}") as st:
        ingest_preset(st, "zendesk_tickets", export)
        attrs = "user_zendesk_tickets_attributes"
        before = st.table(attrs).execute()
        assert len(before) == 2 and before.attributes.str.contains("battery refund").any()
        report = erase_customer(st, None, "jane.doe@example.com")
        after = st.table(attrs).execute()
        assert report.deleted["tickets"] == 1 and report.deleted[attrs] == 1
        assert len(after) == 1 and not after.attributes.str.contains("battery refund").any()
        assert after.attributes.str.contains("sizing").all()  # Bob's row stays

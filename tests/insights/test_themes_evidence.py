"""Readable evidence: short snippets around the matched words, marked, and escaped on the dashboard."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import httpx
import pyarrow as pa
import pytest
from rich.console import Console

from helpers.live_server import LiveServer
from helpers.report_sample import sample_bundle
from insightroi.insights._themes import Theme
from insightroi.insights._themes_evidence import WIDTH, snippet, snippets, to_markdown, to_rich
from insightroi.server import create_app
from insightroi.store import open_store

TOKEN = "evidence-test-token-0123456789abcdef"
LONG = ("I have been a customer for years and usually everything is fine with the app and the card, "
        "the statements and the support team. This time my parcel arrived three weeks late and the "
        "tracking page kept saying it was still in the warehouse, which is not what I expect at all "
        "from a company that charges this much for express shipping.")


def test_snippet_is_a_window_around_the_first_match_with_ellipses():
    s = snippet(LONG, ["late", "tracking"])
    assert len(LONG) > 300 and len(s.text) <= WIDTH + 2  # 160 characters plus the two ellipses
    assert s.text.startswith("…") and s.text.endswith("…")
    assert s.matched == ["late", "tracking"]
    assert [t for t, m in s.segments if m] == ["late", "tracking"]
    # the window starts at a word boundary: no half word after the ellipsis
    assert s.segments[1][0].split()[0] in LONG.split()


def test_matches_are_whole_words_case_insensitive_and_phrases():
    s = snippet("Powerful phone. POWER button broken; still waiting for a fix", ["power", "still waiting"])
    assert [t for t, m in s.segments if m] == ["POWER", "still waiting"]  # not the "Power" of "Powerful"
    assert to_markdown(s) == "Powerful phone. **POWER** button broken; **still waiting** for a fix"
    assert snippet("short text", []).segments == [("short text", False)]


def test_snippets_put_matched_texts_first_and_dedupe():
    out = snippets(["nothing here", "Arrived late", "arrived   LATE", "late again", "also nothing"], ["late"], n=3)
    assert [s.text for s in out] == ["Arrived late", "late again", "nothing here"]


def test_cli_rendering_marks_only_the_match():
    s = snippet("box [red]crushed[/red] and late", ["late"])
    con = Console(record=True, width=200, color_system="truecolor")
    con.print(to_rich(s))
    html = con.export_text()
    assert "[red]crushed[/red]" in html  # customer brackets are printed, not applied as markup
    spans = [(str(to_rich(s))[sp.start:sp.end], str(sp.style)) for sp in to_rich(s).spans]
    assert spans == [("late", "bold yellow")]


def test_theme_dict_carries_marked_evidence():
    t = Theme(terms=["auto renew", "cancel"], size=12,
              examples=["I was charged after I cancel the auto renew", "No way to cancel", "x" * 400])
    ev = t.to_dict()["evidence"]
    assert len(ev) == 3 and [p for p, m in ev[0]["segments"] if m] == ["cancel", "auto renew"]
    assert len("".join(p for p, _ in ev[2]["segments"])) <= WIDTH + 1


@pytest.fixture()
def dashboard(tmp_path):
    url = f"duckdb:///{tmp_path / 'ev.duckdb'}"
    b = sample_bundle()
    b["insights"]["new_themes"] = [Theme(terms=["hologram", "fake"], size=14, examples=[
        "The hologram sticker is missing, looks <b>fake</b>", "fake charger again"]).to_dict()]
    t0 = datetime(2026, 3, 1)
    texts = ["Parcel <script>alert('x')</script> arrived late & the box was open",
             "arrived LATE again, third time " + "really " * 40 + "annoying",
             "late late late"]
    fb = [{"id": f"fb-{i}", "source": "review", "event_time": t0 + timedelta(hours=i), "text": t}
          for i, t in enumerate(texts)]
    ins = [{"id": f"ins-{i}", "feedback_id": f"fb-{i}", "task": "topic", "label": "shipping_delay", "score": 0.9,
            "confidence": 0.95 - i / 100, "method": "lexicon", "model_version": "topics-1",
            "evidence": json.dumps({"labels": ["shipping_delay"], "keywords": {"shipping_delay": ["late"]}}),
            "created_at": t0} for i in range(len(texts))]
    ev = [{"id": "alr-ev", "event_type": "alert_delivered", "alert_id": "alr-ev", "event_time": t0, "actor": "detect",
           "team": "logistics", "topic": "shipping_delay", "batch_id": "t",
           "payload": json.dumps({"observed": 3, "feedback_ids": ["fb-2", "fb-0", "fb-missing"]})}]
    with open_store(url) as st:
        st.save_result("bundle", "latest", b)
        with st.transaction():
            st.append("feedback", pa.Table.from_pylist(fb))
            st.append("insights", pa.Table.from_pylist(ins))
            st.append("chain_events", pa.Table.from_pylist(ev))
    with LiveServer(create_app(url, token=TOKEN)) as srv, \
            httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        c.backend = srv.server.config.app.state.backend()
        yield c


def test_themes_page_marks_matches_and_escapes_customer_html(dashboard):
    html = dashboard.get("/themes").text
    row = re.search(r"<tr><td>shipping delay</td>.*?</tr>", html, re.S).group(0)
    quotes = re.findall(r'<blockquote class="snippet">(.*?)</blockquote>', row, re.S)
    assert len(quotes) == 3  # 3 distinct texts of the topic: every one shown, each once
    assert quotes[0] == "Parcel &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; arrived <mark>late</mark> &amp; the box was open"
    assert "<script>alert" not in html
    assert quotes[1].startswith("arrived <mark>LATE</mark> again") and quotes[1].endswith("…")
    assert len(re.sub(r"<[^>]+>", "", quotes[1])) <= WIDTH + 1
    assert quotes[2] == "<mark>late</mark> <mark>late</mark> <mark>late</mark>"
    # emerging themes: their terms marked, the customer's <b> shown as text
    assert "The <mark>hologram</mark> sticker is missing, looks &lt;b&gt;<mark>fake</mark>&lt;/b&gt;" in html


def test_alert_evidence_is_the_triggering_feedback_marked(dashboard):
    got = dashboard.backend.alert_evidence(["alr-ev", "alr-0001"])
    # alr-0001 has no alert_delivered event with feedback ids in this store: left out, not an empty list
    assert list(got) == ["alr-ev"]
    texts = ["".join(p for p, _ in e["segments"]) for e in got["alr-ev"]]
    # the two stored rows of the alert's feedback ids, in the alert's order; the unknown id is skipped
    assert texts == ["late late late", "Parcel <script>alert('x')</script> arrived late & the box was open"]
    assert all(e["matched"] == ["late"] for e in got["alr-ev"])


def test_themes_page_alert_table_shows_each_alerts_marked_evidence(dashboard):
    html = dashboard.get("/themes").text
    section = html[html.index('id="alerts"'):]
    assert "<th>Evidence</th>" in section
    row = re.search(r'<tr><td><a href="/trace/alr-ev">alr-ev</a></td>.*?</tr>', section, re.S).group(0)
    quotes = re.findall(r'<blockquote class="snippet">(.*?)</blockquote>', row, re.S)
    assert quotes == ["<mark>late</mark> <mark>late</mark> <mark>late</mark>",
                      "Parcel &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; arrived <mark>late</mark> &amp; the box "
                      "was open"]


def test_detect_prints_marked_snippets_of_each_alert(tmp_path):
    from datetime import date

    import numpy as np
    from typer.testing import CliRunner

    from helpers.cli_shell import stage_app
    from insightroi.demo import synthetic_feedback
    from insightroi.insights._cli import register
    from insightroi.program import starter_program_text

    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text())
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    spike = [{"sku_family": "fam03", "topic": "battery_power", "start": date(2025, 3, 10), "days": 4, "extra": 10}]
    df = synthetic_feedback(np.random.default_rng(1), days=60, families=4, volume=8, spikes=spike)
    with open_store(url) as st, st.transaction():
        st.append("feedback", df.drop(columns="true_topic"))
    app, runner = stage_app(register), CliRunner()
    assert runner.invoke(app, ["classify", "--store", url, "--program", str(prog), "--json"]).exit_code == 0
    res = runner.invoke(app, ["detect", "--store", url, "--program", str(prog), "--dry-run"])
    assert res.exit_code == 0, res.output
    aid = "alert:battery_power:fam03:2025-03-10"  # the injected spike, found on its first day
    after = res.output[res.output.index(f"{aid}:"):].splitlines()
    # under the table: the alert's id, then 3 indented snippets of its triggering feedback
    assert len(after) >= 4 and all(ln.startswith("    ") and len(ln) <= 4 + WIDTH + 2 for ln in after[1:4]), after[:4]
    alerts = json.loads(runner.invoke(app, ["detect", "--store", url, "--program", str(prog), "--dry-run",
                                            "--json"]).stdout)["alerts"]
    from insightroi.insights._cli import _alert_snippets
    from insightroi.program import load_program

    with open_store(url) as st:
        got = _alert_snippets(st, load_program(prog), alerts)
    battery = got[aid]
    assert [s.text for s in battery] == [ln.strip() for ln in after[1:4]]
    keywords = {"battery", "charge", "charging", "drains", "power", "overheat", "won't turn on"}
    # each snippet marks a battery keyword, and only those (rich prints them bold yellow)
    assert all(s.matched and {m.lower() for m in s.matched} <= keywords for s in battery), [s.matched for s in battery]

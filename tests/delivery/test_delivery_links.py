"""Signed links from a delivered e-mail, followed against the real server (uvicorn on loopback):
the acknowledgement lands in the chain once, on the alert's trace; forged and expired links are refused.
And `serve`'s background deliverer sends on its own."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from _dlv_helpers import TICKETS_CHANNEL, WEBHOOK_SECRET, Receiver, deliver_one_email, seed_alerts
from insightroi.delivery import DeliveryPolicy, deliver, link_key, make_link_token
from insightroi.program import starter_program_text
from insightroi.store import open_store

pytest.importorskip("fastapi")
pytest.importorskip("aiosmtpd.controller")
from insightroi.server import create_app  # noqa: E402

TOKEN = "test-token-for-links-0123456789abcdef"
LINK_SECRET = "link-secret-for-tests-0123456789abcdef"


def _now():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def test_following_email_links_records_the_chain(tmp_path, live_server):
    got = deliver_one_email(tmp_path, live_server, token=TOKEN, link_secret=LINK_SECRET)
    url, srv = got.url, got.srv
    plain = got.message.get_body(("plain",)).get_content()
    links = dict(line.split(": ", 1) for line in plain.splitlines() if f": {srv.url}/l/" in line)
    assert set(links) == {"Acknowledge", "Taking action", "Not useful (false alarm)", "Not useful (not our team)",
                          "Not useful (already known)"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=30) as c:
        # Opening a link (what a mail scanner does) shows one button and records nothing.
        for label in links:
            page = c.get(links[label], follow_redirects=False)
            assert page.status_code == 200 and '<form method="post"' in page.text and "alert-0000" in page.text
        assert [e for e in c.get(f"{srv.url}/api/v1/trace/alert-0000", headers=auth).json()["events"]
                if (e.get("actor") or "").startswith("link:")] == []
        r = c.post(links["Acknowledge"], follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/trace/alert-0000?recorded=acknowledged"
        assert c.post(links["Acknowledge"], follow_redirects=False).status_code == 303  # pressed twice: stored once
        r = c.post(links["Not useful (false alarm)"], follow_redirects=False)
        assert r.status_code == 303
        trace = c.get(f"{srv.url}/api/v1/trace/alert-0000", headers=auth).json()
        acks = [e for e in trace["events"] if e["event_type"] == "acknowledged"]
        ignored = [e for e in trace["events"] if e["event_type"] == "ignored"]
        assert len(acks) == 1 and acks[0]["actor"] == "link:ops-mail"
        assert len(ignored) == 1 and ignored[0]["payload"] in ({"via": "link", "channel": "ops-mail",
                                                                "reason": "false_alarm"},
                                                               '{"channel": "ops-mail", "reason": "false_alarm", "via": "link"}')
        ack_t = datetime.fromisoformat(acks[0]["event_time"])
        assert abs((ack_t - _now()).total_seconds()) < 60  # the real time of the click
        # A signed-in owner lands on the trace page, which shows the acknowledgement.
        c.post(f"{srv.url}/login", data={"token": TOKEN, "next": "/inbox"})
        page = c.post(links["Acknowledge"], follow_redirects=True)
        assert page.status_code == 200 and str(page.url).endswith("/trace/alert-0000?recorded=acknowledged")
        assert "acknowledged" in page.text
        # Forged, altered and expired links record nothing.
        base, tok = links["Taking action"].rsplit("/", 1)
        payload, mac = tok.split(".")
        assert c.post(f"{base}/{payload}.{mac[:-2]}AA", follow_redirects=False).status_code == 403
        assert c.get(f"{base}/{payload}.{mac[:-2]}AA", follow_redirects=False).status_code == 403
        other = make_link_token(link_key("another-server-secret-0123456789"), "alert-0000", "taking_action",
                                channel="ops-mail", expires=_now() + timedelta(days=1))
        assert c.post(f"{base}/{other}", follow_redirects=False).status_code == 403
        old = make_link_token(link_key(LINK_SECRET), "alert-0000", "taking_action", channel="ops-mail",
                              expires=_now() - timedelta(seconds=1))
        assert c.post(f"{base}/{old}", follow_redirects=False).status_code == 410
        ghost = make_link_token(link_key(LINK_SECRET), "alert-9999", "acknowledge", channel="ops-mail",
                                expires=_now() + timedelta(days=1))
        assert c.post(f"{base}/{ghost}", follow_redirects=False).status_code == 404
        trace = c.get(f"{srv.url}/api/v1/trace/alert-0000", headers=auth).json()
    assert sorted(e["event_type"] for e in trace["events"] if (e.get("actor") or "").startswith("link:")) == [
        "acknowledged", "ignored"]
    # The chain in the store: the real delivery, then the acknowledgement from its link.
    st = open_store(url, hold=False)
    with st.attached():
        got = st.sql("SELECT event_type, actor, event_time FROM chain_events WHERE alert_id = 'alert-0000' "
                     "AND batch_id <> 'detect' ORDER BY event_time").to_pylist()
    st.close()
    assert [(e["event_type"], e["actor"]) for e in got] == [
        ("delivery_sent", "deliver:ops-mail"), ("acknowledged", "link:ops-mail"), ("ignored", "link:ops-mail")]
    assert got[0]["event_time"] <= got[1]["event_time"] <= _now()


def test_serve_delivers_in_the_background(tmp_path, live_server, monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text() + "\n" + TICKETS_CHANNEL)
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with open_store(url) as st:
        # Recent alerts (the background deliverer enqueues the last 14 days'), and one too old to send.
        seed_alerts(st, 4)
        st.sql("UPDATE chain_events SET event_time = ? WHERE batch_id = 'detect'", [_now() - timedelta(hours=2)])
        seed_alerts(st, 1, start=50)
        st.sql("UPDATE chain_events SET event_time = ? WHERE id = 'alert-0050'", [_now() - timedelta(days=30)])
    try:
        app = create_app(url, program=prog, token=TOKEN, link_secret=LINK_SECRET, deliver_every_s=0.2,
                         public_url="https://insightroi.example.test")
        srv = live_server(app)
        deadline = time.monotonic() + 20
        while len(receiver.accepted) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # further passes must not send again
        assert len(receiver.accepted) == 4 and len(receiver.requests) == 4
        body = next(iter(receiver.accepted.values()))
        assert body["links"]["Acknowledge"].startswith("https://insightroi.example.test/l/")
        assert app.state.delivery["error"] is None and app.state.delivery["runs"] >= 2
        got = httpx.get(f"{srv.url}/api/v1/deliveries", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        assert got["totals"] == {"pending": 0, "sending": 0, "delivered": 4, "dead": 0, "dead_letters": 0}
        assert [r["status"] for r in got["items"]] == ["delivered"] * 4 and got["dead_letters"] == []
        assert httpx.get(f"{srv.url}/api/v1/deliveries", timeout=30).status_code == 401
    finally:
        receiver.close()


def test_ticket_callbacks_become_action_and_fix(tmp_path, live_server, monkeypatch):
    """A ticket system answers a signed webhook delivery: created -> action_taken, resolved -> fix_deployed."""
    import json as _json

    from insightroi.delivery import sign_webhook

    receiver = Receiver()
    monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text() + "\n" + TICKETS_CHANNEL)
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with open_store(url) as st:
        seed_alerts(st, 2)
    try:
        srv = live_server(create_app(url, program=prog, token=TOKEN))
        st = open_store(url, hold=False)
        from insightroi.program import load_program

        program = load_program(prog)
        with st.attached():  # only alert-0000 goes out over "tickets"
            st.sql("DELETE FROM chain_events WHERE id = 'alert-0001'")
        assert deliver(st, program, policy=DeliveryPolicy(timeout_s=5)).sent == 1
        st.close()

        def post(body: dict, secret: str = WEBHOOK_SECRET, channel: str = "tickets"):
            raw = _json.dumps(body).encode()
            ts = int(time.time())
            return httpx.post(f"{srv.url}/api/v1/callbacks/{channel}", content=raw, timeout=30, headers={
                "Content-Type": "application/json", "X-Insightroi-Timestamp": str(ts),
                "X-Insightroi-Signature": sign_webhook(secret.encode(), ts, raw)})

        created = {"alert_id": "alert-0000", "event": "ticket_created", "ticket_id": "OPS-17",
                   "ticket_url": "https://tickets.example.test/OPS-17"}
        r = post(created)
        assert r.status_code == 201 and r.json()["event_type"] == "action_taken"
        assert post(created).status_code == 200  # the ticket system retried: stored once
        assert post(created, secret="not-the-channel-secret").status_code == 401
        assert post({**created, "alert_id": "alert-0001"}).status_code == 404  # not delivered over this channel
        assert post(created, channel="nope").status_code == 404
        assert post({**created, "event": "ticket_reopened"}).status_code == 422
        early = {**created, "event": "ticket_resolved", "occurred_at": "2026-01-01T00:00:00+00:00"}
        r = post(early)  # a fix dated before the action it follows is refused, naming both events
        assert r.status_code == 422 and "action_taken" in r.json()["detail"]
        r = post({**created, "event": "ticket_resolved"})
        assert r.status_code == 201 and r.json()["event_type"] == "fix_deployed"
        st = open_store(url, hold=False)
        with st.attached():
            got = st.sql("SELECT event_type, actor, payload FROM chain_events WHERE actor = 'ticket:tickets' "
                         "ORDER BY event_time").to_pylist()
        st.close()
        assert [(e["event_type"], e["actor"]) for e in got] == [("action_taken", "ticket:tickets"),
                                                                ("fix_deployed", "ticket:tickets")]
        assert _json.loads(got[0]["payload"])["ticket_url"] == "https://tickets.example.test/OPS-17"
    finally:
        receiver.close()

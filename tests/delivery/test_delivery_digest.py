"""Digest bundling against real loopback servers: every alert a daily-digest channel holds for one
due time goes out as ONE message (e-mail, chat post, signed webhook with an ``alerts`` array), each
alert with its own signed links and its own ``delivery_sent`` event; high severity stays immediate;
a digest is delivered once through a receiver that dies mid-request and through a crashed run."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from _dlv_helpers import Receiver, program_with, rows, seed_alerts
from insightroi.delivery import DeliveryPolicy, LinkSigner, deliver, deliver_due, link_key, read_link_token
from insightroi.delivery import _outbox as ob
from insightroi.store import open_store

pytest.importorskip("aiosmtpd.controller")

LINK_SECRET = "link-secret-for-digests-0123456789abcdef"
FAST = DeliveryPolicy(max_attempts=8, backoff_s=0.1, max_backoff_s=0.8, timeout_s=2.0, claim_timeout_s=0.5)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _after_midnight() -> datetime:
    # The deliverer's clock a day ahead: past the next 00:00 UTC the daily digest waits for.
    return _now() + timedelta(days=1, minutes=1)


def _mail_program(port: int):
    return program_with(f'[[channels]]\nname = "ops-mail"\nkind = "email"\nowners = ["logistics", "product_quality"]\n'
                        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nfrom = "alerts@insightroi.test"\n'
                        f'to = ["ops@example.test"]\ndigest = "daily"\n')


def _hook_program():
    return program_with('[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\n'
                        'url = "env:TEST_HOOK_URL"\nsecret = "env:TEST_HOOK_SECRET"\ndigest = "daily"\n')


def test_five_daily_alerts_one_email_fifteen_links_high_alone(tmp_path, smtp):
    st = open_store(tmp_path / "s.duckdb")
    medium = seed_alerts(st, 5)  # shipping_delay: medium in the starter taxonomy
    high = seed_alerts(st, 1, team="product_quality", topic="product_defect", start=20)  # high
    program = _mail_program(smtp.port)
    key = link_key(LINK_SECRET)
    signer = LinkSigner("http://127.0.0.1:8000", key)
    t_enqueue = _now()
    got = ob.enqueue_alerts(st, program, now=t_enqueue)
    assert (got.alerts, got.deliveries) == (6, 6)
    # Before midnight only the high-severity alert is due: it goes at once, on its own.
    first = deliver_due(st, program, signer=signer, policy=FAST, clock=_now)
    assert (first.sent, first.messages) == (1, 1) and len(smtp.messages) == 1
    assert "product defect" in smtp.messages[0]["Subject"] and "Digest" not in smtp.messages[0]["Subject"]
    sent_at = _after_midnight()
    run = deliver_due(st, program, signer=signer, policy=FAST, clock=lambda: sent_at)
    assert (run.sent, run.messages, run.retried, run.dead) == (5, 1, 0, 0)
    assert len(smtp.messages) == 2
    msg = smtp.messages[1]
    assert msg["Subject"].startswith(f"Digest {sent_at:%Y-%m-%d}: 5 alerts (shipping delay)")
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    # Each alert with its own evidence.
    for i in range(5):
        assert f"parcel {i} arrived 5 days late" in plain and f"parcel {i} arrived 5 days late" in html
    urls = [line.split(": ", 1)[1] for line in plain.splitlines() if ": http://127.0.0.1:8000/l/" in line]
    assert len(urls) == 15 and html.count('href="http://127.0.0.1:8000/l/') == 15
    claims = [read_link_token(key, u.rsplit("/", 1)[1], now=sent_at) for u in urls]
    per_alert: dict[str, list[str]] = {}
    for c in claims:
        per_alert.setdefault(c.alert_id, []).append(c.action)
    assert sorted(per_alert) == medium
    assert all(v == ["acknowledge", "taking_action", "not_useful"] for v in per_alert.values())
    assert {c.channel for c in claims} == {"ops-mail"} and {c.reason for c in claims} == {None}
    # One key for the digest, on every row it carries; each alert its own delivery_sent at the send time.
    d = rows(st, "SELECT alert_id, idempotency_key, status, delivered_at FROM deliveries ORDER BY alert_id")
    digest_rows = [r for r in d if r["alert_id"] in medium]
    assert {r["idempotency_key"] for r in digest_rows} == {msg["Idempotency-Key"]}
    assert msg["Idempotency-Key"].startswith(ob.DIGEST_KEY_PREFIX)
    assert [r for r in d if r["alert_id"] in high][0]["idempotency_key"].startswith("insightroi-dlv-")
    ev = rows(st, "SELECT alert_id, event_time, payload FROM chain_events WHERE event_type = 'delivery_sent' "
                  "ORDER BY alert_id")
    assert [e["alert_id"] for e in ev] == sorted(medium + high)
    for e in ev:
        if e["alert_id"] in medium:
            assert e["event_time"] == sent_at and json.loads(e["payload"])["digest_size"] == 5
        else:
            assert t_enqueue <= e["event_time"] <= sent_at - timedelta(days=1) + timedelta(minutes=5)
    # Nothing is due again: the digest does not repeat.
    again = deliver_due(st, program, signer=signer, policy=FAST, clock=lambda: sent_at + timedelta(days=2))
    assert (again.sent, again.messages) == (0, 0) and len(smtp.messages) == 2
    st.close()


def test_webhook_digest_one_signed_body_and_chat_one_post(tmp_path, receiver, monkeypatch):
    chat = Receiver(secret=None)
    try:
        monkeypatch.setenv("TEST_CHAT_URL", chat.url)
        program = program_with(
            '[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\nurl = "env:TEST_HOOK_URL"\n'
            'secret = "env:TEST_HOOK_SECRET"\ndigest = "daily"\n\n'
            '[[channels]]\nname = "slack-ops"\nkind = "slack"\nowners = ["logistics"]\nurl = "env:TEST_CHAT_URL"\n'
            'digest = "daily"\n\n'
            '[[channels]]\nname = "teams-ops"\nkind = "teams"\nowners = ["logistics"]\nurl = "env:TEST_CHAT_URL"\n'
            'digest = "weekly"\n')
        st = open_store(tmp_path / "s.duckdb")
        ids = seed_alerts(st, 4)
        ob.enqueue_alerts(st, program, now=_now())
        signer = LinkSigner("https://irx.test", link_key(LINK_SECRET))
        run = deliver_due(st, program, signer=signer, policy=FAST, clock=lambda: _now() + timedelta(days=8))
        assert (run.sent, run.messages) == (12, 3)
        assert len(receiver.requests) == 1 and len(chat.requests) == 2
        body = next(iter(receiver.accepted.values()))  # the receiver checked its HMAC signature
        assert body["type"] == "insightroi.digest" and body["digest_key"] == next(iter(receiver.accepted))
        assert sorted(a["alert"]["alert_id"] for a in body["alerts"]) == ids
        assert all(len(a["links"]) == 3 and a["evidence"] for a in body["alerts"])
        slack = next(b for b in chat.accepted.values() if "blocks" in b)
        assert [b["type"] for b in slack["blocks"]] == ["header"] + ["section", "actions"] * 4
        teams = next(b for b in chat.accepted.values() if b.get("type") == "message")
        containers = [x for x in teams["attachments"][0]["content"]["body"] if x["type"] == "Container"]
        assert len(containers) == 4 and all(c["items"][-1]["type"] == "ActionSet" for c in containers)
        st.close()
    finally:
        chat.close()


def test_receiver_killed_mid_digest_each_alert_once(tmp_path, receiver):
    """The receiver stores the digest and dies before answering; back 0.6 s later: resent with the
    same key, kept once; every alert delivered exactly once, the retries in the store."""
    st = open_store(tmp_path / "s.duckdb", hold=False)
    with st.attached():
        ids = seed_alerts(st, 5)
        ob.enqueue_alerts(st, _hook_program(), now=_now())
    receiver.drop_responses = 1

    def kill_once_stored():
        deadline = time.monotonic() + 20
        while not receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        receiver.kill()

    threading.Thread(target=kill_once_stored, daemon=True).start()
    receiver.restart_after(0.6)
    run = deliver(st, _hook_program(), policy=FAST, wait_s=20, clock=_after_midnight)
    assert run.sent == 5 and run.dead == 0 and run.pending == 0 and run.messages == 1
    assert run.retried >= 5 and run.retried % 5 == 0  # the whole digest retried together
    keys = [k for k, _ in receiver.requests]
    assert len(set(keys)) == 1 and len(keys) >= 2  # the same key on the wire again
    assert len(receiver.accepted) == 1  # and kept once
    body = next(iter(receiver.accepted.values()))
    assert sorted(a["alert"]["alert_id"] for a in body["alerts"]) == ids
    with st.attached():
        d = rows(st, "SELECT status, attempts, last_error, idempotency_key FROM deliveries")
        sent = rows(st, "SELECT alert_id FROM chain_events WHERE event_type = 'delivery_sent'")
    assert [r["status"] for r in d] == ["delivered"] * 5
    assert len({r["attempts"] for r in d}) == 1 and d[0]["attempts"] == 1 + run.retried // 5 >= 2
    assert all(f"reaching 127.0.0.1:{receiver.port}" in r["last_error"] for r in d)
    assert {r["idempotency_key"] for r in d} == set(keys)
    assert sorted(e["alert_id"] for e in sent) == ids
    st.close()


def test_crashed_digest_webhook_resent_same_key_email_dead_lettered(tmp_path, receiver, smtp):
    program = program_with(
        '[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\nurl = "env:TEST_HOOK_URL"\n'
        'secret = "env:TEST_HOOK_SECRET"\ndigest = "daily"\n\n'
        f'[[channels]]\nname = "ops-mail"\nkind = "email"\nowners = ["logistics"]\nsmtp_host = "127.0.0.1"\n'
        f'smtp_port = {smtp.port}\nfrom = "alerts@insightroi.test"\nto = ["ops@example.test"]\ndigest = "daily"\n')
    st = open_store(tmp_path / "s.duckdb")
    ids = seed_alerts(st, 3)
    ob.enqueue_alerts(st, program, now=_now())
    t = _after_midnight()
    due = ob.due_rows(st, t, 100)
    keys = {}
    for channel in ("tickets", "ops-mail"):  # the "crash": both digests claimed, nothing sent or marked
        mine, attempts, key = ob.claim_group(st, [r for r in due if r["channel"] == channel], t)
        assert len(mine) == 3 and set(attempts.values()) == {1}
        keys[channel] = key
    assert keys["tickets"] != keys["ops-mail"]
    time.sleep(0.6)
    run = deliver_due(st, program, policy=FAST, clock=lambda: t + timedelta(seconds=1))
    assert (run.resent_after_crash, run.dead, run.sent, run.messages) == (3, 3, 3, 1)
    assert list(receiver.accepted) == [keys["tickets"]] and len(receiver.requests) == 1
    assert smtp.messages == []  # the e-mail digest's outcome is unknown: never sent twice, so not resent
    dl = rows(st, "SELECT alert_id, channel, last_error FROM dead_letters ORDER BY alert_id")
    assert [r["alert_id"] for r in dl] == ids and {r["channel"] for r in dl} == {"ops-mail"}
    assert all("outcome unknown" in r["last_error"] for r in dl)
    failed = rows(st, "SELECT alert_id FROM chain_events WHERE event_type = 'delivery_failed' ORDER BY alert_id")
    assert [r["alert_id"] for r in failed] == ids
    st.close()


def test_digest_not_useful_link_asks_the_reason(tmp_path, live_server, smtp):
    """A digest's one "Not useful" link: its page offers the three reasons; the one pressed is recorded."""
    pytest.importorskip("fastapi")
    from insightroi.server import create_app

    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with open_store(url) as st:
        seed_alerts(st, 2)
    srv = live_server(create_app(url, token="test-token-for-digest-0123456789abcdef", link_secret=LINK_SECRET))
    st = open_store(url, hold=False)
    program = _mail_program(smtp.port)
    with st.attached():
        ob.enqueue_alerts(st, program, now=_now())
    run = deliver_due(st, program, signer=LinkSigner(srv.url, link_key(LINK_SECRET)), policy=FAST,
                      clock=_after_midnight)
    assert run.messages == 1
    plain = smtp.messages[0].get_body(("plain",)).get_content()
    not_useful = [line.split(": ", 1)[1] for line in plain.splitlines() if line.startswith("Not useful: ")]
    assert len(not_useful) == 2
    with httpx.Client(timeout=30) as c:
        page = c.get(not_useful[0])
        assert page.status_code == 200
        assert [f'value="{r}"' in page.text for r in ("false_alarm", "wrong_owner", "already_known")] == [True] * 3
        assert c.post(not_useful[0], data={"reason": "because"}, follow_redirects=False).status_code == 422
        assert c.post(not_useful[0], data={"reason": ""}, follow_redirects=False).status_code == 422
        assert c.post(not_useful[0], data={"reason": "wrong_owner"}, follow_redirects=False).status_code == 303
    with st.attached():
        got = rows(st, "SELECT alert_id, payload FROM chain_events WHERE event_type = 'ignored'")
    st.close()
    assert len(got) == 1 and json.loads(got[0]["payload"])["reason"] == "wrong_owner"


def test_large_slack_digest_stays_within_fifty_blocks():
    """Slack refuses more than 50 blocks: a 30-alert digest lists 24 with their buttons and says how many more."""
    from insightroi.delivery._message import build_digest

    rows = [{"id": f"dlv-{i:02d}", "payload": json.dumps({
        "alert_id": f"alert-{i:02d}", "topic": "shipping_delay", "severity": "medium", "observed": 10 + i,
        "expected": 3.0, "p_value": 1e-5, "day": "2026-11-01", "evidence": [f"late parcel {i}"]})} for i in range(30)]
    d = build_digest(rows, channel="slack-ops", key="insightroi-dg-x", due=datetime(2026, 11, 2), now=_now(),
                     signer=LinkSigner("https://irx.test", link_key(LINK_SECRET)))
    body = d.slack()
    assert len(body["blocks"]) == 1 + 2 * 24 + 1 <= 50
    assert body["blocks"][-1]["elements"][0]["text"].startswith("6 more alert(s)")
    assert len(d.webhook("dg-x", "slack-ops")["alerts"]) == 30  # the webhook body carries every alert
    assert d.text().count("https://irx.test/l/") == 90

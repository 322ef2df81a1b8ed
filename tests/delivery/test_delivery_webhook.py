"""The signed webhook against a real HTTP receiver on loopback: exactly once through a receiver
outage, a dropped answer and a crashed run; permanent refusals end in the dead letters."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from _dlv_helpers import WEBHOOK_SECRET, Receiver, program_with, rows, seed_alerts
from insightroi.delivery import DeliveryPolicy, deliver, deliver_due, sign_webhook, verify_webhook
from insightroi.delivery import _outbox as ob
from insightroi.store import open_store

FAST = DeliveryPolicy(max_attempts=8, backoff_s=0.1, max_backoff_s=0.8, timeout_s=2.0, claim_timeout_s=0.5)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hook_env(monkeypatch, receiver):
    monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)


def _program(kind: str = "webhook"):
    secret = '\nsecret = "env:TEST_HOOK_SECRET"' if kind == "webhook" else ""
    return program_with(f'[[channels]]\nname = "tickets"\nkind = "{kind}"\nowners = ["logistics"]\n'
                        f'url = "env:TEST_HOOK_URL"{secret}\n')


def test_receiver_killed_mid_batch_every_alert_once(tmp_path, receiver, hook_env):
    """20 alerts; the receiver dies after the 7th and comes back 0.6 s later: 20 delivered, once each."""
    st = open_store(tmp_path / "s.duckdb", hold=False)
    with st.attached():
        alerts = seed_alerts(st, 20)
    receiver.kill_after = 7
    receiver.restart_after(0.6)
    t0 = time.monotonic()
    run = deliver(st, _program(), policy=FAST, wait_s=20)
    elapsed = time.monotonic() - t0
    assert (run.enqueued, run.deliveries_created) == (20, 20)
    assert run.sent == 20 and run.dead == 0 and run.pending == 0
    assert receiver.killed.is_set()
    assert run.retried == len(run.errors) >= 1
    # Refused while it was down, or cut off mid-request by the kill: transport errors, never HTTP answers.
    assert all(f"reaching 127.0.0.1:{receiver.port}" in e for e in run.errors), run.errors
    # The receiver saw each alert's key accepted exactly once, and every alert is there.
    # (An answer cut off by the kill after the receiver stored the body would come again with the
    # same key; the receiver keeps it once, which is what an owner sees.)
    accepted = [k for k, s in receiver.requests if s == 200]
    assert len(set(accepted)) == 20 and len(receiver.accepted) == 20
    assert sorted(b["alert"]["alert_id"] for b in receiver.accepted.values()) == alerts
    with st.attached():
        d = rows(st, "SELECT status, attempts, last_error FROM deliveries ORDER BY id")
        events = rows(st, "SELECT alert_id, actor, event_time FROM chain_events WHERE batch_id = 'deliver' "
                          "AND event_type = 'delivery_sent'")
    assert [r["status"] for r in d] == ["delivered"] * 20
    # Every failed attempt is in the store: attempts beyond the first, with the last error kept.
    assert sum(r["attempts"] for r in d) == 20 + run.retried
    retried = [r for r in d if r["attempts"] > 1]
    assert retried and all(f"reaching 127.0.0.1:{receiver.port}" in r["last_error"] for r in retried)
    assert all(r["last_error"] is None for r in d if r["attempts"] == 1)
    assert len(events) == 20 and {e["alert_id"] for e in events} == set(alerts)
    with st.attached():  # what the "alerts" measure counts is still one row per alert
        assert rows(st, "SELECT count(*) AS n FROM chain_events WHERE event_type = 'alert_delivered'") == [{"n": 20}]
    assert {e["actor"] for e in events} == {"deliver:tickets"}
    assert elapsed < 15
    st.close()


def test_dropped_answer_resent_with_same_key(tmp_path, receiver, hook_env):
    """The receiver stores 3 bodies and dies before answering: resent with the same key, kept once."""
    st = open_store(tmp_path / "s.duckdb", hold=False)
    with st.attached():
        seed_alerts(st, 5)
    receiver.drop_responses = 3
    run = deliver(st, _program(), policy=FAST, wait_s=10)
    assert run.sent == 5 and run.retried == 3
    keys = [k for k, _ in receiver.requests]
    assert len(keys) == 8 and len(set(keys)) == 5  # 3 keys seen twice on the wire
    assert len(receiver.accepted) == 5  # and kept once
    st.close()


def test_crashed_run_webhook_resent_chat_dead_lettered(tmp_path, receiver, hook_env):
    """A run that claimed rows and stopped: the webhook row goes again (same key), Slack's is not resent."""
    program = program_with(
        '[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\nurl = "env:TEST_HOOK_URL"\n'
        'secret = "env:TEST_HOOK_SECRET"\n\n'
        '[[channels]]\nname = "chat"\nkind = "slack"\nowners = ["logistics"]\nurl = "env:TEST_HOOK_URL"\n')
    st = open_store(tmp_path / "s.duckdb")
    seed_alerts(st, 1)
    got = ob.enqueue_alerts(st, program, now=ob_now())
    assert (got.alerts, got.deliveries) == (1, 2)
    # The "crash": both rows claimed, nothing sent, nothing marked.
    for r in ob.due_rows(st, ob_now(), 10):
        assert ob.claim(st, r["id"], ob_now()) == 1
    assert ob.due_rows(st, ob_now(), 10) == []  # claimed rows are not sent by anyone else
    time.sleep(0.6)
    run = deliver_due(st, program, policy=FAST)
    assert (run.resent_after_crash, run.dead, run.sent) == (1, 1, 1)
    d = {r["channel"]: r for r in rows(st, "SELECT channel, status, attempts FROM deliveries")}
    assert d["tickets"]["status"] == "delivered" and d["tickets"]["attempts"] == 2
    assert d["chat"]["status"] == "dead"
    dl = rows(st, "SELECT channel, last_error FROM dead_letters")
    assert len(dl) == 1 and dl[0]["channel"] == "chat" and "outcome unknown" in dl[0]["last_error"]
    failed = rows(st, "SELECT alert_id FROM chain_events WHERE event_type = 'delivery_failed'")
    assert failed == [{"alert_id": "alert-0000"}]
    assert len(receiver.accepted) == 1 and len(receiver.requests) == 1
    st.close()


def test_permanent_refusal_dead_letters_at_once(tmp_path, receiver, hook_env):
    """A 404 is not retried: one attempt, a dead letter, a delivery_failed chain event per alert."""
    st = open_store(tmp_path / "s.duckdb")
    seed_alerts(st, 3)
    receiver.status_override = 404
    run = deliver(st, _program(), policy=FAST, wait_s=5)
    assert (run.sent, run.retried, run.dead) == (0, 0, 3)
    assert len(receiver.requests) == 3
    assert rows(st, "SELECT count(*) AS n, max(attempts) AS a FROM dead_letters") == [{"n": 3, "a": 1}]
    assert rows(st, "SELECT count(*) AS n FROM chain_events WHERE event_type = 'delivery_failed'") == [{"n": 3}]
    st.close()


def test_transient_failures_give_up_after_max_attempts(tmp_path, receiver, hook_env):
    st = open_store(tmp_path / "s.duckdb")
    seed_alerts(st, 2)
    receiver.status_override = 503
    policy = DeliveryPolicy(max_attempts=3, backoff_s=0.05, max_backoff_s=0.2, timeout_s=2)
    run = deliver(st, _program(), policy=policy, wait_s=10)
    assert (run.sent, run.retried, run.dead) == (0, 4, 2)
    assert len(receiver.requests) == 6
    err = rows(st, "SELECT last_error FROM dead_letters")[0]["last_error"]
    assert "HTTP 503" in err and "gave up after 3 attempts" in err
    st.close()


def test_bad_signature_rejected_by_receiver(receiver):
    import urllib.error
    import urllib.request

    body = b'{"type":"insightroi.alert"}'
    ts = int(time.time())
    good = sign_webhook(WEBHOOK_SECRET.encode(), ts, body)
    assert verify_webhook(WEBHOOK_SECRET.encode(), str(ts), good, body, now=time.time())
    cases = {
        "wrong secret": (str(ts), sign_webhook(b"another-secret", ts, body), body),
        "altered body": (str(ts), good, body + b" "),
        "replayed (old timestamp)": (str(ts - 3600), sign_webhook(WEBHOOK_SECRET.encode(), ts - 3600, body), body),
        "no signature": (str(ts), None, body),
    }
    for name, (t, sig, b) in cases.items():
        headers = {"X-Insightroi-Timestamp": t, "Idempotency-Key": name}
        if sig:
            headers["X-Insightroi-Signature"] = sig
        req = urllib.request.Request(receiver.url, data=b, headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 401, name
    assert receiver.accepted == {}


def test_enqueue_writes_each_alert_once(tmp_path, hook_env):
    st = open_store(tmp_path / "s.duckdb")
    seed_alerts(st, 4)
    seed_alerts(st, 2, team="marketing", topic="praise", start=10)
    program = _program()
    first = ob.enqueue_alerts(st, program, now=ob_now())
    again = ob.enqueue_alerts(st, program, now=ob_now())
    assert (first.alerts, first.deliveries, first.unrouted) == (4, 4, {"marketing": 2})
    assert (again.alerts, again.deliveries) == (0, 0)
    assert rows(st, "SELECT count(*) AS n FROM alert_outbox") == [{"n": 4}]
    payload = rows(st, "SELECT payload FROM alert_outbox WHERE id = 'alert-0001'")[0]["payload"]
    assert "parcel 1 arrived 5 days late" in payload  # evidence snippets travel with the alert
    since = ob.enqueue_alerts(st, program_with(
        '[[channels]]\nname = "mk"\nkind = "webhook"\nowners = ["marketing"]\nurl = "http://127.0.0.1:9/x"\n'
        'secret = "env:TEST_HOOK_SECRET"\n'), now=ob_now())
    assert since.alerts == 2  # the praise alerts, unrouted before, go once a channel names marketing
    st.close()


def ob_now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(tzinfo=None)


def test_backoff_doubles_and_caps():
    p = DeliveryPolicy(backoff_s=30, max_backoff_s=600)
    assert [p.backoff(n) for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]
    assert p.backoff(1, retry_after=90) == 90
    assert timedelta(seconds=p.backoff(2)) == timedelta(minutes=1)


def test_slack_and_teams_bodies_over_real_http(tmp_path, monkeypatch):
    """Slack gets text + Block Kit (link buttons), Teams one Adaptive Card; neither is signed."""
    from insightroi.delivery import LinkSigner, link_key

    chat = Receiver(secret=None)
    try:
        monkeypatch.setenv("TEST_CHAT_URL", chat.url)
        program = program_with(
            '[[channels]]\nname = "slack-ops"\nkind = "slack"\nowners = ["logistics"]\nurl = "env:TEST_CHAT_URL"\n\n'
            '[[channels]]\nname = "teams-ops"\nkind = "teams"\nowners = ["logistics"]\nurl = "env:TEST_CHAT_URL"\n')
        st = open_store(tmp_path / "s.duckdb")
        seed_alerts(st, 1)
        run = deliver(st, program, signer=LinkSigner("https://irx.test", link_key("k" * 32)), policy=FAST)
        assert run.sent == 2 and len(chat.accepted) == 2
        bodies = sorted(chat.accepted.values(), key=lambda b: "type" in b)
        slack, teams = bodies
        assert slack["text"].endswith("Complaint spike: shipping delay on FAM-0")
        buttons = slack["blocks"][-1]["elements"]
        assert [b["text"]["text"] for b in buttons][:2] == ["Acknowledge", "Taking action"]
        assert all(b["url"].startswith("https://irx.test/l/") for b in buttons) and len(buttons) == 5
        assert "> parcel 0 arrived 5 days late" in slack["blocks"][1]["text"]["text"]
        card = teams["attachments"][0]["content"]
        assert teams["type"] == "message" and card["type"] == "AdaptiveCard"
        assert len(card["actions"]) == 5 and card["actions"][0]["type"] == "Action.OpenUrl"
        st.close()
    finally:
        chat.close()

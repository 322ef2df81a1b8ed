"""Shared parts of the delivery tests: a program with channels, seeded alerts, a real HTTP receiver."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa

from insightroi.delivery import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook
from insightroi.program import parse_program, starter_program_text

WEBHOOK_SECRET = "whsec-test-8f2d6c1e0b9a7d5c3e1f"
T0 = datetime(2026, 11, 2, 0, 0)


def program_with(channels_toml: str):
    """The starter program with ``channels_toml`` ([[channels]] blocks) appended."""
    return parse_program(starter_program_text() + "\n" + channels_toml, source="test")


def seed_alerts(store, n: int, *, team: str = "logistics", topic: str = "shipping_delay", start: int = 0) -> list[str]:
    """``n`` alerts as the detector writes them (batch 'detect'), each with two feedback items and
    their topic insights as the classifier writes them (evidence = the model's JSON, not the text)."""
    ev, ins, fb, ids = [], [], [], []
    for i in range(start, start + n):
        aid = f"alert-{i:04d}"
        fids = [f"fb-{i:04d}-{j}" for j in range(2)]
        ids.append(aid)
        ev.append({"id": aid, "event_type": "alert_delivered", "alert_id": aid, "event_time": T0 + timedelta(hours=i),
                   "actor": "insightroi-detect", "team": team, "topic": topic, "sku_family": f"FAM-{i % 5}",
                   "payload": json.dumps({"observed": 40 + i, "expected": 12.5, "p_value": 1e-6, "day": "2026-11-01",
                                          "window_days": 1, "feedback_ids": fids}),
                   "batch_id": "detect"})
        for j, fid in enumerate(fids):
            fb.append({"id": fid, "source": "review", "event_time": T0 + timedelta(hours=i),
                       "text": f"parcel {i} arrived {j + 5} days late", "sku_family": f"FAM-{i % 5}"})
            evidence = {"labels": [topic], "proba": {topic: 0.9}, "keywords": {topic: ["late"]}}
            ins.append({"id": f"ins-{fid}", "feedback_id": fid, "task": "topic", "label": topic, "score": 0.9,
                        "confidence": 0.9 - j / 10, "evidence": json.dumps(evidence),
                        "method": "lexicon", "model_version": "topic-lex-1", "created_at": T0})
    with store.transaction():
        store.append("chain_events", pa.Table.from_pylist(ev))
        store.append("feedback", pa.Table.from_pylist(fb))
        store.append("insights", pa.Table.from_pylist(ins))
    return ids


def rows(store, sql: str, params=None) -> list[dict]:
    return store.sql(sql, params or []).to_pylist()


class Receiver:
    """A real HTTP receiver on loopback that checks the HMAC signature and drops resends by key.

    ``accepted``: key -> body of each first receipt; ``requests``: every request as
    (key, status); ``kill_after``: after that many accepted requests the server shuts itself
    down (mid-batch), and ``restart()`` brings it back on the same port.
    """

    def __init__(self, secret: str | None = WEBHOOK_SECRET, port: int = 0) -> None:
        # None: a chat service's incoming webhook, which checks no signature.
        self.secret = secret.encode() if secret is not None else None
        self.accepted: dict[str, dict] = {}
        self.requests: list[tuple[str | None, int]] = []
        self.kill_after: int | None = None
        self.killed = threading.Event()
        self.down = threading.Event()
        self.lock = threading.Lock()
        self.status_override: int | None = None
        # First receipts whose answer is never sent (the receiver dies after storing the body).
        self.drop_responses = 0
        self._start(port)

    def _start(self, port: int) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet test output
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get(IDEMPOTENCY_HEADER)
                ok = outer.secret is None or verify_webhook(outer.secret, self.headers.get(TIMESTAMP_HEADER),
                                                            self.headers.get(SIGNATURE_HEADER), body, now=time.time())
                with outer.lock:
                    if outer.status_override is not None:
                        status = outer.status_override
                    elif not ok:
                        status = 401
                    else:
                        status = 200
                        if key not in outer.accepted:
                            outer.accepted[key] = json.loads(body)
                            if outer.drop_responses > 0:
                                outer.drop_responses -= 1
                                outer.requests.append((key, 0))
                                self.close_connection = True
                                return
                    outer.requests.append((key, status))
                    stop = (outer.kill_after is not None and status == 200 and len(outer.accepted) >= outer.kill_after
                            and not outer.killed.is_set())
                    if stop:
                        outer.killed.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if stop:
                    threading.Thread(target=outer.kill, daemon=True).start()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def kill(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.down.set()

    def restart_after(self, seconds: float) -> threading.Thread:
        """In the background: once the kill is done, wait ``seconds`` and listen again on the same port."""

        def later():
            self.down.wait(30)
            time.sleep(seconds)
            self.down.clear()
            self._start(self.port)

        t = threading.Thread(target=later, daemon=True)
        t.start()
        return t

    def close(self) -> None:
        if self.thread.is_alive():
            self.kill()


def fingerprint_of(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class SmtpInbox:
    """An aiosmtpd handler keeping every message; ``refuse_next`` answers that many with a 451."""

    def __init__(self) -> None:
        self.messages: list = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse_next: int = 0
        self.lock = threading.Lock()
        self.port: int | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        import email
        import email.policy

        with self.lock:
            if self.refuse_next:
                self.refuse_next -= 1
                return "451 4.3.0 try again later"
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def smtp_server():
    """A real SMTP server on loopback (aiosmtpd), yielding its :class:`SmtpInbox`; for a fixture."""
    from aiosmtpd.controller import Controller

    from helpers.live_server import free_port

    inbox = SmtpInbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    inbox.port = ctl.port
    try:
        yield inbox
    finally:
        ctl.stop()


#: A signed-webhook channel for logistics, its address and secret read from the environment.
TICKETS_CHANNEL = ('[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\n'
                   'url = "env:TEST_HOOK_URL"\nsecret = "env:TEST_HOOK_SECRET"\n')


class EmailDelivered:
    """What :func:`deliver_one_email` set up: the store URL, the live server, the e-mail and its send time."""

    def __init__(self, url, srv, message, sent_at) -> None:
        self.url, self.srv, self.message, self.sent_at = url, srv, message, sent_at


def deliver_one_email(tmp_path, live_server, *, token: str, link_secret: str) -> EmailDelivered:
    """One alert, the real server on loopback, a real SMTP server, and the alert's signed e-mail delivered.

    The links in the e-mail point at the live server and are signed with ``link_secret``.
    """
    from aiosmtpd.controller import Controller

    from helpers.live_server import free_port
    from insightroi.delivery import DeliveryPolicy, LinkSigner, deliver, link_key
    from insightroi.server import create_app
    from insightroi.store import open_store

    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with open_store(url) as st:
        seed_alerts(st, 1)
    srv = live_server(create_app(url, token=token, link_secret=link_secret))
    inbox = SmtpInbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        program = program_with(f'[[channels]]\nname = "ops-mail"\nkind = "email"\nowners = ["logistics"]\n'
                               f'smtp_host = "127.0.0.1"\nsmtp_port = {ctl.port}\nfrom = "alerts@insightroi.test"\n'
                               f'to = ["ops@example.test"]\n')
        st = open_store(url, hold=False)
        run = deliver(st, program, signer=LinkSigner(srv.url, link_key(link_secret)), policy=DeliveryPolicy(timeout_s=5))
        with st.attached():
            sent_at = st.sql("SELECT delivered_at FROM deliveries").to_pylist()[0]["delivered_at"]
        st.close()
    finally:
        ctl.stop()
    assert run.sent == 1 and len(inbox.messages) == 1
    return EmailDelivered(url, srv, inbox.messages[0], sent_at)

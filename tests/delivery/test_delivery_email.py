"""E-mail over SMTP against a real aiosmtpd server on loopback: plain + HTML, evidence, signed links."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from _dlv_helpers import program_with, rows, seed_alerts
from insightroi.delivery import DeliveryPolicy, LinkSigner, deliver, link_key, read_link_token
from insightroi.store import open_store

pytest.importorskip("aiosmtpd.controller")


def _program(port: int):
    return program_with(f'[[channels]]\nname = "ops-mail"\nkind = "email"\nowners = ["logistics"]\n'
                        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nfrom = "alerts@insightroi.test"\n'
                        f'to = ["ops@example.test", "lead@example.test"]\n')


def test_email_plain_and_html_with_evidence_and_signed_links(tmp_path, smtp):
    st = open_store(tmp_path / "s.duckdb")
    seed_alerts(st, 3)
    key = link_key("link-secret-for-tests-0123456789abcdef")
    signer = LinkSigner("http://127.0.0.1:8000", key)
    smtp.refuse_next = 1  # the first message meets a 451: retried, not lost
    run = deliver(st, _program(smtp.port), signer=signer,
                  policy=DeliveryPolicy(backoff_s=0.05, max_backoff_s=0.2, timeout_s=5), wait_s=10)
    assert (run.sent, run.retried, run.dead) == (3, 1, 0)
    assert len(smtp.messages) == 3
    assert smtp.envelopes[0] == ("alerts@insightroi.test", ["ops@example.test", "lead@example.test"])
    msg = smtp.messages[0]
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    alert = next(a for a in ("alert-0000", "alert-0001", "alert-0002") if a in plain)
    n = int(alert[-1])
    severity = _program(smtp.port).topic("shipping_delay").severity
    assert msg["Subject"] == f"[{severity}] Complaint spike: shipping delay on FAM-{n}"
    assert f"parcel {n} arrived 5 days late" in plain and f"parcel {n} arrived 5 days late" in html
    # The customers' words, most confident first, not the topic model's JSON evidence.
    quoted = [line.strip() for line in plain.split("What customers wrote:", 1)[1].splitlines() if line.startswith('  "')]
    assert quoted == [f'"parcel {n} arrived 5 days late"', f'"parcel {n} arrived 6 days late"']
    assert '"labels"' not in plain and "proba" not in html
    assert msg["Idempotency-Key"].startswith("insightroi-dlv-")
    assert msg["Message-ID"] == f"<{msg['Idempotency-Key']}@insightroi>"
    # Five signed links (acknowledge, taking action, three not-useful reasons) and the trace.
    links = [line.split(": ", 1)[1] for line in plain.splitlines() if ": http://127.0.0.1:8000/l/" in line]
    assert len(links) == 5
    claims = [read_link_token(key, u.rsplit("/", 1)[1], now=datetime.now(timezone.utc).replace(tzinfo=None))
              for u in links]
    assert {c.alert_id for c in claims} == {alert}
    assert [c.action for c in claims] == ["acknowledge", "taking_action", "not_useful", "not_useful", "not_useful"]
    assert {c.channel for c in claims} == {"ops-mail"}
    assert f"http://127.0.0.1:8000/trace/{alert}" in plain
    assert html.count('href="http://127.0.0.1:8000/l/') == 5
    d = rows(st, "SELECT attempts FROM deliveries ORDER BY attempts DESC")
    assert [r["attempts"] for r in d] == [2, 1, 1]
    st.close()


def test_smtp_permanent_refusal_is_dead_lettered(tmp_path, smtp):
    st = open_store(tmp_path / "s.duckdb")
    seed_alerts(st, 1)
    program = program_with(f'[[channels]]\nname = "ops-mail"\nkind = "email"\nowners = ["logistics"]\n'
                           f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nfrom = "alerts@insightroi.test"\n'
                           f'to = ["ops@example.test"]\n')

    async def refuse(server, session, envelope):
        return "554 5.7.1 rejected"

    smtp.handle_DATA = refuse
    run = deliver(st, program, policy=DeliveryPolicy(backoff_s=0.05, timeout_s=5), wait_s=5)
    assert (run.sent, run.retried, run.dead) == (0, 0, 1)
    assert rows(st, "SELECT last_error FROM dead_letters") == [{"last_error": "SMTP 554 from 127.0.0.1"}]
    st.close()

"""The dashboard's deliveries page in a real browser (Playwright, Debian Chromium) over a store the
real deliverer filled: totals, latest deliveries and dead letters equal ``GET /api/v1/deliveries``;
a dead letter shows its reason and its Requeue button puts the delivery back to pending."""

from __future__ import annotations

import httpx
import pytest

from delivery._dlv_helpers import WEBHOOK_SECRET, Receiver, program_with, seed_alerts
from helpers.live_server import free_port
from insightroi.delivery import DeliveryPolicy, deliver
from insightroi.store import open_store

pytest.importorskip("fastapi")
from insightroi.server import create_app  # noqa: E402

TOKEN = "test-token-for-deliveries-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def filled_store(tmp_path, monkeypatch):
    """3 alerts delivered to a live signed-webhook receiver, 2 dead (their channel's port refuses)."""
    receiver = Receiver()
    monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    program = program_with(
        '[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\nurl = "env:TEST_HOOK_URL"\n'
        'secret = "env:TEST_HOOK_SECRET"\n\n'
        f'[[channels]]\nname = "broken"\nkind = "slack"\nowners = ["fulfillment"]\n'
        f'url = "http://127.0.0.1:{free_port()}/hook"\n')
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    try:
        with open_store(url) as st:
            seed_alerts(st, 3)
            seed_alerts(st, 2, team="fulfillment", topic="damaged_packaging", start=10)
            run = deliver(st, program, policy=DeliveryPolicy(max_attempts=1, timeout_s=2))
        assert (run.sent, run.dead) == (3, 2)
    finally:
        receiver.close()
    return url


def _table(page, selector: str) -> list[dict[str, str]]:
    return page.eval_on_selector_all(selector, """rows => rows.map(r => ({
        id: r.dataset.delivery, dl: r.dataset.deadLetter || null,
        cells: Array.from(r.querySelectorAll('td')).map(td => td.textContent.trim())}))""")


def test_deliveries_page_equals_api_and_requeues_a_dead_letter(filled_store, live_server, browser):
    srv = live_server(create_app(filled_store, token=TOKEN))
    api = httpx.get(f"{srv.url}/api/v1/deliveries", headers=AUTH, timeout=30).json()
    assert api["totals"] == {"pending": 0, "sending": 0, "delivered": 3, "dead": 2, "dead_letters": 2}
    context = browser.new_context()
    page = context.new_page()
    assert page.goto(f"{srv.url}/deliveries").status == 401  # the same auth as every page: sign in here
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{srv.url}/deliveries")
    assert page.locator("nav.main a.on").inner_text() == "Deliveries"
    shown = {k: int(page.locator(f'td[data-total="{k}"]').inner_text()) for k in api["totals"]}
    assert shown == api["totals"]
    # The latest deliveries: the same rows, in the same order, with the same figures.
    items = _table(page, "#latest tbody tr")
    assert [r["id"] for r in items] == [d["id"] for d in api["items"]]
    for row, d in zip(items, api["items"]):
        channel, alert, status, attempts, last_error = row["cells"][:5]
        assert (channel, alert, status, int(attempts), last_error) == (
            f"{d['channel']} ({d['kind']})", d["alert_id"], d["status"], d["attempts"], d["last_error"] or "")
    # The dead letters with their reason (the refused connection), each with a Requeue button.
    dead = _table(page, "#dead-letters tbody tr")
    assert [r["dl"] for r in dead] == [d["id"] for d in api["dead_letters"]]
    for row, d in zip(dead, api["dead_letters"]):
        assert row["cells"][4] == d["last_error"] and "ConnectionRefusedError" in d["last_error"]
        assert row["cells"][5] == "dead"
    assert page.locator('form[data-form="requeue"]').count() == 2
    target = api["dead_letters"][0]
    page.locator(f'tr[data-dead-letter="{target["id"]}"] button', has_text="Requeue").click()
    page.wait_for_url(f"{srv.url}/deliveries?requeued={target['delivery_id']}")
    assert target["delivery_id"] in page.locator(".flash").inner_text()
    assert page.locator(f'tr[data-dead-letter="{target["id"]}"] td.state').inner_text() == "pending"
    assert page.locator('form[data-form="requeue"]').count() == 1
    after = httpx.get(f"{srv.url}/api/v1/deliveries", headers=AUTH, timeout=30).json()
    assert after["totals"] == {"pending": 1, "sending": 0, "delivered": 3, "dead": 1, "dead_letters": 2}
    assert {d["id"]: d["status"] for d in after["items"]}[target["delivery_id"]] == "pending"
    assert {d["id"]: d["attempts"] for d in after["items"]}[target["delivery_id"]] == 0
    assert {int(page.locator(f'td[data-total="{k}"]').inner_text()) for k in ("pending", "dead")} == {1}
    context.close()
    # The POST is protected like the inbox's: no session and no token -> 401; a requeued row cannot be requeued.
    with httpx.Client(timeout=30) as c:
        other = after["dead_letters"][0] if after["dead_letters"][0]["delivery_status"] == "dead" else after["dead_letters"][1]
        assert c.post(f"{srv.url}/deliveries/{other['delivery_id']}/requeue", data={"csrf": ""}).status_code == 401
        c.post(f"{srv.url}/login", data={"token": TOKEN, "next": "/deliveries"})
        assert c.post(f"{srv.url}/deliveries/{other['delivery_id']}/requeue", data={"csrf": "forged"}).status_code == 403
    with httpx.Client(timeout=30) as c:  # a fresh client: the API token typed in the form, no session
        assert c.post(f"{srv.url}/deliveries/{target['delivery_id']}/requeue", data={"token": TOKEN}).status_code == 404
    final = httpx.get(f"{srv.url}/api/v1/deliveries", headers=AUTH, timeout=30).json()
    assert final["totals"] == after["totals"]

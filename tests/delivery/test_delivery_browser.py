"""The loop in a real browser (Playwright, Debian Chromium): the link in a delivered e-mail opens a
one-button page; pressing it records the acknowledgement, which the alert's trace then shows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from _dlv_helpers import deliver_one_email

pytest.importorskip("fastapi")
pytest.importorskip("aiosmtpd.controller")

TOKEN = "test-token-for-browser-0123456789abcdef"
LINK_SECRET = "link-secret-for-browser-0123456789abcdef"


def test_acknowledge_from_the_email_in_a_browser(tmp_path, live_server, browser):
    got = deliver_one_email(tmp_path, live_server, token=TOKEN, link_secret=LINK_SECRET)
    srv, sent_at = got.srv, got.sent_at
    html = got.message.get_body(("html",)).get_content()
    context = browser.new_context()
    page = context.new_page()
    # The owner reads the e-mail (its HTML part, as a mail client shows it) and follows "Acknowledge".
    page.set_content(html)
    ack_url = page.get_by_role("link", name="Acknowledge", exact=True).get_attribute("href")
    assert ack_url.startswith(f"{srv.url}/l/")
    page.goto(srv.url + "/login?next=/inbox")  # signed in, the trace page opens after the button
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.goto(ack_url)
    assert page.get_by_role("heading", name="Acknowledge").is_visible()
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url(f"{srv.url}/trace/alert-0000?recorded=acknowledged")
    ack = page.locator('li[data-event-type="acknowledged"]')
    assert ack.count() == 1
    assert "by link:ops-mail" in ack.inner_text()
    shown = ack.locator(".t").inner_text()  # "YYYY-MM-DD HH:MM:SS UTC"
    ack_at = datetime.strptime(shown[:19], "%Y-%m-%d %H:%M:%S")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert sent_at.replace(microsecond=0) <= ack_at <= now
    context.close()

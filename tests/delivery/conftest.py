"""Fixtures the delivery tests share: a loopback SMTP inbox and a signature-checking webhook receiver."""

from __future__ import annotations

import pytest

from _dlv_helpers import WEBHOOK_SECRET, Receiver, smtp_server


@pytest.fixture
def smtp():
    """A real aiosmtpd server on loopback (see ``_dlv_helpers.SmtpInbox``)."""
    yield from smtp_server()


@pytest.fixture
def receiver(monkeypatch):
    """A loopback webhook receiver, its URL and secret in the env the program's channels name."""
    r = Receiver()
    monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TEST_HOOK_URL", r.url)
    yield r
    r.close()

"""Sending one message over one channel: HTTP webhooks (stdlib urllib) and SMTP (stdlib smtplib).

Why the standard library rather than ``apprise`` or ``httpx``: the deliverer must tell a
permanent refusal (HTTP 4xx, SMTP 5xx: dead-letter at once) from a transient one (5xx, 429,
408, SMTP 4xx, a refused connection: retry), send its own headers on every request (the
idempotency key, the HMAC signature) and refuse redirects (a redirect would carry the signed
body to another host). ``apprise`` reports a bool per notification and owns the request, so
none of that is reachable; ``httpx`` is only in the ``web`` extra, and one POST per message
needs nothing it adds. Slack and Teams are one JSON POST each, which ``urllib`` does.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from insightroi.delivery._message import Message
from insightroi.delivery._signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from insightroi.errors import ProgramError
from insightroi.program import Channel

__all__ = ["SendOutcome", "send", "resolve_env", "check_secrets", "IDEMPOTENCY_HEADER", "DELIVERY_HEADER"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
DELIVERY_HEADER = "X-Insightroi-Delivery"
_TRANSIENT_HTTP = {408, 425, 429}
_USER_AGENT = "insightroi-deliver/1"


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt came to.

    Attributes
    ----------
    ok : bool
    permanent : bool
        A refusal that retrying cannot change (dead-letter it at once).
    error : str or None
        Why it failed (no secrets: URLs are not quoted, only the host).
    retry_after : float or None
        Seconds the receiver asked to wait (HTTP Retry-After), when it said.
    """

    ok: bool
    permanent: bool = False
    error: str | None = None
    retry_after: float | None = None


def resolve_env(value: str | None, what: str) -> str | None:
    """``value`` itself, or the environment variable an ``"env:NAME"`` reference names.

    Raises
    ------
    ProgramError
        The variable is not set (naming it and ``what`` needs it).
    """
    if value is None or not value.startswith("env:"):
        return value
    name = value[4:]
    got = os.environ.get(name)
    if not got:
        raise ProgramError(f"{what} reads the environment variable {name}, which is not set")
    return got


def check_secrets(channels) -> None:
    """Resolve every ``env:`` reference of ``channels`` now, before any row is claimed.

    A missing variable is a configuration error: found mid-run, it would leave a claimed row
    that a later run must treat as "outcome unknown" (and dead-letter, for chat and e-mail).

    Raises
    ------
    ProgramError
        Naming the channel, the field and the variable.
    """
    for c in channels:
        for name in ("url", "secret", "smtp_password"):
            resolve_env(getattr(c, name), f"channel {c.name!r} {name}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        raise urllib.error.HTTPError(req.full_url, code, f"redirected ({code}); deliveries do not follow redirects: "
                                                          "put the final address in the channel's url", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


def _host(url: str) -> str:
    return urllib.request.urlparse(url).netloc.rsplit("@", 1)[-1]


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> SendOutcome:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT, **headers})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65536)
        return SendOutcome(True)
    except urllib.error.HTTPError as exc:
        code = exc.code
        retry_after = None
        ra = exc.headers.get("Retry-After") if exc.headers else None
        if ra and ra.strip().isdigit():
            retry_after = float(ra.strip())
        permanent = 300 <= code < 500 and code not in _TRANSIENT_HTTP
        return SendOutcome(False, permanent, f"HTTP {code} from {_host(url)}", retry_after)
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return SendOutcome(False, False, f"{type(reason).__name__} reaching {_host(url)}: {reason}")


def _smtp(channel: Channel, msg, timeout: float) -> SendOutcome:
    try:
        password = resolve_env(channel.smtp_password, f"channel {channel.name!r} smtp_password")
        with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout) as smtp:
            if channel.smtp_starttls:
                smtp.starttls()
            if channel.smtp_user:
                smtp.login(channel.smtp_user, password or "")
            refused = smtp.send_message(msg)
        if refused:
            # Some recipients were accepted: resending would duplicate for them, so it stops here.
            return SendOutcome(False, True, f"SMTP refused recipients {sorted(refused)}")
        return SendOutcome(True)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [c for c, _ in exc.recipients.values()]
        return SendOutcome(False, all(c >= 500 for c in codes), f"SMTP refused every recipient (codes {codes})")
    except smtplib.SMTPResponseException as exc:
        return SendOutcome(False, exc.smtp_code >= 500, f"SMTP {exc.smtp_code} from {channel.smtp_host}")
    except (smtplib.SMTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as exc:
        where = f"{channel.smtp_host}:{channel.smtp_port}"
        return SendOutcome(False, False, f"{type(exc).__name__} reaching {where}: {exc}")


def send(channel: Channel, message: Message, *, delivery_id: str, idempotency_key: str, now_ts: float | None = None,
         timeout: float = 10.0) -> SendOutcome:
    """Send ``message`` over ``channel`` once.

    Parameters
    ----------
    channel : insightroi.program.Channel
    message : Message
    delivery_id, idempotency_key : str
        Sent as ``X-Insightroi-Delivery`` and ``Idempotency-Key`` (the e-mail's Message-ID);
        the same on every attempt of one delivery, so a receiver can drop a resend.
    now_ts : float, optional
        Unix seconds for the webhook signature's timestamp (default: the clock).
    timeout : float
        Seconds per connection attempt.

    Returns
    -------
    SendOutcome

    Raises
    ------
    ProgramError
        A secret's environment variable is not set (a configuration error, not a delivery failure).
    """
    headers = {IDEMPOTENCY_HEADER: idempotency_key, DELIVERY_HEADER: delivery_id}
    if channel.kind == "email":
        from datetime import datetime, timezone

        now = datetime.fromtimestamp(now_ts if now_ts is not None else time.time(), timezone.utc).replace(tzinfo=None)
        msg = message.email(sender=channel.from_address, to=list(channel.to), now=now,
                            message_id=f"<{idempotency_key}@insightroi>")
        msg[IDEMPOTENCY_HEADER] = idempotency_key
        return _smtp(channel, msg, timeout)
    url = resolve_env(channel.url, f"channel {channel.name!r} url")
    if channel.kind == "slack":
        doc = message.slack()
    elif channel.kind == "teams":
        doc = message.teams()
    else:
        doc = message.webhook(delivery_id, channel.name)
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    if channel.kind == "webhook":
        secret = resolve_env(channel.secret, f"channel {channel.name!r} secret")
        ts = int(now_ts if now_ts is not None else time.time())
        headers[TIMESTAMP_HEADER] = str(ts)
        headers[SIGNATURE_HEADER] = sign_webhook(secret.encode(), ts, body)
    return _post(url, body, headers, timeout)

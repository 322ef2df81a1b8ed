"""HMAC signatures: the generic webhook's request signature and the signed links in messages.

Webhook requests are signed Stripe-style: ``HMAC-SHA256(secret, f"{timestamp}." + body)``, sent as
``X-Insightroi-Timestamp`` and ``X-Insightroi-Signature: v1=<hex>``. Signing the timestamp with
the body lets a receiver refuse a replayed request (an old timestamp) as well as a forged one.

Links carry a token ``<payload>.<mac>`` (both base64url): the payload names the alert, the
action, the channel and the expiry, so following a link needs no session and cannot be bent to
another alert or action. Link keys are derived from a secret with a fixed label, so the API
token (a bearer credential) is never itself the key of a MAC that anyone holding a link sees.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "LINK_ACTIONS",
    "NOT_USEFUL_REASONS",
    "LinkClaim",
    "LinkTokenError",
    "link_key",
    "make_link_token",
    "read_link_token",
    "sign_webhook",
    "verify_webhook",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
]

SIGNATURE_HEADER = "X-Insightroi-Signature"
TIMESTAMP_HEADER = "X-Insightroi-Timestamp"

#: Link action -> the chain event it records.
LINK_ACTIONS = {"acknowledge": "acknowledged", "taking_action": "action_taken", "not_useful": "ignored"}
#: Reasons a "not useful" link may carry (each its own signed link: a mail client cannot fill a form).
NOT_USEFUL_REASONS = ("false_alarm", "wrong_owner", "already_known")


def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Insightroi-Signature`` value of a webhook request.

    Parameters
    ----------
    secret : bytes
        The channel's shared secret.
    timestamp : int
        Unix seconds, sent as ``X-Insightroi-Timestamp``.
    body : bytes
        The exact request body.

    Returns
    -------
    str
        ``"v1=" + hex(HMAC-SHA256(secret, b"<timestamp>." + body))``.
    """
    mac = hmac.new(secret, str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify_webhook(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, *,
                   now: float, tolerance_s: float = 300.0) -> bool:
    """Whether a received webhook request is authentic and fresh (what a receiver should run).

    Parameters
    ----------
    secret : bytes
        The shared secret.
    timestamp, signature : str or None
        The ``X-Insightroi-Timestamp`` and ``X-Insightroi-Signature`` headers as received.
    body : bytes
        The raw body, before any JSON parsing.
    now : float
        The receiver's clock (Unix seconds).
    tolerance_s : float
        Largest accepted distance between ``timestamp`` and ``now`` (replay window).

    Returns
    -------
    bool
        True only for a well-formed, matching signature whose timestamp is within the window;
        the comparison is constant-time.
    """
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = sign_webhook(secret, int(timestamp), body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))


def link_key(secret: str | bytes) -> bytes:
    """The key link tokens are signed with, derived from ``secret`` (the link secret or API token)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, b"insightroi-links-v1", hashlib.sha256).digest()


class LinkTokenError(ValueError):
    """A link token that is malformed, forged, or expired (the message says which)."""


@dataclass(frozen=True)
class LinkClaim:
    """What a verified link token says.

    Attributes
    ----------
    alert_id : str
    action : str
        One of :data:`LINK_ACTIONS`.
    channel : str
        The channel the message went out on (recorded as the event's actor).
    reason : str or None
        For ``not_useful``: one of :data:`NOT_USEFUL_REASONS`, or None when the owner picks it on
        the link's page.
    expires : datetime
        Naive UTC.
    """

    alert_id: str
    action: str
    channel: str
    reason: str | None
    expires: datetime

    @property
    def event_type(self) -> str:
        """The chain event the link records."""
        return LINK_ACTIONS[self.action]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_link_token(key: bytes, alert_id: str, action: str, *, channel: str, expires: datetime,
                    reason: str | None = None) -> str:
    """A signed token for one link of one message.

    Parameters
    ----------
    key : bytes
        From :func:`link_key`.
    alert_id : str
    action : str
        One of :data:`LINK_ACTIONS`.
    channel : str
        The channel's name.
    expires : datetime
        Naive UTC (or aware); after it the link is refused.
    reason : str, optional
        For ``not_useful``: one of :data:`NOT_USEFUL_REASONS`, or None to let the owner choose it
        on the link's page; refused for other actions.

    Returns
    -------
    str
        ``<payload>.<mac>``, URL-safe.
    """
    if action not in LINK_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(LINK_ACTIONS)}; got {action!r}")
    # A not_useful link without a reason lets the owner pick it on the link's page (a digest
    # lists many alerts: three reason links each would bury the acknowledge links).
    if (action != "not_useful" and reason is not None) or (reason is not None and reason not in NOT_USEFUL_REASONS):
        raise ValueError(f"reason: a not_useful link takes one of {', '.join(NOT_USEFUL_REASONS)} (or none, chosen "
                         f"on its page), other links none; got {reason!r} for {action!r}")
    exp = int((expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)).timestamp())
    body = {"a": alert_id, "k": action, "c": channel, "e": exp}
    if reason is not None:
        body["r"] = reason
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    mac = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{mac}"


def read_link_token(key: bytes, token: str, *, now: datetime) -> LinkClaim:
    """Verify a link token and return what it claims.

    Parameters
    ----------
    key : bytes
        From :func:`link_key` (the same secret the deliverer used).
    token : str
    now : datetime
        Naive UTC.

    Raises
    ------
    LinkTokenError
        Malformed, a wrong signature (forged, or signed with another secret), or expired.
    """
    payload, dot, mac = token.partition(".")
    if not dot or not payload or not mac or len(token) > 2048:
        raise LinkTokenError("malformed link token")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
        raise LinkTokenError("the link's signature does not match (altered, or signed by another server)")
    try:
        body = json.loads(_unb64(payload))
        claim = LinkClaim(alert_id=str(body["a"]), action=str(body["k"]), channel=str(body["c"]),
                          reason=body.get("r"),
                          expires=datetime.fromtimestamp(int(body["e"]), timezone.utc).replace(tzinfo=None))
    except (ValueError, KeyError, TypeError) as exc:
        raise LinkTokenError(f"malformed link token ({exc})") from None
    if claim.action not in LINK_ACTIONS:
        raise LinkTokenError(f"unknown link action {claim.action!r}")
    if claim.reason is not None and (claim.action != "not_useful" or claim.reason not in NOT_USEFUL_REASONS):
        raise LinkTokenError(f"unknown reason {claim.reason!r} for a {claim.action} link")
    if now > claim.expires:
        raise LinkTokenError(f"the link expired at {claim.expires.isoformat(sep=' ')} UTC")
    return claim

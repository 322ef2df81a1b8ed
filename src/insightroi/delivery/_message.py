"""What a delivered alert says, rendered for each channel kind.

The facts come from the outbox row (written once when the alert was enqueued); the links are
signed at send time, so a retried message carries links that expire relative to its sending.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from insightroi.delivery._signing import LINK_ACTIONS, NOT_USEFUL_REASONS, make_link_token

__all__ = ["Message", "Digest", "LinkSigner", "build_message", "build_digest"]

_ACTION_LABELS = {"acknowledge": "Acknowledge", "taking_action": "Taking action"}
_REASON_LABELS = {"false_alarm": "Not useful (false alarm)", "wrong_owner": "Not useful (not our team)",
                  "already_known": "Not useful (already known)"}


@dataclass(frozen=True)
class LinkSigner:
    """Makes the signed links of a message: ``{base_url}/l/{token}``.

    Attributes
    ----------
    base_url : str
        The server as owners reach it (``https://insightroi.example.com``), no trailing slash.
    key : bytes
        From :func:`insightroi.delivery.link_key`; the server verifies with the same.
    ttl : timedelta
        How long a link stays valid after the message is sent.
    """

    base_url: str
    key: bytes
    ttl: timedelta = timedelta(days=14)

    def links(self, alert_id: str, channel: str, now: datetime, *, compact: bool = False) -> dict[str, str]:
        """Label -> URL for every action.

        One ``not useful`` link per reason, or with ``compact`` one ``Not useful`` link whose page
        asks for the reason (a digest: three links per alert rather than five).
        """
        exp = now + self.ttl
        base = self.base_url.rstrip("/")
        out = {}
        for action in LINK_ACTIONS:
            if action == "not_useful" and compact:
                tok = make_link_token(self.key, alert_id, action, channel=channel, expires=exp)
                out["Not useful"] = f"{base}/l/{tok}"
            elif action == "not_useful":
                for reason in NOT_USEFUL_REASONS:
                    tok = make_link_token(self.key, alert_id, action, channel=channel, expires=exp, reason=reason)
                    out[_REASON_LABELS[reason]] = f"{base}/l/{tok}"
            else:
                tok = make_link_token(self.key, alert_id, action, channel=channel, expires=exp)
                out[_ACTION_LABELS[action]] = f"{base}/l/{tok}"
        return out

    def trace_url(self, alert_id: str) -> str:
        """The alert's trace page on the server."""
        return f"{self.base_url.rstrip('/')}/trace/{quote(alert_id, safe='')}"


@dataclass(frozen=True)
class Message:
    """One alert as a message: a title, plain lines, evidence snippets and links."""

    alert_id: str
    title: str
    lines: list[str]
    evidence: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    trace_url: str | None = None
    facts: dict = field(default_factory=dict)

    def text(self) -> str:
        """Plain text (the e-mail's text part and the chat fallback)."""
        out = [self.title, "", *self.lines]
        if self.evidence:
            out += ["", "What customers wrote:", *[f'  "{e}"' for e in self.evidence]]
        if self.links:
            out += ["", *[f"{label}: {url}" for label, url in self.links.items()]]
        if self.trace_url:
            out += ["", f"Trace: {self.trace_url}"]
        return "\n".join(out)

    def html(self) -> str:
        """The e-mail's HTML part (every value escaped)."""
        return "<!doctype html><html><body>" + self._html_body() + "</body></html>"

    def slack(self) -> dict:
        """A Slack incoming-webhook body (``text`` fallback plus Block Kit sections)."""
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{_mrkdwn(self.title)}*\n" +
                                                "\n".join(_mrkdwn(x) for x in self.lines)}}]
        if self.evidence:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(
                f"> {_mrkdwn(x)}" for x in self.evidence)}})
        if self.links:
            blocks.append({"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": label[:75]}, "url": url}
                for label, url in self.links.items()]})
        return {"text": self.title, "blocks": blocks}

    def teams(self) -> dict:
        """A Teams (Workflows) incoming-webhook body: one Adaptive Card."""
        body = [{"type": "TextBlock", "text": self.title, "weight": "Bolder", "size": "Medium", "wrap": True}]
        body += [{"type": "TextBlock", "text": x, "wrap": True} for x in self.lines]
        body += [{"type": "TextBlock", "text": f"\u201c{x}\u201d", "isSubtle": True, "wrap": True}
                 for x in self.evidence]
        actions = [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in self.links.items()]
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": body, "actions": actions}
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}

    def webhook(self, delivery_id: str, channel: str) -> dict:
        """The generic webhook's JSON (for ticket systems): the alert's facts, evidence and links."""
        return {"type": "insightroi.alert", "delivery_id": delivery_id, "channel": channel,
                "alert": {**self.facts, "alert_id": self.alert_id}, "title": self.title,
                "evidence": self.evidence, "links": self.links, "trace_url": self.trace_url}

    def email(self, *, sender: str, to: list[str], message_id: str, now: datetime) -> EmailMessage:
        """A multipart/alternative e-mail (plain text, then HTML)."""
        return _email(self.title, self.text(), self.html(), sender=sender, to=to, message_id=message_id, now=now)

    def _html_body(self, heading: str = "h2") -> str:
        e = html.escape
        parts = [f"<{heading}>{e(self.title)}</{heading}>", "<p>" + "<br>".join(e(x) for x in self.lines) + "</p>"]
        if self.evidence:
            parts.append("<p><b>What customers wrote:</b></p><ul>" +
                         "".join(f"<li><q>{e(x)}</q></li>" for x in self.evidence) + "</ul>")
        if self.links:
            parts.append("<p>" + " &middot; ".join(f'<a href="{e(u, quote=True)}">{e(label)}</a>'
                                                   for label, u in self.links.items()) + "</p>")
        if self.trace_url:
            parts.append(f'<p><a href="{e(self.trace_url, quote=True)}">Open the trace</a></p>')
        return "".join(parts)


def _email(subject: str, text: str, html_text: str, *, sender: str, to: list[str], message_id: str,
           now: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(now.replace(tzinfo=timezone.utc))
    # The same Message-ID on a resend lets mail systems that deduplicate by it do so.
    msg["Message-ID"] = message_id
    msg.set_content(text)
    msg.add_alternative(html_text, subtype="html")
    return msg


# Slack refuses a message of more than 50 blocks; a digest uses two per alert plus a heading.
_SLACK_MAX_ALERTS = 24


@dataclass(frozen=True)
class Digest:
    """Every alert a digest channel held for one due time, as ONE message.

    Each alert keeps its own facts, evidence, links and trace; the digest renders for every
    channel kind with the same methods as :class:`Message`, so ``send`` takes either.

    Attributes
    ----------
    channel : str
    key : str
        The digest's idempotency key (channel, due time and the sorted delivery ids): the same
        on every attempt, so a webhook receiver drops a resend.
    due : datetime
        The digest time the alerts were held for (naive UTC).
    items : list of (str, Message)
        Delivery id and message of each alert, in the order they are listed.
    """

    channel: str
    key: str
    due: datetime
    items: list[tuple[str, Message]]

    @property
    def title(self) -> str:
        """The subject: how many alerts, for which day, and the first topics."""
        n = len(self.items)
        topics = sorted({str(m.facts.get("topic") or "unknown").replace("_", " ") for _, m in self.items})
        head = ", ".join(topics[:3]) + (f" and {len(topics) - 3} more" if len(topics) > 3 else "")
        return f"Digest {self.due:%Y-%m-%d}: {n} alert{'s' if n != 1 else ''} ({head})"

    def text(self) -> str:
        """Plain text: each alert's own text, numbered."""
        out = [self.title]
        for i, (_, m) in enumerate(self.items, 1):
            out += ["", "-" * 60, f"{i}. {m.text()}"]
        return "\n".join(out)

    def html(self) -> str:
        """The e-mail's HTML part: one section per alert (every value escaped)."""
        e = html.escape
        body = [f"<h2>{e(self.title)}</h2>"]
        body += [f'<section id="alert-{i}" style="border-top:1px solid #ccc;margin-top:1em">{m._html_body("h3")}'
                 "</section>" for i, (_, m) in enumerate(self.items, 1)]
        return "<!doctype html><html><body>" + "".join(body) + "</body></html>"

    def slack(self) -> dict:
        """One Slack post: a heading, then per alert a section and its link buttons."""
        blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}}]
        shown = self.items[:_SLACK_MAX_ALERTS]
        for _, m in shown:
            text = f"*{_mrkdwn(m.title)}*\n" + "\n".join(_mrkdwn(x) for x in m.lines)
            if m.evidence:
                text += "\n" + "\n".join(f"> {_mrkdwn(x[:300])}" for x in m.evidence)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
            if m.links:
                blocks.append({"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": label[:75]}, "url": url}
                    for label, url in m.links.items()]})
        if len(self.items) > len(shown):
            rest = len(self.items) - len(shown)
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
                f"{rest} more alert(s) in this digest: see the dashboard's inbox")}]})
        return {"text": self.title, "blocks": blocks}

    def teams(self) -> dict:
        """One Teams post: an Adaptive Card with a container and an action set per alert."""
        body: list[dict] = [{"type": "TextBlock", "text": self.title, "weight": "Bolder", "size": "Medium",
                             "wrap": True}]
        for _, m in self.items:
            items = [{"type": "TextBlock", "text": m.title, "weight": "Bolder", "wrap": True}]
            items += [{"type": "TextBlock", "text": x, "wrap": True} for x in m.lines]
            items += [{"type": "TextBlock", "text": f"\u201c{x}\u201d", "isSubtle": True, "wrap": True}
                      for x in m.evidence]
            if m.links:
                items.append({"type": "ActionSet", "actions": [
                    {"type": "Action.OpenUrl", "title": label, "url": url} for label, url in m.links.items()]})
            body.append({"type": "Container", "separator": True, "items": items})
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": body}
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}

    def webhook(self, delivery_id: str, channel: str) -> dict:
        """The generic webhook's JSON: the digest's key and an ``alerts`` array (one object per alert)."""
        return {"type": "insightroi.digest", "digest_key": self.key, "delivery_id": delivery_id, "channel": channel,
                "due": self.due.isoformat(), "title": self.title,
                "alerts": [m.webhook(did, channel) for did, m in self.items]}

    def email(self, *, sender: str, to: list[str], message_id: str, now: datetime) -> EmailMessage:
        """A multipart/alternative e-mail listing every alert."""
        return _email(self.title, self.text(), self.html(), sender=sender, to=to, message_id=message_id, now=now)


def _mrkdwn(s: str) -> str:
    # Slack's escaping: these three are control characters in mrkdwn (links, mentions).
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_message(payload: str | dict, *, channel: str, now: datetime, signer: LinkSigner | None,
                  compact_links: bool = False) -> Message:
    """The message of one outbox alert for one channel.

    Parameters
    ----------
    payload : str or dict
        The outbox row's payload (JSON): the alert's facts and evidence snippets.
    channel : str
        The channel's name (signed into the links).
    now : datetime
        Naive UTC; the links expire ``signer.ttl`` after it.
    signer : LinkSigner or None
        Without one the message has no links (the deliverer was given no server URL).
    compact_links : bool
        One "Not useful" link whose page asks the reason, rather than one per reason.
    """
    a = json.loads(payload) if isinstance(payload, str) else dict(payload)
    topic = str(a.get("topic") or "unknown topic").replace("_", " ")
    where = f" on {a['sku_family']}" if a.get("sku_family") else ""
    sev = a.get("severity") or "medium"
    what = "Praise spike" if a.get("kind") == "praise" else "Complaint spike"
    title = f"[{sev}] {what}: {topic}{where}"
    lines = []
    if a.get("observed") is not None and a.get("expected") is not None:
        window = a.get("window_days") or 1
        lines.append(f"{a['observed']:g} mentions in {window} day(s) to {a.get('day')}, against "
                     f"{float(a['expected']):.1f} expected (p = {float(a.get('p_value') or 0):.2g}).")
    if a.get("team"):
        lines.append(f"Owner: {a['team']}.")
    lines.append(f"Alert {a['alert_id']}.")
    links = signer.links(a["alert_id"], channel, now, compact=compact_links) if signer else {}
    return Message(alert_id=a["alert_id"], title=title, lines=lines, evidence=list(a.get("evidence") or [])[:3],
                   links=links, trace_url=signer.trace_url(a["alert_id"]) if signer else None,
                   facts={k: a.get(k) for k in ("team", "topic", "sku_family", "severity", "kind", "day", "observed",
                                                "expected", "p_value", "window_days")})


def build_digest(rows: list[dict], *, channel: str, key: str, due: datetime, now: datetime,
                 signer: LinkSigner | None) -> Digest:
    """The digest of the outbox rows one channel holds for one due time.

    Parameters
    ----------
    rows : list of dict
        Delivery rows with ``id`` and their alert's ``payload`` (the outbox row's JSON).
    channel : str
    key : str
        The digest's idempotency key.
    due : datetime
        The due time the rows were held for (naive UTC).
    now : datetime
        Naive UTC; every link expires ``signer.ttl`` after it.
    signer : LinkSigner or None

    Returns
    -------
    Digest
        Alerts ordered by severity (most severe first), then topic, then alert id; each with its
        own acknowledge, taking-action and not-useful links.
    """
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    items = [(r["id"], build_message(r["payload"], channel=channel, now=now, signer=signer, compact_links=True))
             for r in rows]
    items.sort(key=lambda x: (rank.get(x[1].facts.get("severity") or "medium", 2), x[1].facts.get("topic") or "",
                              x[1].alert_id))
    return Digest(channel=channel, key=key, due=due, items=items)

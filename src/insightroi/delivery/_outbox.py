"""The outbox: alerts written once with their delivery rows, claimed before sending, marked after.

States of a delivery row: ``pending`` (due at ``next_attempt_at``) -> ``sending`` (claimed: its
attempt counted and committed before any byte goes out) -> ``delivered`` | back to ``pending``
(a transient failure, with backoff) | ``dead`` (copied to ``dead_letters``).

A run that stops between claiming and marking leaves the row ``sending``. The next run after
``claim_timeout`` cannot know whether the message went out. A generic webhook is sent again
with the same ``Idempotency-Key`` (its receiver drops the copy); Slack, Teams and SMTP have no
such key, so those rows are dead-lettered as "outcome unknown" rather than risk a second message.

Rows change in place, which only the embedded DuckDB store supports (Spark and Databricks
tables here are append-only), so the outbox refuses other stores with a clear error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from insightroi.insights._spikes import PRAISE_OWNER
from insightroi.insights._themes_evidence import snippet
from insightroi.program import Channel, Program
from insightroi.store import Store

__all__ = ["EnqueueResult", "enqueue_alerts", "delivery_id", "digest_key", "first_due", "outbox_counts",
           "requeue_dead", "IDEMPOTENT_KINDS", "DIGEST_KEY_PREFIX"]

# Kinds whose receiver can drop a resend by its Idempotency-Key.
IDEMPOTENT_KINDS = ("webhook",)
# A digest's rows carry the digest's key in place of their own (see claim_group).
DIGEST_KEY_PREFIX = "insightroi-dg-"
_URGENT = ("high", "critical")


def delivery_id(alert_id: str, channel: str) -> str:
    """The stable id of the delivery of ``alert_id`` over ``channel`` (also its idempotency key's core)."""
    return "dlv-" + hashlib.sha256(f"{alert_id}\x1f{channel}".encode()).hexdigest()[:24]


@dataclass
class EnqueueResult:
    """What :func:`enqueue_alerts` wrote.

    Attributes
    ----------
    alerts : int
        Alerts written to the outbox (each once, ever).
    deliveries : int
        Delivery rows written with them (one per alert x channel).
    unrouted : dict
        Owner -> alerts left out because no channel names that owner (they stay eligible: a
        channel added later picks them up).
    """

    alerts: int = 0
    deliveries: int = 0
    unrouted: dict[str, int] = field(default_factory=dict)


def first_due(channel: Channel, severity: str, now: datetime, program_tz: str | None = None) -> datetime:
    """When a new delivery over ``channel`` is first due (naive UTC).

    High and critical alerts go at once; otherwise a ``daily`` channel waits for the next 00:00
    UTC and a ``weekly`` one for the next Monday 00:00 UTC. Quiet hours then push anything but a
    critical alert to the end of the quiet window.
    """
    due = now
    if channel.digest != "immediate" and severity not in _URGENT:
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
        due = midnight if channel.digest == "daily" else midnight + timedelta(days=(7 - midnight.weekday()) % 7)
    q = channel.quiet_hours
    if q is None or severity == "critical":
        return due
    zone = ZoneInfo(q.timezone or program_tz or "UTC")
    local = due.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    start = local.replace(hour=int(q.start[:2]), minute=int(q.start[3:]), second=0, microsecond=0)
    end = local.replace(hour=int(q.end[:2]), minute=int(q.end[3:]), second=0, microsecond=0)
    if q.start < q.end:  # same-day window
        quiet = start <= local < end
    else:  # spans midnight: quiet after start or before end
        quiet = local >= start or local < end
        if local >= start:
            end = end + timedelta(days=1)
    if not quiet:
        return due
    return end.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def _evidence(store: Store, topic: str | None, feedback_ids: list[str], n: int = 3) -> list[str]:
    """What customers wrote: snippets of the alert's most confident feedback, cut around its keywords.

    ``insights.evidence`` is the topic model's JSON (labels, probabilities, matched keywords), not
    the customer's words; the words are ``feedback.text``, and the matched keywords say where
    to cut a long text so the message shows the part that made the alert.
    """
    if not feedback_ids:
        return []
    rows = store.sql(
        "SELECT f.text, i.evidence FROM insights i JOIN feedback f ON f.id = i.feedback_id "
        "WHERE i.task = 'topic' AND i.feedback_id IN (SELECT unnest(?)) AND f.text IS NOT NULL "
        "AND (? IS NULL OR i.label = ?) ORDER BY i.confidence DESC NULLS LAST, i.id LIMIT ?",
        [feedback_ids, topic, topic, n],
    ).to_pylist()
    out = []
    for r in rows:
        try:
            keywords = (json.loads(r["evidence"] or "{}").get("keywords") or {}).get(topic) or []
        except (ValueError, AttributeError):
            keywords = []
        out.append(snippet(r["text"], keywords).text)
    return out


def enqueue_alerts(store: Store, program: Program, *, now: datetime, since: datetime | None = None) -> EnqueueResult:
    """Write the detector's new alerts to the outbox, each in one transaction with its delivery rows.

    Parameters
    ----------
    store : Store
        An embedded DuckDB store (see the module note).
    program : Program
        Its ``[[channels]]`` say who gets what; topic severities come from the taxonomy.
    now : datetime
        Naive UTC (``enqueued_at``, and when deliveries first fall due).
    since : datetime, optional
        Only alerts the detector dated at or after this (naive UTC), so a first run does not
        send months of history; None: all.

    Returns
    -------
    EnqueueResult
    """
    store.require_duckdb("the delivery outbox")
    out = EnqueueResult()
    if not program.channels:
        return out
    with store.attached():
        alerts = store.sql(
            "SELECT coalesce(alert_id, id) AS alert_id, min(event_time) AS event_time, max(team) AS team, "
            "max(topic) AS topic, max(sku_family) AS sku_family, max(payload) AS payload FROM chain_events "
            "WHERE event_type = 'alert_delivered' AND batch_id = 'detect' "
            "AND (?::TIMESTAMP IS NULL OR event_time >= ?) "
            "AND coalesce(alert_id, id) NOT IN (SELECT id FROM alert_outbox) "
            "GROUP BY 1 ORDER BY event_time, alert_id",
            [since, since],
        ).to_pylist()
        for a in alerts:
            facts = json.loads(a["payload"]) if a["payload"] else {}
            # A praise spike goes to the positive-theme stream whatever team the row names (an API
            # client or an older detector may have named the topic owner): owners are paged for problems.
            kind = "praise" if facts.get("kind") == "praise" else "problem"
            team = PRAISE_OWNER if kind == "praise" else a["team"]
            channels = program.channels_for(team) if team else []
            if not channels:
                out.unrouted[team or "(no owner)"] = out.unrouted.get(team or "(no owner)", 0) + 1
                continue
            try:
                # Good news is never urgent: praise waits for the stream's digest.
                severity = "low" if kind == "praise" else program.topic(a["topic"]).severity
            except KeyError:
                severity = "medium"
            payload = {
                "alert_id": a["alert_id"], "team": team, "topic": a["topic"], "sku_family": a["sku_family"],
                "severity": severity, "kind": kind, "raised_at": a["event_time"].isoformat(),
                **{k: facts.get(k) for k in ("day", "observed", "expected", "p_value", "window_days",
                                             "model_version")},
                "feedback_ids": list(facts.get("feedback_ids") or [])[:50],
                "evidence": _evidence(store, a["topic"], list(facts.get("feedback_ids") or [])),
            }
            rows = []
            for c in channels:
                did = delivery_id(a["alert_id"], c.name)
                rows.append({
                    "id": did, "alert_id": a["alert_id"], "channel": c.name, "kind": c.kind,
                    "idempotency_key": f"insightroi-{did}", "status": "pending", "attempts": 0,
                    "next_attempt_at": first_due(c, severity, now, program.program.timezone),
                    "created_at": now,
                })
            with store.transaction():
                store.append("alert_outbox", pa.Table.from_pylist([{
                    "id": a["alert_id"], "team": team, "topic": a["topic"], "sku_family": a["sku_family"],
                    "severity": severity, "payload": json.dumps(payload, default=str), "enqueued_at": now}]))
                store.append("deliveries", pa.Table.from_pylist(rows))
            out.alerts += 1
            out.deliveries += len(rows)
    return out


def outbox_counts(store: Store) -> dict[str, int]:
    """Delivery rows per status, plus ``dead_letters``: what ``deliver`` and the dashboard show."""
    store.require_duckdb("the delivery outbox")
    rows = store.sql("SELECT status, count(*) AS n FROM deliveries GROUP BY status").to_pylist()
    out = {s: 0 for s in ("pending", "sending", "delivered", "dead")}
    out.update({r["status"]: int(r["n"]) for r in rows})
    out["dead_letters"] = int(store.sql("SELECT count(*) AS n FROM dead_letters").to_pylist()[0]["n"])
    return out


# ---- state changes (the deliverer's) ----------------------------------------------------------

def due_rows(store: Store, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Pending rows due at ``now`` with their alert's payload and severity, oldest due first.

    Rows of one channel and due time come together (a digest is read whole unless the batch
    ends inside it).
    """
    return store.sql(
        "SELECT d.id, d.alert_id, d.channel, d.kind, d.idempotency_key, d.attempts, d.next_attempt_at, o.payload, "
        "o.team, o.topic, o.sku_family, o.severity FROM deliveries d JOIN alert_outbox o ON o.id = d.alert_id "
        "WHERE d.status = 'pending' AND d.next_attempt_at <= ? "
        "ORDER BY d.next_attempt_at, d.channel, d.alert_id LIMIT ?",
        [now, limit],
    ).to_pylist()


def digest_key(channel: str, due: datetime, delivery_ids: list[str]) -> str:
    """The idempotency key of one digest: its channel, due time and the sorted delivery ids."""
    raw = "\x1f".join([channel, due.isoformat(), *sorted(delivery_ids)])
    return DIGEST_KEY_PREFIX + hashlib.sha256(raw.encode()).hexdigest()[:24]


def is_digest_row(row: dict[str, Any], channel: Channel | None) -> bool:
    """Whether a due row goes out in its channel's digest (not a high / critical alert, not immediate)."""
    return channel is not None and channel.digest != "immediate" and (row.get("severity") or "medium") not in _URGENT


def claim_group(store: Store, rows: list[dict[str, Any]], now: datetime) -> tuple[list[dict[str, Any]], dict[str, int], str]:
    """Take the rows of one digest together and give them one idempotency key, committed before sending.

    A digest that a stopped run left (its rows back to pending with their digest key) keeps
    that key, so a webhook receiver drops the resend; otherwise the key is made from the rows
    this run got (another deliverer may have taken some).

    Returns
    -------
    (rows, attempts, key)
        The rows claimed (possibly none), delivery id -> attempts counted, and the key.
    """
    ids = [r["id"] for r in rows]
    keys = {r["idempotency_key"] for r in rows}
    due = min(r["next_attempt_at"] for r in rows)
    reused = len(keys) == 1 and next(iter(keys)).startswith(DIGEST_KEY_PREFIX)
    key = keys.pop() if reused else digest_key(rows[0]["channel"], due, ids)
    with store.transaction():
        got = store.sql(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = ?, idempotency_key = ? "
            "WHERE id IN (SELECT unnest(?)) AND status = 'pending' AND next_attempt_at <= ? RETURNING id, attempts",
            [now, key, ids, now],
        ).to_pylist()
        attempts = {g["id"]: int(g["attempts"]) for g in got}
        if got and len(got) < len(ids) and not reused:
            # Some rows went to another deliverer: the key names exactly the rows this message
            # carries. (A reused key stays: its receiver may hold the whole digest under it.)
            key = digest_key(rows[0]["channel"], due, list(attempts))
            store.sql("UPDATE deliveries SET idempotency_key = ? WHERE id IN (SELECT unnest(?))", [key, list(attempts)])
    mine = [r for r in rows if r["id"] in attempts]
    return mine, attempts, key


def next_due(store: Store) -> datetime | None:
    """When the next pending row falls due (None: nothing pending)."""
    got = store.sql("SELECT min(next_attempt_at) AS t FROM deliveries WHERE status = 'pending'").to_pylist()
    return got[0]["t"] if got else None


def claim(store: Store, row_id: str, now: datetime) -> int | None:
    """Take one due row for this run (its attempt counted, committed before sending); None if taken."""
    got = store.sql(
        "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = ? "
        "WHERE id = ? AND status = 'pending' AND next_attempt_at <= ? RETURNING attempts",
        [now, row_id, now],
    ).to_pylist()
    return int(got[0]["attempts"]) if got else None


def _chain_row(row: dict[str, Any], event_type: str, event_id: str, now: datetime, payload: dict) -> dict[str, Any]:
    return {"id": event_id, "event_type": event_type, "alert_id": row["alert_id"], "event_time": now,
            "actor": f"deliver:{row['channel']}", "team": row.get("team"), "topic": row.get("topic"),
            "sku_family": row.get("sku_family"), "payload": json.dumps(payload), "ingested_at": now,
            "batch_id": "deliver"}


def mark_delivered(store: Store, row: dict[str, Any], attempts: int, now: datetime) -> None:
    """Mark a claimed row delivered and record its ``delivery_sent`` chain event, together."""
    mark_delivered_group(store, [row], {row["id"]: attempts}, now, row["idempotency_key"])


def mark_delivered_group(store: Store, rows: list[dict[str, Any]], attempts: dict[str, int], now: datetime,
                         key: str) -> None:
    """Mark the claimed rows of one message delivered, each with its own ``delivery_sent`` event, together.

    Each alert of a digest gets its event at the real send time: the workflow KPIs start the
    time to acknowledge there.
    """
    events = []
    for row in rows:
        payload = {"channel": row["channel"], "kind": row["kind"], "attempts": attempts[row["id"]],
                   "delivery_id": row["id"], "idempotency_key": key}
        if len(rows) > 1:
            payload["digest_size"] = len(rows)
        events.append(_chain_row(row, "delivery_sent", f"ce-{row['id']}", now, payload))
    with store.transaction():
        # last_error is left as it was: a delivered row keeps its last failure, so retries stay visible.
        store.sql("UPDATE deliveries SET status = 'delivered', delivered_at = ? WHERE id IN (SELECT unnest(?))",
                  [now, [r["id"] for r in rows]])
        store.append("chain_events", pa.Table.from_pylist(events))


def mark_retry(store: Store, row_id: str, error: str, due: datetime) -> None:
    """Put a claimed row back to pending, due again at ``due``, with the error that stopped it."""
    store.sql("UPDATE deliveries SET status = 'pending', next_attempt_at = ?, last_error = ? WHERE id = ?",
              [due, error[:2000], row_id])


def mark_dead(store: Store, row: dict[str, Any], attempts: int, error: str, now: datetime) -> None:
    """Move a delivery to the dead letters and record a ``delivery_failed`` chain event, together."""
    error = error[:2000]
    with store.transaction():
        store.sql("UPDATE deliveries SET status = 'dead', last_error = ? WHERE id = ?", [error, row["id"]])
        store.append("dead_letters", pa.Table.from_pylist([{
            # A requeued delivery can die again after as many attempts: the time keeps ids apart.
            "id": f"dl-{row['id']}-{attempts}-{now:%Y%m%dT%H%M%S%f}", "delivery_id": row["id"],
            "alert_id": row["alert_id"],
            "channel": row["channel"], "kind": row["kind"], "attempts": attempts, "last_error": error,
            "payload": row.get("payload"), "dead_at": now}]))
        store.append("chain_events", pa.Table.from_pylist([_chain_row(
            row, "delivery_failed", f"ce-{row['id']}-failed-{now:%Y%m%dT%H%M%S%f}", now,
            {"channel": row["channel"], "kind": row["kind"], "attempts": attempts, "error": error,
             "delivery_id": row["id"]})]))


def requeue_dead(store: Store, now: datetime, channel: str | None = None, *, delivery_id: str | None = None) -> int:
    """Send dead deliveries again (after the channel was fixed): back to pending, attempts from zero.

    The dead letters stay as the record of what failed. An "outcome unknown" row may then reach
    its channel twice; requeueing it is the operator's call.

    Parameters
    ----------
    store : Store
    now : datetime
        Naive UTC; the rows fall due at once.
    channel : str, optional
        Only this channel's rows (None: every dead row).
    delivery_id : str, optional
        Only this delivery (the dashboard's requeue button).

    Returns
    -------
    int
        Rows requeued.
    """
    store.require_duckdb("the delivery outbox")
    # A row that died inside a digest takes its own key again: the rows requeued together make a
    # new digest (and a new key), a row requeued alone goes as a single message.
    got = store.sql("UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, claimed_at = NULL, "
                    "idempotency_key = 'insightroi-' || id "
                    "WHERE status = 'dead' AND (?::VARCHAR IS NULL OR channel = ?) "
                    "AND (?::VARCHAR IS NULL OR id = ?) RETURNING id",
                    [now, channel, channel, delivery_id, delivery_id]).to_pylist()
    return len(got)


def reclaim_stale(store: Store, now: datetime, claim_timeout: timedelta) -> tuple[int, int]:
    """Rows a stopped run left ``sending``: webhooks back to pending (same key), others dead-lettered.

    Returns ``(resent, dead)`` counts.
    """
    stale = store.sql(
        "SELECT d.id, d.alert_id, d.channel, d.kind, d.idempotency_key, d.attempts, d.claimed_at, o.payload, o.team, "
        "o.topic, o.sku_family FROM deliveries d JOIN alert_outbox o ON o.id = d.alert_id "
        "WHERE d.status = 'sending' AND d.claimed_at < ?",
        [now - claim_timeout],
    ).to_pylist()
    resent = dead = 0
    for r in stale:
        when = r["claimed_at"].isoformat(sep=" ", timespec="seconds")
        if r["kind"] in IDEMPOTENT_KINDS:
            mark_retry(store, r["id"], f"a run claimed it at {when} UTC and stopped before recording the result; "
                                       "sent again with the same Idempotency-Key", now)
            resent += 1
        else:
            mark_dead(store, r, int(r["attempts"]), f"outcome unknown: a run claimed it at {when} UTC and stopped "
                      f"before recording the result; {r['kind']} cannot drop a second copy, so it was not resent "
                      "(check the channel)", now)
            dead += 1
    return resent, dead

"""Checking a new decision-chain event against the alert's recorded events (before it is stored).

The chain joins (``_links``) read whatever the store holds: an outcome for an alert nobody
delivered becomes a phantom alert, and a fix dated before its delivery a negative time to fix.
A writer that accepts events one at a time (the server) calls :func:`check_chain_event` with the
alert's events already stored (and those accepted earlier in the same batch) and refuses the
event with the reason, naming both events, instead of storing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

__all__ = ["STAGE_ORDER", "ChainEventError", "check_chain_event"]

# The chain's stages in the order they happen to one alert. "ignored" and "overridden" are
# decisions about the delivered alert, with no order relative to the later stages.
STAGE_ORDER = {"alert_delivered": 0, "acknowledged": 1, "action_taken": 2, "fix_deployed": 3, "outcome": 4}
_AFTER_DELIVERY_ONLY = ("ignored", "overridden")


class ChainEventError(ValueError):
    """A chain event that contradicts the alert's recorded chain (or the clock).

    Attributes
    ----------
    event : dict
        The refused event (``id``, ``event_type``, ``event_time``, ``alert_id``).
    other : dict or None
        The recorded event it contradicts, when there is one.
    """

    def __init__(self, message: str, event: Mapping[str, Any], other: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.event = dict(event)
        self.other = None if other is None else dict(other)


def _name(e: Mapping[str, Any]) -> str:
    t = e.get("event_time")
    when = t.isoformat(sep=" ") if isinstance(t, datetime) else str(t)
    return f"{e.get('event_type')} {e.get('id')!r} at {when} UTC"


def _rank_conflict(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether ``new`` and ``old`` (same alert) are in the wrong time order for their stages."""
    nt, ot = new["event_type"], old["event_type"]
    if nt in _AFTER_DELIVERY_ONLY or ot in _AFTER_DELIVERY_ONLY:
        # Only the delivery orders a decision to ignore or override.
        if nt == "alert_delivered":
            return old["event_time"] < new["event_time"]
        if ot == "alert_delivered":
            return new["event_time"] < old["event_time"]
        return False
    rn, ro = STAGE_ORDER.get(nt), STAGE_ORDER.get(ot)
    if rn is None or ro is None or rn == ro:
        return False
    return new["event_time"] < old["event_time"] if rn > ro else new["event_time"] > old["event_time"]


def check_chain_event(
    event: Mapping[str, Any],
    alert_events: Iterable[Mapping[str, Any]],
    *,
    known_alert: bool,
    now: datetime,
    max_future: timedelta = timedelta(minutes=5),
) -> None:
    """Refuse a chain event that contradicts its alert's chain or lies in the future.

    Parameters
    ----------
    event : mapping
        The new event: ``id``, ``event_type``, ``alert_id`` (may be None), ``event_time`` (naive UTC).
    alert_events : iterable of mapping
        The events already recorded for the same ``alert_id`` (same keys).
    known_alert : bool
        Whether the alert exists outside ``alert_events`` (raised by the insight stage but not yet
        delivered); without it, a follow-up needs an ``alert_delivered`` event in ``alert_events``.
    now : datetime
        The writer's clock (naive UTC).
    max_future : timedelta
        How far past ``now`` an event may be dated (clock skew between the sender and the server).

    Raises
    ------
    ChainEventError
        The event is dated more than ``max_future`` after ``now``; it follows up an alert that was
        never delivered nor raised; or it is dated before an earlier stage of its alert (a fix
        before the delivery) or after a later one. The message names both events, ids and times.
    """
    t = event["event_time"]
    if t > now + max_future:
        raise ChainEventError(
            f"{_name(event)} is dated {t - now} after the server's clock ({now.isoformat(sep=' ')} UTC); "
            f"events may be at most {max_future} ahead", event)
    alert_id = event.get("alert_id")
    if alert_id is None:
        return
    previous = [e for e in alert_events if e.get("id") != event.get("id")]
    delivered = any(e["event_type"] == "alert_delivered" for e in previous)
    if event["event_type"] != "alert_delivered" and not (delivered or known_alert):
        raise ChainEventError(
            f"{_name(event)} names alert {alert_id!r}, which no alert_delivered event records and the insight "
            "stage did not raise: record its delivery first", event)
    clashes = sorted((e for e in previous if _rank_conflict(event, e)), key=lambda e: e["event_time"])
    if clashes:
        other = clashes[0]
        order = "before" if event["event_time"] < other["event_time"] else "after"
        raise ChainEventError(
            f"{_name(event)} is dated {order} {_name(other)} of alert {alert_id!r}: the chain's stages go "
            f"{' -> '.join(STAGE_ORDER)}", event, other)

"""check_chain_event: a new decision-chain event against its alert's recorded events and the clock."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from insightroi.chain import ChainEventError, check_chain_event

NOW = datetime(2026, 6, 1, 12, 0)
DELIVERED = {"id": "ev-d", "event_type": "alert_delivered", "alert_id": "alr-1", "event_time": datetime(2026, 5, 1, 9)}
FIXED = {"id": "ev-f", "event_type": "fix_deployed", "alert_id": "alr-1", "event_time": datetime(2026, 5, 10, 9)}


def _ev(kind: str, when: datetime, eid: str = "ev-new", alert: str | None = "alr-1") -> dict:
    return {"id": eid, "event_type": kind, "alert_id": alert, "event_time": when}


def test_in_order_events_pass():
    for kind, when in [("acknowledged", datetime(2026, 5, 2)), ("action_taken", datetime(2026, 5, 5)),
                       ("outcome", datetime(2026, 5, 20)), ("ignored", datetime(2026, 5, 3))]:
        check_chain_event(_ev(kind, when), [DELIVERED, FIXED], known_alert=False, now=NOW)


def test_fix_before_its_delivery_names_both_events():
    with pytest.raises(ChainEventError) as err:
        check_chain_event(_ev("fix_deployed", datetime(2025, 4, 30, 9)), [DELIVERED], known_alert=False, now=NOW)
    msg = str(err.value)
    assert msg.startswith("fix_deployed 'ev-new' at 2025-04-30 09:00:00 UTC is dated before "
                          "alert_delivered 'ev-d' at 2026-05-01 09:00:00 UTC of alert 'alr-1'")
    assert err.value.other["id"] == "ev-d" and err.value.event["id"] == "ev-new"


def test_acknowledgement_after_the_fix_and_delivery_after_a_follow_up_are_refused():
    with pytest.raises(ChainEventError, match=r"acknowledged 'ev-new' at 2026-05-11 00:00:00 UTC is dated after "
                                              r"fix_deployed 'ev-f' at 2026-05-10 09:00:00 UTC"):
        check_chain_event(_ev("acknowledged", datetime(2026, 5, 11)), [DELIVERED, FIXED], known_alert=False, now=NOW)
    with pytest.raises(ChainEventError, match="alert_delivered 'ev-new' .* is dated after fix_deployed 'ev-f'"):
        check_chain_event(_ev("alert_delivered", datetime(2026, 5, 12)), [FIXED], known_alert=False, now=NOW)
    # An "ignored" decision is ordered only against the delivery.
    with pytest.raises(ChainEventError, match="ignored 'ev-new' .* before alert_delivered 'ev-d'"):
        check_chain_event(_ev("ignored", datetime(2026, 4, 1)), [DELIVERED, FIXED], known_alert=False, now=NOW)


def test_follow_up_of_an_alert_never_delivered():
    with pytest.raises(ChainEventError, match="outcome 'ev-new' at .* names alert 'ghost', which no alert_delivered"):
        check_chain_event(_ev("outcome", datetime(2026, 5, 2), alert="ghost"), [], known_alert=False, now=NOW)
    # Raised by the insight stage (not delivered yet): a follow-up is accepted.
    check_chain_event(_ev("acknowledged", datetime(2026, 5, 2), alert="ghost"), [], known_alert=True, now=NOW)
    # A delivery starts an alert; an event linked only by insight id has no alert to check.
    check_chain_event(_ev("alert_delivered", datetime(2026, 5, 2), alert="new"), [], known_alert=False, now=NOW)
    check_chain_event(_ev("outcome", datetime(2026, 5, 2), alert=None), [], known_alert=False, now=NOW)


def test_clock_skew_bound():
    ahead = _ev("acknowledged", NOW + timedelta(minutes=6))
    with pytest.raises(ChainEventError, match=r"is dated 0:06:00 after the server's clock \(2026-06-01 12:00:00 UTC\); "
                                              r"events may be at most 0:05:00 ahead"):
        check_chain_event(ahead, [DELIVERED], known_alert=False, now=NOW)
    check_chain_event(ahead, [DELIVERED], known_alert=False, now=NOW, max_future=timedelta(minutes=10))
    with pytest.raises(ChainEventError, match="2099-01-01"):
        check_chain_event(_ev("acknowledged", datetime(2099, 1, 1)), [DELIVERED], known_alert=False, now=NOW)


def test_a_replayed_event_is_not_checked_against_itself():
    stored = _ev("acknowledged", datetime(2026, 5, 2), eid="ev-a")
    check_chain_event(stored, [DELIVERED, stored], known_alert=False, now=NOW)

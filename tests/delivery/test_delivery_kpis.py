"""Workflow KPIs start at the real delivery: after `deliver` sent alerts to a loopback receiver,
adoption, time to acknowledge and time to fix equal a recomputation from the raw chain_events rows,
and a praise spike never reaches the topic owner's channel."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from _dlv_helpers import T0, program_with, rows, seed_alerts
from insightroi.chain import workflow_kpis
from insightroi.chain._kpis import alert_table
from insightroi.delivery import DeliveryPolicy, deliver
from insightroi.store import open_store

SENT = T0 + timedelta(days=3, hours=7, minutes=13)  # the deliverer's clock: days after the detector dated them


def _ev(eid, etype, aid, t, actor):
    return {"id": eid, "event_type": etype, "alert_id": aid, "event_time": t, "actor": actor, "team": "logistics",
            "topic": "shipping_delay", "payload": "{}", "batch_id": "api"}


def _recompute(raw: pd.DataFrame) -> dict:
    """Adoption, median hours to ack and days to fix, from the raw rows alone."""
    raw = raw.assign(aid=raw.alert_id.fillna(raw.id), event_time=pd.to_datetime(raw.event_time))
    al = raw[raw.event_type == "alert_delivered"]
    # Praise is good news, not a defect: it is not in an owner's adoption or backlog.
    praise = al[[json.loads(p or "{}").get("kind") == "praise" or t == "positive-themes"
                 for p, t in zip(al.payload, al.team)]].aid
    alerts = al[~al.aid.isin(praise)].groupby("aid").event_time.min()
    sent = raw[raw.event_type == "delivery_sent"].groupby("aid").event_time.min()
    delivered = sent.reindex(alerts.index).fillna(alerts)

    def first(t):
        return raw[raw.event_type == t].groupby("aid").event_time.min().reindex(alerts.index)

    hours = (first("acknowledged") - delivered) / pd.Timedelta(hours=1)
    days = (first("fix_deployed") - delivered) / pd.Timedelta(days=1)
    return {"alerts": len(alerts), "adoption_rate": first("action_taken").notna().sum() / len(alerts),
            "median_hours_to_ack": float(np.nanmedian(hours)), "median_days_to_fix": float(np.nanmedian(days)),
            "delivered": delivered}


def test_kpis_from_recorded_delivery_equal_raw_recomputation(tmp_path, receiver):
    st = open_store(tmp_path / "s.duckdb", hold=False)
    with st.attached():
        ids = seed_alerts(st, 4)
        # A praise spike whose row names the topic owner (an API client or an older detector):
        # the deliverer must still keep it off the owner's channel.
        st.append("chain_events", pa.Table.from_pylist([{
            "id": "alert-praise", "event_type": "alert_delivered", "alert_id": "alert-praise",
            "event_time": T0 + timedelta(hours=5), "actor": "insightroi-detect", "team": "logistics",
            "topic": "shipping_delay", "sku_family": "FAM-1", "batch_id": "detect",
            "payload": json.dumps({"observed": 30, "expected": 9.0, "kind": "praise", "feedback_ids": []})}]))
    program = program_with('[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\n'
                           'url = "env:TEST_HOOK_URL"\nsecret = "env:TEST_HOOK_SECRET"\ndigest = "immediate"\n')
    run = deliver(st, program, policy=DeliveryPolicy(timeout_s=5), clock=lambda: SENT)
    assert run.sent == 4 and run.dead == 0
    assert sorted(b["alert"]["alert_id"] for b in receiver.accepted.values()) == ids  # praise: not to logistics

    # What owners did, through links and the ticket callback, after the real delivery.
    follow = [
        _ev("e1", "acknowledged", ids[0], SENT + timedelta(hours=2), "link:tickets"),
        _ev("e2", "acknowledged", ids[1], SENT + timedelta(hours=5), "link:tickets"),
        _ev("e3", "action_taken", ids[1], SENT + timedelta(hours=6), "callback:tickets"),
        _ev("e4", "fix_deployed", ids[1], SENT + timedelta(days=4), "callback:tickets"),
        _ev("e5", "acknowledged", ids[2], SENT + timedelta(hours=30), "link:tickets"),
        _ev("e6", "action_taken", ids[2], SENT + timedelta(hours=31), "link:tickets"),
        _ev("e7", "fix_deployed", ids[2], SENT + timedelta(days=9, hours=12), "callback:tickets"),
    ]
    with st.attached():
        st.append("chain_events", pa.Table.from_pylist(follow))
        raw = pd.DataFrame(rows(st, "SELECT * FROM chain_events"))
        table = alert_table(st).set_index("alert_id")
        k = workflow_kpis(st, by=("team",)).set_index("team").loc["logistics"]
        outbox = rows(st, "SELECT id, team FROM alert_outbox ORDER BY id")
    exp = _recompute(raw)

    # Delivery time is the delivery_sent event, not the detector's date.
    assert (table.loc[ids, "delivered_at"] == pd.Timestamp(SENT)).all()
    assert (table.loc[ids, "raised_at"] < pd.Timestamp(SENT)).all()
    assert table.loc["alert-praise", "delivered_at"] == pd.Timestamp(T0 + timedelta(hours=5))  # never sent
    assert len(exp["delivered"]) == 4 and (table.delivered_at.reindex(exp["delivered"].index) == exp["delivered"]).all()
    assert table.loc[ids[0], "hours_to_ack"] == 2.0
    assert int(k.alerts) == exp["alerts"] == 4  # the praise row is reported apart, not as an unanswered alert
    assert k.adoption_rate == exp["adoption_rate"] == 2 / 4
    assert bool(table.loc["alert-praise", "praise"]) and not table.loc[ids, "praise"].any()
    assert k.median_hours_to_ack == exp["median_hours_to_ack"] == 5.0
    assert k.median_days_to_fix == exp["median_days_to_fix"] == (4 + 9.5) / 2
    assert [r["team"] for r in outbox if r["id"] == "alert-praise"] == []  # no praise channel: unrouted
    assert run.unrouted == {"positive-themes": 1}

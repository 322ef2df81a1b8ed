"""Praise alerts in the workflow KPIs: they are good news, not defects, so they neither lower an
owner's adoption nor fill the backlog; they are reported on their own. Every figure equals a
pandas recomputation from the raw chain_events rows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from insightroi.chain import chain_summary, workflow_kpis
from insightroi.store import open_store

T0 = datetime(2025, 3, 3, 0, 0)
H = timedelta(hours=1)


def _events() -> list[dict]:
    ev = []

    def alert(aid, team, topic, t, kind=None):
        payload = {"day": "2025-03-02", "observed": 20, "expected": 5.0}
        if kind:
            payload["kind"] = kind
        ev.append({"id": aid, "event_type": "alert_delivered", "alert_id": aid, "event_time": t, "team": team,
                   "topic": topic, "sku_family": "F1", "actor": "insightroi-detect", "payload": json.dumps(payload),
                   "batch_id": "detect"})

    def follow(aid, etype, t, team):
        ev.append({"id": f"{aid}-{etype}", "event_type": etype, "alert_id": aid, "event_time": t, "team": team,
                   "topic": None, "sku_family": None, "actor": "dana", "payload": "{}", "batch_id": "api"})

    # Owners' problem alerts: logistics 4 (2 acted, 1 ignored, 1 waiting), support 2 (1 acted).
    for i, (team, topic) in enumerate([("logistics", "shipping_delay")] * 4 + [("support", "customer_service")] * 2):
        alert(f"p{i}", team, topic, T0 + i * H)
    follow("p0", "acknowledged", T0 + 3 * H, "logistics")
    follow("p0", "action_taken", T0 + 20 * H, "logistics")
    follow("p1", "acknowledged", T0 + 9 * H, "logistics")
    follow("p1", "action_taken", T0 + 30 * H, "logistics")
    follow("p2", "ignored", T0 + 40 * H, "logistics")
    follow("p4", "acknowledged", T0 + 6 * H, "support")
    follow("p4", "action_taken", T0 + 50 * H, "support")
    # Praise: 3 in the positive stream (1 acknowledged), and 2 an older detector routed to
    # logistics with kind = praise in the payload (nobody acted: they must not count as backlog).
    for i in range(3):
        alert(f"g{i}", "positive-themes", "praise", T0 + (10 + i) * H, kind="praise")
    follow("g0", "acknowledged", T0 + 15 * H, "positive-themes")
    alert("g3", "logistics", "shipping_delay", T0 + 14 * H, kind="praise")
    alert("g4", "logistics", "shipping_delay", T0 + 15 * H, kind="praise")
    return ev


def _recompute(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-team KPIs of the owners' alerts and the praise summary, from the raw rows alone."""
    raw = raw.assign(event_time=pd.to_datetime(raw.event_time))
    al = raw[raw.event_type == "alert_delivered"].copy()
    al["kind"] = [json.loads(p).get("kind") for p in al.payload]
    al["praise"] = (al.kind == "praise") | (al.team == "positive-themes")

    def first(t):
        return raw[raw.event_type == t].groupby("alert_id").event_time.min()

    al["ack"] = al.alert_id.map(first("acknowledged"))
    al["act"] = al.alert_id.map(first("action_taken"))
    al["ign"] = al.alert_id.map(first("ignored"))
    al["hours"] = (al.ack - al.event_time) / pd.Timedelta(hours=1)
    owners = al[~al.praise]
    per = owners.groupby("team").apply(lambda g: pd.Series({
        "alerts": len(g), "adoption_rate": g.act.notna().mean(), "ack_rate": g.ack.notna().mean(),
        "backlog": int((g.act.isna() & g.ign.isna()).sum()), "median_hours_to_ack": float(np.nanmedian(g.hours))
        if g.hours.notna().any() else np.nan}), include_groups=False)
    p = al[al.praise]
    praise = {"alerts": len(p), "acknowledged": int(p.ack.notna().sum()), "ack_rate": p.ack.notna().mean(),
              "acted": int(p.act.notna().sum()), "ignored": int(p.ign.notna().sum()),
              "median_hours_to_ack": float(p.hours.median())}
    return per, praise


def test_praise_left_out_of_owner_kpis_and_reported_apart(tmp_path):
    st = open_store(f"duckdb:///{tmp_path / 's.duckdb'}")
    st.append("chain_events", pd.DataFrame(_events()))
    raw = st.sql("SELECT * FROM chain_events").to_pandas()
    want, want_praise = _recompute(raw)
    got = workflow_kpis(st, by=("team",)).set_index("team")
    assert sorted(got.index) == ["logistics", "support"]  # no positive-themes row among the owners
    for team, w in want.iterrows():
        g = got.loc[team]
        assert int(g.alerts) == int(w.alerts) and int(g.backlog) == int(w.backlog)
        assert np.isclose(g.adoption_rate, w.adoption_rate) and np.isclose(g.ack_rate, w.ack_rate)
        assert np.isclose(g.median_hours_to_ack, w.median_hours_to_ack)
    # The figures a regression would change: logistics 2 of 4 acted, backlog 1 (with the two
    # mis-routed praise alerts counted it would be 2 of 6 and a backlog of 3).
    assert (int(got.loc["logistics", "alerts"]), got.loc["logistics", "adoption_rate"],
            int(got.loc["logistics", "backlog"])) == (4, 0.5, 1)
    everything = workflow_kpis(st, by=("team",), include_praise=True).set_index("team")
    assert int(everything.loc["logistics", "backlog"]) == 3 and int(everything.loc["positive-themes", "alerts"]) == 3
    s = chain_summary(st)
    assert s["praise"] == {**want_praise, "ack_rate": want_praise["ack_rate"]}
    assert (s["praise"]["alerts"], s["praise"]["acknowledged"], s["praise"]["median_hours_to_ack"]) == (5, 1, 5.0)
    assert s["funnel"]["alerts"] == 6 and s["funnel"]["acted"] == 3
    assert {r["team"] for r in s["by_team"]} == {"logistics", "support"}
    st.close()

"""An episode that keeps going after its alert was written: the detector run again on a longer
window records an ``alert_updated`` event (no new alert, no new delivery), and the alert table,
the trace and the chain show the longer episode."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from insightroi.chain import alert_table, trace
from insightroi.chain._links import episode_facts
from insightroi.delivery import _outbox as ob
from insightroi.insights import detect_spikes, write_alerts
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

PROGRAM = parse_program(starter_program_text() + '\n[[channels]]\nname = "quality"\nkind = "webhook"\n'
                        'owners = ["product_quality"]\nurl = "http://127.0.0.1:9/hook"\nsecret = "env:UNUSED_SECRET"\n')
DAY0 = date(2025, 1, 1)
ONSET, END = 50, 70  # the defect spikes on days 50..69


def _world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """4 families x 80 days of background topics, and a defect in fam2 on days 50..69."""
    rng = np.random.default_rng(7)
    fb, ins = [], []

    def item(day: int, fam: str, topic: str) -> None:
        fid = f"F{len(fb):06d}"
        fb.append({"id": fid, "source": "ticket", "sku_family": fam, "sku": f"{fam}-1", "rating": None,
                   "text": f"{topic} {fid}", "event_time": datetime.combine(DAY0 + timedelta(days=day),
                                                                            datetime.min.time()) + timedelta(hours=9)})
        ins.append({"id": f"t-{fid}", "feedback_id": fid, "task": "topic", "label": topic, "score": 1.0,
                    "confidence": 0.9, "evidence": f"{topic} {fid}", "method": "test", "model_version": "t1",
                    "created_at": datetime(2025, 6, 1)})

    for day in range(80):
        for f in range(4):
            for _ in range(int(rng.poisson(10))):
                item(day, f"fam{f}", str(rng.choice(["shipping_delay", "product_defect", "other", "other"])))
    for day in range(ONSET, END):
        for _ in range(8):
            item(day, "fam2", "product_defect")
    return pd.DataFrame(fb), pd.DataFrame(ins)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    fb, ins = _world()
    return fb, ins, tmp_path_factory.mktemp("ep")


def _defect(alerts):
    got = [a for a in alerts if a.sku_family == "fam2" and a.topic == "product_defect"]
    assert len(got) == 1
    return got[0]


def test_longer_window_updates_the_alert_without_a_new_one(world, monkeypatch):
    monkeypatch.setenv("UNUSED_SECRET", "s" * 32)
    fb, ins, tmp = world
    cutoff = DAY0 + timedelta(days=ONSET + 5)
    st = open_store(f"duckdb:///{tmp / 's1.duckdb'}")
    # Days 1..N: only the feedback up to the cut-off exists yet.
    with st.transaction():
        st.append("feedback", fb[fb.event_time < pd.Timestamp(cutoff + timedelta(days=1))])
        st.append("insights", ins[ins.feedback_id.isin(fb.id[fb.event_time < pd.Timestamp(cutoff + timedelta(days=1))])])
    # An alert an API client recorded on the same topic and family is not the detector's episode.
    st.append("chain_events", pd.DataFrame([{
        "id": "api-alert", "event_type": "alert_delivered", "alert_id": "api-alert", "topic": "product_defect",
        "sku_family": "fam2", "event_time": datetime.combine(DAY0 + timedelta(days=ONSET), datetime.min.time()),
        "team": "product_quality", "payload": json.dumps({"day": (DAY0 + timedelta(days=ONSET)).isoformat()}),
        "batch_id": "api"}]))
    first = _defect(detect_spikes(st, PROGRAM, model_version="t1"))
    assert first.alert_id.startswith("alert:product_defect:fam2:")
    assert first.last_seen <= cutoff and first.periods <= 6
    n_first = write_alerts(st, detect_spikes(st, PROGRAM, model_version="t1"))
    assert n_first >= 1
    enq = ob.enqueue_alerts(st, PROGRAM, now=datetime(2025, 3, 1))
    deliveries_before = st.sql("SELECT count(*) AS n FROM deliveries").to_pylist()[0]["n"]
    assert enq.alerts >= 1 and deliveries_before == enq.deliveries
    # Days 1..N+k: the rest arrives; the defect went on for two more weeks.
    with st.transaction():
        st.append("feedback", fb[fb.event_time >= pd.Timestamp(cutoff + timedelta(days=1))])
        st.append("insights", ins[~ins.feedback_id.isin(fb.id[fb.event_time < pd.Timestamp(cutoff + timedelta(days=1))])])
    alerts = detect_spikes(st, PROGRAM, model_version="t1")
    later = _defect(alerts)
    assert later.alert_id == first.alert_id  # the same episode: same onset-dated id
    assert later.last_seen >= DAY0 + timedelta(days=END - 3) and later.periods > first.periods + 5
    assert write_alerts(st, alerts) == 0  # no new alert
    ev = st.sql("SELECT event_type, event_time, payload FROM chain_events WHERE alert_id = ? ORDER BY event_time",
                [first.alert_id]).to_pylist()
    assert [e["event_type"] for e in ev] == ["alert_delivered", "alert_updated"]
    upd = json.loads(ev[1]["payload"])
    assert (upd["last_seen"], upd["periods"], upd["peak_observed"]) == (
        later.last_seen.isoformat(), later.periods, later.peak_observed)
    assert upd["previous"] == {"last_seen": first.last_seen.isoformat(), "periods": first.periods,
                               "peak_observed": first.peak_observed}
    assert ev[1]["event_time"] == datetime.combine(later.last_seen + timedelta(days=1), datetime.min.time())
    # Run again on the same data: nothing new (idempotent), and no message for the update.
    assert write_alerts(st, detect_spikes(st, PROGRAM, model_version="t1")) == 0
    assert st.sql("SELECT count(*) AS n FROM chain_events WHERE event_type = 'alert_updated'").to_pylist() == [{"n": 1}]
    again = ob.enqueue_alerts(st, PROGRAM, now=datetime(2025, 4, 1))
    assert (again.alerts, again.deliveries) == (0, 0)
    assert st.sql("SELECT count(*) AS n FROM deliveries").to_pylist()[0]["n"] == deliveries_before
    # What readers see: the latest episode figures, one alert.
    tbl = alert_table(st)
    row = tbl[tbl.alert_id == first.alert_id]
    assert len(row) == 1 and int((tbl.alert_id == first.alert_id).sum()) == 1
    r = row.iloc[0]
    assert (r.last_seen, int(r.periods), int(r.peak_observed), int(r.episode_updates)) == (
        later.last_seen.isoformat(), later.periods, later.peak_observed, 1)
    t = trace(st, first.alert_id)
    assert len(t.alerts) == 1 and t.alerts[0]["episode"]["periods"] == later.periods
    assert [e["event_type"] for e in t.alerts[0]["events"]] == ["alert_updated"]
    assert any(s["stage"] == "alert_updated" and f"{later.periods} spike days" in s["what"] for s in t.timeline())
    st.close()


def test_episode_facts_take_the_latest_update(tmp_path):
    st = open_store(f"duckdb:///{tmp_path / 's.duckdb'}")
    rows = [
        {"id": "a1", "event_type": "alert_delivered", "alert_id": "a1", "event_time": datetime(2025, 1, 2),
         "team": "logistics", "payload": json.dumps({"day": "2025-01-01", "last_seen": "2025-01-01", "periods": 1,
                                                     "peak_observed": 9, "kind": "problem"})},
        {"id": "a1:u2", "event_type": "alert_updated", "alert_id": "a1", "event_time": datetime(2025, 1, 9),
         "team": "logistics", "payload": json.dumps({"last_seen": "2025-01-08", "periods": 5, "peak_observed": 20})},
        {"id": "a1:u1", "event_type": "alert_updated", "alert_id": "a1", "event_time": datetime(2025, 1, 5),
         "team": "logistics", "payload": json.dumps({"last_seen": "2025-01-04", "periods": 3, "peak_observed": 14})},
        # An older detector's praise row: no kind in the payload, the praise stream's team says it.
        {"id": "p1", "event_type": "alert_delivered", "alert_id": None, "event_time": datetime(2025, 1, 3),
         "team": "positive-themes", "payload": "{}"},
    ]
    st.append("chain_events", pd.DataFrame(rows))
    f = episode_facts(st).set_index("alert_id")
    assert (f.loc["a1", "last_seen"], f.loc["a1", "periods"], f.loc["a1", "peak_observed"]) == ("2025-01-08", 5, 20)
    assert f.loc["a1", "episode_updates"] == 2 and f.loc["a1", "episode_updated_at"] == pd.Timestamp("2025-01-09")
    assert (f.loc["a1", "kind"], f.loc["p1", "kind"]) == ("problem", "praise")
    assert pd.isna(f.loc["p1", "episode_updated_at"]) and f.loc["p1", "episode_updates"] == 0
    st.close()

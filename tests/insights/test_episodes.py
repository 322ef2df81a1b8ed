"""One alert per theme episode, and praise spikes kept off the owners' desks.

A hand-built store (topic and sentiment rows written directly, no classifier) with a defect that
spikes for three weeks, a praise burst in 5-star reviews, and a complaint burst whose unrated text
the sentiment model reads as positive but whose returns and 1-star reviews say otherwise.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from insightroi.insights import detect_spikes, write_alerts
from insightroi.insights._spikes import PRAISE_OWNER
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

PROGRAM = parse_program(starter_program_text())
DAY0 = date(2025, 1, 1)
TOPICS = ["shipping_delay", "product_defect", "sizing", "price_value"]


def _world():
    """Feedback and insight rows: 8 families x 120 days of background plus three episodes."""
    rng = np.random.default_rng(3)
    fb, ins = [], []

    def item(day, fam, topic, rating, source, sentiment):
        i = len(fb)
        fid = f"F{i:06d}"
        fb.append({"id": fid, "source": source, "sku_family": fam, "sku": f"{fam}-1", "rating": rating,
                   "text": f"{topic} item {i}",
                   "event_time": datetime.combine(DAY0 + timedelta(days=day), datetime.min.time())
                   + timedelta(hours=int(rng.integers(8, 20)))})
        for task, label, mv in (("topic", topic, "t1"), ("sentiment", sentiment, "s1")):
            ins.append({"id": f"{task}-{fid}", "feedback_id": fid, "task": task, "label": label, "score": 1.0,
                        "confidence": 0.9, "evidence": "", "method": "test", "model_version": mv,
                        "created_at": datetime(2025, 6, 1)})

    for day in range(120):
        for f in range(8):
            for _ in range(int(rng.poisson(12))):
                topic = rng.choice(TOPICS + ["other"] * 6)
                neg = rng.random() < 0.6
                item(day, f"fam{f}", str(topic), None, "ticket", "negative" if neg else "positive")
    for day in range(60, 81):  # a defect that lasts three weeks: one episode
        for _ in range(6):
            item(day, "fam3", "product_defect", 1.0, "review", "negative")
    for day in range(90, 93):  # praise: 5-star reviews about delivery speed
        for _ in range(10):
            item(day, "fam5", "shipping_delay", 5.0, "review", "positive")
    for day in range(95, 98):  # complaints the text model misreads as positive ("Thanks.")
        for j in range(10):
            source, rating = (("return", None), ("review", 1.0), ("ticket", None))[j % 3]
            item(day, "fam6", "sizing", rating, source, "positive")
    return pd.DataFrame(fb), pd.DataFrame(ins)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('ep') / 's.duckdb'}")
    fb, ins = _world()
    with st.transaction():
        st.append("feedback", fb)
        st.append("insights", ins)
    yield st
    st.close()


def _series(alerts, fam, topic):
    return [a for a in alerts if a.sku_family == fam and a.topic == topic]


def test_one_alert_per_episode_updated_while_it_lasts(store):
    alerts = detect_spikes(store, PROGRAM, model_version="t1")
    defect = _series(alerts, "fam3", "product_defect")
    assert len(defect) == 1  # the old cooldown (restarted at each alert) sent 2 for these three weeks
    a = defect[0]
    assert date(2025, 3, 2) <= a.day <= date(2025, 3, 6)  # onset: within days of day 60
    assert a.last_seen >= date(2025, 3, 20) and a.periods >= 10
    assert a.kind == "problem" and a.owner == "product_quality" and a.positive_share < 0.5
    assert a.peak_score >= a.score and a.alert_id == f"alert:product_defect:fam3:{a.day.isoformat()}"
    # Written once; a rerun that sees the same episode writes nothing new.
    assert write_alerts(store, alerts) == len(alerts)
    again = detect_spikes(store, PROGRAM, model_version="t1")
    assert [x.alert_id for x in again] == [x.alert_id for x in alerts]
    assert write_alerts(store, again) == 0
    row = store.table("chain_events").filter(lambda t: t.id == a.alert_id).execute().iloc[0]
    p = json.loads(row.payload)
    assert (row.team, p["kind"], p["periods"], p["last_seen"]) == (
        "product_quality", "problem", a.periods, a.last_seen.isoformat())


def test_praise_goes_to_the_positive_stream_and_misread_complaints_do_not(store):
    alerts = detect_spikes(store, PROGRAM, model_version="t1")
    praise = _series(alerts, "fam5", "shipping_delay")
    assert len(praise) == 1
    assert (praise[0].kind, praise[0].owner) == ("praise", PRAISE_OWNER) and praise[0].positive_share > 0.8
    # The text model says "positive" for all 30, but returns and 1-star reviews are complaints.
    misread = _series(alerts, "fam6", "sizing")
    assert len(misread) == 1 and misread[0].kind == "problem" and misread[0].owner == "merchandising"
    # No praise reaches a topic owner; every praise alert is in the positive stream.
    assert [a for a in alerts if a.kind == "praise" and a.owner != PRAISE_OWNER] == []
    assert {a.owner for a in alerts if a.owner == PRAISE_OWNER} <= {PRAISE_OWNER}

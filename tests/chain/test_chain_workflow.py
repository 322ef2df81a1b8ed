"""Decision-chain joins and workflow KPIs on a real DuckDB store with hand-made events.

The world below is small enough to compute every KPI by hand (the expected values are derived in
the comments next to each event). It covers every link kind: by alert id, by insight id, inferred
by SKU family + topic + time (including the latest-alert-wins rule and the window limit), dangling
and unlinked events, and alerts whose insight is inferred.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest

from insightroi.chain import alert_chains, alert_table, chain_summary, linked_events, reviewer_disagreement, workflow_kpis
from insightroi.store import UnboundStore, open_store

T0 = datetime(2025, 7, 1)
D, H = timedelta(days=1), timedelta(hours=1)


def _ev(id, etype, t, alert=None, insight=None, team=None, topic=None, family=None, sku=None, actor=None, payload=None):
    return {"id": id, "event_type": etype, "alert_id": alert, "insight_id": insight, "event_time": t, "actor": actor,
            "team": team, "topic": topic, "sku": sku, "sku_family": family,
            "payload": json.dumps(payload) if payload is not None else None}


def build_store(path) -> str:
    url = f"duckdb:///{path}/chain.duckdb"
    fb = [
        # F1 product_defect complaints around A1's fix at T0 + 5d (window [T0-23d, T0+33d)).
        ("f1", T0 - 10 * D, "F1", "S1", "It stopped working after two days", "product_defect"),  # before
        ("c1", T0 - 20 * D, "F1", "S1", "hinge cracked", "product_defect"),                      # before
        ("c2", T0 - 5 * D, "F1", "S2", "faulty unit", "product_defect"),                          # before
        ("c3", T0 + 1 * D, "F1", "S1", "broke again", "product_defect"),                          # before (2 model versions)
        ("c4", T0 + 10 * D, "F1", "S1", "defective", "product_defect"),                           # after
        ("c5", T0 + 40 * D, "F1", "S1", "cracked", "product_defect"),                             # outside
        ("c6", T0 - 30 * D, "F1", "S1", "malfunction", "product_defect"),                         # outside
        ("c7", T0 + 10 * D, "F1", "S1", "arrived late", "shipping_delay"),                        # other topic
        ("c8", T0 + 10 * D, "F2", "S9", "stopped working", "product_defect"),                     # other family
        ("fs", T0 + 1 * D, "F2", "S9", "still waiting", "shipping_delay"),
        ("fz", T0 + 5 * D, "F5", "S5", "runs a size small", "sizing"),
    ]
    feedback = pd.DataFrame(
        [{"id": i, "source": "review", "event_time": t, "sku_family": fam, "sku": sku, "text": txt, "rating": 1.0}
         for i, t, fam, sku, txt, _ in fb]
    )
    ins = [{"id": f"ins-{i}", "feedback_id": i, "task": "topic", "label": lab, "confidence": 0.8, "evidence": "kw",
            "method": "lexicon", "model_version": "v1", "created_at": t + H} for i, t, _, _, _, lab in fb]
    ins[0] = {**ins[0], "id": "i1", "confidence": 0.91, "evidence": "stopped working"}
    ins.append({"id": "ins-c3-v2", "feedback_id": "c3", "task": "topic", "label": "product_defect", "confidence": 0.7,
                "evidence": "broke", "method": "embedding", "model_version": "v2", "created_at": T0 + 2 * D})
    ins.append({"id": "i1-sent", "feedback_id": "f1", "task": "sentiment", "label": "negative", "confidence": 0.97,
                "evidence": "stopped", "method": "vader", "model_version": "v1", "created_at": T0 - 10 * D + H})
    ins = [r if r["id"] != "ins-fz" else {**r, "id": "iz"} for r in ins]
    insights = pd.DataFrame(ins)
    ev = [
        _ev("x-i1", "insight", T0 - H, insight="i1", topic="product_defect", family="F1"),
        _ev("x-i2", "insight", T0 + 12 * H, insight="i2", topic="shipping_delay", family="F2",
            payload={"feedback_ids": ["fs"], "kind": "spike"}),
        _ev("x-i3", "insight", T0 + 2 * D - H, insight="i3", topic="shipping_delay", family="F3"),
        _ev("x-i9", "insight", T0, insight="i9", topic="praise", family="F7"),
        # A1: the full chain by ids. ack 2 h, action 1 d, fix 5 d, outcome.
        _ev("a1", "alert_delivered", T0, alert="A1", insight="i1", team="product_quality", topic="product_defect",
            family="F1", sku="S1", actor="pq-oncall"),
        _ev("a1-ack", "acknowledged", T0 + 2 * H, alert="A1", actor="pat", team="product_quality"),
        _ev("a1-act", "action_taken", T0 + D, alert="A1", actor="pat", payload={"action": "supplier notified"}),
        _ev("a1-fix", "fix_deployed", T0 + 5 * D, alert="A1", actor="eng", payload={"change": "new hinge"}),
        _ev("a1-out", "outcome", T0 + 30 * D, alert="A1", actor="analyst"),
        # A2: no insight id (inferred: x-i2); ack without ids (inferred, 4 h); overridden by id: a decision,
        # so not in the backlog.
        _ev("a2", "alert_delivered", T0 + D, alert="A2", team="logistics", topic="shipping_delay", family="F2"),
        _ev("a2-ack", "acknowledged", T0 + D + 4 * H, team="logistics", topic="shipping_delay", family="F2", actor="lee"),
        _ev("a2-ovr", "overridden", T0 + 2 * D, alert="A2", actor="lee", payload={"reason": "carrier issue, known"}),
        # A3: ignored, linked through its insight id.
        _ev("a3", "alert_delivered", T0 + 2 * D, alert="A3", insight="i3", team="logistics", topic="shipping_delay",
            family="F3"),
        _ev("a3-ign", "ignored", T0 + 3 * D, insight="i3", actor="lee"),
        # A4: same family/topic as A2, later; the id-less action at T0+4d goes to the LATEST alert (A4).
        _ev("a4", "alert_delivered", T0 + 3 * D, alert="A4", team="logistics", topic="shipping_delay", family="F2"),
        _ev("a4-act", "action_taken", T0 + 4 * D, topic="shipping_delay", family="F2", actor="kim"),
        # A5: acknowledged after 10 h, nothing else: backlog.
        _ev("a5", "alert_delivered", T0 + 4 * D, alert="A5", team="product_quality", topic="product_defect",
            family="F4"),
        _ev("a5-ack", "acknowledged", T0 + 4 * D + 10 * H, alert="A5", actor="pat"),
        # A6: sizing alert on F5 after feedback fz, no insight anywhere: backlog.
        _ev("a6", "alert_delivered", T0 + 6 * D, alert="A6", team="merchandising", topic="sizing", family="F5"),
        # Unlinked: nothing on praise/F9; a fix on F3 45 days after A3 is outside the 30-day window.
        _ev("u1", "acknowledged", T0 + D, topic="praise", family="F9"),
        _ev("u2", "fix_deployed", T0 + 47 * D, topic="shipping_delay", family="F3"),
        # Dangling: names an alert that was never delivered.
        _ev("d1", "action_taken", T0 + D, alert="A99"),
    ]
    events = pd.DataFrame(ev)
    reviews = pd.DataFrame([
        {"id": "r1", "feedback_id": "f1", "task": "topic", "label": "product_defect", "reviewer": "ann",
         "reviewed_at": T0, "model_version": "v1", "model_label": "product_defect"},
        {"id": "r2", "feedback_id": "c2", "task": "topic", "label": "shipping_delay", "reviewer": "ann",
         "reviewed_at": T0, "model_version": "v1", "model_label": "product_defect"},
        # model_label missing: filled from insights (c3, topic, v1) = product_defect -> agreement.
        {"id": "r3", "feedback_id": "c3", "task": "topic", "label": "product_defect", "reviewer": "bob",
         "reviewed_at": T0, "model_version": "v1", "model_label": None},
        {"id": "r4", "feedback_id": "fs", "task": "topic", "label": "shipping_delay", "reviewer": "bob",
         "reviewed_at": T0, "model_version": "v1", "model_label": "shipping_delay"},
        {"id": "r5", "feedback_id": "c7", "task": "topic", "label": "sizing", "reviewer": "bob",
         "reviewed_at": T0, "model_version": "v1", "model_label": "shipping_delay"},
        {"id": "r6", "feedback_id": "f1", "task": "sentiment", "label": "positive", "reviewer": "bob",
         "reviewed_at": T0, "model_version": "v1", "model_label": "negative"},
    ])
    with open_store(url) as st, st.transaction():
        st.append("feedback", feedback)
        st.append("insights", insights)
        st.append("chain_events", events)
        st.append("review_labels", reviews)
    return url


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = build_store(tmp_path_factory.mktemp("chain"))
    with open_store(url) as st:
        yield st


def test_every_event_is_linked_the_right_way(store):
    le = linked_events(store).execute().set_index("id")
    expected = {
        "a1-ack": ("A1", "id"), "a1-act": ("A1", "id"), "a1-fix": ("A1", "id"), "a1-out": ("A1", "id"),
        "a2-ack": ("A2", "inferred"), "a2-ovr": ("A2", "id"), "a3-ign": ("A3", "insight_id"),
        "a4-act": ("A4", "inferred"), "a5-ack": ("A5", "id"), "d1": ("A99", "dangling"),
        "u1": (None, "unlinked"), "u2": (None, "unlinked"),
    }
    assert set(le.index) == set(expected)
    for eid, (alert, link) in expected.items():
        got = le.loc[eid]
        assert got.link == link, eid
        assert (got.resolved_alert_id if pd.notna(got.resolved_alert_id) else None) == alert, eid


def test_alert_chains_timestamps_and_inferred_insights(store):
    ch = alert_chains(store).execute().set_index("alert_id")
    assert list(ch.index.sort_values()) == ["A1", "A2", "A3", "A4", "A5", "A6"]
    assert ch.loc["A1", "insight_id"] == "i1" and ch.loc["A1", "insight_link"] == "id"
    assert ch.loc["A2", "insight_id"] == "i2" and ch.loc["A2", "insight_link"] == "inferred"
    assert ch.loc["A4", "insight_id"] == "i2" and ch.loc["A4", "insight_link"] == "inferred"
    assert pd.isna(ch.loc["A6", "insight_id"])
    assert pd.Timestamp(ch.loc["A1", "fixed_at"]) == pd.Timestamp(T0 + 5 * D)
    assert ch.loc["A1", "n_events"] == 4 and ch.loc["A2", "n_inferred"] == 1


def test_alert_table_durations_backlog_and_complaints(store):
    df = alert_table(store).set_index("alert_id")
    assert df.loc["A1", "hours_to_ack"] == 2.0 and df.loc["A1", "days_to_fix"] == 5.0
    assert df.loc["A2", "hours_to_ack"] == 4.0 and df.loc["A5", "hours_to_ack"] == 10.0
    assert df.loc["A4", "days_to_action"] == 1.0
    assert df.in_backlog.to_dict() == {"A1": False, "A2": False, "A3": False, "A4": False, "A5": True, "A6": True}
    # f1, c1, c2, c3 before the fix (c3 counted once despite two model versions); c4 after.
    assert df.loc["A1", "complaints_before"] == 4 and df.loc["A1", "complaints_after"] == 1
    assert pd.isna(df.loc["A2", "complaints_before"])  # not fixed: no outcome window
    # The window filter keeps only alerts delivered in [start, end).
    assert list(alert_table(store, start=T0 + D, end=T0 + 4 * D).alert_id) == ["A2", "A3", "A4"]


def test_workflow_kpis_per_team_exact(store):
    kp = workflow_kpis(store, by=["team"]).set_index("team")
    lg, pq, mz = kp.loc["logistics"], kp.loc["product_quality"], kp.loc["merchandising"]
    assert (lg.alerts, lg.acted, lg.backlog, lg.overridden) == (3, 1, 0, 1)
    assert lg.adoption_rate == pytest.approx(1 / 3) and lg.override_rate == pytest.approx(1 / 3)
    assert lg.median_hours_to_ack == 4.0 and pd.isna(lg.median_days_to_fix)
    assert (pq.alerts, pq.acted, pq.backlog, pq.fixed) == (2, 1, 1, 1)
    assert pq.adoption_rate == 0.5 and pq.median_hours_to_ack == 6.0 and pq.median_days_to_fix == 5.0
    assert pq.complaint_change == pytest.approx(1 / 4 - 1)
    assert (mz.alerts, mz.acted, mz.backlog) == (1, 0, 1)
    by_topic = workflow_kpis(store).set_index(["team", "topic"])
    assert by_topic.loc[("logistics", "shipping_delay"), "alerts"] == 3


def test_reviewer_disagreement(store):
    d = reviewer_disagreement(store).set_index("model_label")
    assert d.loc["product_defect", "reviewed"] == 3 and d.loc["product_defect", "disagreements"] == 1
    assert d.loc["shipping_delay", "reviewed"] == 2 and d.loc["shipping_delay", "disagreement_rate"] == 0.5
    s = reviewer_disagreement(store, task="sentiment").set_index("model_label")
    assert s.loc["negative", "disagreement_rate"] == 1.0


def test_chain_summary_matches_the_bundle_contract(store):
    s = chain_summary(store)
    json.dumps(s, allow_nan=False)
    assert s["funnel"] == {"insights": 4, "alerts": 6, "acknowledged": 3, "acted": 2, "fixed": 1}
    # Two events by SKU family + topic + time, two alert -> insight links the same way, and the
    # alert-less fix u2 (F3, T0+47d) to insight event x-i3 (F3, T0+2d-1h).
    assert s["inferred_links"] == 5
    assert s["links"] == {"id": 6, "insight_id": 1, "inferred": 2, "dangling": 1, "unlinked": 2,
                          "inferred_alert_insight": 2, "inferred_fix_insight": 1}
    assert s["fixes_without_alert"]["fixes"] == 1 and s["fixes_without_alert"]["linked_to_insight"] == 1
    assert s["fixes_without_alert"]["median_days_insight_to_fix"] == pytest.approx(45 + 1 / 24)
    assert s["fixes_without_alert"]["median_days_alert_to_fix"] == 5.0
    teams = {r["team"]: r for r in s["by_team"]}
    for r in s["by_team"]:
        assert {"team", "alerts", "adoption_rate", "median_hours_to_ack", "median_days_to_fix",
                "override_rate", "backlog"} <= set(r)
    assert teams["product_quality"]["median_days_to_fix"] == 5.0
    assert teams["logistics"]["median_days_to_fix"] is None
    assert teams["product_quality"]["reviewer_disagreement"] == pytest.approx(1 / 3)
    assert teams["logistics"]["reviewer_disagreement"] == 0.5
    assert teams["merchandising"]["reviewer_disagreement"] is None
    assert "adoption_rate" in s["indicators"]["leading"] and "complaint_change" in s["indicators"]["lagging"]
    # Owners from the program file override the "most alerts" guess.
    s2 = chain_summary(store, owners={"shipping_delay": "support", "product_defect": "product_quality"})
    assert {r["team"]: r["reviewed"] for r in s2["by_team"]}["logistics"] == 0


def test_chain_summary_on_an_empty_store(tmp_path):
    with open_store(f"duckdb:///{tmp_path}/e.duckdb") as st:
        s = chain_summary(st)
    assert s["funnel"] == {"insights": 0, "alerts": 0, "acknowledged": 0, "acted": 0, "fixed": 0}
    assert s["by_team"] == [] and s["inferred_links"] == 0
    assert s["fixes_without_alert"]["fixes"] == 0


@pytest.mark.parametrize("dialect", ["pyspark", "databricks"])
def test_chain_expressions_compile_for_spark_and_databricks(dialect):
    # No JVM here: compile the very expressions the DuckDB tests run to the Spark SQL dialects.
    st = UnboundStore(dialect)
    from insightroi.chain._links import complaints_around

    import sqlglot

    ch = alert_chains(st)
    reads = {"chain_events"}
    for expr, tables in ((ch, reads), (linked_events(st), reads),
                         (complaints_around(st, ch.select(anchor_id=ch.alert_id, sku_family=ch.sku_family,
                                                          topic=ch.topic, anchor_time=ch.fixed_at)),
                          reads | {"feedback", "insights"})):
        sql = st.compile(expr)
        # Spark SQL parses it, it reads exactly the stored tables the DuckDB run reads, and it keeps
        # the event-ordering window the chain is built from.
        tree = sqlglot.parse_one(sql, read="spark")
        ctes = {c.alias for c in tree.find_all(sqlglot.exp.CTE)}
        assert {t.name for t in tree.find_all(sqlglot.exp.Table)} - ctes == tables, sql[:500]
        assert "ROW_NUMBER() OVER" in sql
    from insightroi.chain._links import unalerted_fixes

    assert "ROW_NUMBER() OVER" in st.compile(unalerted_fixes(st))


@pytest.mark.slow
@pytest.mark.spark
def test_same_chain_on_pyspark(store, tmp_path):
    # The same Ibis expressions, run for real on local Spark, give the same chain and KPIs.
    pytest.importorskip("pyspark")
    spark = open_store(f"pyspark:///{tmp_path / 'wh'}")
    try:
        # Rows go through Spark's own Arrow reader rather than Store.append: under pandas 3 the
        # append path turns null strings into the string "NaN" (reported to the lead).
        session = spark.con._session
        for name in ("chain_events", "feedback", "insights", "review_labels"):
            session.createDataFrame(store.table(name).to_pyarrow()).write.insertInto(name)
        a = alert_table(store).sort_values("alert_id").reset_index(drop=True)
        b = alert_table(spark).sort_values("alert_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False)
        sa, sb = chain_summary(store), chain_summary(spark)
        assert sa["funnel"] == sb["funnel"] and sa["links"] == sb["links"]
        assert sa["by_team"] == sb["by_team"]
    finally:
        spark.close()


def test_reviews_without_a_model_version_are_compared_with_the_model_in_force(tmp_path):
    url = f"duckdb:///{tmp_path / 'r.duckdb'}"
    ins = pd.DataFrame([
        # v1 said defect on day 0, v2 said shipping on day 5: a review on day 3 judged v1.
        {"id": "a1", "feedback_id": "f1", "task": "topic", "label": "product_defect", "model_version": "v1",
         "created_at": T0},
        {"id": "a2", "feedback_id": "f1", "task": "topic", "label": "shipping_delay", "model_version": "v2",
         "created_at": T0 + 5 * D},
        {"id": "b1", "feedback_id": "f2", "task": "topic", "label": "sizing", "model_version": "v1", "created_at": T0},
    ])
    reviews = pd.DataFrame([
        {"id": "r1", "feedback_id": "f1", "task": "topic", "label": "product_defect", "reviewed_at": T0 + 3 * D},
        {"id": "r2", "feedback_id": "f1", "task": "topic", "label": "product_defect", "reviewed_at": T0 + 6 * D},
        {"id": "r3", "feedback_id": "f2", "task": "topic", "label": "price_value", "reviewed_at": T0 + D},
        # Reviewed before any model saw it: no model label to compare with, left out.
        {"id": "r4", "feedback_id": "f2", "task": "topic", "label": "sizing", "reviewed_at": T0 - D},
    ])
    with open_store(url) as st, st.transaction():
        st.append("insights", ins)
        st.append("review_labels", reviews)
    with open_store(url) as st:
        d = reviewer_disagreement(st).set_index("model_label")
    assert d.loc["product_defect", ["reviewed", "disagreements"]].tolist() == [1, 0]   # r1 vs v1
    assert d.loc["shipping_delay", ["reviewed", "disagreements"]].tolist() == [1, 1]   # r2 vs v2
    assert d.loc["sizing", ["reviewed", "disagreements"]].tolist() == [1, 1]           # r3
    assert int(d.reviewed.sum()) == 3

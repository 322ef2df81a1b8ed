"""monitor_store on a real DuckDB file, the CLI, and the demo world's outage and new theme."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from insightroi.monitor import drift_by_week, monitor_store
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

PROGRAM = parse_program(starter_program_text())
TOPICS = [t.topic for t in PROGRAM.taxonomy]


def _fill_store(path, *, shift: bool, seed: int = 0):
    """Ten weeks of feedback and insights; with ``shift`` the last week has a new theme that the
    model files under "other" with low confidence, in new words, mostly from a new locale."""
    rng = np.random.default_rng(seed)
    store = open_store(f"duckdb:///{path}")
    start = datetime(2025, 9, 1)
    fb, ins = [], []
    families = [f"FAM-{i:02d}" for i in range(40)]
    for day in range(70):
        last_week = day >= 63
        for j in range(60):
            fid = f"F{day:03d}{j:03d}"
            new = shift and last_week and j < 20
            topic = "other" if new else TOPICS[rng.integers(len(TOPICS))]
            words = ["subscription", "autorenew", "billing"] if new else ["late", "box", "size", "battery", "price"]
            fb.append({
                "id": fid, "source": "ticket" if new else ["review", "ticket", "chat"][j % 3],
                "locale": "de-DE" if new else "en-US", "sku_family": families[j % 40], "channel": "web",
                "event_time": start + timedelta(days=day, minutes=j), "rating": float(1 + j % 5),
                "text": " ".join(rng.choice(words, size=5)),
            })
            ins.append({
                "id": f"I{fid}", "feedback_id": fid, "task": "topic", "label": topic,
                "confidence": 0.3 if new else 0.9, "method": "rules", "model_version": "v1",
                "created_at": start + timedelta(days=day, minutes=j + 1),
            })
    # Experiment: per-period tickets and orders per family; the effect fades in the last period.
    arms = {f: ("treatment" if i % 2 == 0 else "control") for i, f in enumerate(families)}
    orders, tickets = [], []
    for day in range(0, 84):
        for f in families:
            for k in range(5):
                orders.append({"id": f"O{day}-{f}-{k}", "sku_family": f, "revenue": 10.0,
                               "order_time": start + timedelta(days=day, hours=k)})
            rate = 0.2 if arms[f] == "control" else (0.12 if day < 56 else 0.2)
            for k in range(rng.poisson(rate * 5)):
                tickets.append({"id": f"T{day}-{f}-{k}", "sku_family": f, "opened_at": start + timedelta(days=day)})
    assignments = [{"id": f"A{f}", "experiment": PROGRAM.experiment.name, "unit_type": "sku_family",
                    "unit_id": f, "arm": a, "assigned_at": start} for f, a in arms.items()]
    labels = [{"id": f"R{i}", "feedback_id": r["feedback_id"], "task": "topic",
               "label": r["label"] if i % 5 else TOPICS[0], "reviewed_at": r["created_at"],
               "model_label": r["label"], "model_version": "v1"} for i, r in enumerate(ins[::7])]
    with store.transaction():
        store.append("feedback", pd.DataFrame(fb))
        store.append("insights", pd.DataFrame(ins))
        store.append("orders", pd.DataFrame(orders))
        store.append("tickets", pd.DataFrame(tickets))
        store.append("assignments", pd.DataFrame(assignments))
        store.append("review_labels", pd.DataFrame(labels))
    return store, start


def _program_from(start):
    text = starter_program_text().replace("start = 2025-07-01", f"start = {start.date().isoformat()}")
    text = text.replace("end = 2026-03-31", "end = 2026-06-30")
    return parse_program(text)


def test_monitor_store_flags_the_shifted_week(tmp_path):
    store, start = _fill_store(tmp_path / "m.duckdb", shift=True)
    program = _program_from(start)
    # An older topic model (everything "praise") and a sentiment model with its own version: the
    # monitor reads the latest version of each task and ignores the old one.
    fb = store.table("feedback").select("id", "event_time").execute()
    old = pd.DataFrame({"id": "old:" + fb.id, "feedback_id": fb.id, "task": "topic", "label": "praise",
                        "confidence": 0.99, "model_version": "v0", "created_at": start - timedelta(days=1)})
    sent = pd.DataFrame({"id": "s:" + fb.id, "feedback_id": fb.id, "task": "sentiment", "label": "negative",
                         "confidence": 0.8, "model_version": "s1", "created_at": start})
    with store.transaction():
        store.append("insights", old)
        store.append("insights", sent)
    report = monitor_store(store, program)
    out = report.to_dict()
    json.dumps(out, allow_nan=False)
    assert set(out) >= {"decision", "reasons", "drift", "decay", "policy"}
    by = {d["feature"]: d for d in out["drift"]}
    assert by["locale"]["status"] == "alert" and by["locale"]["top_category"] == "de-DE"
    assert by["text"]["status"] == "alert" and "subscription" in by["text"]["new_terms"]
    assert by["taxonomy:other_share"]["status"] == "alert"
    assert by["taxonomy:other_share"]["value"] == pytest.approx(20 / 60)
    assert by["taxonomy:low_confidence_share"]["value"] == pytest.approx(20 / 60)
    assert by["insight:topic"]["status"] == "alert"
    assert by["sku_family"]["status"] == "ok"  # the product mix did not move
    assert out["windows"]["current"] == ["2025-11-03T00:00:00", "2025-11-10T00:00:00"]
    assert out["windows"]["model_version"] == {"topic": "v1", "sentiment": "s1"}
    assert by["insight:sentiment"]["status"] == "ok"
    # Weekly scan over the store: only the last week is flagged.
    flagged = [w["week"] for w in out["weekly"] if w["flagged"]]
    assert flagged == ["2025-11-03"]
    # Decay: three 28-day periods of tickets per 1000 orders; the effect fades in the third.
    assert [d["period"] for d in out["decay"]] == ["2025-09-01", "2025-09-29", "2025-10-27"]
    assert out["decay"][0]["estimate"] == pytest.approx(-80, abs=25)
    assert out["decay"][2]["estimate"] == pytest.approx(0, abs=25)
    assert out["decision"] in ("keep", "retrain", "retire")
    # No KPI named: the decision values every hard-priced KPI (this store has tickets, no refunds).
    assert out["kpi"] == "total hard value"
    assert out["figures"]["valued_kpis"] == ["tickets_per_1000_orders", "refunds_per_1000_orders"]
    assert out["figures"]["kpis"]["refunds_per_1000_orders"]["current_value_per_period"] == 0
    assert len(out["quality"]) >= 2 and all("macro_f1" in q for q in out["quality"])
    store.close()


def test_monitor_store_no_shift_no_alerts(tmp_path):
    store, start = _fill_store(tmp_path / "m.duckdb", shift=False, seed=1)
    out = monitor_store(store, _program_from(start)).to_dict()
    assert [d["feature"] for d in out["drift"] if d["status"] == "alert"] == []
    assert not any(w["flagged"] for w in out["weekly"])
    store.close()


def test_monitor_store_empty_store(tmp_path):
    store = open_store(f"duckdb:///{tmp_path / 'e.duckdb'}")
    out = monitor_store(store, PROGRAM).to_dict()
    assert out["decision"] == "keep" and any("no feedback" in r for r in out["reasons"])
    store.close()


def test_cli_monitor_json_and_saved(tmp_path):
    from insightroi.cli import app

    store, start = _fill_store(tmp_path / "c.duckdb", shift=True)
    store.close()
    prog = tmp_path / "insightroi.toml"
    text = starter_program_text().replace("start = 2025-07-01", f"start = {start.date().isoformat()}")
    prog.write_text(text.replace("end = 2026-03-31", "end = 2026-06-30"))
    url = f"duckdb:///{tmp_path / 'c.duckdb'}"
    runner = CliRunner()
    res = runner.invoke(app, ["monitor", "--store", url, "--program", str(prog)])
    assert res.exit_code == 0, res.output
    print(res.output)
    assert "Decision:" in res.output and "locale" in res.output and "Weeks where drift began: 2025-11-03" in res.output
    assert "value_lost" in res.output.replace("\n", "").replace("│", "").replace(" ", "")
    res = runner.invoke(app, ["monitor", "--store", url, "--program", str(prog), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["decision"] in ("keep", "retrain", "retire")
    with open_store(url) as st:
        saved = st.load_result("monitor:latest")
    assert saved is not None and saved["drift"]
    # CI gating: the shifted week raises drift alerts (locale, text, taxonomy, topic), so "warn"
    # and "alert" stop the job with exit 3 naming them; "retire" trips only on a retire decision.
    decision = saved["decision"]
    for level, expect in (("warn", 3), ("alert", 3), ("retrain", 3 if decision in ("retrain", "retire") else 0),
                          ("retire", 3 if decision == "retire" else 0)):
        res = runner.invoke(app, ["monitor", "--store", url, "--program", str(prog), "--json", "--fail-on", level])
        assert res.exit_code == expect, (level, decision, res.stderr)
        assert json.loads(res.stdout)["decision"] == decision  # the output is whole, then the gate
        if expect:
            assert f"gate failed (--fail-on {level})" in res.stderr
        if level in ("warn", "alert"):
            assert "drift alert on locale" in res.stderr and "drift alert on text" in res.stderr
        elif expect:
            assert f"decision {decision}:" in res.stderr
    res = runner.invoke(app, ["monitor", "--store", url, "--program", str(prog), "--fail-on", "sometimes"])
    assert res.exit_code == 1 and "unknown gate 'sometimes'" in res.stderr


@pytest.mark.slow
def test_demo_world_outage_and_new_theme_flagged_in_their_weeks(demo_world):
    """On a 200,000-order demo world (seed 0) the weekly scan of the hidden labels flags exactly two
    weeks: the carrier outage's week (shipping_delay, with a ticket surge) and the first week with
    counterfeit complaints, which is the week of the theme's start or the next one.

    At the "small" scale (~120 feedback a week) neither shift is distinguishable from weekly noise
    at the scan's significance level, so the test uses four times as many orders."""
    pytest.importorskip("insightroi.demo")
    info = demo_world(200_000, 0)
    truth = info.truth
    labels = pd.read_parquet(info.labels_path)
    fb = pd.read_parquet(info.paths["feedback"])
    m = fb.merge(labels, on="id")
    day = m.event_time.dt.tz_localize(None) if m.event_time.dt.tz is not None else m.event_time
    m["week"] = day.dt.to_period("W-SUN").dt.start_time.dt.date.astype(str)
    m["topic"] = m.true_topics.map(lambda x: x[0] if len(x) else "none")
    theme = truth["new_theme"]["topic"]
    has_theme = m.true_topics.map(lambda x: theme in list(x))
    m.loc[has_theme, "topic"] = theme
    rows = drift_by_week(m.week, {"topic": m.topic, "source": m.source}, texts=m.text.tolist())
    flagged = {r["week"]: r for r in rows if r["flagged"]}

    def monday(iso):
        d = pd.Timestamp(iso)
        return (d - pd.Timedelta(days=d.weekday())).date().isoformat()

    outage = next(s for s in truth["shocks"] if s["kind"] == "outage")
    outage_week = monday(outage["start"])
    first_theme_week = m.loc[has_theme, "week"].min()
    assert first_theme_week in (monday(truth["new_theme"]["start"]),
                                monday(pd.Timestamp(truth["new_theme"]["start"]) + pd.Timedelta(days=7)))
    assert set(flagged) == {outage_week, first_theme_week}
    topic_row = next(f for f in flagged[outage_week]["features"] if f["feature"] == "topic")
    assert topic_row["top_category"] == outage["topic"]
    theme_row = next(f for f in flagged[first_theme_week]["features"] if f["feature"] == "topic")
    assert theme_row["top_category"] == theme and theme_row["new_category"] == theme


@pytest.mark.slow
def test_monitor_store_on_ingested_demo_world(tmp_path, demo_world):
    """The demo world ingested into DuckDB: the store-side weekly scan (source mix and vocabulary,
    counted in the database; no insights yet) flags the outage week and no other week, and the
    decay table has one row per 28-day period of the experiment."""
    pytest.importorskip("insightroi.demo")
    ingest = pytest.importorskip("insightroi.ingest")
    from insightroi.program import load_program

    info = demo_world(200_000, 0)
    store = open_store(f"duckdb:///{tmp_path / 'd.duckdb'}")
    for kind in ("feedback", "orders", "tickets", "assignments"):
        ingest.ingest_path(store, kind, info.paths[kind])
    program = load_program(info.program_path)
    out = monitor_store(store, program).to_dict()
    json.dumps(out, allow_nan=False)
    outage = next(s for s in info.truth["shocks"] if s["kind"] == "outage")
    d = pd.Timestamp(outage["start"])
    outage_week = (d - pd.Timedelta(days=d.weekday())).date().isoformat()
    assert [w["week"] for w in out["weekly"] if w["flagged"]] == [outage_week]
    start, end = pd.Timestamp(info.truth["window"]["start"]), pd.Timestamp(info.truth["window"]["end"])
    assert len(out["decay"]) == int((end - start).days // 28) + 1
    assert out["decision"] in ("keep", "retrain", "retire") and out["kpi"] == "total hard value"
    assert out["figures"]["valued_kpis"] == ["tickets_per_1000_orders", "refunds_per_1000_orders"]
    assert not [r["feature"] for r in out["drift"] if r["status"] == "alert"]
    store.close()

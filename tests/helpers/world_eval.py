"""Measure the insight layer on a demo world (``insightroi.demo.generate_world`` output).

Topic quality against the hidden ``labels.parquet`` and spike detection against truth.json's
defect episodes (test helper).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from insightroi.insights import classify_store, detect_spikes
from insightroi.program import load_program

__all__ = ["topic_scores", "spike_scores", "evaluate_world"]


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def _naive_utc(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s, utc=True)
    return s.dt.tz_convert("UTC").dt.tz_localize(None)


def topic_scores(pred: pd.DataFrame, labels: pd.DataFrame, topics: list[str]) -> dict:
    """Multi-label per-topic precision / recall / F1 and macro-F1 over taxonomy topics.

    ``pred``: feedback_id, labels (list of assigned topics); ``labels``: id, true_topics (list).
    A feedback row counts as a true positive for topic t when t is both assigned and true.
    Also gives the single-label accuracy of the primary label (true when it is one of the true
    topics, or "other" for rows with no taxonomy topic).
    """
    m = labels.merge(pred, left_on="id", right_on="feedback_id", how="inner")
    per = {}
    for t in topics:
        y = np.array([t in list(v) for v in m.true_topics])
        p = np.array([t in list(v) for v in m.labels])
        tp, fp, fn = int((y & p).sum()), int((~y & p).sum()), int((y & ~p).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per[t] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                  "support": tp + fn}
    tax = set(topics)
    primary_ok = [
        (lab in list(tr)) if lab not in ("other", "unclassifiable") else not (set(tr) & tax)
        for lab, tr in zip(m.label, m.true_topics)
    ]
    f1s = [v["f1"] for v in per.values() if v["support"] > 0]
    return {"n": int(len(m)), "macro_f1": float(np.mean(f1s)) if f1s else 0.0, "per_topic": per,
            "primary_accuracy": float(np.mean(primary_ok)) if primary_ok else 0.0}


def spike_scores(alerts, defects: list[dict], *, grace_days: int = 0) -> dict:
    """Recall / precision of alerts against defect episodes, and days from defect start to alert.

    An episode (sku_family, topic, start .. end_control_policy) is detected by an alert of the
    same family and topic whose day falls in [start, end + grace]. An alert is a true alarm when it
    matches some episode.
    """
    eps = []
    for d in defects:
        start = date.fromisoformat(d["start"])
        end = date.fromisoformat(d.get("end_control_policy") or d.get("end_treatment_policy") or d["start"])
        eps.append((d["sku_family"], d["topic"], start, end + timedelta(days=grace_days)))
    lags, matched_alerts = [], set()
    detected = 0
    for fam, topic, start, end in eps:
        hits = [a for a in alerts if a.sku_family == fam and a.topic == topic and start <= a.day <= end]
        if hits:
            detected += 1
            lags.append((min(a.day for a in hits) - start).days)
            matched_alerts.update(a.alert_id for a in hits)
    n_alerts = len(alerts)
    return {
        "episodes": len(eps), "detected": detected, "recall": detected / len(eps) if eps else None,
        "alerts": n_alerts, "true_alerts": len(matched_alerts),
        "precision": len(matched_alerts) / n_alerts if n_alerts else None,
        "median_days_to_alert": float(np.median(lags)) if lags else None,
    }


def evaluate_world(world_dir, store, program=None, *, method: str = "lexicon", batch_size: int = 20000) -> dict:
    """Load a demo world's feedback and annotations into ``store``, classify, detect, and score.

    Returns {"classify": ClassifyReport dict, "topics": topic_scores, "spikes": spike_scores,
    "sentiment_accuracy": float}.
    """
    world = Path(world_dir)
    program = program or load_program(world / "insightroi.toml")
    fb = _read(world / "feedback.parquet") if (world / "feedback.parquet").exists() else pd.read_parquet(world / "feedback")
    fb = fb.dropna(subset=["id", "event_time"]).drop_duplicates("id")
    fb["event_time"] = _naive_utc(fb["event_time"])
    fb = fb[[c for c in fb.columns if c not in ("ingested_at", "batch_id")]]
    with store.transaction():
        store.append("feedback", fb)
        ann_path = world / "annotations.parquet"
        if ann_path.exists():
            ann = _read(ann_path)
            for c in ("start_time", "end_time"):
                if c in ann:
                    ann[c] = _naive_utc(ann[c])
            store.append("annotations", ann[[c for c in ann.columns if c not in ("ingested_at", "batch_id")]])
    rep = classify_store(store, program, method=method, batch_size=batch_size)
    ins = store.table("insights")
    v = rep.model_versions
    topic_rows = ins.filter((ins.task == "topic") & (ins.model_version == v["topic"])).execute()
    topic_rows["labels"] = [json.loads(e).get("labels", []) for e in topic_rows.evidence]
    lab_path = world / "labels.parquet" if (world / "labels.parquet").exists() else world / "labels"
    labels = pd.read_parquet(lab_path)
    tax = [t.topic for t in program.taxonomy]
    topics = topic_scores(topic_rows[["feedback_id", "label", "labels"]], labels, tax)
    sent = ins.filter((ins.task == "sentiment") & (ins.model_version == v["sentiment"])).execute()
    sm = labels.merge(sent, left_on="id", right_on="feedback_id")
    truth = json.loads((world / "truth.json").read_text())
    alerts = detect_spikes(store, program)
    return {
        "classify": rep.to_dict(), "topics": topics,
        "sentiment_accuracy": float((sm.label == sm.true_sentiment).mean()) if len(sm) else None,
        "spikes": spike_scores(alerts, truth.get("defects", [])),
        "alerts": [a.to_dict() for a in alerts],
    }

"""Human review queue: sample high-severity and low-confidence items; store and use the labels."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from insightroi.insights._spikes import current_topic_version
from insightroi.insights._validate import ValidationReport, validate_model
from insightroi.store import Store

__all__ = ["review_queue", "record_review_labels", "validate_from_reviews"]


def review_queue(
    store: Store,
    program,
    n: int = 50,
    rng: np.random.Generator | None = None,
    *,
    model_version: str | None = None,
    high_share: float = 0.5,
) -> pd.DataFrame:
    """Sample ``n`` items for human review: about ``high_share`` from high/critical severity, the rest
    from low-confidence topic predictions (confidence < ``monitoring.low_confidence`` or "other").

    Items already reviewed are skipped. Sampling is uniform without replacement inside each
    stratum; ``inclusion_prob`` (stratum sample size / stratum size) lets a reviewer weight labels
    back to the stratum (Horvitz-Thompson) when estimating error rates.

    Returns
    -------
    DataFrame with feedback_id, text, task ("topic"), model_version, model_label, confidence,
    severity, stratum (high_severity | low_confidence), inclusion_prob.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    version = model_version or current_topic_version(store)
    cols = ["feedback_id", "text", "task", "model_version", "model_label", "confidence", "severity",
            "stratum", "inclusion_prob"]
    if version is None:
        return pd.DataFrame(columns=cols)
    ins = store.table("insights")
    fb = store.table("feedback")
    topic = ins.filter((ins.task == "topic") & (ins.model_version == version)).select(
        feedback_id=ins.feedback_id, model_label=ins.label, confidence=ins.confidence
    )
    sev = ins.filter(ins.task == "severity").select(sfid=ins.feedback_id, severity=ins.label, smv=ins.model_version)
    df = topic.join(fb.select(fid=fb.id, text=fb.text), topic.feedback_id == fb.id).execute()
    sdf = sev.execute()
    if not sdf.empty:
        sdf = sdf.sort_values("smv").drop_duplicates("sfid", keep="last")
        df = df.merge(sdf[["sfid", "severity"]], left_on="feedback_id", right_on="sfid", how="left")
    else:
        df["severity"] = None
    rl = store.table("review_labels")
    reviewed = set(rl.filter(rl.task == "topic").select("feedback_id").execute()["feedback_id"])
    df = df[~df.feedback_id.isin(reviewed) & (df.model_label != "unclassifiable")]
    thr = program.monitoring.low_confidence
    high = df[df.severity.isin(["high", "critical"])]
    low = df[~df.index.isin(high.index) & ((df.confidence < thr) | (df.model_label == "other"))]
    n_high = min(len(high), int(round(n * high_share)))
    n_low = min(len(low), n - n_high)
    n_high = min(len(high), n - n_low)
    parts = []
    for frame, k, name in ((high, n_high, "high_severity"), (low, n_low, "low_confidence")):
        if k <= 0:
            continue
        pick = frame.iloc[np.sort(rng.choice(len(frame), k, replace=False))].copy()
        pick["stratum"] = name
        pick["inclusion_prob"] = k / len(frame)
        parts.append(pick)
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["task"] = "topic"
    out["model_version"] = version
    return out[cols].reset_index(drop=True)


def record_review_labels(store: Store, labels: pd.DataFrame, *, reviewer: str | None = None) -> int:
    """Store human labels (columns feedback_id, label, optional task, reviewer, model_version,
    model_label, reviewed_at). The row id is ``review:{feedback_id}:{task}:{reviewer}``; a repeat
    of the same reviewer's label for the same item replaces nothing (first label kept)."""
    df = labels.copy()
    if "task" not in df:
        df["task"] = "topic"
    if "reviewer" not in df or reviewer is not None:
        df["reviewer"] = reviewer or "reviewer"
    if "reviewed_at" not in df:
        df["reviewed_at"] = datetime.now(timezone.utc).replace(tzinfo=None)
    df["id"] = [f"review:{f}:{t}:{r}" for f, t, r in zip(df.feedback_id, df.task, df.reviewer)]
    keep = [c for c in ("id", "feedback_id", "task", "label", "reviewer", "reviewed_at", "model_version", "model_label")
            if c in df]
    df = df[keep].drop_duplicates("id")
    rl = store.table("review_labels")
    existing = set(rl.filter(rl.id.isin(df.id.tolist())).select("id").execute()["id"])
    df = df[~df.id.isin(existing)]
    with store.transaction():
        return store.append("review_labels", df)


def validate_from_reviews(store: Store, *, task: str = "topic", model_version: str | None = None) -> ValidationReport | None:
    """Validate the stored predictions of ``model_version`` against the human review labels."""
    version = model_version or current_topic_version(store)
    rl = store.table("review_labels").filter(lambda t: t.task == task).execute()
    if rl.empty or version is None:
        return None
    ins = store.table("insights")
    pred = ins.filter((ins.task == task) & (ins.model_version == version)).select(
        "feedback_id", "label", "confidence").execute()
    m = rl.drop_duplicates("feedback_id", keep="last").merge(pred, on="feedback_id", suffixes=("_true", ""))
    if m.empty:
        return None
    rep = validate_model(m["label"].to_numpy(), m["label_true"].to_numpy(), confidence=m["confidence"].to_numpy(),
                         times=m["reviewed_at"])
    rep.notes.append("review items are sampled from high-severity and low-confidence strata: "
                     "these figures describe the hard cases, not the whole stream")
    return rep

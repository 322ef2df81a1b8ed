"""Classify the store's feedback in batches and write the versioned ``insights`` table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from insightroi.errors import check_option
from insightroi.insights._base import UNCLASSIFIABLE
from insightroi.insights._sentiment import EmbeddingSentiment, LexiconSentiment
from insightroi.insights._severity import SeverityRules
from insightroi.insights._topic import TopicClassifier
from insightroi.insights._base import model_version as _mv

__all__ = ["InsightModels", "ClassifyReport", "classify_store", "build_models", "CLASSIFY_METHODS"]

CLASSIFY_METHODS = ("lexicon", "embedding", "auto")
TASKS = ("sentiment", "topic", "severity")


@dataclass
class InsightModels:
    """The three fitted models used together; ``versions`` maps task -> model_version."""

    sentiment: object
    topic: TopicClassifier
    severity: SeverityRules
    method: str

    @property
    def versions(self) -> dict[str, str]:
        return {
            "sentiment": self.sentiment.model_version_,
            "topic": self.topic.model_version_,
            "severity": self.severity_version,
        }

    @property
    def severity_version(self) -> str:
        # Severity depends on the upstream models, so their versions are part of its own.
        return _mv(
            "severity-rules",
            rules=self.severity.model_version_,
            sentiment=self.sentiment.model_version_,
            topic=self.topic.model_version_,
        )

    def classify_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """All task rows for a frame with columns id, text (and optional rating).

        Returns the insights-table columns except created_at.
        """
        texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in df["text"].tolist()]
        # Feedback repeats itself (templates, one-liners): classify each distinct text once.
        uniq, inv = np.unique(np.array(texts, dtype=object), return_inverse=True) if texts else ([], [])
        uniq = list(uniq)
        sent = self.sentiment.classify(uniq).iloc[inv].reset_index(drop=True)
        top = self.topic.classify(uniq).iloc[inv].reset_index(drop=True)
        sev = self.severity.classify(
            texts,
            top["label"].to_numpy(),
            top["confidence"].to_numpy(),
            np.where(sent["label"].to_numpy() == UNCLASSIFIABLE, np.nan, sent["score"].to_numpy()),
            df["rating"].to_numpy(dtype=float) if "rating" in df else None,
        )
        sev["model_version"] = self.severity_version
        out = []
        ids = df["id"].astype(str).to_numpy()
        for task, rows in (("sentiment", sent), ("topic", top), ("severity", sev)):
            rows = rows.copy()
            rows.insert(0, "task", task)
            rows.insert(0, "feedback_id", ids)
            rows.insert(0, "id", [f"{fid}:{task}:{v}" for fid, v in zip(ids, rows["model_version"])])
            out.append(rows)
        return pd.concat(out, ignore_index=True)


def build_models(program, method: str = "lexicon", *, device: str = "cpu") -> InsightModels:
    """Fit (load) the models for ``method``: lexicon = VADER + keyword rules; embedding = MiniLM
    head + combined rules/similarity topics; auto = embedding when the extra is installed."""
    check_option("method", method, CLASSIFY_METHODS)
    if method == "auto":
        from insightroi.insights._embed import embeddings_available

        method = "embedding" if embeddings_available() else "lexicon"
    thr = program.monitoring.low_confidence
    if method == "embedding":
        sent = EmbeddingSentiment(device=device).fit()
        topic = TopicClassifier(program.taxonomy, method="combined", threshold=thr, device=device).fit()
    else:
        sent = LexiconSentiment().fit()
        topic = TopicClassifier(program.taxonomy, method="rules", threshold=thr).fit()
    return InsightModels(sent, topic, SeverityRules(program.taxonomy).fit(), method)


@dataclass
class ClassifyReport:
    """What one ``classify_store`` run did."""

    method: str
    model_versions: dict[str, str]
    n_feedback: int
    n_todo: int
    n_classified: int
    n_rows_written: int
    n_unclassifiable: int
    topic_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _todo_frame(store, severity_version: str) -> tuple[pd.DataFrame, int]:
    fb = store.table("feedback")
    ins = store.table("insights")
    done = ins.filter((ins.task == "severity") & (ins.model_version == severity_version)).select(
        done_id=ins.feedback_id
    )
    todo = fb.anti_join(done, fb.id == done.done_id).select("id", "text", "rating", "event_time")
    df = todo.order_by("id").execute()
    return df, store.count("feedback")


def classify_store(
    store,
    program,
    *,
    method: str = "lexicon",
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
    models: InsightModels | None = None,
    device: str = "cpu",
) -> ClassifyReport:
    """Classify every feedback row not yet classified by this model version; write ``insights``.

    One row per feedback x task (sentiment, topic, severity) x model version, with id
    ``"{feedback_id}:{task}:{model_version}"``. Each batch is one transaction. Re-running with the
    same models writes nothing; a new model version (other method, parameters, taxonomy or
    training data) adds its rows next to the old ones.

    Parameters
    ----------
    store : insightroi.store.Store
    program : insightroi.program.Program
    method : {"lexicon", "embedding", "auto"}
    batch_size : int
    progress : callable(done, total), optional
    models : InsightModels, optional
        Pre-built models (otherwise :func:`build_models`).
    """
    t0 = time.perf_counter()
    models = models or build_models(program, method, device=device)
    versions = models.versions
    todo, n_feedback = _todo_frame(store, versions["severity"])
    total = len(todo)
    existing: set[str] = set()
    if total:
        # Rows of the upstream tasks may already exist (same sentiment or topic model, new
        # combination); ids are deterministic, so skip those instead of duplicating keys.
        ins = store.table("insights")
        prior = ins.filter(ins.model_version.isin([versions["sentiment"], versions["topic"]])).select("id")
        existing = set(prior.execute()["id"])
    written = unclassifiable = 0
    counts: dict[str, int] = {}
    if progress:
        progress(0, total)
    for start in range(0, total, max(1, int(batch_size))):
        batch = todo.iloc[start : start + batch_size]
        rows = models.classify_frame(batch)
        if existing:
            rows = rows[~rows["id"].isin(existing)]
        rows = rows.assign(created_at=datetime.now(timezone.utc).replace(tzinfo=None))
        with store.transaction():
            written += store.append("insights", rows)
        t = rows[rows.task == "topic"]
        unclassifiable += int((t.label == UNCLASSIFIABLE).sum())
        for k, v in t.label.value_counts().items():
            counts[str(k)] = counts.get(str(k), 0) + int(v)
        if progress:
            progress(min(start + batch_size, total), total)
    store.save_result("insights_model", "latest", {"method": models.method, "versions": versions})
    return ClassifyReport(
        method=models.method, model_versions=versions, n_feedback=n_feedback, n_todo=total,
        n_classified=total, n_rows_written=written, n_unclassifiable=unclassifiable,
        topic_counts=counts, seconds=time.perf_counter() - t0,
    )

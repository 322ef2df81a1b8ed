"""Classify the store's feedback in batches and write the versioned ``insights`` table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from insightroi.errors import check_option
from insightroi.insights._base import UNCLASSIFIABLE
from insightroi.insights._embed import embeddings_available
from insightroi.insights._fast import FastLexiconStack
from insightroi.insights._domain_sentiment import DomainSentiment
from insightroi.insights._seeded import SeededTopics
from insightroi.insights._sentiment import EmbeddingSentiment, LexiconSentiment
from insightroi.insights._severity import SeverityRules
from insightroi.insights._topic import TopicClassifier
from insightroi.insights._base import model_version as _mv
from insightroi.store import Store

__all__ = ["InsightModels", "ClassifyReport", "classify_store", "build_models", "CLASSIFY_METHODS"]

CLASSIFY_METHODS = ("lexicon", "embedding", "seeded", "auto")
TASKS = ("sentiment", "topic", "severity")
# Owner labels below this many leave the seeded topics few-shot: a head on a handful of labels
# is worse than the taxonomy's own examples.
OWNER_LABELS_MIN = 50
# Insight rows written per transaction: large enough that commits are a small share of the write
# time, small enough that the pending rows stay around 100 MB.
WRITE_ROWS = 500_000
# To-do rows read from the store at a time (rounded down to whole batches): ~150 MB of texts.
READ_ROWS = 1_000_000


@dataclass
class InsightModels:
    """The three fitted models used together; ``versions`` maps task -> model_version."""

    sentiment: object
    topic: TopicClassifier
    severity: SeverityRules
    method: str
    # The one-pass form of the lexicon models (insights/_fast.py), built on first use.
    _fast: object = field(default=None, init=False, repr=False, compare=False)

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

    def fast_path(self):
        """The :class:`~insightroi.insights._fast.FastLexiconStack` of these models, or None.

        It exists for the lexicon models (VADER, keyword topic rules, severity rules) and gives
        the same rows as the per-model path, several times faster.
        """
        if self._fast is None:
            if not FastLexiconStack.supports(self.sentiment, self.topic, self.severity):
                self._fast = False
            else:
                self._fast = FastLexiconStack(self.sentiment, self.topic, self.severity, self.severity_version)
        return self._fast or None

    def classify_table(self, batch) -> pa.Table:
        """All task rows of a batch of feedback as an Arrow table.

        Parameters
        ----------
        batch : pyarrow.Table or pandas.DataFrame
            Columns id, text and optionally rating.

        Returns
        -------
        pyarrow.Table
            The insights-table columns except created_at: sentiment rows, then topic rows, then
            severity rows, each in the batch's order.
        """
        fast = self.fast_path()
        if fast is None:
            frame = batch.to_pandas() if isinstance(batch, pa.Table) else batch
            return pa.Table.from_pandas(self._classify_frame_generic(frame), preserve_index=False)
        if isinstance(batch, pa.Table):
            ids = batch.column("id")
            texts = batch.column("text").to_pylist()
            ratings = None
            if "rating" in batch.column_names:
                r = pc.cast(batch.column("rating"), pa.float64())
                ratings = pc.fill_null(r, float("nan")).to_numpy()
        else:
            ids = batch["id"].astype(str).tolist()
            texts = batch["text"].tolist()
            ratings = batch["rating"].to_numpy(dtype=float) if "rating" in batch else None
        return fast.classify_columns(ids, texts, ratings)

    def classify_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """All task rows for a frame with columns id, text (and optional rating).

        Returns the insights-table columns except created_at.
        """
        if self.fast_path() is not None:
            out = self.classify_table(df).to_pandas()
            # The per-model path's label column holds Python objects (make_rows); keep that dtype.
            out["label"] = out["label"].astype(object)
            return out
        return self._classify_frame_generic(df)

    def _classify_frame_generic(self, df: pd.DataFrame) -> pd.DataFrame:
        # Each model on its own; the reference the fast path is tested against.
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


def build_models(program, method: str = "lexicon", *, device: str = "cpu",
                 owner_labels: tuple[list[str], list[str]] | None = None) -> InsightModels:
    """Fit (load) the models for ``method``.

    Parameters
    ----------
    program : insightroi.program.Program
    method : {"lexicon", "embedding", "seeded", "auto"}
        lexicon = VADER + keyword rules; embedding = MiniLM head + combined rules/similarity
        topics; seeded = the cross-domain sentiment head (:class:`DomainSentiment`) and topics
        seeded by the taxonomy's descriptions and examples with calibrated abstention
        (:class:`SeededTopics`); auto = embedding when the extra is installed.
    device : str
        Torch device of the embedding models.
    owner_labels : (texts, labels), optional
        Topic labels owners gave in the review queue: with ``seeded`` and at least
        :data:`OWNER_LABELS_MIN` of them, the topic model is a head trained on them (versioned by
        its training data, cross-validated figures in ``validation_``).
    """
    check_option("method", method, CLASSIFY_METHODS)
    if method == "auto":
        method = "embedding" if embeddings_available() else "lexicon"
    thr = program.monitoring.low_confidence
    if method == "seeded":
        sent = DomainSentiment(device=device).fit()
        topic = SeededTopics(program.taxonomy, device=device)
        if owner_labels is not None and len(owner_labels[0]) >= OWNER_LABELS_MIN:
            topic = topic.fit(*owner_labels)
        else:
            topic = topic.fit()
    elif method == "embedding":
        sent = EmbeddingSentiment(device=device).fit()
        topic = TopicClassifier(program.taxonomy, method="combined", threshold=thr, device=device).fit()
    else:
        sent = LexiconSentiment().fit()
        topic = TopicClassifier(program.taxonomy, method="rules", threshold=thr).fit()
    return InsightModels(sent, topic, SeverityRules(program.taxonomy).fit(), method)


def owner_topic_labels(store: Store) -> tuple[list[str], list[str]]:
    """The review queue's topic labels with their feedback texts (the latest review per item).

    Returns
    -------
    (texts, labels)
        What :class:`SeededTopics` trains its owner head on.
    """
    rl = store.table("review_labels")
    rl = rl.filter(rl.task == "topic")
    latest = rl.group_by("feedback_id").aggregate(label=rl.label.argmax(rl.reviewed_at))
    fb = store.table("feedback")
    j = latest.inner_join(fb, latest.feedback_id == fb.id).select("text", "label").order_by("text").execute()
    j = j[j.text.notna()]
    return j.text.astype(str).tolist(), j.label.astype(str).tolist()


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


def _todo_pages(store: Store, severity_version: str, page_rows: int):
    """The to-do rows in id order, as Arrow tables of ``page_rows`` rows (the last one shorter).

    Returns ``(n_todo, n_feedback, pages)``. Pages, not one table: at 100M orders the to-do set
    is ~15.5M texts (about 2 GB as Arrow), which the parent held for the whole stage -- and its
    forked workers saw it in their resident sets -- next to DuckDB's buffer pool. Each page is a
    range of ids (keyset pagination: the first id of every ``page_rows``-th to-do row, found in
    one window query), so the rows and their order are the same as one ordered read, and rows
    this stage appends (ids below the page) never change a later page.
    """
    import ibis

    fb = store.table("feedback")
    ins = store.table("insights")
    done = ins.filter((ins.task == "severity") & (ins.model_version == severity_version)).select(
        done_id=ins.feedback_id
    )
    todo = fb.anti_join(done, fb.id == done.done_id).select("id")
    ranked = todo.mutate(page=(ibis.row_number().over(order_by="id") // page_rows))
    starts = ranked.group_by("page").aggregate(first=ranked.id.min(), n=ranked.count()).order_by("page").to_pyarrow()
    n_todo = int(pc.sum(starts.column("n")).as_py() or 0)
    firsts = starts.column("first").to_pylist()

    def pages():
        for i, lo in enumerate(firsts):
            page = fb.filter(fb.id >= lo) if i + 1 == len(firsts) else fb.filter((fb.id >= lo) & (fb.id < firsts[i + 1]))
            # Only what the models read: at 100M orders each further column is ~15.5M values.
            todo_page = page.anti_join(done, page.id == done.done_id).select("id", "text", "rating")
            yield todo_page.order_by("id").to_pyarrow()

    return n_todo, store.count("feedback"), pages()


# Worker state for the process pool: the fitted models, received once per worker.
_WORKER_MODELS: InsightModels | None = None


def _init_worker(models: InsightModels) -> None:
    global _WORKER_MODELS
    _WORKER_MODELS = models


def _classify_in_worker(batch: pa.Table) -> pa.Table:
    return _WORKER_MODELS.classify_table(batch)


def _classified(batches, models: InsightModels, jobs: int):
    """Classified rows of each batch, in order; ``jobs`` > 1 classifies in a process pool."""
    if jobs <= 1:
        for batch in batches:
            yield models.classify_table(batch)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # Linux: fork. A spawned worker re-imports the caller's __main__, which runs an unguarded
    # script's body again (and hung on the store's file lock in a test); a forked worker only
    # runs the models, never DuckDB, whose threads sit idle between queries. Elsewhere (macOS
    # forbids fork after threads) spawn, with the usual __main__-guard requirement.
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pending: deque = deque()
    try:
        # The fitted models travel to each worker (pickled once per worker), so every process
        # classifies with exactly the model versions recorded in the rows.
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(models,)) as pool:
            for batch in batches:
                # Queued before submit, so a pool that breaks on submit cannot drop the batch.
                pending.append([batch, None])
                pending[-1][1] = pool.submit(_classify_in_worker, batch)
                # Bounded read-ahead: two batches per worker in flight keeps memory flat.
                if len(pending) >= 2 * jobs:
                    yield pending[0][1].result()
                    pending.popleft()
            while pending:
                yield pending[0][1].result()
                pending.popleft()
    except BrokenProcessPool:
        # A worker died or could not start (e.g. an unguarded __main__ re-run by spawn): the
        # batches not yet written are classified here, in order, so nothing is lost.
        for batch, _ in pending:
            yield models.classify_table(batch)
        for batch in batches:
            yield models.classify_table(batch)


def _default_jobs(method: str, n_batches: int) -> int:
    import os

    # Lexicon models are single-threaded Python: one process per core. Embedding models already
    # use every core through torch, so more processes would only contend.
    if method != "lexicon" or n_batches < 4:
        return 1
    return max(1, min(os.cpu_count() or 1, 8, n_batches))


def classify_store(
    store: Store,
    program,
    *,
    method: str = "lexicon",
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
    models: InsightModels | None = None,
    device: str = "cpu",
    n_jobs: int = 1,
) -> ClassifyReport:
    """Classify every feedback row not yet classified by this model version; write ``insights``.

    One row per feedback x task (sentiment, topic, severity) x model version, with id
    ``"{feedback_id}:{task}:{model_version}"``. Rows are written in transactions of
    :data:`WRITE_ROWS` rows (an interrupted run keeps what was committed and the next run
    classifies the rest). Re-running with the
    same models writes nothing; a new model version (other method, parameters, taxonomy or
    training data) adds its rows next to the old ones.

    Parameters
    ----------
    store : insightroi.store.Store
    program : insightroi.program.Program
    method : {"lexicon", "embedding", "seeded", "auto"}
        With ``seeded`` the review queue's topic labels (:func:`owner_topic_labels`) train the
        topic head once there are :data:`OWNER_LABELS_MIN` of them.
    batch_size : int
    progress : callable(done, total), optional
    models : InsightModels, optional
        Pre-built models (otherwise :func:`build_models`).
    device : str
        Torch device of the embedding models.
    n_jobs : int
        Worker processes that classify batches while this one writes them; 1 (default) works
        in-process, -1 means one per core (up to 8) for the lexicon models when there are at
        least 4 batches. Workers are forked on Linux and spawned elsewhere (where a calling
        script needs the usual ``if __name__ == "__main__":`` guard); if the pool breaks, the
        remaining batches are classified in-process. The workers receive the fitted models, so
        the rows written do not depend on ``n_jobs``.
    """
    t0 = time.perf_counter()
    models = models or build_models(program, method, device=device,
                                    owner_labels=owner_topic_labels(store) if method == "seeded" else None)
    versions = models.versions
    size = max(1, int(batch_size))
    # Pages hold whole batches, so the batches are the same as those of one ordered read.
    page_rows = max(size, READ_ROWS // size * size)
    total, n_feedback, pages = _todo_pages(store, versions["severity"], page_rows)
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
    starts = range(0, total, size)
    jobs = _default_jobs(models.method, len(starts)) if n_jobs == -1 else int(n_jobs)
    if jobs < 1:
        raise ValueError(f"n_jobs must be -1 or a positive number of processes, got {n_jobs!r}")
    skip = pa.array(sorted(existing), pa.string()) if existing else None
    batches = (page.slice(start, size) for page in pages for start in range(0, page.num_rows, size))
    pending: list[pa.Table] = []
    n_pending = 0

    def flush() -> int:
        # One transaction per WRITE_ROWS rows, not per batch: each commit costs a checkpoint-sized
        # share of the write (500k rows took 2.2 s in 34 commits, 1.2 s in one).
        nonlocal n_pending
        if not pending:
            return 0
        rows = pa.concat_tables(pending)
        pending.clear()
        n_pending = 0
        stamp = datetime.now(timezone.utc).replace(tzinfo=None)
        rows = rows.append_column("created_at", pa.repeat(pa.scalar(stamp, pa.timestamp("us")), rows.num_rows))
        with store.transaction():
            return store.append("insights", rows)

    for start, rows in zip(starts, _classified(batches, models, jobs)):
        if skip is not None:
            rows = rows.filter(pc.invert(pc.is_in(rows.column("id"), value_set=skip)))
        t = rows.filter(pc.equal(rows.column("task"), "topic")).column("label")
        unclassifiable += int(pc.sum(pc.equal(t, UNCLASSIFIABLE)).as_py() or 0)
        for item in pc.value_counts(t).to_pylist():
            k = str(item["values"])
            counts[k] = counts.get(k, 0) + int(item["counts"])
        pending.append(rows)
        n_pending += rows.num_rows
        if n_pending >= WRITE_ROWS:
            written += flush()
        if progress:
            progress(min(start + size, total), total)
    written += flush()
    store.save_result("insights_model", "latest", {"method": models.method, "versions": versions})
    return ClassifyReport(
        method=models.method, model_versions=versions, n_feedback=n_feedback, n_todo=total,
        n_classified=total, n_rows_written=written, n_unclassifiable=unclassifiable,
        topic_counts=counts, seconds=time.perf_counter() - t0,
    )

"""Feedback classification at lakehouse scale: the same models as ``classify_store``, run as a Spark job.

The feedback table is read as a Spark DataFrame and classified where it lives: each executor gets
Arrow record batches through ``mapInArrow`` (no row-by-row Python, no collect to the driver) and
runs :meth:`InsightModels.classify_frame` on them -- the very code and model versions that
:func:`insightroi.insights.classify_store` runs on DuckDB, so ids, labels and confidences are
identical and a store can switch engines without re-classifying.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from insightroi.errors import StoreError
from insightroi.insights._classify import build_models

__all__ = ["classify_spark"]

# Output columns in insights-table order, minus created_at (set once per job in the worker).
_OUT = ("id", "feedback_id", "task", "label", "score", "confidence", "evidence", "method", "model_version")
_DDL = ("id string, feedback_id string, task string, label string, score double, confidence double, "
        "evidence string, method string, model_version string, created_at timestamp")


# Models built in a Python worker, per (method, program): they hold caches that cannot be pickled,
# so the program travels to the executors and each worker process builds the models once.
_WORKER_MODELS: dict[tuple[str, str], object] = {}


def _worker_models(program, method: str, versions: dict[str, str]):
    key = (method, program.model_dump_json())
    models = _WORKER_MODELS.get(key)
    if models is None:
        models = build_models(program, method)
        if models.versions != versions:
            # Same program, other code or bundled data on the executors: refuse to mix versions.
            raise RuntimeError(f"executor models {models.versions} differ from the driver's {versions}")
        _WORKER_MODELS[key] = models
    return models


def classify_spark(spark_store, program, *, method: str = "lexicon") -> int:
    """Classify every feedback row not yet classified by this model version, as one Spark job.

    Parameters
    ----------
    spark_store : insightroi.store.Store
        A ``pyspark://`` store (local or a cluster). The Python workers must import insightroi
        (set ``PYSPARK_PYTHON`` to the interpreter that has it, as ``open_store`` does by default).
    program : insightroi.program.Program
        Taxonomy and thresholds the models are built from.
    method : {"lexicon", "embedding", "auto"}
        As in :func:`insightroi.insights.build_models`; the model versions written are the ones
        ``classify_store`` writes for the same program and method.

    Returns
    -------
    int
        Insight rows written (three per newly classified feedback row: sentiment, topic,
        severity, less upstream rows that already exist under the same id).

    Notes
    -----
    Rows are identified ``"{feedback_id}:{task}:{model_version}"`` exactly as in
    ``classify_store``; feedback whose severity row for this version exists is skipped, and rows
    whose id already exists are not written again, so re-running writes nothing. Unlike
    ``classify_store`` no ``insights_model`` result is saved (results are replaced by delete,
    which only the embedded DuckDB store supports). Spark writes are not transactional: a job
    that fails part-way may have written some partitions; re-running completes it.
    """
    if getattr(spark_store, "kind", None) != "pyspark":
        raise StoreError(f"classify_spark needs a pyspark:// store, got {getattr(spark_store, 'kind', spark_store)!r}")
    from pyspark.sql import functions as F

    models = build_models(program, method)
    versions = models.versions
    method = models.method  # "auto" resolved on the driver, so executors build the same models
    session = spark_store.con._session
    fb = session.table("feedback").select("id", "text", "rating")
    ins = session.table("insights")
    done = ins.filter((F.col("task") == "severity") & (F.col("model_version") == versions["severity"]))
    todo = fb.join(done.select(F.col("feedback_id").alias("id")), on="id", how="left_anti")
    created = datetime.now(timezone.utc).replace(tzinfo=None)

    def classify_batches(batches):
        # Runs in the Python workers; ``program`` arrives pickled with this closure.
        models = _worker_models(program, method, versions)
        schema = pa.schema([(c, pa.float64() if c in ("score", "confidence") else pa.string()) for c in _OUT]
                           + [("created_at", pa.timestamp("us", tz="UTC"))])
        for batch in batches:
            if batch.num_rows == 0:
                continue
            frame = batch.to_pandas()
            rows = models.classify_frame(frame)
            cols = [pa.array(rows[c].astype(object if f.type == pa.string() else "float64").tolist(), f.type)
                    for c, f in zip(_OUT, schema)]
            cols.append(pa.array([created] * len(rows), pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")))
            yield pa.RecordBatch.from_arrays(cols, schema=schema)

    out = todo.mapInArrow(classify_batches, _DDL)
    # Upstream task rows (same sentiment or topic model in a new combination) may exist already.
    out = out.join(ins.select("id"), on="id", how="left_anti")
    before = session.table("insights").count()
    out.select(*_OUT, "created_at").write.insertInto("insights")
    session.catalog.refreshTable("insights")
    return int(session.table("insights").count() - before)

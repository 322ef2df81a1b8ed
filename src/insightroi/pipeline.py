"""The demo job: generate the simulated company, ingest it, then ``insightroi run`` on its store.

The stages themselves are :func:`insightroi.services.run_all`, the same calls a user's
``insightroi run`` makes; the demo only adds the world, its ground truth (saved in the store as
``demo:truth``) and the model validation on the world's hidden labels.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pyarrow.dataset as ds

from insightroi.demo import generate_world
from insightroi.ingest import ingest_path
from insightroi.insights import current_topic_version, validate_model
from insightroi.program import Program, load_program
from insightroi.services import run_all
from insightroi.store import Store, open_store

__all__ = ["DemoRun", "run_demo", "ingest_world", "validate_on_labels"]


@dataclass
class DemoRun:
    """What the main job produced: the bundle (report input), paths, and per-stage timings."""

    bundle: dict[str, Any]
    out_dir: Path
    store_url: str
    timings: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        """The ``--json`` output: KPI estimates next to the truth, and the ROI."""
        roi = self.bundle.get("roi") or {}
        return {
            "kpis": [
                {k: kpi.get(k) for k in ("name", "estimate", "ci_low", "ci_high", "truth", "relative", "p_value")}
                for kpi in self.bundle.get("kpis", [])
            ],
            "roi": {k: roi.get(k) for k in ("estimate", "ci_low", "ci_high", "truth", "conservative", "p_positive")},
            "store": self.store_url,
            "report": str(self.out_dir / "report.html") if (self.out_dir / "report.html").exists() else None,
            "failures": self.failures,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
        }


def run_demo(
    out_dir: str | Path = "demo",
    *,
    seed: int = 7,
    scale: str | int = "demo",
    store_url: str | None = None,
    progress: Callable[[str], None] | None = None,
    bad_rows: int = 0,
    bad_assignment: bool = False,
    classify_jobs: int = 1,
) -> DemoRun:
    """Generate the demo company, ingest it into a fresh store, and run every stage on it.

    Parameters
    ----------
    out_dir : path
        Where the world files, the DuckDB store, report.html and report.json go.
    seed, scale : int, str
        Passed to :func:`insightroi.demo.generate_world`.
    store_url : str, optional
        Defaults to a fresh DuckDB file ``out_dir/insightroi.duckdb`` (replaced if present).
    progress : callable, optional
        Called with each stage's name as it starts.
    bad_rows, bad_assignment : int, bool
        The generator's fault-injection switches (quarantine and SRM demonstrations).
    classify_jobs : int
        Worker processes for feedback classification (``classify_store``'s ``n_jobs``; -1 =
        one per core).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world_dir = out / "world"
    if world_dir.exists():
        shutil.rmtree(world_dir)
    if progress:
        progress("generate world")
    t0 = time.perf_counter()
    world = generate_world(world_dir, seed=seed, scale=scale, bad_rows=bad_rows, bad_assignment=bad_assignment)
    world_timing = {"generate world": time.perf_counter() - t0}
    if store_url is None:
        db = out / "insightroi.duckdb"
        for f in (db, db.with_suffix(".duckdb.wal")):
            f.unlink(missing_ok=True)
        store_url = f"duckdb:///{db}"
    program = load_program(world.program_path)
    failures: list[dict[str, str]] = []
    timings = dict(world_timing)
    with open_store(store_url) as store:
        t0 = time.perf_counter()
        if progress:
            progress("ingest")
        ingest_world(store, world, program)
        timings["ingest"] = time.perf_counter() - t0
        # The truth is saved in the store, so every later stage (and a later `insightroi roi` on
        # this store) can put the simulated company's true effects next to the estimates.
        truth = dict(world.truth or {})
        truth["demo_run"] = {"seed": seed, "scale": scale, "rows": getattr(world, "rows", {})}
        store.save_result("demo", "truth", truth)
        labels_path = getattr(world, "labels_path", None)
        validation = (lambda: validate_on_labels(store, program, labels_path)) if labels_path else None
        run = run_all(store, program, out_dir=out, classify_jobs=classify_jobs, validation=validation,
                      progress=progress)
    timings.update(run.timings)
    failures += run.failures
    bundle = run.bundle.to_report() if run.bundle is not None else {}
    bundle["timings_s"] = timings
    return DemoRun(bundle=bundle, out_dir=out, store_url=store_url, timings=timings, failures=failures)


def ingest_world(store: Store, world: Any, program: Program) -> dict[str, Any]:
    """Ingest every table of a generated demo world into ``store``; ``kind -> IngestReport``.

    Raises :class:`~insightroi.errors.IngestError` on a whole-file error (bad rows are
    quarantined as usual and do not raise).
    """
    reports = {}
    for kind, path in world.paths.items():
        report = ingest_path(store, kind, path, program=program)
        report.raise_for_errors()  # a directory run records a bad file and goes on; the demo must not
        reports[kind] = report
    return reports


# The hidden labels are the demo's stand-in for a human-reviewed sample; 200,000 of them pin
# macro-F1 and calibration to well under a percentage point, and reading all 15.5M of a
# 100M-order world into pandas made this stage the pipeline's largest memory user.
MAX_VALIDATION_LABELS = 200_000


def validate_on_labels(store: Store, program: Program, labels_path: str | Path) -> dict[str, Any]:
    """Topic and sentiment quality of the stored insights against (a seeded sample of) the world's hidden labels."""
    labels = ds.dataset(str(labels_path), format="parquet").to_table(columns=["id", "true_topics"])
    if labels.num_rows > MAX_VALIDATION_LABELS:
        keep = np.random.default_rng(0).choice(labels.num_rows, MAX_VALIDATION_LABELS, replace=False)
        labels = labels.take(np.sort(keep))
    lab = ibis.memtable(labels.to_pandas())
    version = current_topic_version(store)
    ins = store.table("insights")
    preds = ins.filter((ins.task == "topic") & (ins.model_version == version))
    merged = preds.join(lab, preds.feedback_id == lab.id).select(
        preds.label, preds.confidence, lab.true_topics).execute()
    true_primary = merged["true_topics"].map(_primary_topic)
    report = validate_model(merged["label"], true_primary, confidence=merged["confidence"])
    return report.to_dict() if hasattr(report, "to_dict") else dict(report)


def _primary_topic(value: Any) -> str:
    if isinstance(value, str):
        return value.split("|")[0] if value else "other"
    try:
        return str(value[0]) if len(value) else "other"
    except TypeError:
        return "other"

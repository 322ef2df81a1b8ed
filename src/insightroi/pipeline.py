"""The main job: every stage of the flow, in order, on one store (``insightroi demo``).

Batch convention (DESIGN.md, 6): a stage that fails is recorded in the bundle's ``failures``
with its error and the job goes on, so one broken stage never hides what the others found. A stage
whose module is not installed is recorded as skipped.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from insightroi.program import Program, load_program
from insightroi.store import Store, open_store

__all__ = ["DemoRun", "run_demo", "run_stages"]


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


class _Stages:
    """Runs named stages, timing each and recording failures instead of raising."""

    def __init__(self, progress: Callable[[str], None] | None):
        self.progress = progress or (lambda msg: None)
        self.timings: dict[str, float] = {}
        self.failures: list[dict[str, str]] = []

    def run(self, name: str, func: Callable[[], Any]) -> Any:
        self.progress(name)
        t0 = time.perf_counter()
        try:
            return func()
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("insightroi"):
                self.failures.append({"stage": name, "status": "skipped", "error": f"stage not available: {exc.name}"})
                return None
            self._record(name, exc)
        except Exception as exc:  # noqa: BLE001 - the batch convention: record and go on
            self._record(name, exc)
        finally:
            self.timings[name] = time.perf_counter() - t0
        return None

    def _record(self, name: str, exc: BaseException) -> None:
        self.failures.append(
            {"stage": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
             "traceback": traceback.format_exc(limit=6)}
        )


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
    from insightroi.demo import generate_world

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(progress)
    world_dir = out / "world"
    if world_dir.exists():
        shutil.rmtree(world_dir)
    world = stages.run(
        "generate world",
        lambda: generate_world(world_dir, seed=seed, scale=scale, bad_rows=bad_rows, bad_assignment=bad_assignment),
    )
    if world is None:
        raise RuntimeError(f"the demo world could not be generated: {stages.failures[-1]['error']}")
    if store_url is None:
        db = out / "insightroi.duckdb"
        for f in (db, db.with_suffix(".duckdb.wal")):
            f.unlink(missing_ok=True)
        store_url = f"duckdb:///{db}"
    program = load_program(world.program_path)
    truth = world.truth
    with open_store(store_url) as store:
        stages.run("ingest", lambda: ingest_world(store, world, program))
        bundle = run_stages(store, program, truth=truth, labels_path=getattr(world, "labels_path", None),
                            stages=stages, classify_jobs=classify_jobs)
        bundle["world"] = {"seed": seed, "scale": scale, "rows": getattr(world, "rows", {})}
        # The report shows what could not be computed, so failures go into the bundle first; a
        # report failure itself is recorded after the fact.
        bundle["failures"] = stages.failures
        bundle["timings_s"] = stages.timings
        stages.run("report", lambda: _write_report(bundle, out))
        store.save_result("bundle", "latest", bundle)
    (out / "report.json").write_text(json.dumps(bundle, indent=1, default=str, allow_nan=False), encoding="utf-8")
    return DemoRun(bundle=bundle, out_dir=out, store_url=store_url, timings=stages.timings, failures=stages.failures)


def ingest_world(store: Store, world: Any, program: Program) -> dict[str, Any]:
    """Ingest every table of a generated demo world into ``store``; ``kind -> IngestReport``.

    Raises :class:`~insightroi.errors.IngestError` on a whole-file error (bad rows are
    quarantined as usual and do not raise).
    """
    from insightroi.ingest import ingest_path

    reports = {}
    for kind, path in world.paths.items():
        report = ingest_path(store, kind, path, program=program)
        report.raise_for_errors()  # a directory run records a bad file and goes on; the demo must not
        reports[kind] = report
    return reports


def run_stages(
    store: Store,
    program: Program,
    *,
    truth: dict[str, Any] | None = None,
    labels_path: str | Path | None = None,
    stages: _Stages | None = None,
    classify_jobs: int = 1,
) -> dict[str, Any]:
    """Run classification, chain, experiment, ROI, quasi-experiments and monitoring on ``store``.

    Returns the report bundle (see the report stage); each stage adds its section.
    ``classify_jobs`` is ``classify_store``'s ``n_jobs``.
    """
    stages = stages or _Stages(None)
    truth = truth or None  # an empty truth file means no truth
    bundle: dict[str, Any] = {
        "program": {
            "name": program.program.name,
            "value_hypothesis": program.program.value_hypothesis,
            "currency": program.program.currency,
            "horizon_months": program.program.horizon_months,
        },
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "is_demo": truth is not None,
    }
    if truth and truth.get("window"):
        bundle["window"] = dict(truth["window"])

    # Model layer: classify, detect spikes (alerts become chain events), validate on known labels.
    stages.run("classify feedback", lambda: _classify(store, program, classify_jobs))
    alerts = stages.run("detect spikes", lambda: _detect(store, program))
    validation = None
    if labels_path is not None:
        validation = stages.run("validate model", lambda: _validate_on_labels(store, program, labels_path))
    insights = stages.run(
        "summarise insights",
        lambda: _insights_summary(store, program, alerts=alerts, validation=validation),
    )
    if insights is not None:
        bundle["insights"] = insights

    # Workflow layer: the decision chain.
    chain = stages.run("decision chain", lambda: _chain_summary(store, program))
    if chain is not None:
        bundle["chain"] = chain

    # Business layer: the randomized experiment, then money.
    analysis = stages.run("experiment", lambda: _analyze(store, program))
    if analysis is not None:
        bundle["experiment"] = analysis.experiment_section()
        bundle.setdefault(
            "window", {"start": analysis.window[0].isoformat(), "end": analysis.window[1].isoformat()}
        )
        rows = analysis.kpi_rows(program)
        for row in rows:
            t = (truth or {}).get("kpis", {}).get(row["name"]) or {}
            row["truth"] = t.get("ate")
            row["truth_relative"] = t.get("ate_relative")
        bundle["kpis"] = rows
        for name, result in analysis.results.items():
            store.save_result("experiment", name, result.to_dict())
        roi = stages.run("ROI", lambda: _roi(store, program, analysis, truth))
        if roi is not None:
            bundle["roi"] = roi

    quasi = stages.run("quasi-experiments", lambda: _quasi(store, program, truth))
    if quasi is not None:
        bundle["quasi"] = quasi.get("quasi")
        bundle["claims"] = quasi.get("claims", [])

    monitor = stages.run("monitor", lambda: _monitor(store, program))
    if monitor is not None:
        bundle["monitor"] = monitor
    return bundle


def _classify(store: Store, program: Program, jobs: int) -> Any:
    from insightroi.insights import classify_store

    return classify_store(store, program, n_jobs=jobs)


def _detect(store: Store, program: Program) -> Any:
    from insightroi.insights import detect_spikes, write_alerts

    alerts = detect_spikes(store, program)
    # The persistent holdout must not hear about its spikes: routing an alert to a control
    # family's owner would contaminate the comparison the ROI rests on.
    holdout = _holdout_units(store, program)
    routed = [a for a in alerts if a.sku_family not in holdout]
    write_alerts(store, routed)
    return routed


def _holdout_units(store: Store, program: Program) -> set[str]:
    e = program.experiment
    if e.unit != "sku_family":
        return set()
    a = store.table("assignments")
    rows = a.filter((a.experiment == e.name) & (a.unit_type == e.unit) & (a.arm == "control")).select("unit_id")
    return set(rows.execute().unit_id)


# The hidden labels are the demo's stand-in for a human-reviewed sample; 200,000 of them pin
# macro-F1 and calibration to well under a percentage point, and reading all 15.5M of a
# 100M-order world into pandas made this stage the pipeline's largest memory user.
MAX_VALIDATION_LABELS = 200_000


def _validate_on_labels(store: Store, program: Program, labels_path: str | Path) -> dict[str, Any]:
    """Topic and sentiment quality of the stored insights against (a seeded sample of) the world's hidden labels."""
    import ibis
    import numpy as np
    import pyarrow.dataset as ds

    from insightroi.insights import current_topic_version, validate_model

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


def _insights_summary(store: Store, program: Program, *, alerts: Any, validation: Any) -> dict[str, Any]:
    from insightroi.insights import insights_summary

    return insights_summary(store, program, alerts=alerts, validation=validation)


def _chain_summary(store: Store, program: Program) -> dict[str, Any]:
    from insightroi.chain import chain_summary

    # Reviewer disagreement belongs to the topic's owner, not to whoever got most of its alerts.
    return chain_summary(store, owners={t.topic: t.owner for t in program.taxonomy})


def _analyze(store: Store, program: Program) -> Any:
    from insightroi.experiments import analyze_experiment

    return analyze_experiment(store, program)


def _roi(store: Store, program: Program, analysis: Any, truth: dict[str, Any] | None) -> dict[str, Any]:
    from insightroi.experiments import treated_volumes
    from insightroi.experiments._correlation import effect_correlation
    from insightroi.roi import RoiVolumes, compute_roi

    volumes_by_kpi = treated_volumes(store, program, window=analysis.window)
    months = ((analysis.window[1] - analysis.window[0]).days + 1) / 30.4375
    feedback = volumes_by_kpi.pop("_feedback", {}).get("feedback", 0.0)
    volumes = RoiVolumes(
        kpis={k: float(v["denominator"]) for k, v in volumes_by_kpi.items()},
        feedback=float(feedback),
        months=months,
    )
    store.save_result("volumes", "latest", volumes.to_dict())
    # Only KPIs that a value pool prices enter the money; the others (e.g. workflow KPIs measured
    # per team rather than per randomized unit) have no effect estimate to draw from.
    priced = {pool.kpi for pool in program.value_pools}
    effects = {k: r for k, r in analysis.results.items() if k in priced}
    # KPIs sharing units and denominators have correlated errors; independent draws would
    # understate the ROI's uncertainty.
    correlation = effect_correlation(store, program, list(effects), window=analysis.window)
    result = compute_roi(program, effects, volumes, rng=20251, correlation=correlation)
    store.save_result("roi", "latest", result.to_dict())
    out = result.to_dict()
    if truth and truth.get("roi"):
        out["truth"] = truth["roi"].get("roi")
        out["truth_detail"] = truth["roi"]
    return out


def _quasi(store: Store, program: Program, truth: dict[str, Any] | None) -> dict[str, Any]:
    from insightroi.experiments._quasi_section import quasi_section

    return quasi_section(store, program, truth=truth)


def _monitor(store: Store, program: Program) -> dict[str, Any]:
    from insightroi.monitor import monitor_store

    section = monitor_store(store, program).to_dict()
    store.save_result("monitor", "latest", section)
    return section


def _write_report(bundle: dict[str, Any], out: Path) -> Any:
    from insightroi.report import write_report

    return write_report(bundle, out)

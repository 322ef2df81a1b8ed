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
        stages.run("ingest", lambda: _ingest_world(store, world, program))
        bundle = run_stages(store, program, truth=truth, labels_path=getattr(world, "labels_path", None),
                            stages=stages)
        bundle["world"] = {"seed": seed, "scale": scale, "rows": getattr(world, "rows", {})}
        stages.run("report", lambda: _write_report(bundle, out))
        bundle["failures"] = stages.failures
        bundle["timings_s"] = stages.timings
        store.save_result("bundle", "latest", bundle)
    (out / "report.json").write_text(json.dumps(bundle, indent=1, default=str, allow_nan=False), encoding="utf-8")
    return DemoRun(bundle=bundle, out_dir=out, store_url=store_url, timings=stages.timings, failures=stages.failures)


def _ingest_world(store: Store, world: Any, program: Program) -> dict[str, Any]:
    from insightroi.ingest import ingest_path

    reports = {}
    for kind, path in world.paths.items():
        reports[kind] = ingest_path(store, kind, path, program=program)
    return reports


def run_stages(
    store: Store,
    program: Program,
    *,
    truth: dict[str, Any] | None = None,
    labels_path: str | Path | None = None,
    stages: _Stages | None = None,
) -> dict[str, Any]:
    """Run classification, chain, experiment, ROI, quasi-experiments and monitoring on ``store``.

    Returns the report bundle (see the report stage); each stage adds its section.
    """
    stages = stages or _Stages(None)
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
    return bundle


def _write_report(bundle: dict[str, Any], out: Path) -> Any:
    from insightroi.report import write_report

    return write_report(bundle, out)

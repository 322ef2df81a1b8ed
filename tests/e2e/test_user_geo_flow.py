"""A geo rollout on a user's own data: three treated regions, synthetic control, through the CLI.

The program file says ``design = "synthetic_control"`` on regions; ``insightroi run`` runs every
stage. The planted effect on the primary KPI must lie in the interval, the design's own checks
(pre-period fit, placebo p) must reach the report, and the ROI must be computed from that result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import REFERENCE_DIR

sys.path.insert(0, str(Path(__file__).parent))
from userworld import geo_program, write_geo_world  # noqa: E402

pytestmark = pytest.mark.skipif(not (REFERENCE_DIR / "sentiment").exists(), reason="reference data not present")
BIN = Path(sys.executable).parent / "insightroi"


def _run(args, cwd, env):
    res = subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"insightroi {' '.join(args)}: {res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def geo_flow(tmp_path_factory):
    home = tmp_path_factory.mktemp("geo")
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("INSIGHTROI_STORE", None)
    env.pop("INSIGHTROI_PROGRAM", None)
    _run(["init", "."], home, env)
    prog = home / "insightroi.toml"
    prog.write_text(geo_program(prog.read_text(encoding="utf-8")), encoding="utf-8")
    world = write_geo_world(home / "data")
    for table, path in world.files.items():
        _run(["ingest", table, str(path)], home, env)
    run = json.loads(_run(["run", "--json"], home, env).stdout)
    return home, world, run, env


def test_run_completes_every_stage(geo_flow):
    _, _, run, _ = geo_flow
    assert run["failures"] == []
    assert list(run["stages"]) == ["classify", "detect", "insights", "chain", "analyze", "roi", "quasi", "monitor",
                                   "report"]


def test_synthetic_control_recovers_the_planted_effect(geo_flow):
    home, world, run, _ = geo_flow
    rows = {k["name"]: k for k in run["kpis"]}
    primary = rows["negative_reviews_per_1000_orders"]
    assert primary["method"] == "synthetic_control"
    planted = world.planted["negative_reviews_per_1000_orders"]
    assert primary["ci_low"] <= planted <= primary["ci_high"], (planted, primary["ci_low"], primary["ci_high"])
    assert primary["ci_high"] < 0  # -30% in three regions is found
    report = json.loads((home / "report" / "report.json").read_text())
    assert report["experiment"]["design"] == "synthetic_control"
    checks = {c["name"] for k in report["kpis"] if k["name"] == "negative_reviews_per_1000_orders"
              for c in k.get("checks", [])} | {c["name"] for c in report["experiment"]["checks"]}
    assert any("fit" in c for c in checks) and any("placebo" in c for c in checks), checks
    # The ROI rests on the synthetic-control effects and the treated regions' volumes.
    assert report["roi"]["conservative"] == run["roi"]["conservative"]
    effects = {e["kpi"] for e in report["roi"].get("effects", []) if isinstance(e, dict) and "kpi" in e}
    assert not effects or "tickets_per_1000_orders" in effects

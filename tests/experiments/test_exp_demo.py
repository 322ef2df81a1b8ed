"""analyze_experiment on the demo world (insightroi.demo): effects cover the truth, SRM fires on bad assignment.

Truth: truth.json's per-KPI ATE (the demo's potential outcomes). A 95% interval should cover it;
with a handful of KPIs a miss is possible by chance, so the test requires the primary KPI and at
least all but one of the comparable KPIs to cover.
"""

from __future__ import annotations

import json

import pytest

demo = pytest.importorskip("insightroi.demo")

from insightroi.experiments import analyze_experiment  # noqa: E402
from insightroi.program import load_program  # noqa: E402
from insightroi.store import open_store  # noqa: E402


def _build(tmp_path, bad: bool):
    from insightroi.pipeline import ingest_world

    out = tmp_path / ("bad" if bad else "ok")
    world = demo.generate_world(out, seed=0, scale="small", bad_assignment=bad)
    prog = load_program(world.program_path)
    st = open_store(f"duckdb:///{out}/s.duckdb")
    ingest_world(st, world, prog)
    return prog, st, json.loads((out / "truth.json").read_text())


@pytest.mark.slow
def test_demo_effects_cover_truth_and_checks_reported(tmp_path):
    prog, st, truth = _build(tmp_path, bad=False)
    res = analyze_experiment(st, prog)
    covered = []
    for name, r in res.results.items():
        ate = truth["kpis"].get(name, {}).get("ate")
        if ate is None or r.method == "not_estimable":
            continue
        covered.append(r.ci_low <= ate <= r.ci_high)
        if name == prog.experiment.primary_kpi:
            assert r.ci_low <= ate <= r.ci_high
    assert len(covered) >= 3 and sum(covered) >= len(covered) - 1
    assert res.checks[0].name == "sample_ratio_mismatch" and res.checks[0].status == "pass"
    st.close()


@pytest.mark.slow
def test_demo_bad_assignment_fires_srm(tmp_path):
    prog, st, _ = _build(tmp_path, bad=True)
    res = analyze_experiment(st, prog, kpis=[prog.experiment.primary_kpi], weekly=False)
    assert res.checks[0].status == "fail"
    st.close()

"""The demo world's CX KPIs (issue 22): the starter's CX block runs on tables the demo writes.

The demo program is the starter with the ``# >>> CX KPIs`` block active; the world writes the
block's user tables (``user_surveys``, ``user_customers``) with planted effects (demo/_cx.py), from
random streams of their own, so every built-in table keeps its bytes. Three checks:

- the built-in files are byte-identical with and without the CX tables (same seed);
- the truth (finite-population ATE, both policies from the same draws) equals a recount from the
  rows of the same world written with every family under each policy;
- on the demo world itself (seed 7, scale "demo", what ``insightroi demo`` runs), each CX KPI's
  95% interval covers its truth, and where an effect is planted it is far from zero and the
  interval excludes zero (a sign error or an effect lost in the join would fail). Measured (seed 7,
  CUPED as analyze runs it): NPS +0.143 [0.081, 0.205] vs truth +0.136 (control +0.156); CSAT
  top-2 +0.059 [0.023, 0.096] vs +0.068; stars +0.091 [0.028, 0.154] vs +0.053; repeat purchase
  +0.040 [0.024, 0.056] vs +0.044; 90-day churn -0.0145 [-0.0212, -0.0079] vs -0.0137; mean /
  median resolution hours +1.2 [-0.77, 3.17] / +0.079 [-0.82, 0.98] vs 0 (not planted).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from insightroi.demo import TABLE_KINDS, generate_world
from insightroi.experiments import analyze_experiment
from insightroi.pipeline import ingest_world
from insightroi.program import load_program, starter_program_text
from insightroi.store import open_store

CX_KPIS = ("nps_score", "csat_top2", "star_rating_avg", "mean_resolution_hours", "median_resolution_hours",
           "repeat_purchase_rate", "churn_90d")
PLANTED = ("nps_score", "csat_top2", "star_rating_avg", "repeat_purchase_rate", "churn_90d")


def _read(path: Path) -> pd.DataFrame:
    if path.is_dir():
        return pd.concat([pq.read_table(p).to_pandas() for p in sorted(path.glob("*.parquet"))], ignore_index=True)
    return pq.read_table(path).to_pandas()


def _sha(path: Path) -> dict[str, str]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def test_cx_tables_leave_every_builtin_file_byte_identical(tmp_path):
    with_cx = generate_world(tmp_path / "cx", seed=3, scale="tiny")
    plain_program = tmp_path / "plain.toml"
    plain_program.write_text(starter_program_text(), encoding="utf-8")  # the block still commented out
    plain = generate_world(tmp_path / "plain", seed=3, scale="tiny", program=plain_program)
    assert set(plain.paths) == set(TABLE_KINDS)
    assert set(with_cx.paths) == {*TABLE_KINDS, "user_surveys", "user_customers"}
    for kind in (*TABLE_KINDS, "labels"):
        path = plain.labels_path if kind == "labels" else plain.paths[kind]
        other = with_cx.labels_path if kind == "labels" else with_cx.paths[kind]
        assert _sha(path) == _sha(other), kind
    t_cx, t_plain = with_cx.truth["kpis"], plain.truth["kpis"]
    for name, truth in t_plain.items():
        if name not in CX_KPIS:
            assert t_cx[name] == truth, name
    # Without the block the program has no CX KPIs: nothing else was added to the truth.
    assert not set(t_plain) & set(CX_KPIS) and set(CX_KPIS) <= set(t_cx)
    assert with_cx.rows["user_surveys"] > 50 and with_cx.rows["user_customers"] > 200


def _cx_ratios(world) -> dict[str, float]:
    """Each survey / customer KPI recounted from the rows one world wrote, over the analysis window."""
    lo = pd.Timestamp(world.truth["window"]["start"], tz="UTC")
    hi = pd.Timestamp(world.truth["window"]["end"], tz="UTC") + pd.Timedelta(days=1)
    s = _read(world.paths["user_surveys"])
    s = s[(s.answered_at >= lo) & (s.answered_at < hi)]
    nps = s.nps.dropna()
    csat = s.csat.dropna()
    c = _read(world.paths["user_customers"])
    c = c[(c.first_order_at >= lo) & (c.first_order_at < hi)]
    within = pd.Timedelta(days=90)
    return {
        "nps_score": float(np.select([nps >= 9, nps <= 6], [1.0, -1.0], 0.0).mean()),
        "csat_top2": float((csat >= 4).mean()),
        "repeat_purchase_rate": float(((c.repeat_order_at - c.first_order_at) <= within).mean()),
        "churn_90d": float(((c.churned_at - c.first_order_at) <= within).mean()),
    }


def test_truth_is_a_recount_of_both_policies_files(tmp_path):
    obs = generate_world(tmp_path / "obs", seed=5, scale="tiny")
    r_t = _cx_ratios(generate_world(tmp_path / "t", seed=5, scale="tiny", policy="treatment"))
    r_c = _cx_ratios(generate_world(tmp_path / "c", seed=5, scale="tiny", policy="control"))
    for name in r_t:
        truth = obs.truth["kpis"][name]
        assert truth["ate"] == pytest.approx(r_t[name] - r_c[name], rel=1e-9, abs=1e-12), name
        assert truth["control_value"] == pytest.approx(r_c[name], rel=1e-9), name
        assert truth["planted"] is True
    for name in ("mean_resolution_hours", "median_resolution_hours"):
        assert obs.truth["kpis"][name]["ate"] == 0.0 and obs.truth["kpis"][name]["planted"] is False
    # The planted directions: the program raises NPS, CSAT and repeat purchase, lowers churn.
    assert r_t["nps_score"] > r_c["nps_score"] and r_t["csat_top2"] > r_c["csat_top2"]
    assert r_t["repeat_purchase_rate"] > r_c["repeat_purchase_rate"] and r_t["churn_90d"] < r_c["churn_90d"]


@pytest.fixture(scope="module")
def demo_cx(demo_world, tmp_path_factory):
    """The demo world (seed 7, scale "demo"), ingested as ``insightroi demo`` does, CX KPIs analysed."""
    world = demo_world("demo", 7)
    program = load_program(world.program_path)
    with open_store(f"duckdb:///{tmp_path_factory.mktemp('cx') / 's.duckdb'}") as st:
        reports = ingest_world(st, world, program)
        landed = {k: st.count(k) for k in ("user_surveys", "user_customers")}
        res = analyze_experiment(st, program, kpis=list(CX_KPIS))
    return world, reports, landed, res


def test_demo_ingests_the_cx_tables_through_the_user_table_path(demo_cx):
    world, reports, landed, _ = demo_cx
    for kind in ("user_surveys", "user_customers"):
        rep = reports[kind]
        assert rep.quarantined == 0 and rep.duplicates == 0, kind
        assert landed[kind] == world.rows[kind] > 10_000, kind


def test_demo_cx_kpi_intervals_cover_the_planted_truth(demo_cx):
    world, _, _, res = demo_cx
    truth = world.truth["kpis"]
    for name in CX_KPIS:
        r, t = res.results[name], truth[name]["ate"]
        lo, hi = r.ci
        assert np.isfinite([r.estimate, lo, hi]).all() and r.se > 0, name
        assert lo <= t <= hi, (name, r.estimate, r.ci, t)
    for name in PLANTED:
        r, t = res.results[name], truth[name]["ate"]
        # Planted well away from zero (relative to the interval), and detected with the right sign:
        # an interval built around a lost effect (wrong arm, pre-period shift) would miss the truth.
        assert abs(t) > 0.25 * (r.ci[1] - r.ci[0]), (name, t, r.ci)
        assert np.sign(r.ci[0]) == np.sign(r.ci[1]) == np.sign(t), (name, r.ci, t)
    for name in ("mean_resolution_hours", "median_resolution_hours"):
        assert truth[name]["ate"] == 0.0 and truth[name]["planted"] is False
    # The truth file says what each truth is.
    assert json.loads(world.truth_path.read_text())["kpis"]["nps_score"]["estimand"].startswith("finite-population")

"""Covariate selection before the fit (``[experiment] select_covariates``, issue 20).

Simulated worlds with three periods per unit (history, pre-period, experiment), as the analysis
sees them: the selection reads history -> pre-period only, the effect is then estimated on the
experiment with the chosen set. The selection uses data measured before assignment, so the
estimator must keep its coverage and its A/A size; where the candidates are pure noise it must
keep CUPED; where one carries signal it must find it and beat CUPED.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from insightroi.experiments import analyze_experiment
from insightroi.experiments._analysis import kpi_effect
from insightroi.experiments._covselect import select_covariates
from insightroi.program import parse_program, starter_program_text

from helpers.simstore import simulate_experiment_tables, write_tables

BASE, EFFECT = 0.05, -0.2
TRUTH = EFFECT * BASE
TEXT = starter_program_text().replace("end = 2026-03-31", "end = 2025-09-30")
KPI = parse_program(TEXT).kpi("negative_reviews_per_1000_orders")
CANDIDATES = ["sessions_pre", "noise1_pre", "noise2_pre"]


def _world(runs: int, n: int, effect: float, *, signal: float, seed: int) -> dict[str, np.ndarray]:
    """``runs`` experiments of ``n`` units, arrays (runs, n), periods hist / pre / post.

    A unit's rate is ``BASE exp(u_i)`` (normalised so the population rate is BASE), seen through
    Poisson counts on ~150 orders a period, so the pre-period KPI measures ``u`` noisily.
    "sessions" measures ``u`` with precision growing with ``signal`` (0: pure noise); "noise1"
    and "noise2" never carry information about the KPI.
    """
    rng = np.random.default_rng(seed)
    shape = (runs, n)
    sd_u = 0.5
    u = rng.normal(0, sd_u, shape)
    vol = 150 * np.exp(rng.normal(0, 0.3, shape))
    treated = rng.random(shape) < 0.5
    out = {"treated": treated}
    for period in ("hist", "pre", "post"):
        m = np.where(treated, 1 + effect, 1.0) if period == "post" else 1.0
        rate = BASE * np.exp(u - sd_u**2 / 2)
        den = rng.poisson(vol).astype(float)
        out[f"num_{period}"] = rng.poisson(den * rate * m).astype(float)
        out[f"den_{period}"] = den
        out[f"sessions_{period}"] = rng.poisson(40 * np.exp(signal * u + rng.normal(0, 0.3, shape))).astype(float)
        for j in (1, 2):
            out[f"noise{j}_{period}"] = rng.poisson(40 * np.exp(rng.normal(0, 0.5, shape))).astype(float)
    return out


def _frames(w, s: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    arm = np.where(w["treated"][s], "treatment", "control")
    later = {"pre": "hist", "post": "pre"}

    def frame(period: str) -> pd.DataFrame:
        before = later[period]
        return pd.DataFrame({"arm": arm, "num": w[f"num_{period}"][s], "den": w[f"den_{period}"][s],
                             "num_pre": w[f"num_{before}"][s], "den_pre": w[f"den_{before}"][s],
                             **{c: w[f"{c.removesuffix('_pre')}_{before}"][s] for c in CANDIDATES}})

    return frame("pre"), frame("post")


def _run(w, runs: int) -> dict[str, np.ndarray]:
    keys = ("est", "lo", "hi", "se", "cuped_est", "cuped_se", "cuped_lo", "cuped_hi", "picked")
    out = {k: np.empty(runs) for k in keys}
    for s in range(runs):
        lagged, post = _frames(w, s)
        choice = select_covariates(lagged, CANDIDATES)
        cuped, _ = kpi_effect(post, KPI)
        r, _ = kpi_effect(post, KPI, covariates=choice.covariates) if choice.covariates else (cuped, None)
        out["est"][s], out["se"][s] = r.estimate / 1000, r.se / 1000
        out["lo"][s], out["hi"][s] = (c / 1000 for c in r.ci)
        out["cuped_est"][s], out["cuped_se"][s] = cuped.estimate / 1000, cuped.se / 1000
        out["cuped_lo"][s], out["cuped_hi"][s] = (c / 1000 for c in cuped.ci)
        out["picked"][s] = "sessions_pre" in choice.covariates
    return out


@pytest.fixture(scope="module")
def mixed():
    # A covariate of middling signal: the rule picks it in some runs and not in others, where a
    # choice that leaked the outcome would show as under-coverage or bias.
    runs = 400
    return runs, _run(_world(runs, 200, EFFECT, signal=0.8, seed=25), runs)


def test_selection_keeps_coverage_and_is_unbiased(mixed):
    runs, o = mixed
    picked = o["picked"].mean()
    assert 0.3 < picked < 0.97, picked
    coverage = float(np.mean((o["lo"] <= TRUTH) & (TRUTH <= o["hi"])))
    # 400 runs: 95% +- 2.6 binomial standard errors (1.1 points each).
    assert 0.922 <= coverage <= 0.978, coverage
    # Paired with CUPED on the same runs (which a fixed set keeps valid): the choice loses no coverage.
    cuped_cov = float(np.mean((o["cuped_lo"] <= TRUTH) & (TRUTH <= o["cuped_hi"])))
    assert coverage >= cuped_cov - 0.01, (coverage, cuped_cov)
    sem = o["est"].std(ddof=1) / math.sqrt(runs)
    assert abs(o["est"].mean() - TRUTH) < 3 * sem, (o["est"].mean(), TRUTH, sem)
    # The chosen sets cost no precision against CUPED on the same runs, and the reported
    # standard error is the spread of the estimates.
    assert o["est"].var(ddof=1) / o["cuped_est"].var(ddof=1) < 0.97
    assert o["se"].mean() == pytest.approx(o["est"].std(ddof=1), rel=0.1)


def test_selection_keeps_the_aa_size():
    runs = 400
    o = _run(_world(runs, 200, 0.0, signal=0.8, seed=22), runs)
    rejected = float(np.mean((o["lo"] > 0) | (o["hi"] < 0)))
    # 400 runs: 5% +- 2.6 binomial standard errors.
    assert 0.022 <= rejected <= 0.078, rejected


def test_pure_noise_covariates_leave_cuped_and_signal_is_found():
    runs = 150
    noise = _world(runs, 80, EFFECT, signal=0.0, seed=23)
    picks = [select_covariates(_frames(noise, s)[0], CANDIDATES) for s in range(runs)]
    cuped_share = np.mean([c.method == "cuped" for c in picks])
    assert cuped_share >= 0.97, cuped_share
    assert "selected CUPED" in picks[0].reason and "CUPED (kpi_pre)" in picks[0].criteria
    # 400 units: enough for the lagged evidence to clear the threshold in most worlds (92% here).
    strong = _world(40, 400, EFFECT, signal=1.0, seed=24)
    found = [select_covariates(_frames(strong, s)[0], CANDIDATES) for s in range(40)]
    assert np.mean(["sessions_pre" in c.covariates for c in found]) >= 0.85
    assert np.mean(["noise1_pre" in c.covariates or "noise2_pre" in c.covariates for c in found]) <= 0.1
    c = next(c for c in found if c.method == "regression_adjusted")
    assert c.ratio_vs_cuped < 0.9 and c.z_vs_cuped >= 1.645 and "selected RA (kpi_pre, sessions_pre" in c.reason


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from insightroi.store import open_store

    path = tmp_path_factory.mktemp("sel") / "s.duckdb"
    with open_store(f"duckdb:///{path}") as st:
        write_tables(st, simulate_experiment_tables(parse_program(TEXT), n_units=150, effect=-0.3, seed=31))
    return path


def test_analyze_records_the_choice_and_its_reason(store, tmp_path):
    from typer.testing import CliRunner

    from insightroi.cli import app
    from insightroi.store import open_store

    extra = ('covariates = ["orders", "sessions"]\nselect_covariates = true\n'
             '[experiment.covariates_by_kpi]\nrevenue_per_sku_family = ["sessions"]\n')
    text = TEXT.replace("[experiment]\n", "[experiment]\n" + extra.split("[experiment.covariates_by_kpi]")[0])
    text = text.rstrip("\n") + "\n\n[experiment.covariates_by_kpi]\nrevenue_per_sku_family = [\"sessions\"]\n"
    prog = parse_program(text)
    kpis = ["negative_reviews_per_1000_orders", "revenue_per_sku_family"]
    with open_store(f"duckdb:///{store}") as st:
        res = analyze_experiment(st, prog, kpis=kpis, weekly=False)
    for name in kpis:
        r = res.results[name]
        sel = r.extra["covariate_selection"]
        check = next(c for c in r.diagnostics if c.name == "covariate_adjustment")
        assert check.message.startswith(sel["reason"])
        # This world has no data before the pre-period: the pre-period's halves are the lag.
        assert "pre-period halves" in sel["reason"]
        assert r.method == ("cuped_ratio" if sel["method"] == "cuped" else sel["method"])
    # The per-KPI list replaced the global one for revenue: orders was never a candidate there.
    rev = res.results["revenue_per_sku_family"].extra["covariate_selection"]["criteria"]
    assert all("orders" not in label for label in rev) and any("sessions_pre" in label for label in rev)
    assert len(rev) == 2
    path = tmp_path / "program.toml"
    path.write_text(text)
    out = CliRunner().invoke(app, ["analyze", "--program", str(path), "--store", f"duckdb:///{store}",
                                   "--kpi", kpis[0]], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "selected" in out.output
    js = CliRunner().invoke(app, ["analyze", "--program", str(path), "--store", f"duckdb:///{store}",
                                  "--kpi", kpis[0], "--json"])
    assert js.exit_code == 0, js.output
    row = json.loads(js.output)["kpis"][0]
    check = next(c for c in row["checks"] if c["name"] == "covariate_adjustment")
    assert check["message"].startswith("selected ")
    plan = CliRunner().invoke(app, ["plan", "--program", str(path), "--store", f"duckdb:///{tmp_path}/none.duckdb"],
                              env={"COLUMNS": "400"})
    assert plan.exit_code == 0, plan.output
    assert ("Covariates: orders, sessions; revenue_per_sku_family: sessions (selected per KPI on data before "
            "assignment") in " ".join(plan.output.split())

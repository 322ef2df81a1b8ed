"""Multi-covariate regression adjustment and CUPAC in ``analyze`` (issue 20).

A simulated world with a known effect, per unit (no store, so a thousand seeds stay cheap):
each unit has a negative-review *rate* ``r_i = base * exp(u_i + v_i) / E[exp(u + v)]`` and an
order volume independent of it, so the ratio of sums estimates ``E[r] = base`` and the true
absolute effect of the treatment (rates times ``1 + EFFECT`` in the experiment window) is
``EFFECT * base``. A unit's few pre-period events measure its rate noisily; a covariate measure
("sessions", Poisson in ``exp(v_i)``) pins down ``v_i`` far better, and a second one ("tickets")
raises the rate above a threshold (a step a linear adjustment cannot use fully, a tree can).
So CUPED's one covariate leaves variance that the covariates, and CUPAC's model, remove.

Also: the estimate equals statsmodels OLS on the same per-unit data, and the whole path runs
on a store through ``analyze_experiment`` and the CLI.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from insightroi.experiments import analyze_experiment
from insightroi.experiments._analysis import covariate_design, cupac_predictions, kpi_effect
from insightroi.program import parse_program, starter_program_text
from insightroi.stats import MultiRegressionAdjusted, regression_adjusted

from helpers.simstore import simulate_experiment_tables, write_tables

BASE, EFFECT = 0.05, -0.2
TRUTH = EFFECT * BASE
TEXT = starter_program_text().replace("end = 2026-03-31", "end = 2025-09-30")
RATIO_KPI = parse_program(TEXT).kpi("negative_reviews_per_1000_orders")
MEAN_KPI = parse_program(TEXT).kpi("revenue_per_sku_family")
COVS = ["sessions_pre", "tickets_pre"]


def _world(seeds: int, n: int, effect: float, *, seed: int) -> dict[str, np.ndarray]:
    """Per-unit data for ``seeds`` independent experiments of ``n`` units, as (seeds, n) arrays.

    Three periods of equal length, ``t = -1`` (history, before the pre-period), ``0`` (pre-period)
    and ``1`` (experiment). A unit's rate is ``exp(u_i) * g_i^t``: a lasting level and a trend
    ``g_i`` that is steep for units with many tickets (``z_i > 0.5``), the leading indicator a
    team would feed CUPAC. "sessions" measures the level, "tickets" ``z_i``; the pre-period
    KPI sees neither trend nor, precisely, the level.
    """
    rng = np.random.default_rng(seed)
    shape = (seeds, n)
    u, z = rng.normal(0, 0.5, shape), rng.normal(0, 1, shape)
    g = np.where(z > 0.5, 1.8, 0.9)
    # Normalised so that the experiment period's mean rate is BASE (Phi(-0.5) of units trend up).
    p_up = 0.5 * math.erfc(0.5 / math.sqrt(2))
    norm = math.exp(0.5**2 / 2) * (p_up * 1.8 + (1 - p_up) * 0.9)
    vol = 300 * np.exp(rng.normal(0, 0.3, shape))
    treated = rng.random(shape) < 0.5
    out = {"treated": treated}
    for period, t in (("hist", -1), ("pre", 0), ("post", 1)):
        m = np.where(treated, 1 + effect, 1.0) if t == 1 else 1.0
        rate = BASE * np.exp(u) * g**t / norm
        den = rng.poisson(vol).astype(float)
        out[f"num_{period}"] = rng.poisson(den * rate * m).astype(float)
        out[f"den_{period}"] = den
        out[f"sessions_{period}"] = rng.poisson(40 * np.exp(u)).astype(float)
        out[f"tickets_{period}"] = rng.poisson(4 * np.exp(0.8 * z)).astype(float)
    return out


def _frame(w: dict[str, np.ndarray], s: int, *, mean_kpi: bool = False) -> pd.DataFrame:
    num = w["num_post"][s]
    return pd.DataFrame({
        "arm": np.where(w["treated"][s], "treatment", "control"),
        "num": num, "den": np.ones_like(num) if mean_kpi else w["den_post"][s],
        "num_pre": w["num_pre"][s], "den_pre": np.ones_like(num) if mean_kpi else w["den_pre"][s],
        "sessions_pre": w["sessions_pre"][s], "tickets_pre": w["tickets_pre"][s],
    })


def _cupac_column(w: dict[str, np.ndarray], s: int) -> np.ndarray:
    # As the analysis trains it: the history period's KPI parts and covariates predict the
    # pre-period's linearised KPI; the model is then applied to the pre-period's values.
    num, den = w["num_pre"][s], w["den_pre"][s]
    r = num.sum() / den.sum()
    target = r + (num - r * den) / den.mean()
    cols = ("num", "den", "sessions", "tickets")
    train = np.column_stack([w[f"{c}_hist"][s] for c in cols])
    apply = np.column_stack([w[f"{c}_pre"][s] for c in cols])
    return cupac_predictions(train, target, apply)


def _run(w, seeds, method: str):
    est, se, lo, hi, cuped_se, cuped_est = (np.empty(seeds) for _ in range(6))
    for s in range(seeds):
        d = _frame(w, s)
        kw = {"covariates": COVS}
        if method == "cupac":
            d["pred"] = _cupac_column(w, s)
            kw["prediction"] = "pred"
        ab, _ = kpi_effect(d, RATIO_KPI, **kw)
        assert ab.method == method
        # Back to the rate's own unit (the KPI is per 1000 orders).
        est[s], se[s], (lo[s], hi[s]) = ab.estimate / 1000, ab.se / 1000, (c / 1000 for c in ab.ci)
        cuped_se[s], cuped_est[s] = ab.extra["cuped_se"] / 1000, ab.extra["cuped_estimate"] / 1000
    return est, se, lo, hi, cuped_se, cuped_est


@pytest.fixture(scope="module")
def ra_runs():
    seeds = 1000
    w = _world(seeds, 400, EFFECT, seed=1)
    # The CUPED analysis of the same data, to check the figures the adjusted result reports.
    direct = [kpi_effect(_frame(w, s), RATIO_KPI)[0] for s in range(0, seeds, 50)]
    return seeds, _run(w, seeds, "regression_adjusted"), direct


def test_regression_adjustment_is_unbiased_covers_and_beats_cuped(ra_runs):
    seeds, (est, se, lo, hi, c_se, c_est), direct = ra_runs
    assert [r.method for r in direct] == ["cuped_ratio"] * len(direct)
    np.testing.assert_allclose([r.se / 1000 for r in direct], c_se[::50], rtol=1e-12)
    np.testing.assert_allclose([r.estimate / 1000 for r in direct], c_est[::50], rtol=1e-12)
    sem = est.std(ddof=1) / math.sqrt(seeds)
    assert abs(est.mean() - TRUTH) < 3 * sem, (est.mean(), TRUTH, sem)
    coverage = float(np.mean((lo <= TRUTH) & (TRUTH <= hi)))
    assert 0.93 <= coverage <= 0.97, coverage
    # The reported standard error is the spread of the estimates over seeds.
    assert se.mean() == pytest.approx(est.std(ddof=1), rel=0.08)
    # Same seeds, same units: the covariates carry signal CUPED's one pre-period value lacks.
    ratio_empirical = est.var(ddof=1) / c_est.var(ddof=1)
    ratio_reported = float(np.mean(se**2) / np.mean(c_se**2))
    assert ratio_empirical < 0.75 and ratio_reported < 0.75, (ratio_empirical, ratio_reported)
    assert ratio_reported == pytest.approx(ratio_empirical, rel=0.15)


def test_aa_rejection_rate_is_the_nominal_five_percent():
    seeds = 600
    w = _world(seeds, 400, 0.0, seed=2)
    est, se, lo, hi, *_ = _run(w, seeds, "regression_adjusted")
    rejected = float(np.mean((lo > 0) | (hi < 0)))
    # 2.8 binomial standard errors around 5% at 600 runs.
    assert 0.025 <= rejected <= 0.075, rejected


def test_cupac_is_unbiased_covers_and_beats_regression_adjustment():
    seeds = 200
    w = _world(seeds, 400, EFFECT, seed=3)
    est, se, lo, hi, cuped_se, _ = _run(w, seeds, "cupac")
    ra_est, ra_se, *_ = _run(w, seeds, "regression_adjusted")
    sem = est.std(ddof=1) / math.sqrt(seeds)
    assert abs(est.mean() - TRUTH) < 3 * sem, (est.mean(), TRUTH, sem)
    coverage = float(np.mean((lo <= TRUTH) & (TRUTH <= hi)))
    # 200 runs (a model fit each): the band is 95% +- 2.6 binomial standard errors.
    assert 0.91 <= coverage <= 0.99, coverage
    # The prediction joins the linear covariates, so it cannot cost precision; the trend that
    # "tickets" drives multiplies the level, an interaction the linear fit misses.
    assert np.mean(se**2) / np.mean(ra_se**2) < 0.995
    assert np.mean(se**2) / np.mean(cuped_se**2) < 0.75


def test_estimate_equals_statsmodels_ols_with_centred_interacted_covariates():
    sm = pytest.importorskip("statsmodels.api")
    w = _world(1, 3000, EFFECT, seed=4)
    for mean_kpi in (True, False):
        d = _frame(w, 0, mean_kpi=mean_kpi)
        kpi = MEAN_KPI if mean_kpi else RATIO_KPI
        ab, rel = kpi_effect(d, kpi, covariates=COVS)
        design, names = covariate_design(d, COVS)
        assert names == ["kpi_pre", *COVS]
        (yc, xc), (yt, xt) = design["control"], design["treatment"]
        if mean_kpi:
            # A mean KPI is not transformed: the regression's data are the raw per-unit values.
            np.testing.assert_array_equal(np.concatenate([yc, yt]),
                                          np.concatenate([d.num[d.arm == a] for a in ("control", "treatment")]))
        y = np.concatenate([yc, yt])
        X = np.vstack([xc, xt])
        treat = np.r_[np.zeros(yc.size), np.ones(yt.size)]
        # Lin (2013): the treatment indicator, the centred covariates and their interactions.
        Xc = X - X.mean(axis=0)
        Z = sm.add_constant(np.column_stack([treat, Xc, treat[:, None] * Xc]))
        fit = sm.OLS(y, Z).fit(cov_type="HC1")
        assert ab.estimate / kpi.scale == pytest.approx(fit.params[1], rel=1e-8, abs=1e-12)
        # HC1 from fourth moments of the same data equals statsmodels exactly; the analysis'
        # arm-wise variance (Lin 2013) is the same quantity asymptotically.
        hc1 = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, xc, fourth_moments=True),
                                  MultiRegressionAdjusted.from_arrays(yt, xt, fourth_moments=True), cov_type="HC1",
                                  interacted=True)
        assert hc1.estimate == pytest.approx(fit.params[1], rel=1e-8)
        assert hc1.se == pytest.approx(fit.bse[1], rel=1e-8)
        assert ab.se / kpi.scale == pytest.approx(fit.bse[1], rel=0.03)
        assert rel.estimate == pytest.approx(fit.params[1] / yc.mean(), rel=1e-8)


def test_constant_and_duplicate_covariates_are_left_out_not_fatal():
    w = _world(1, 500, EFFECT, seed=5)
    d = _frame(w, 0).assign(flat=7.0, twice=lambda x: 2 * x.sessions_pre)
    ab, _ = kpi_effect(d, RATIO_KPI, covariates=["sessions_pre", "flat", "twice"])
    assert ab.method == "regression_adjusted" and ab.extra["covariates"] == ["kpi_pre", "sessions_pre"]
    note = next(c for c in ab.diagnostics if c.name == "covariate_adjustment")
    assert "flat" in note.message and "twice" in note.message
    # Under sequential inference the always-valid CUPED interval stands, with a note.
    seq, _ = kpi_effect(d, RATIO_KPI, covariates=["sessions_pre"], sequential_tuning=5000.0)
    assert seq.method == "cuped_ratio"
    assert any(c.name == "covariate_adjustment" and c.status == "skip" for c in seq.diagnostics)


@pytest.fixture(scope="module")
def store_runs(tmp_path_factory):
    from insightroi.store import open_store

    path = tmp_path_factory.mktemp("cov") / "s.duckdb"
    base = parse_program(TEXT)
    st = open_store(f"duckdb:///{path}")
    write_tables(st, simulate_experiment_tables(base, n_units=150, effect=-0.3, seed=11))
    out = {}
    kpis = ["negative_reviews_per_1000_orders", "revenue_per_sku_family"]
    for key, extra in (("cuped", ""), ("ra", 'covariates = ["orders", "sessions"]\n'),
                       ("cupac", 'covariates = ["orders", "sessions"]\ncupac = true\n')):
        prog = parse_program(TEXT.replace("[experiment]\n", "[experiment]\n" + extra))
        out[key] = analyze_experiment(st, prog, kpis=kpis, weekly=False)
    st.close()
    return out, path


def test_analyze_on_a_store_labels_the_method_and_reports_the_reduction(store_runs):
    out, _ = store_runs
    for key, method in (("ra", "regression_adjusted"), ("cupac", "cupac")):
        for name, r in out[key].results.items():
            c = out["cuped"].results[name]
            assert r.method == method, (name, r.method)
            assert r.extra["cuped_se"] == pytest.approx(c.se, rel=1e-12)
            assert r.extra["variance_reduction_vs_cuped"] == pytest.approx(1 - r.se**2 / c.se**2, rel=1e-9)
            assert "orders_pre" in r.extra["covariates"] or name == "negative_reviews_per_1000_orders"
            assert math.isfinite(r.estimate) and r.ci[0] < r.estimate < r.ci[1]
    # The history before the pre-period is empty in this world: CUPAC cross-fits in the pre-period.
    r = out["cupac"].results["negative_reviews_per_1000_orders"]
    assert r.extra["cupac_training"].startswith("cross-fitted")


def test_analyze_cli_shows_the_method(store_runs, tmp_path):
    from typer.testing import CliRunner

    from insightroi.cli import app

    _, path = store_runs
    prog = tmp_path / "program.toml"
    prog.write_text(TEXT.replace("[experiment]\n", '[experiment]\ncovariates = ["orders", "sessions"]\n'))
    res = CliRunner().invoke(app, ["analyze", "--program", str(prog), "--store", f"duckdb:///{path}",
                                   "--kpi", "revenue_per_sku_family"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "reg. adj." in res.output
    js = CliRunner().invoke(app, ["analyze", "--program", str(prog), "--store", f"duckdb:///{path}",
                                  "--kpi", "revenue_per_sku_family", "--json"])
    row = json.loads(js.output)["kpis"][0]
    assert row["method"] == "regression_adjusted"


def test_abn_arms_are_adjusted_like_the_pooled_result_and_holm_corrected(tmp_path):
    from insightroi.metrics import unit_measures_expr
    from insightroi.stats import holm
    from insightroi.store import open_store

    base = parse_program(TEXT)
    tables = simulate_experiment_tables(base, n_units=150, effect=-0.3, seed=12)
    a = tables["assignments"].copy()
    treated = a.arm == "treatment"
    a.loc[treated, "arm"] = np.where(a.loc[treated, "unit_id"].str[-1].isin(list("02468")), "daily", "weekly")
    prog = parse_program(TEXT.replace("[experiment]\n", '[experiment]\ncovariates = ["orders", "sessions"]\n'))
    kpi = prog.kpi("negative_reviews_per_1000_orders")
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        write_tables(st, {**tables, "assignments": a})
        res = analyze_experiment(st, prog, kpis=[kpi.name], weekly=False)
        units = unit_measures_expr(st, prog, ["negative_reviews", "orders", "sessions"],
                                   window=res.window, pre_window=res.pre_window).execute()
    arms = res.arms[kpi.name]
    assert sorted(arms) == ["daily", "weekly"]
    units = units.sort_values("unit_id").assign(num=lambda x: x.negative_reviews, den=lambda x: x.orders,
                                                num_pre=lambda x: x.negative_reviews_pre, den_pre=lambda x: x.orders_pre)
    for v, r in arms.items():
        assert r.method == "regression_adjusted"
        sub = units[units.arm.isin(["control", v])].assign(arm=lambda x: np.where(x.arm == "control", "control",
                                                                                    "treatment"))
        direct, _ = kpi_effect(sub, kpi, covariates=["orders_pre", "sessions_pre"])
        assert (r.estimate, r.se) == pytest.approx((direct.estimate, direct.se), rel=1e-10)
    p_adj = holm([arms[v].p_value for v in ("daily", "weekly")])
    assert [arms[v].extra["p_adjusted"] for v in ("daily", "weekly")] == pytest.approx(list(p_adj), rel=1e-12)
    assert all(r.extra["ci_adjusted"][0] < r.ci[0] for r in arms.values())

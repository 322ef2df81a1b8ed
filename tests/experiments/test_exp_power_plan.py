"""``insightroi plan`` plans with the CUPED variance reduction ``analyze`` then uses (issue 15).

A user's plan said a 15% change was "not detectable in any duration up to 156 weeks" and the
analysis, CUPED-adjusted by the pre-period KPI, then found it at p < 0.001: the power table
ignored the lasting unit levels CUPED removes. Here SKU families (the randomization units of a
cluster design) keep their own conversion rate, so a unit's KPI in the experiment window is
strongly correlated with its pre-period KPI, and the plain plan cannot reach 15% at any
duration while the CUPED plan can.

The worlds are written as traffic rows only (one row per family and day, ratio KPI
``conversion_rate = conversions / sessions``): ``helpers.simstore`` gives every family the same
conversion propensity (no lasting levels to exploit) and writes an order row per order, too
slow for 40 worlds. Every world is its own experiment (name, salt, families) in one DuckDB
file, so one store serves the plan and the 40 analyses.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from insightroi.experiments import analyze_experiment, assign, power_table
from insightroi.program import parse_program, starter_program_text
from insightroi.stats import (
    RatioRegressionAdjusted,
    cuped_residual_variance,
    mde_from_se,
    power_from_se,
    ratio_window_moments,
    two_arm,
)
from insightroi.store import open_store

KPI = "conversion_rate"
START = date(2025, 7, 1)
PRE_DAYS = 84
HORIZON_WEEKS = 12
N_UNITS = 100
N_WORLDS = 40
EFFECT = 0.15
SESSIONS_PER_DAY = 12.0  # ~4 conversions per family-week: counting noise matters
BASE_RATE = 0.05
LEVEL_SHAPE = 8.0  # gamma shape of a family's lasting rate: CV 1 / sqrt(8) ~ 0.35

TEXT = (starter_program_text()
        .replace('name = "theme-alerts-2025"', 'name = "world00"')
        .replace('salt = "theme-alerts-2025"', 'salt = "salt00"')
        .replace("start = 2025-07-01", f"start = {START.isoformat()}")
        .replace("pre_period_days = 90", f"pre_period_days = {PRE_DAYS}"))


def _program(world: int, weeks: int):
    base = parse_program(TEXT)
    e = base.experiment.model_copy(update={"name": f"world{world:02d}", "salt": f"salt{world:02d}",
                                           "end": START + timedelta(days=7 * weeks - 1)})
    return base.model_copy(update={"experiment": e})


def _world(world: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Traffic and assignments of one world; ``EFFECT`` multiplies treated rates after START."""
    fams = [f"W{world:02d}F{j:03d}" for j in range(N_UNITS)]
    arms = assign(fams, f"salt{world:02d}", 0.5, strata=["all"] * N_UNITS)  # exact 50/50
    volume = rng.gamma(4.0, SESSIONS_PER_DAY / 4.0, N_UNITS)
    level = BASE_RATE * rng.gamma(LEVEL_SHAPE, 1 / LEVEL_SHAPE, N_UNITS)
    days = PRE_DAYS + 7 * HORIZON_WEEKS
    sessions = rng.poisson(volume[:, None] * np.ones(days))
    post = np.arange(days) >= PRE_DAYS
    mult = np.where((arms == "treatment")[:, None] & post[None, :], 1 + EFFECT, 1.0)
    conversions = rng.binomial(sessions, np.minimum(level[:, None] * mult, 1.0))
    first = START - timedelta(days=PRE_DAYS)
    dates = np.array([first + timedelta(days=d) for d in range(days)])
    traffic = pd.DataFrame({
        "id": [f"W{world:02d}d{i}" for i in range(N_UNITS * days)], "date": np.tile(dates, N_UNITS),
        "sku": np.repeat([f"{f}-1" for f in fams], days), "sku_family": np.repeat(fams, days), "region": "north",
        "sessions": sessions.ravel(), "conversions": conversions.ravel(),
    })
    assignments = pd.DataFrame({
        "id": [f"W{world:02d}a{j}" for j in range(N_UNITS)], "experiment": f"world{world:02d}",
        "unit_type": "sku_family", "unit_id": fams, "arm": arms, "assigned_at": pd.Timestamp(START),
    })
    return traffic, assignments, {"arms": arms, "sessions": sessions, "conversions": conversions}


def _realised_rho(raw: dict, weeks: int) -> float:
    """Correlation of a family's linearised KPI in the experiment window with its pre-period KPI.

    Computed here with numpy from the simulated counts, independently of the stats code the
    plan uses; within arm, so the planted effect does not enter.
    """
    pre, win = slice(0, PRE_DAYS), slice(PRE_DAYS, PRE_DAYS + 7 * weeks)
    xs, ys = [], []
    for arm in ("control", "treatment"):
        sel = raw["arms"] == arm
        for out, period in ((ys, win), (xs, pre)):
            num = raw["conversions"][sel, period].sum(axis=1).astype(float)
            den = raw["sessions"][sel, period].sum(axis=1).astype(float)
            out.append((num - num.sum() / den.sum() * den) / den.mean())
    return float(np.corrcoef(np.concatenate(xs), np.concatenate(ys))[0, 1])


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "worlds.duckdb"
    rng = np.random.default_rng(20250701)
    built = [_world(w, rng) for w in range(N_WORLDS)]
    with open_store(f"duckdb:///{path}") as st:
        with st.transaction():
            st.append("traffic", pd.concat([b[0] for b in built], ignore_index=True))
            st.append("assignments", pd.concat([b[1] for b in built], ignore_index=True))
        # Plan on world 0's pre-period, as a user would before launch; the planted effect
        # only starts at START, so the plan never sees it.
        first = power_table(_program(0, HORIZON_WEEKS), st, kpis=[KPI])[0]
        weeks = first["weeks_needed_cuped"]
        assert weeks is not None and weeks <= HORIZON_WEEKS, first
        plan = power_table(_program(0, weeks), st, kpis=[KPI])[0]
    return path, plan, weeks, [b[2] for b in built]


def test_plain_plan_is_hopeless_and_cuped_plan_is_not(worlds):
    _, plan, weeks, _ = worlds
    assert plan["units_treatment"] == plan["units_control"] == N_UNITS // 2  # families, not traffic rows
    assert plan["weeks_needed"] is None  # the user's complaint, reproduced without CUPED
    assert "not detectable in any duration" in plan["verdict"] and plan["verdict"].startswith("you need")
    assert plan["weeks_needed_cuped"] == weeks and plan["planned_weeks"] == weeks
    assert plan["power_at_planned_end_cuped"] >= 0.8 > plan["power_at_planned_end"]
    assert plan["mde_at_planned_end_cuped"] <= EFFECT < plan["mde_at_planned_end"]


def test_cuped_mde_shrinks_by_sqrt_one_minus_rho_squared(worlds):
    _, plan, weeks, raw = worlds
    ratio = plan["mde_at_planned_end_cuped"] / plan["mde_at_planned_end"]
    # The plan's own rho: MDE is proportional to the standard error, which CUPED scales by this.
    assert ratio == pytest.approx(math.sqrt(1 - plan["rho"] ** 2), rel=1e-6)
    # rho measured on the data the plan never saw: the experiment windows of all 40 worlds
    # (4000 families, so its own sampling error is ~0.005). The plan estimates rho from
    # world 0's 100 families alone, and sqrt(1 - rho^2) then has a sampling SE of ~0.04 at
    # rho ~0.85 (over six other seeds the gap was 0.00-0.075, 0.03 here); allow 0.1 (2.5 SEs).
    rho_data = float(np.mean([_realised_rho(r, weeks) for r in raw]))
    assert abs(ratio - math.sqrt(1 - rho_data**2)) < 0.1, (ratio, rho_data)
    assert ratio < 0.7  # high pre/post correlation: CUPED roughly halves the MDE here
    print(f"\nrho plan {plan['rho']:.3f} (adjacent pre windows {plan['rho_adjacent']:.3f}), data {rho_data:.3f}; "
          f"MDE plain {plan['mde_at_planned_end']:.3f}, CUPED {plan['mde_at_planned_end_cuped']:.3f}, "
          f"ratio {ratio:.3f} vs sqrt(1 - rho_data^2) {math.sqrt(1 - rho_data**2):.3f}")


def test_planned_weeks_detect_the_effect_at_the_planned_power(worlds):
    path, plan, weeks, _ = worlds
    hits, reductions = 0, []
    with open_store(f"duckdb:///{path}") as st:
        for w in range(N_WORLDS):
            prog = _program(w, weeks)
            # conversion_rate is not the primary KPI: no regression-to-the-mean pass, half the time.
            res = analyze_experiment(st, prog, kpis=[KPI], weekly=False).results[KPI]
            assert res.method == "cuped_ratio"
            reductions.append(res.extra["variance_reduction"])
            hits += res.p_value < prog.experiment.alpha and res.estimate > 0
    rate = hits / N_WORLDS
    planned = plan["power_at_planned_end_cuped"]
    # 99% binomial band for 40 worlds, plus 0.08 for the plan's own sampling error (its
    # variance and rho come from one world's 100 families: see the MDE test).
    tol = 2.576 * math.sqrt(planned * (1 - planned) / N_WORLDS) + 0.08
    print(f"\ndetected {hits}/{N_WORLDS} = {rate:.2f} in {weeks} weeks; planned power with CUPED {planned:.3f}, "
          f"without {plan['power_at_planned_end']:.3f}; mean realised variance reduction {np.mean(reductions):.3f}")
    assert abs(rate - planned) <= tol, (rate, planned, tol)
    assert rate > plan["power_at_planned_end"] + 0.25  # the plain plan understates what analyze finds


def test_plan_cli_prints_both_columns_and_the_cuped_note(worlds, tmp_path):
    from typer.testing import CliRunner

    from insightroi.cli import app

    path, plan, weeks, _ = worlds
    prog_file = tmp_path / "insightroi.toml"
    end = START + timedelta(days=7 * weeks - 1)
    prog_file.write_text(TEXT.replace("end = 2026-03-31", f"end = {end.isoformat()}"))
    out = CliRunner().invoke(app, ["plan", "--program", str(prog_file), "--store", f"duckdb:///{path}"],
                             terminal_width=250)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "CUPED" in text and "plain" in text and "rho" in text
    assert f"- {KPI}: you need {weeks} weeks" in text and "without CUPED: not detectable" in text
    assert "The analysis (insightroi analyze) will use CUPED" in text


def test_units_are_assigned_families_even_without_pre_period_rows(tmp_path):
    # Ten families have no traffic at all: they are still randomization units the analysis
    # counts (with zeros), so the plan counts them and puts their zeros in the variance.
    traffic, assignments, _ = _world(0, np.random.default_rng(7))
    silent = set(assignments.unit_id[:10])
    with open_store(f"duckdb:///{tmp_path / 'silent.duckdb'}") as st:
        with st.transaction():
            st.append("traffic", traffic[~traffic.sku_family.isin(silent)])
            st.append("assignments", assignments)
        row = power_table(_program(0, 6), st, kpis=[KPI])[0]
    assert row["units_treatment"] + row["units_control"] == N_UNITS
    assert row["units_treatment"] == int((assignments.arm == "treatment").sum())
    assert row["rho"] is not None and 0 < row["mde_at_planned_end_cuped"] < row["mde_at_planned_end"]


def test_plan_variance_is_the_analysis_variance():
    # Both arms the same units: two_arm's CUPED variance of the difference is then exactly
    # 2 (var_post - cov^2 / var_pre) / n, the per-unit residual the plan scales by 1/n_t + 1/n_c.
    rng = np.random.default_rng(3)
    level = rng.gamma(8.0, 1 / 8.0, 200)
    den, den_pre = rng.poisson(80, 200) + 1.0, rng.poisson(160, 200) + 1.0
    num, num_pre = rng.poisson(0.05 * level * den), rng.poisson(0.05 * level * den_pre)
    stat = RatioRegressionAdjusted.from_arrays(num, den, num_pre, den_pre)
    v_post, v_pre, cov = ratio_window_moments(stat)
    resid, rho = cuped_residual_variance(v_post, v_pre, cov)
    res = two_arm(stat, stat, cuped=True)
    assert res.se**2 == pytest.approx(2 * resid / 200, rel=1e-9)
    assert 1 - res.extra["variance_reduction"] == pytest.approx(1 - rho**2, rel=1e-9)


def test_t_reference_power_matches_statsmodels():
    # A cluster design is analysed with a t over clusters; with 8 + 8 clusters the normal
    # would promise 80% power where the t gives less.
    from statsmodels.stats.power import TTestIndPower

    se = math.sqrt(2 / 8)  # standardized effect of 1 sd, 8 clusters per arm
    assert power_from_se(1.0, se, df=14) == pytest.approx(TTestIndPower().power(1.0, 8, 0.05), rel=1e-6)
    d = TTestIndPower().solve_power(nobs1=8, alpha=0.05, power=0.8)
    assert mde_from_se(se, df=14) == pytest.approx(d, rel=1e-5)
    assert mde_from_se(se) < mde_from_se(se, df=14)


def test_t_reference_power_of_a_large_effect_is_one_not_nan():
    # scipy's noncentral t is NaN in its far lower tail (noncentrality >= ~15 at 58 df); a plan
    # with 60 units and a KPI measured that precisely printed "nan%" and called it undetectable.
    from statsmodels.stats.power import TTestIndPower

    powers = [power_from_se(nc, 1.0, df=58) for nc in (2.0, 5.0, 10.0, 15.0, 20.0, 38.0, 100.0)]
    assert all(math.isfinite(p) for p in powers) and powers == sorted(powers)
    assert powers[-3:] == [1.0, 1.0, 1.0]
    # 2 SE at 58 df (30 + 30 units): statsmodels' power for d = 2 / sqrt(2 / 30)
    assert powers[0] == pytest.approx(TTestIndPower().power(2.0 * math.sqrt(2 / 30), 30, 0.05), rel=1e-6)

"""Switchback designs through analyze_experiment / `insightroi analyze`, on real DuckDB stores.

The simulated world: 8 weeks (56 daily blocks) of orders, each order draws a negative review
(rating <= 2, written within 20 minutes) with probability 5% under control and 3.5% under
treatment (relative effect -30%, truth -15 negative reviews per 1,000 orders). Carryover: in the
first 8 hours of a block whose arm differs from the previous block's, orders still behave as
under the previous arm. The program's burn-in is 8 hours.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from insightroi.errors import EstimationError
from insightroi.experiments import (
    analyze_experiment,
    analyze_switchback,
    block_arms,
    switchback_kpi_effect,
    switchback_schedule,
)
from insightroi.metrics import block_measures_expr
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

KPI = "negative_reviews_per_1000_orders"
START, DAYS = datetime(2025, 7, 1), 56
BASE, EFFECT, CARRY_H, BURN_H = 0.05, -0.3, 8, 8
TRUTH = BASE * EFFECT * 1000  # -15 per 1,000 orders
TEXT = (starter_program_text()
        .replace('design = "cluster"', f'design = "switchback"\nblock_hours = 24\nburn_in_hours = {BURN_H}')
        .replace("end = 2026-03-31", "end = 2025-08-25"))


def _program(text=TEXT):
    return parse_program(text)


def _tables(arms, *, effect=EFFECT, carry_hours=CARRY_H, orders_per_day=3000, seed=0):
    """Orders and review feedback for one block series (arms per day)."""
    rng = np.random.default_rng(seed)
    z = np.asarray(arms) == "treatment"
    n_day = rng.poisson(orders_per_day, DAYS)
    day = np.repeat(np.arange(DAYS), n_day)
    n = day.size
    sec = rng.integers(0, 86400, n)
    switched = np.ones(DAYS, dtype=bool)
    switched[1:] = z[1:] != z[:-1]
    prev = np.concatenate([[False], z[:-1]])  # before the experiment: control
    carried = switched[day] & (sec < carry_hours * 3600)
    eff_arm = np.where(carried, prev[day], z[day])
    neg = rng.random(n) < BASE * np.where(eff_arm, 1 + effect, 1.0)
    pos = ~neg & (rng.random(n) < 0.1)  # positive reviews: must not count
    times = np.datetime64(START, "us") + (day * 86400 + sec).astype("timedelta64[s]")
    orders = pd.DataFrame({"id": [f"o{i}" for i in range(n)], "sku_family": "F1", "order_time": times,
                           "revenue": 20.0, "margin": 5.0, "quantity": 1})
    rev = neg | pos
    k = int(rev.sum())
    feedback = pd.DataFrame({
        "id": [f"f{i}" for i in range(k)], "source": "review", "sku_family": "F1",
        "event_time": times[rev] + rng.integers(0, 1200, k).astype("timedelta64[s]"),
        "rating": np.where(neg[rev], 1.0, 5.0), "text": np.where(neg[rev], "broke", "great"),
    })
    return {"orders": orders, "feedback": feedback}


def _write(path, tables, arms=None, *, iso=True):
    st = open_store(f"duckdb:///{path}")
    with st.transaction():
        for name, df in tables.items():
            st.append(name, df)
        if arms is not None:
            ids = [(START + timedelta(days=b)).isoformat() if iso else str(b) for b in range(len(arms))]
            st.append("assignments", pd.DataFrame({
                "id": [f"a{b}" for b in range(len(arms))], "experiment": "theme-alerts-2025", "unit_type": "time_block",
                "unit_id": ids, "arm": arms, "assigned_at": START}))
    return st


@pytest.fixture(scope="module")
def effect_store(tmp_path_factory):
    # A schedule drawn independently of the program's hash, so reading the assignments matters.
    arms = np.where(np.random.default_rng(11).random(DAYS) < 0.5, "treatment", "control")
    path = tmp_path_factory.mktemp("sb") / "sb.duckdb"
    tables = _tables(arms, seed=3)
    st = _write(path, tables, arms)
    yield st, arms, tables, path
    st.close()


def test_store_estimate_recovers_effect_and_burn_in_removes_carryover(effect_store):
    st, arms, _, _ = effect_store
    prog = _program()
    res = analyze_experiment(st, prog, kpis=[KPI])
    assert res.design == "switchback" and res.unit == "time_block"
    assert res.n_treatment == int((arms == "treatment").sum()) and res.n_treatment + res.n_control == DAYS
    r = res.results[KPI]
    assert r.method == "switchback_ri" and r.n == DAYS
    assert r.ci_low <= TRUTH <= r.ci_high and r.p_value < 0.01
    assert r.extra["relative_ci_low"] <= EFFECT <= r.extra["relative_ci_high"]
    assert r.extra["arm_source"] == "assignments" and r.extra["p_adjusted"] >= r.p_value
    # Without the burn-in the previous arm's 8 hours leak into switched blocks: biased toward 0.
    r0 = analyze_switchback(st, prog, kpis=[KPI], burn_in_hours=0).results[KPI]
    assert r0.estimate == pytest.approx(r.extra["estimate_without_burn_in"], rel=1e-9)
    assert r0.estimate - r.estimate > 0.15 * abs(TRUTH)
    assert abs(r0.estimate) < abs(TRUTH)
    carry0 = next(c for c in r0.diagnostics if c.name == "carryover")
    carry = next(c for c in r.diagnostics if c.name == "carryover")
    assert carry0.status == "warn" and carry.status == "pass"
    names = [c.name for c in res.checks]
    assert names == ["sample_ratio_mismatch", "block_assignments", "carryover"]
    assert res.checks[0].status == "pass" and "blocks" in res.checks[0].message
    json.dumps(res.to_dict(), allow_nan=False)
    json.dumps(res.kpi_rows(), allow_nan=False)
    print(f"\nstore: estimate {r.estimate:.2f} (CI {r.ci_low:.2f}, {r.ci_high:.2f}) vs truth {TRUTH:.1f}; "
          f"burn-in 0: {r0.estimate:.2f}; carryover interaction {carry0.statistic:.2f} -> {carry.statistic:.2f}")


def test_backend_block_sums_equal_pandas(effect_store):
    st, arms, tables, _ = effect_store
    # An excluded week and integer-index assignments go through the same pass.
    prog = _program(TEXT.replace("exclude_windows = []", "exclude_windows = [[2025-07-10, 2025-07-16]]"))
    z = arms == "treatment"
    switched = np.ones(DAYS, dtype=bool)
    switched[1:] = z[1:] != z[:-1]
    got = block_measures_expr(st, prog, ["orders", "negative_reviews", "reviews"],
                              switched_blocks=np.flatnonzero(switched)).execute().set_index("block")

    def sums(df, col, mask):
        t = df[col]
        sec = (t - pd.Timestamp(START)).dt.total_seconds()
        blk = (sec // 86400).astype(int)
        keep = (sec >= 0) & (blk < DAYS) & ~((t >= "2025-07-10") & (t < "2025-07-17"))
        burn = switched[blk.clip(0, DAYS - 1)] & (sec - blk * 86400 < BURN_H * 3600)
        kept = df[keep & ~burn & mask].groupby(blk).size()
        burned = df[keep & burn & mask].groupby(blk).size()
        return kept.reindex(got.index, fill_value=0), burned.reindex(got.index, fill_value=0)

    o, f = tables["orders"], tables["feedback"]
    for m, df, col, mask in [("orders", o, "order_time", np.ones(len(o), bool)),
                             ("negative_reviews", f, "event_time", (f.rating <= 2).to_numpy()),
                             ("reviews", f, "event_time", np.ones(len(f), bool))]:
        kept, burned = sums(df, col, mask)
        np.testing.assert_array_equal(got[m].to_numpy(), kept.to_numpy(dtype=float))
        np.testing.assert_array_equal(got[f"{m}_burn"].to_numpy(), burned.to_numpy(dtype=float))
    assert set(range(9, 16)).isdisjoint(got.index)  # the excluded days have no block rows
    res = analyze_switchback(st, prog, kpis=[KPI])
    assert res.results[KPI].n == DAYS - 7


def test_hash_schedule_and_aa_store(tmp_path):
    prog = _program()
    sched = switchback_schedule(START, START + timedelta(days=DAYS), block_hours=24, salt=prog.experiment.salt)
    arms = np.array([b["arm"] for b in sched])
    st = _write(tmp_path / "aa.duckdb", _tables(arms, effect=0.0, seed=8))  # no assignments: hash schedule
    got, source = block_arms(st, prog)
    assert source == "hash" and list(got) == list(arms)
    res = analyze_experiment(st, prog, kpis=[KPI])
    r = res.results[KPI]
    assert r.extra["arm_source"] == "hash" and r.p_value > prog.experiment.alpha
    assert r.ci_low <= 0 <= r.ci_high
    assert {c.name: c.status for c in res.checks}["block_assignments"] == "pass"
    # Arms of units for this experiment and none of blocks: the experiment that ran randomized
    # units, and hashed block arms would estimate nothing that happened. The check says so.
    st.append("assignments", pd.DataFrame({
        "id": ["u1", "u2"], "experiment": prog.experiment.name, "unit_type": "sku_family", "unit_id": ["F1", "F2"],
        "arm": ["treatment", "control"], "assigned_at": START}))
    check = {c.name: c for c in analyze_experiment(st, prog, kpis=[KPI]).checks}["block_assignments"]
    assert check.status == "fail" and "holds 2 assignments of units" in check.message
    assert "set design = 'cluster'" in check.message
    st.close()


def test_integer_block_ids_and_window_override(tmp_path):
    arms = np.where(np.arange(DAYS) % 3 == 0, "treatment", "control")
    st = _write(tmp_path / "int.duckdb", _tables(arms, seed=4, orders_per_day=500), arms, iso=False)
    prog = _program()
    got, source = block_arms(st, prog)
    assert source == "assignments" and list(got) == list(arms)
    res = analyze_switchback(st, prog, kpis=[KPI], window=(date(2025, 7, 1), date(2025, 7, 28)))
    assert res.n_treatment + res.n_control == 28 and res.results[KPI].n == 28
    with pytest.raises(EstimationError, match="segment"):
        analyze_experiment(st, prog, segments=["region"])
    st.close()


def _block_sums(rng, z, effect, carry_frac, per_block=3000, burn_frac=BURN_H / 24):
    """Vectorised block sums (series x blocks): kept and burn-in parts, with carryover."""
    s, nb = z.shape
    switched = np.ones_like(z)
    switched[:, 1:] = z[:, 1:] != z[:, :-1]
    prev = np.concatenate([np.zeros((s, 1), bool), z[:, :-1]], axis=1)
    day_noise = rng.gamma(200.0, 1 / 200.0, (s, nb))  # 7% day-to-day rate variation
    rate = lambda arm: BASE * day_noise * np.where(arm, 1 + effect, 1.0)  # noqa: E731
    d_burn = rng.poisson(per_block * burn_frac, (s, nb))
    d_keep = rng.poisson(per_block * (1 - burn_frac), (s, nb))
    carried_arm = np.where(switched, prev, z)
    # the first carry_frac of a switched block behaves like the previous arm; carry_frac = burn_frac here
    assert carry_frac == burn_frac
    n_burn = rng.binomial(d_burn, rate(carried_arm))
    n_keep = rng.binomial(d_keep, rate(z))
    return n_keep, d_keep, n_burn, d_burn, switched


def test_simulated_aa_rate_coverage_and_burn_in_bias():
    rng = np.random.default_rng(2024)
    s = 300
    z = rng.random((s, DAYS)) < 0.5
    # A/A: no effect, no carryover.
    n_keep, d_keep, n_burn, d_burn, sw = _block_sums(rng, z, 0.0, BURN_H / 24)
    num = np.where(sw, n_keep, n_keep + n_burn)
    den = np.where(sw, d_keep, d_keep + d_burn)
    p = np.array([switchback_kpi_effect(num[i], den[i], z[i], scale=1000, n_permutations=400, seed=i)[0].p_value
                  for i in range(s)])
    aa_rate = float(np.mean(p < 0.05))
    assert 0.02 <= aa_rate <= 0.09
    # Effect with carryover: burn-in dropped vs everything kept.
    n_keep, d_keep, n_burn, d_burn, sw = _block_sums(rng, z, EFFECT, BURN_H / 24)
    num = np.where(sw, n_keep, n_keep + n_burn)
    den = np.where(sw, d_keep, d_keep + d_burn)
    est, cover = [], []
    est0 = []
    for i in range(s):
        r = switchback_kpi_effect(num[i], den[i], z[i], scale=1000, n_permutations=1, seed=i)[0]
        est.append(r.estimate)
        cover.append(r.ci_low <= TRUTH <= r.ci_high)
        est0.append(switchback_kpi_effect(n_keep[i] + n_burn[i], d_keep[i] + d_burn[i], z[i], scale=1000,
                                          n_permutations=1, seed=i)[0].estimate)
    bias, bias0, coverage = np.mean(est) - TRUTH, np.mean(est0) - TRUTH, float(np.mean(cover))
    assert abs(bias) < 0.3  # Monte Carlo se of the mean is about 0.07
    assert bias0 > 0.2 * abs(TRUTH)  # expected about +5 (a third of the effect)
    assert 0.91 <= coverage <= 0.98
    print(f"\nsimulation ({s} series of {DAYS} daily blocks): A/A rate {aa_rate:.3f}; mean estimate "
          f"{np.mean(est):.2f} (bias {bias:+.2f}) with burn-in, {np.mean(est0):.2f} (bias {bias0:+.2f}) without; "
          f"95% CI coverage {coverage:.3f}")


def test_analyze_cli_on_switchback_program(effect_store):
    from typer.testing import CliRunner

    from insightroi.cli import app

    st, _, _, path = effect_store
    st.close()
    prog_file = path.parent / "insightroi.toml"
    prog_file.write_text(TEXT)
    out = CliRunner().invoke(app, ["analyze", "--store", f"duckdb:///{path}", "--program", str(prog_file)])
    assert out.exit_code == 0, out.output
    assert "switchback on time_block" in out.output and KPI in out.output
    assert "carryover" in out.output and "sample_ratio_mismatch" in out.output
    with open_store(f"duckdb:///{path}") as s2:
        saved = s2.load_result(f"experiment:{KPI}")
        tickets = s2.load_result("experiment:tickets_per_1000_orders")  # no tickets: 0 in every block
        alerts = s2.load_result("experiment:alert_adoption_rate")  # no alerts: nothing to divide by
    assert saved["method"] == "switchback_ri" and saved["extra"]["p_adjusted"] is not None
    assert saved["ci"][0] <= TRUTH <= saved["ci"][1]
    assert tickets["method"] == "switchback_ri" and tickets["estimate"] == 0
    assert alerts["method"] == "not_estimable"

"""Design (hash assignment, switchback schedule) and the checks.

The SRM check's test is :func:`insightroi.stats.srm_test`, compared with gbstats' ``check_srm``
figures in tests/stats (``reference_values.toml``); here the check must carry its figures and
set its status from them.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from insightroi.errors import DataError
from insightroi.experiments import (
    assign,
    balance_check,
    contamination_check,
    hash_uniform,
    novelty_check,
    pre_period_check,
    regression_to_mean_check,
    srm_check,
    switchback_schedule,
)
from insightroi.stats import Ratio, Result, srm_test


def test_srm_check_reports_the_srm_test():
    c = srm_check([1000, 1100], [0.5, 0.5])
    assert (c.statistic, c.p_value) == srm_test([1000, 1100], [0.5, 0.5])[:2]
    assert c.status == "pass"  # p = 0.029 (gbstats), above the 0.001 threshold
    c = srm_check([600, 400], [0.5, 0.5])
    assert (c.statistic, c.p_value) == srm_test([600, 400], [0.5, 0.5])[:2]
    assert c.details["expected"] == [500.0, 500.0]
    assert c.status == "fail" and "mismatch" in c.message  # p = 2.5e-10
    assert srm_check([0, 0], [0.5, 0.5]).status == "skip"


def test_assignment_is_deterministic_salted_and_near_share():
    ids = [f"F{i:05d}" for i in range(20000)]
    a1 = assign(ids, "s1", 0.3)
    assert (a1 == assign(ids, "s1", 0.3)).all()
    assert abs((a1 == "treatment").mean() - 0.3) < 0.01  # Bernoulli: SE 0.0032
    a2 = assign(ids, "s2", 0.3)
    # A new salt gives an independent assignment: agreement = 0.3^2 + 0.7^2 = 0.58.
    assert abs((a1 == a2).mean() - 0.58) < 0.015
    u = hash_uniform(ids, "s1")
    assert 0 <= u.min() and u.max() < 1
    # Uniformity: Kolmogorov-Smirnov against U(0, 1).
    from scipy import stats

    assert stats.kstest(u, "uniform").pvalue > 0.001
    with pytest.raises(DataError):
        assign(ids, "s", 1.5)


def test_stratified_assignment_balances_every_stratum():
    rng = np.random.default_rng(0)
    ids = [f"u{i}" for i in range(1000)]
    strata = rng.choice(["a", "b", "c", "d"], 1000)
    arms = assign(ids, "salt", 0.5, strata=strata)
    for s in "abcd":
        m = strata == s
        assert abs((arms[m] == "treatment").sum() - 0.5 * m.sum()) <= 1


def test_switchback_schedule():
    blocks = switchback_schedule(datetime(2025, 1, 1), datetime(2025, 1, 11), block_hours=12, salt="sb")
    assert len(blocks) == 20 and blocks[0]["start"] == datetime(2025, 1, 1)
    assert blocks == switchback_schedule(datetime(2025, 1, 1), datetime(2025, 1, 11), block_hours=12, salt="sb")
    assert {b["arm"] for b in blocks} == {"treatment", "control"}


def test_balance_check_flags_imbalance():
    rng = np.random.default_rng(1)
    c = {"x": rng.normal(0, 1, 500)}
    ok = balance_check(c, {"x": rng.normal(0, 1, 500)})
    assert ok.status == "pass"
    bad = balance_check(c, {"x": rng.normal(0.4, 1, 500)})
    assert bad.status == "fail" and bad.statistic > 0.25


def test_pre_period_check():
    rng = np.random.default_rng(2)
    m = rng.poisson(500, 400).astype(float)
    y = rng.binomial(m.astype(int), 0.05).astype(float)
    same = pre_period_check(Ratio.from_arrays(y[:200], m[:200]), Ratio.from_arrays(y[200:], m[200:]))
    assert same.status == "pass"
    shifted = pre_period_check(Ratio.from_arrays(y[:200], m[:200]), Ratio.from_arrays(y[200:] * 1.5, m[200:]))
    assert shifted.status == "fail"


def test_regression_to_mean_detects_a_spike():
    rng = np.random.default_rng(3)
    m = rng.poisson(300, 100).astype(float)
    hist = rng.binomial(m.astype(int), 0.05).astype(float)
    calm = rng.binomial(m.astype(int), 0.05).astype(float)
    spike = rng.binomial(m.astype(int), 0.08).astype(float)
    assert regression_to_mean_check(Ratio.from_arrays(hist, m), Ratio.from_arrays(calm, m)).status == "pass"
    c = regression_to_mean_check(Ratio.from_arrays(hist, m), Ratio.from_arrays(spike, m))
    assert c.status == "warn" and "spike" in c.message


def _r(est, se=0.02):
    return Result(estimate=est, se=se, ci=(est - 2 * se, est + 2 * se), p_value=0.01, method="x", n=10)


def test_novelty_check_sees_fading():
    assert novelty_check([_r(-0.3), _r(-0.31), _r(-0.29), _r(-0.3), _r(-0.3)]).status == "pass"
    fading = novelty_check([_r(-0.4), _r(-0.3), _r(-0.2), _r(-0.1), _r(-0.05)])
    assert fading.status == "warn" and len(fading.details["weeks"]) == 5
    assert novelty_check([_r(-0.4)]).status == "skip"


def test_contamination_check():
    assert contamination_check(100, 0).status == "pass"
    c = contamination_check(100, 5, control_exposed=3, n_control=50)
    assert c.status == "warn" and c.details["units_in_both_arms"] == 5
    assert contamination_check(0, 0).status == "skip"

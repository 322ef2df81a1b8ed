"""Delta-method correlation of KPI effects that share units and a denominator.

Simulation: two ratio KPIs (tickets and refunds per order) on the same clusters with a shared
cluster-level defect shock. The correlation the formula gives on one data set must match the
empirical correlation of the two effect estimates over many replications.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insightroi.experiments import effect_correlation_from_units


def _one_world(rng, n_units=80):
    arm = np.where(rng.random(n_units) < 0.5, "treatment", "control")
    orders = rng.gamma(4.0, 500.0, n_units)
    shock = rng.gamma(2.0, 0.5, n_units)  # shared: defects raise both tickets and refunds
    tickets = rng.poisson(orders * 0.03 * shock)
    refunds = rng.poisson(orders * 0.02 * (0.5 + 0.5 * shock))
    return pd.DataFrame({"arm": arm, "orders": orders, "tickets": tickets, "refunds": refunds})


def _diff(df, num):
    t, c = df[df.arm == "treatment"], df[df.arm == "control"]
    return t[num].sum() / t.orders.sum() - c[num].sum() / c.orders.sum()


def test_formula_matches_the_empirical_correlation_of_estimates():
    rng = np.random.default_rng(11)
    kpis = [("tickets", "tickets", "orders"), ("refunds", "refunds", "orders")]
    diffs, formula = [], []
    for _ in range(3000):
        df = _one_world(rng)
        diffs.append((_diff(df, "tickets"), _diff(df, "refunds")))
        formula.append(effect_correlation_from_units(df, kpis)[("tickets", "refunds")])
    empirical = np.corrcoef(np.array(diffs).T)[0, 1]
    assert empirical > 0.3, "the simulated KPIs must actually be correlated for this test to mean anything"
    # The standard error of a correlation estimated from 3,000 draws is about 0.015.
    assert np.mean(formula) == pytest.approx(empirical, abs=0.05)


def test_independent_kpis_give_near_zero_and_units_denominator_works():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"arm": np.repeat(["treatment", "control"], 500), "a": rng.normal(size=1000),
                       "b": rng.normal(size=1000)})
    rho = effect_correlation_from_units(df, [("a", "a", "units"), ("b", "b", "units")])[("a", "b")]
    assert abs(rho) < 0.1

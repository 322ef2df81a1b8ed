"""Text period labels in the panel estimators: refused without an order, exact with one (issue 20).

Quarters written "Q12001" sort before "Q42000" as text, so a rollout compared or sorted as text puts
periods on the wrong side of it. Without ``period_order`` each function must raise a DataError that
names itself, the period column and the fix; with it the result must equal the one on integer (or
date) periods exactly. Alphabetical order here is not time order: the labels were chosen for that.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insightroi.errors import DataError
from insightroi.experiments import (
    matched_cohort_panel,
    quasi_kpi_effects,
    synthetic_control_panel,
    time_series_impact,
)


def _label(t: int) -> str:
    return f"Q{t % 4 + 1}{2000 + t // 4}"


def _labelled(df: pd.DataFrame, col: str) -> tuple[pd.DataFrame, list[str]]:
    order = [_label(t) for t in sorted(df[col].unique())]
    assert sorted(order) != order  # text order is not time order for these labels
    return df.assign(**{col: df[col].map(_label)}), order


def test_synthetic_control_panel_period_order():
    rng = np.random.default_rng(4)
    J, T, rollout = 8, 24, 16
    lam = np.cumsum(rng.normal(size=T))
    Y = 20 + np.outer(lam, rng.normal(size=J + 1)) + rng.normal(0, 0.3, (T, J + 1))
    Y[rollout:, 0] -= 3.0
    long = pd.DataFrame([(f"u{j}", t, Y[t, j]) for j in range(J + 1) for t in range(T)], columns=["unit", "quarter", "y"])
    preds = {"early": ("y", list(range(0, 6))), "late": ("y", list(range(10, 16)))}
    ref = synthetic_control_panel(long, outcome="y", unit="unit", period="quarter", treated_unit="u0", rollout=rollout,
                                  predictors=preds, placebo=True, leave_one_out=False)
    text, order = _labelled(long, "quarter")
    preds_text = {k: (c, [_label(t) for t in p]) for k, (c, p) in preds.items()}
    with pytest.raises(DataError, match=r"synthetic_control_panel: period column 'quarter'.*period_order"):
        synthetic_control_panel(text, outcome="y", unit="unit", period="quarter", treated_unit="u0",
                                rollout=_label(rollout), predictors=preds_text, placebo=True, leave_one_out=False)
    got = synthetic_control_panel(text, outcome="y", unit="unit", period="quarter", treated_unit="u0",
                                  rollout=_label(rollout), predictors=preds_text, placebo=True, leave_one_out=False,
                                  period_order=order)
    assert got.extra["n_pre"] == ref.extra["n_pre"] == rollout
    assert (got.estimate, got.p_value) == (ref.estimate, ref.p_value)
    assert got.extra["weights"] == ref.extra["weights"]


def test_time_series_impact_period_order():
    rng = np.random.default_rng(6)
    T, rollout = 40, 28
    x = 5 + np.cumsum(rng.normal(0, 0.5, T))
    y = 2 + 0.8 * x + rng.normal(0, 0.5, T)
    y[rollout:] += 1.5
    df = pd.DataFrame({"quarter": np.arange(T), "y": y, "x": x}).sample(frac=1.0, random_state=1)
    kw = dict(outcome="y", controls=["x"], n_sims=500)
    ref = time_series_impact(df, period="quarter", rollout=rollout, exclude_windows=[(5, 6)], **kw)
    dates = df.assign(quarter=pd.Timestamp("2000-01-01") + pd.to_timedelta(7 * df["quarter"], unit="D"))
    ref_dates = time_series_impact(dates, period="quarter", rollout=pd.Timestamp("2000-01-01") + pd.Timedelta(days=7 * rollout),
                                   exclude_windows=[(pd.Timestamp("2000-02-05"), pd.Timestamp("2000-02-12"))], **kw)
    text, order = _labelled(df, "quarter")
    with pytest.raises(DataError, match=r"time_series_impact: period column 'quarter'.*period_order"):
        time_series_impact(text, period="quarter", rollout=_label(rollout), **kw)
    got = time_series_impact(text, period="quarter", rollout=_label(rollout), exclude_windows=[(_label(5), _label(6))],
                             period_order=order, **kw)
    assert got.extra["n_pre"] == rollout - 2
    assert (got.estimate, got.ci) == (ref.estimate, ref.ci) == (ref_dates.estimate, ref_dates.ci)


def test_matched_cohort_panel_period_order():
    rng = np.random.default_rng(5)
    N, T, rollout = 200, 10, 5
    level = rng.normal(0, 1, N)
    treated = rng.random(N) < 1 / (1 + np.exp(-2 * level))
    u = np.repeat(np.arange(N), T)
    t = np.tile(np.arange(T), N)
    y = level[u] * (1 + 0.1 * t) + 0.5 * (treated[u] & (t >= rollout)) + rng.normal(0, 0.3, N * T)
    df = pd.DataFrame(dict(unit=u, quarter=t, y=y, treated=treated[u]))
    ref = matched_cohort_panel(df, outcome="y", unit="unit", period="quarter", treated="treated", rollout=rollout)
    text, order = _labelled(df, "quarter")
    with pytest.raises(DataError, match=r"matched_cohort_panel: period column 'quarter'.*period_order"):
        matched_cohort_panel(text, outcome="y", unit="unit", period="quarter", treated="treated", rollout=_label(rollout))
    got = matched_cohort_panel(text, outcome="y", unit="unit", period="quarter", treated="treated",
                               rollout=_label(rollout), period_order=order)
    assert (got.estimate, got.se, got.ci) == (ref.estimate, ref.se, ref.ci)


def test_quasi_kpi_effects_period_order():
    rng = np.random.default_rng(9)
    N, T, rollout = 30, 24, 16
    u = np.repeat(np.arange(N), T)
    w = np.tile(np.arange(T), N)
    tr = u < N // 2
    den = rng.poisson(3000 * np.exp(rng.normal(0, 0.5, N))[u])
    rate = 12 * np.exp(rng.normal(0, 0.15, N))[u]
    num = rng.poisson(den * rate * np.where(tr & (w >= rollout), 0.8, 1.0) / 1000)
    panel = pd.DataFrame(dict(unit=u, quarter=w, treated=tr, neg=num, orders=den))
    kw = dict(numerator="neg", denominator="orders", scale=1000, period="quarter")
    ref = quasi_kpi_effects(panel, rollout=rollout, exclude_windows=[(3, 4)], **kw)
    text, order = _labelled(panel, "quarter")
    with pytest.raises(DataError, match=r"quasi_kpi_effects: period column 'quarter'.*period_order"):
        quasi_kpi_effects(text, rollout=_label(rollout), **kw)
    got = quasi_kpi_effects(text, rollout=_label(rollout), exclude_windows=[(_label(3), _label(4))], period_order=order, **kw)
    for name in ("did", "causal_impact"):
        assert (got[name].estimate, got[name].ci) == (ref[name].estimate, ref[name].ci), name

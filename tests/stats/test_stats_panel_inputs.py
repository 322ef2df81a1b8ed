"""Period labels that cannot be misread (issue #20).

On an outside panel whose quarters were written "Q42010", the DiD functions sorted the periods as
text, put the rollout in the wrong place and returned -0.0096 instead of -0.0225, silently. Text
periods now need an explicit ``period_order``; numbers and dates order themselves. Reference:
pyfixest ``feols("y ~ treat | unit + period", vcov={"CRV1": "unit"})`` on the same panel with
dates.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from insightroi.errors import DataError
from insightroi.experiments._quasi import diff_in_diff
from insightroi.stats._did import did_2x2, event_study, twfe
from insightroi.stats._panel import period_positions

N, T, ROLLOUT = 24, 12, 7  # quarters 2009Q1..2011Q4; rollout 2010Q4


def _quarter_label(k: int) -> str:
    # The outside data's spelling: quarter first, then the year ("Q42010").
    return f"Q{k % 4 + 1}{2009 + k // 4}"


QUARTERS = [_quarter_label(k) for k in range(T)]
DATES = list(pd.period_range("2009Q1", periods=T, freq="Q").to_timestamp())


def _panel(seed: int = 0, n_treated: int = 12, effect: float = -0.02) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(N), T)
    t = np.tile(np.arange(T), N)
    tr = u < n_treated
    # A trend shared by all units plus a treated-only level shift at the rollout: reading the
    # wrong periods as "after" changes the estimate.
    y = (rng.normal(size=N)[u] * 0.05 + 0.004 * t + effect * (tr & (t >= ROLLOUT))
         + rng.normal(size=N * T) * 0.004)
    return pd.DataFrame({
        "unit": u, "k": t, "quarter": np.array(QUARTERS, dtype=object)[t], "date": np.array(DATES)[t],
        "treated": tr, "y": y,
    })


def test_text_quarters_without_order_raise_naming_the_fix():
    df = _panel()
    for method in ("twfe", "2x2", "event_study", "staggered"):
        with pytest.raises(DataError) as exc:
            diff_in_diff(df, outcome="y", unit="unit", period="quarter", treated="treated",
                         rollout=QUARTERS[ROLLOUT], method=method)
        msg = str(exc.value)
        assert "period column 'quarter'" in msg and "period_order=" in msg and "'Q12009'" in msg


def test_alphabetical_order_would_move_the_estimate():
    # The hazard is real on this panel: sorting the labels as text (what the code did) gives a
    # different "after" and a different estimate than the true time order.
    df = _panel()
    alpha_rank = {lab: i for i, lab in enumerate(sorted(QUARTERS))}
    df_alpha = df.assign(alpha=df.quarter.map(alpha_rank))
    wrong = diff_in_diff(df_alpha, outcome="y", unit="unit", period="alpha", treated="treated",
                         rollout=alpha_rank[QUARTERS[ROLLOUT]])
    right = diff_in_diff(df, outcome="y", unit="unit", period="date", treated="treated", rollout=DATES[ROLLOUT])
    assert abs(right.estimate - (-0.02)) < 3 * right.se
    # Text order calls only 2010Q4 and 2011Q4 "after": three treated quarters count as "before"
    # and the estimate shrinks by about a fifth (-0.0146 against -0.0183 here).
    assert abs(wrong.estimate - right.estimate) > max(0.003, 3 * right.se)


def test_period_order_equals_dates_equals_pyfixest():
    pf = pytest.importorskip("pyfixest")
    df = _panel()
    by_date = diff_in_diff(df, outcome="y", unit="unit", period="date", treated="treated", rollout=DATES[ROLLOUT])
    by_label = diff_in_diff(df, outcome="y", unit="unit", period="quarter", treated="treated",
                            rollout=QUARTERS[ROLLOUT], period_order=QUARTERS)
    by_index = diff_in_diff(df, outcome="y", unit="unit", period="k", treated="treated", rollout=ROLLOUT)
    assert by_label.estimate == pytest.approx(by_date.estimate, abs=1e-12)
    assert by_index.estimate == pytest.approx(by_date.estimate, abs=1e-12)
    assert by_label.se == pytest.approx(by_date.se, abs=1e-12)
    ref_df = df.assign(treat=(df.treated & (df.date >= DATES[ROLLOUT])).astype(float), period=df.date)
    f = pf.feols("y ~ treat | unit + period", data=ref_df, vcov={"CRV1": "unit"})
    assert by_date.estimate == pytest.approx(float(f.coef().iloc[0]), abs=1e-8)
    assert by_date.se == pytest.approx(float(f.se().iloc[0]), abs=1e-8)
    # 12 treated and 12 control clusters: CRV1 inference, so the p-value is fixest's too.
    assert by_date.extra["inference"] == "cluster"
    assert by_date.p_value == pytest.approx(float(f.pvalue().iloc[0]), abs=1e-8)


def test_date_objects_and_ordered_categorical_need_no_order():
    df = _panel()
    ref = diff_in_diff(df, outcome="y", unit="unit", period="date", treated="treated", rollout=DATES[ROLLOUT])
    as_date = df.assign(day=[d.date() for d in df.date])  # datetime.date objects, as a store may return
    r1 = diff_in_diff(as_date, outcome="y", unit="unit", period="day", treated="treated", rollout=DATES[ROLLOUT].date())
    cat = df.assign(q=pd.Categorical(df.quarter, categories=QUARTERS, ordered=True))
    r2 = diff_in_diff(cat, outcome="y", unit="unit", period="q", treated="treated", rollout=QUARTERS[ROLLOUT])
    assert r1.estimate == pytest.approx(ref.estimate, abs=1e-12)
    assert r2.estimate == pytest.approx(ref.estimate, abs=1e-12)
    unordered = df.assign(q=pd.Categorical(df.quarter))
    with pytest.raises(DataError, match="period_order"):
        diff_in_diff(unordered, outcome="y", unit="unit", period="q", treated="treated", rollout=QUARTERS[ROLLOUT])


def test_period_order_carries_first_treated_and_exclusion_windows():
    df = _panel()
    # A shock in 2011Q1-2011Q2 on treated units only; excluding it by label must equal excluding it by date.
    shock = df.treated & df.k.between(8, 9)
    df.loc[shock, "y"] += 0.5
    by_date = diff_in_diff(df, outcome="y", unit="unit", period="date", treated="treated", rollout=DATES[ROLLOUT],
                           exclude_windows=[(DATES[8], DATES[9])])
    by_label = diff_in_diff(df, outcome="y", unit="unit", period="quarter", treated="treated", rollout=QUARTERS[ROLLOUT],
                            exclude_windows=[(QUARTERS[8], QUARTERS[9])], period_order=QUARTERS)
    assert by_label.estimate == pytest.approx(by_date.estimate, abs=1e-12)
    assert by_label.extra["n_obs"] == len(df) - 2 * N
    ft = df.assign(ft=np.where(df.treated, QUARTERS[ROLLOUT], None))
    es_label = diff_in_diff(ft, outcome="y", unit="unit", period="quarter", first_treated="ft", method="event_study",
                            leads=3, lags=3, period_order=QUARTERS)
    es_index = diff_in_diff(df.assign(ft=np.where(df.treated, ROLLOUT, np.nan)), outcome="y", unit="unit", period="k",
                            first_treated="ft", method="event_study", leads=3, lags=3)
    assert es_label.estimate == pytest.approx(es_index.estimate, abs=1e-12)


def test_period_order_errors_name_the_labels():
    df = _panel()
    with pytest.raises(DataError, match=r"not in period_order: \['Q42011'\]"):
        diff_in_diff(df, outcome="y", unit="unit", period="quarter", treated="treated", rollout=QUARTERS[ROLLOUT],
                     period_order=QUARTERS[:-1])
    with pytest.raises(DataError, match="twice"):
        diff_in_diff(df, outcome="y", unit="unit", period="quarter", treated="treated", rollout=QUARTERS[ROLLOUT],
                     period_order=QUARTERS + [QUARTERS[0]])


def test_event_study_stats_layer_dates_labels_and_indices_agree():
    df = _panel()
    ft_idx = np.where(df.treated, float(ROLLOUT), np.nan)
    r_idx = event_study(df.y.to_numpy(), df.unit.to_numpy(), df.k.to_numpy(), ft_idx, leads=3, lags=3)
    ft_date = np.where(df.treated, np.datetime64(DATES[ROLLOUT], "ns"), np.datetime64("NaT", "ns"))
    r_date = event_study(df.y.to_numpy(), df.unit.to_numpy(), df.date.to_numpy(), ft_date, leads=3, lags=3)
    ft_lab = np.where(df.treated, QUARTERS[ROLLOUT], None)
    r_lab = event_study(df.y.to_numpy(), df.unit.to_numpy(), df.quarter.to_numpy(), ft_lab, leads=3, lags=3,
                        period_order=QUARTERS)
    assert r_date.estimate == pytest.approx(r_idx.estimate, abs=1e-12)
    assert r_lab.estimate == pytest.approx(r_idx.estimate, abs=1e-12)
    with pytest.raises(DataError, match="period_order"):
        event_study(df.y.to_numpy(), df.unit.to_numpy(), df.quarter.to_numpy(), ft_lab, leads=3, lags=3)


def test_period_positions_kinds():
    pos, lev = period_positions(np.array([2011, 2009, 2010]), who="f")
    assert pos.tolist() == [2.0, 0.0, 1.0] and lev.tolist() == [2009, 2010, 2011]
    days = np.array([dt.date(2020, 3, 1), dt.date(2020, 1, 1), None], dtype=object)
    pos, _ = period_positions(days, who="f")
    assert pos[:2].tolist() == [1.0, 0.0] and np.isnan(pos[2])
    # a first-treated date between two observed periods counts from the next observed one
    obs = np.array(["2020-01-01", "2020-02-01", "2020-03-01"], dtype="datetime64[ns]")
    _, lev = period_positions(obs, who="f")
    ft, _ = period_positions(np.array(["2020-01-15"], dtype="datetime64[ns]"), who="f", levels=lev)
    assert ft.tolist() == [1.0]
    with pytest.raises(DataError, match="both be dates or both be numbers"):
        period_positions(np.array([1.0]), who="f", levels=lev)
    with pytest.raises(DataError, match="time order cannot be known"):
        period_positions(np.array(["b", "a"]), who="f", name="time")
    # pandas' missing markers mean "never treated", not an unknown label
    stamps = np.array([pd.Timestamp("2020-02-01"), pd.NaT, pd.Timestamp("2020-01-01")], dtype=object)
    pos, _ = period_positions(stamps, who="f")
    assert pos[0] == 1.0 and np.isnan(pos[1]) and pos[2] == 0.0
    pos, _ = period_positions(np.array(["b", pd.NA, np.nan, None], dtype=object), ["a", "b"], who="f")
    assert pos[0] == 1.0 and np.isnan(pos[1:]).all()


def test_one_treated_unit_2x2_points_to_twfe_and_the_wild_bootstrap():
    df = _panel(n_treated=1)
    with pytest.raises(DataError) as exc:
        diff_in_diff(df, outcome="y", unit="unit", period="date", treated="treated", rollout=DATES[ROLLOUT], method="2x2")
    assert 'method="twfe"' in str(exc.value) and "wild cluster bootstrap" in str(exc.value)
    with pytest.raises(DataError) as exc:
        did_2x2(np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5, 3.5]), np.array([True, False, False]))
    assert "twfe(" in str(exc.value) and "inference='wild'" in str(exc.value)
    # and twfe itself takes the panel, switching to the bootstrap
    r = diff_in_diff(df, outcome="y", unit="unit", period="date", treated="treated", rollout=DATES[ROLLOUT])
    assert r.extra["inference"] == "wild" and r.extra["n_treated_clusters"] == 1


def test_twfe_text_periods_are_only_labels():
    # twfe's periods only name the period fixed effects (the caller builds treat), so text labels
    # give the same estimate as integer indices; no order is guessed.
    df = _panel()
    D = (df.treated & (df.k >= ROLLOUT)).astype(float).to_numpy()
    a = twfe(df.y.to_numpy(), df.unit.to_numpy(), df.k.to_numpy(), D)
    b = twfe(df.y.to_numpy(), df.unit.to_numpy(), df.quarter.to_numpy(), D)
    assert b.estimate == pytest.approx(a.estimate, abs=1e-12) and b.se == pytest.approx(a.se, abs=1e-12)

"""The retrain / retire / keep decision and the weekly drift scan, on simulated data."""

from __future__ import annotations

import numpy as np
import pytest

from insightroi.monitor import (
    decide,
    decision_kpi,
    drift_by_week,
    outcome_decay,
    running_cost_per_period,
    text_drift_row,
    token_counts,
    value_per_unit,
)
from insightroi.program import RetrainingPolicy, parse_program, starter_program_text

PROGRAM = parse_program(starter_program_text())
KPI = "tickets_per_1000_orders"  # the first KPI a hard value pool prices (6.5 per ticket)
VOLUME = 100_000.0  # treated orders per 28-day period


def _with_cost(retrain_cost: float, **kw):
    return PROGRAM.model_copy(update={"retraining": RetrainingPolicy(retrain_cost=retrain_cost, **kw)})


def _effects(estimates, half_width=1.0):
    return [
        {"period": f"p{i}", "estimate": e, "ci_low": e - half_width, "ci_high": e + half_width}
        for i, e in enumerate(estimates)
    ]


def test_program_economics_defaults():
    assert decision_kpi(PROGRAM) == KPI
    assert value_per_unit(PROGRAM, KPI) == 6.5
    # 1200 + 3000 per month over 28 days, plus 1.0 per 1000 feedback; one-off lines excluded.
    assert running_cost_per_period(PROGRAM, feedback_per_period=50_000) == pytest.approx(
        4200 * 28 / 30.4375 + 50.0
    )


def test_retrain_exactly_when_value_lost_exceeds_cost_both_sides():
    # Baseline -10 per 1000 orders for three periods, then -6: decline 4/1000 per order.
    effects = _effects([-10, -10, -10, -6], half_width=1.5)
    lost = 4 / 1000 * 6.5 * VOLUME * (90 / 28)
    below = decide(effects, _with_cost(lost * 1.01), volume_per_period=VOLUME, baseline_periods=3)
    above = decide(effects, _with_cost(lost * 0.99), volume_per_period=VOLUME, baseline_periods=3)
    assert below.figures["value_lost_over_horizon"] == pytest.approx(lost)
    assert below.decision == "keep" and above.decision == "retrain"
    rule = next(e for e in above.evidence if e["name"] == "value_lost_over_horizon")
    assert rule["triggered"] and rule["threshold"] == pytest.approx(lost * 0.99)
    assert "exceeds the retraining cost" in above.reasons[0]


def _simulate_vocabulary_shift(rng, shift_share, periods=5, shift_from=3, units=400):
    """Per-unit tickets/orders where a vocabulary shift hides a share of complaints from the model.

    The program avoids 10 tickets per 1000 orders while the model understands the complaints; after
    the shift, complaints phrased in the new vocabulary are missed, so the effect shrinks by that
    share. Returns per-period arrays and the feedback texts of the last reference and current week.
    """
    data = {}
    for p in range(periods):
        effect = -10.0 * (1 - shift_share) if p >= shift_from else -10.0
        den_t = rng.poisson(500, units // 2) + 1.0
        den_c = rng.poisson(500, units // 2) + 1.0
        rate_c = rng.gamma(50, 50 / 1000 / 50, units // 2)
        rate_t = rng.gamma(50, (50 + effect) / 1000 / 50, units // 2)
        data[f"p{p}"] = (rng.poisson(rate_t * den_t), den_t, rng.poisson(rate_c * den_c), den_c)
    old = ["package late again tracking stuck", "box crushed item broken", "battery drains fast"]
    new = ["drone dropped parcel on roof", "locker code expired before pickup"]
    ref_texts = [old[i % 3] for i in range(900)]
    n_new = int(round(900 * shift_share))
    cur_texts = [new[i % 2] for i in range(n_new)] + [old[i % 3] for i in range(900 - n_new)]
    return data, ref_texts, cur_texts


@pytest.mark.parametrize("shift_share", [0.4])
def test_simulated_vocabulary_shift_retrains_only_when_worth_it(shift_share):
    rng = np.random.default_rng(12)
    data, ref_texts, cur_texts = _simulate_vocabulary_shift(rng, shift_share)
    effects = outcome_decay(data, scale=1000, metric=KPI)
    volume = float(np.mean([e.extra["treatment_denominator"] for e in effects]))
    text = text_drift_row("text", token_counts(ref_texts), token_counts(cur_texts))
    assert text["status"] == "alert" and text["oov_rate"] > 0.3
    assert {"drone", "locker"} <= set(text["new_terms"])
    expected_loss = 10 * shift_share / 1000 * 6.5 * volume * 90 / 28  # ~ 8,400 with 100k orders
    cheap = decide(effects, _with_cost(expected_loss / 2), kpi=KPI, drift=[text], baseline_periods=3)
    dear = decide(effects, _with_cost(expected_loss * 2), kpi=KPI, drift=[text], baseline_periods=3)
    assert cheap.decision == "retrain", cheap.reasons
    assert dear.decision == "keep", dear.reasons
    assert any(e["name"] == "drift:text" and e["triggered"] for e in cheap.evidence)
    assert "drift alerts on text" in cheap.reasons[0]
    # No shift: nothing is lost, keep even when retraining is cheap.
    rng = np.random.default_rng(13)
    data0, ref0, cur0 = _simulate_vocabulary_shift(rng, 0.0)
    eff0 = outcome_decay(data0, scale=1000, metric=KPI)
    text0 = text_drift_row("text", token_counts(ref0), token_counts(cur0))
    assert text0["status"] == "ok" and text0["oov_rate"] == 0
    assert decide(eff0, _with_cost(expected_loss / 2), kpi=KPI, drift=[text0], baseline_periods=3).decision == "keep"


def test_retire_after_n_periods_with_upper_bound_below_running_cost():
    cost = running_cost_per_period(PROGRAM)  # ~3,864 per period
    # Effect -1 +/- 1 per 1000 orders: upper bound 2/1000 x 6.5 x 100k = 1,300 < cost.
    weak = _effects([-1, -1, -1], half_width=1.0)
    d = decide(weak, PROGRAM, volume_per_period=VOLUME)
    assert d.decision == "retire"
    assert d.figures["periods_upper_bound_below_cost"] == 3
    assert "retire_after_periods = 3" in d.reasons[0]
    # Only two such periods after a good one: keep (N = 3 not reached).
    assert decide(_effects([-8, -8, -1, -1], 1.0), _with_cost(1e9), volume_per_period=VOLUME).decision == "keep"
    # N is the program's: with retire_after_periods = 2 the same series retires.
    prog2 = _with_cost(1e9, retire_after_periods=2)
    assert decide(_effects([-8, -8, -1, -1], 1.0), prog2, volume_per_period=VOLUME).decision == "retire"
    # An interval that reaches a value above the running cost is not grounds to retire.
    wide = _effects([-1, -1, -1], half_width=6.0)
    assert decide(wide, PROGRAM, volume_per_period=VOLUME).decision == "keep"


def test_no_retrain_to_restore_a_baseline_that_never_paid():
    # A decline from a baseline worth less than the running cost: retraining cannot pay back.
    d = decide(_effects([-4, -4, -4, -0.5, -0.5, -0.5], 0.5), _with_cost(100.0), volume_per_period=VOLUME,
               baseline_periods=3)
    assert d.decision == "retire"
    assert any("did not cover" in r for r in d.reasons)


def test_decision_without_value_pool_or_effects_keeps():
    assert decide([], PROGRAM).decision == "keep"
    d = decide(_effects([-10, -2]), PROGRAM, kpi="negative_reviews_per_1000_orders", volume_per_period=VOLUME)
    assert d.decision == "keep" and "no hard value pool" in d.reasons[0]


def test_increase_kpi_sign():
    # conversion_rate is an "increase" KPI with no pool: give a unit value; the decline is a drop.
    d = decide(_effects([0.02, 0.02, 0.005], 0.002), _with_cost(1000.0), kpi="conversion_rate",
               unit_value=50.0, volume_per_period=100_000, running_cost=0.0, baseline_periods=2)
    assert d.figures["decline_per_unit"] == pytest.approx(0.015)
    assert d.decision == "retrain"


# ------------------------------------------------------------------ weekly scan ---------------
TOPICS = ["shipping_delay", "damaged_packaging", "sizing", "product_defect", "battery_power",
          "customer_service", "price_value", "praise", "other"]
WORDS = {t: [f"{t[:4]}{i}" for i in range(6)] for t in TOPICS}


def _weekly_world(rng, weeks=20, per_week=600, theme_week=12, outage_week=6):
    base = np.array([0.12, 0.08, 0.1, 0.1, 0.08, 0.1, 0.1, 0.27, 0.05])
    rows_week, topic, source, texts = [], [], [], []
    for w in range(weeks):
        shares = base.copy()
        src_p = np.array([0.6, 0.3, 0.1])  # review, ticket, chat
        if w == outage_week:  # carrier outage: delay complaints and tickets surge for a week
            shares = 0.6 * base + 0.4 * np.eye(len(TOPICS))[0]
            src_p = np.array([0.35, 0.55, 0.1])
        n_theme = int(0.15 * per_week) if w >= theme_week else 0
        t = rng.choice(len(TOPICS), size=per_week - n_theme, p=shares)
        for k in t:
            topic.append(TOPICS[k])
            texts.append(" ".join(rng.choice(WORDS[TOPICS[k]], size=4)))
        for _ in range(n_theme):  # a new complaint theme: new words, forced into "other"
            topic.append("other")
            texts.append(" ".join(rng.choice(["subscription", "autorenew", "cancelation", "billing"], size=4)))
        source += list(rng.choice(["review", "ticket", "chat"], size=per_week, p=src_p))
        rows_week += [f"2025-W{w:02d}"] * per_week
    return rows_week, {"topic": topic, "source": source}, texts


def test_weekly_scan_flags_new_theme_and_outage_in_their_weeks():
    rng = np.random.default_rng(14)
    week, cols, texts = _weekly_world(rng)
    rows = drift_by_week(week, cols, texts=texts)
    onset = [r["week"] for r in rows if r["onset"]]
    flagged = [r["week"] for r in rows if r["flagged"]]
    assert onset == ["2025-W06", "2025-W12"]
    # The outage is one week; the theme persists and stays flagged against the last normal weeks.
    assert flagged == ["2025-W06"] + [f"2025-W{w:02d}" for w in range(12, 20)]
    w6 = rows[6]
    assert set(w6["flagged"]) >= {"topic", "source"} and "text" not in w6["flagged"]
    assert next(f for f in w6["features"] if f["feature"] == "topic")["top_category"] == "shipping_delay"
    w12 = rows[12]
    assert "text" in w12["flagged"]
    assert set(next(f for f in w12["features"] if f["feature"] == "text")["new_terms"]) <= {
        "subscription", "autorenew", "cancelation", "billing"}
    assert rows[0]["status"] == "skip"  # no reference yet


def test_weekly_scan_no_false_flags_without_drift():
    rng = np.random.default_rng(15)
    week, cols, texts = _weekly_world(rng, theme_week=99, outage_week=-1)
    rows = drift_by_week(week, cols, texts=texts)
    assert not any(r["flagged"] for r in rows)


def test_a_kpi_below_its_share_of_cost_does_not_retire_a_model_the_total_pays_for():
    from insightroi.monitor import decide_total, hard_valued_kpis

    assert hard_valued_kpis(PROGRAM) == ["tickets_per_1000_orders", "refunds_per_1000_orders"]
    cost = running_cost_per_period(PROGRAM)  # 4,200 a month over 28 days: 3,864
    # Tickets: 1 fewer per 1,000 orders, precisely: 650 a period, its upper bound far below the cost.
    tickets = [{**e, "treatment_denominator": VOLUME} for e in _effects([-1.0] * 5, half_width=0.1)]
    # Refunds: 2 fewer per 1,000 orders at 25 each: 5,000 a period.
    refunds = [{**e, "treatment_denominator": VOLUME} for e in _effects([-2.0] * 5, half_width=0.1)]
    alone = decide(tickets, PROGRAM, kpi=KPI)
    assert alone.decision == "retire"  # what valuing one KPI against the whole cost concluded
    total = decide_total({KPI: tickets, "refunds_per_1000_orders": refunds}, PROGRAM)
    assert total.decision == "keep", total.reasons
    f = total.figures
    assert f["kpis"][KPI]["current_value_per_period"] == pytest.approx(650.0)
    assert f["kpis"]["refunds_per_1000_orders"]["current_value_per_period"] == pytest.approx(5000.0)
    assert f["current_value_per_period"] == pytest.approx(5650.0)
    # The decision's expected value: keeping it for 90 / 28 periods nets (5,650 - cost) each.
    assert f["net_value_of_keeping_over_horizon"] == pytest.approx((5650.0 - cost) * 90 / 28)
    se = (0.1 / 1.959963984540054) * np.hypot(650.0, 2500.0) * 90 / 28  # both KPIs' SEs in money
    assert f["net_value_se"] == pytest.approx(se, rel=1e-9)
    assert f["p_net_value_positive"] > 0.999
    assert total.kpi == "total hard value" and "keeping it for" in total.reasons[-1]
    # Its rows are money already: the evidence shows the decline in money, no 1 USD x 1 unit.
    lost = next(e for e in total.evidence if e["name"] == "value_lost_over_horizon")
    assert lost["detail"] == "hard value decline 0 USD/period x 3.21 periods", lost
    assert "per unit" in next(e for e in alone.evidence if e["name"] == "value_lost_over_horizon")["detail"]
    # Halve both effects: the total (2,825) is below the cost with a tight bound, and it retires.
    half = decide_total({KPI: [{**e, "estimate": e["estimate"] / 2, "ci_low": e["estimate"] / 2 - 0.05,
                                "ci_high": e["estimate"] / 2 + 0.05} for e in tickets],
                         "refunds_per_1000_orders": [{**e, "estimate": e["estimate"] / 2,
                                                      "ci_low": e["estimate"] / 2 - 0.05,
                                                      "ci_high": e["estimate"] / 2 + 0.05} for e in refunds]},
                        PROGRAM)
    assert half.decision == "retire"


def test_new_terms_do_not_depend_on_the_order_counts_arrive_in():
    # The store's group-by returns tokens in no fixed order; equal counts must still list alike.
    from collections import Counter

    ref = Counter({"box": 50, "late": 40})
    counts = {"zeta": 3, "alpha": 3, "drone": 5, "mid": 3, "box": 9}
    one = text_drift_row("text", ref, Counter(dict(counts.items())))
    other = text_drift_row("text", ref, Counter(dict(reversed(counts.items()))))
    assert one["new_terms"] == other["new_terms"] == ["drone", "alpha", "mid", "zeta"]

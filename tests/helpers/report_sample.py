"""A realistic, internally consistent report bundle for the report and dashboard tests.

The bundle is the JSON form of :class:`insightroi.bundle.Bundle` (schema 2): it validates with
``Bundle.model_validate(sample_bundle())`` and carries what the stages save (the program's
primary KPI and audiences, Holm-adjusted significance, evaluated decision rules, quasi-experimental
rows, saved claims and per-stage provenance).

Every figure is computed here from a handful of inputs (arm means and standard errors, volumes,
unit values and costs from the starter program) with the same formulas the ROI contract states,
so cross-checks in the tests (benefit = avoided events x unit value, ROI = (benefit - cost) /
cost, funnel and per-team totals, histogram counts = number of draws) hold by construction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = ["sample_bundle", "sample_sections"]

_Z95 = 1.959963984540054

# name, layer, owner, direction, decision rule, control mean, treatment mean, se, truth, unit
_KPIS = [
    ("negative_reviews_per_1000_orders", "business", "product", "decrease", "down 15% vs control",
     24.0, 20.4, 0.9, -3.3),
    ("tickets_per_1000_orders", "business", "support", "decrease", "down 10% vs control",
     80.0, 73.6, 2.0, -6.0),
    ("refunds_per_1000_orders", "business", "finance", "decrease", "down 10% vs control",
     30.0, 27.6, 1.0, -2.1),
    ("conversion_rate", "business", "ecommerce", "increase", "not down vs control",
     0.032, 0.0326, 0.0005, 0.0004),
    ("defect_mentions_per_1000_feedback", "model", "ml_platform", "decrease", "down vs control once fixes ship",
     52.0, 44.0, 2.5, -7.0),
]

# Value pools of the starter program: name, function, kpi, hard, unit value (low, mode, high), description.
_POOLS = [
    ("support_tickets_avoided", "support", "tickets_per_1000_orders", True, (4.0, 6.5, 9.0),
     "Cost per ticket from the support budget / ticket volume."),
    ("refunds_avoided", "finance", "refunds_per_1000_orders", True, (18.0, 25.0, 32.0),
     "Average refund amount less recovered inventory value."),
    ("reputation_from_fewer_negative_reviews", "marketing", "negative_reviews_per_1000_orders", False,
     (0.0, 10.0, 40.0), "Soft: assumed future revenue protected per negative review avoided."),
]

# Cost lines: name, category, kind, per, (low, mode, high).
_COSTS = [
    ("platform compute and storage", "platform", "recurring", "month", (800.0, 1200.0, 1800.0)),
    ("LLM and model serving", "platform", "recurring", "1000_feedback", (0.5, 1.0, 2.0)),
    ("analyst time", "labor", "recurring", "month", (2000.0, 3000.0, 4500.0)),
    ("integration build", "labor", "one_off", "total", (8000.0, 12000.0, 20000.0)),
    ("training, macros and runbooks", "change_management", "one_off", "total", (2000.0, 3000.0, 5000.0)),
]

_TREATED_ORDERS = 1_200_000  # orders of treated SKU families in the window (KPI denominator volume)
_TREATED_FEEDBACK = 400_000  # feedback rows of treated units in the window
_WINDOW = ("2025-07-01", "2026-03-31")
_DAYS = 274  # inclusive day count of the window
_N_DRAWS = 4000
_ALPHA = 0.05
_PROGRAM_NAME = "Acme Commerce - complaint-theme alerts"
_PROGRAM_HASH = "5c1e0f9a7d2b4e83"  # stands for program_hash() of the starter program


def _check(name, status, message, statistic=None, p_value=None, threshold=None, **details) -> dict[str, Any]:
    return {"name": name, "status": status, "message": message, "statistic": statistic,
            "p_value": p_value, "threshold": threshold, "details": details}


def _r(x: float, nd: int = 6) -> float:
    return float(round(x, nd))


def _tri(rng, lo_mode_hi, size):
    lo, mode, hi = lo_mode_hi
    if hi == lo:
        return np.full(size, float(mode))
    return rng.triangular(lo, mode, hi, size)


def _cost_total(per: str, amount: float, months: float) -> float:
    if per == "month":
        return amount * months
    if per == "1000_feedback":
        return amount * _TREATED_FEEDBACK / 1000.0
    return amount


def _kpi_rows(is_demo: bool) -> list[dict[str, Any]]:
    rows = []
    for name, layer, owner, direction, rule, c, t, se, truth in _KPIS:
        est = t - c
        lo, hi = est - _Z95 * se, est + _Z95 * se
        p = float(2 * sps.norm.sf(abs(est) / se))
        rows.append({
            "name": name, "layer": layer, "owner": owner, "direction": direction, "decision_rule": rule,
            "method": "cluster_welch_t", "unit": "sku_family",
            "control_mean": c, "treatment_mean": t, "estimate": _r(est, 8),
            "ci_low": _r(lo, 8), "ci_high": _r(hi, 8), "p_value": _r(p, 10), "p_adjusted": None,
            "relative": _r(est / c), "relative_ci_low": _r(lo / c), "relative_ci_high": _r(hi / c),
            "n": 120, "truth": truth if is_demo else None,
            "truth_relative": _r(truth / c) if is_demo else None,
            "checks": [
                _check("normality_of_unit_means", "pass", "Unit means are close enough to normal for a t-interval.",
                       statistic=0.41, p_value=0.52, threshold=0.05),
            ],
            "summary_html": (
                f'<table class="result"><tr><th>Metric</th><td>{name}</td></tr>'
                f"<tr><th>Method</th><td>cluster_welch_t</td></tr>"
                f"<tr><th>Estimate</th><td>{est:.6g} (absolute)</td></tr>"
                f"<tr><th>Std. error</th><td>{se:.6g}</td></tr>"
                f"<tr><th>95% CI</th><td>[{lo:.6g}, {hi:.6g}]</td></tr>"
                f"<tr><th>p-value</th><td>{p:.4g}</td></tr><tr><th>N</th><td>120</td></tr></table>"
                f'<ol class="notes"><li>[1] normality_of_unit_means: PASS - Unit means are close enough '
                f"to normal for a t-interval.</li></ol>"
            ),
        })
    # Holm adjustment over every KPI tested against control, as the analyze stage does.
    fam = list(rows)
    order = sorted(range(len(fam)), key=lambda i: fam[i]["p_value"])
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(fam) - rank) * fam[i]["p_value"]))
        fam[i]["p_adjusted"] = _r(running, 10)
    for r in rows:
        r["significant_adjusted"] = bool(r["p_adjusted"] < _ALPHA)
    # The workflow KPI exists only where alerts are sent (treated arm): no control mean.
    acted, alerts = 144, 212
    p_hat = acted / alerts
    se = math.sqrt(p_hat * (1 - p_hat) / alerts)
    rows.append({
        "name": "alert_adoption_rate", "layer": "workflow", "owner": "operations", "direction": "increase",
        "decision_rule": "at least 60% of alerts acted upon", "method": "proportion_wald", "unit": "team",
        "control_mean": None, "treatment_mean": _r(p_hat), "estimate": _r(p_hat),
        "ci_low": _r(p_hat - _Z95 * se), "ci_high": _r(p_hat + _Z95 * se), "p_value": None, "p_adjusted": None,
        "relative": None, "relative_ci_low": None, "relative_ci_high": None, "n": alerts,
        "truth": None, "truth_relative": None, "checks": [], "summary_html": "",
        "significant_adjusted": None,
    })
    return rows


def _rules(kpis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The program file's decision rules evaluated on the Holm-adjusted rows.

    The rule forms of the starter program only, with the analyze stage's reading: a directional
    rule passes when significant in its direction with the target reached, fails when significant
    the other way or when the interval excludes the target, and is inconclusive otherwise; a
    guardrail ("not down") fails only on a significant move the forbidden way; "at least X%" is a
    level the treated arm must reach.
    """
    out = []
    for k in kpis:
        rule = k["decision_rule"]
        if rule.startswith("at least"):
            level = float(rule.split()[2].rstrip("%")) / 100
            v = k["treatment_mean"]
            out.append({"kpi": k["name"], "rule": rule, "status": "pass" if v >= level else "fail",
                        "message": f"treated arm at {v:.1%} vs the {level:.0%} target", "target_relative": None})
            continue
        words = rule.split()
        guard = words[0] == "not"
        sign = -1.0 if (words[1] if guard else words[0]) == "down" else 1.0
        target = float(words[1].rstrip("%")) / 100 if not guard and words[1].endswith("%") else 0.0
        rel, lo, hi, p_adj = k["relative"], k["relative_ci_low"], k["relative_ci_high"], k["p_adjusted"]
        sig, good = p_adj < _ALPHA, sign * rel
        if guard:
            status = "fail" if sig and good > 0 else "pass"
        elif sig and good < 0:
            status = "fail"
        elif sig and good >= target:
            status = "pass"
        elif target > 0 and max(sign * lo, sign * hi) < target:
            status = "fail"
        else:
            status = "inconclusive"
        out.append({"kpi": k["name"], "rule": rule, "status": status,
                    "message": f"{rel:+.1%} [{lo:+.1%}, {hi:+.1%}], Holm p = {p_adj:.3g}",
                    "target_relative": sign * target if target else None})
    return out


def _quasi(kpis: list[dict[str, Any]], is_demo: bool) -> list[dict[str, Any]]:
    """Observational re-estimates (DiD, time-series counterfactual) of the priced KPIs."""
    # kpi, method, estimate, half-width of the 95% CI, p-value
    rows = [
        ("negative_reviews_per_1000_orders", "did", -3.1, 1.9, 0.0014),
        ("negative_reviews_per_1000_orders", "causal_impact", -5.2, 1.7, 2e-9),
        ("tickets_per_1000_orders", "did", -5.4, 4.1, 0.010),
        ("refunds_per_1000_orders", "did", -2.0, 2.0, 0.050),
    ]
    truth = {k[0]: k[8] for k in _KPIS}
    out = []
    for name, method, est, half, p in rows:
        att = truth[name] if is_demo else None
        out.append({"kpi": name, "method": method, "estimate": est, "ci_low": _r(est - half), "ci_high": _r(est + half),
                    "p_value": p, "truth_att": att,
                    "covered": None if att is None else bool(est - half <= att <= est + half)})
    return out


def _provenance(is_demo: bool) -> dict[str, dict[str, Any]]:
    """Per-stage provenance as the stages save it (one program hash: one program file)."""
    models = {"sentiment": "lexicon-vader-1.3", "topic": "topics-0.9"}
    stages = [("classify", "2026-04-02T07:41:12", models), ("detect", "2026-04-02T07:44:03", {}),
              ("insights", "2026-04-02T07:44:30", models), ("chain", "2026-04-02T07:45:02", {}),
              ("analyze", "2026-04-02T07:51:47", {}), ("roi", "2026-04-02T07:52:10", {}),
              ("quasi", "2026-04-02T07:55:31", {}), ("monitor", "2026-04-02T07:58:09", models)]
    return {
        stage: {"stage": stage, "created_at": at, "package_version": "0.1.0", "program_hash": _PROGRAM_HASH,
                "program_name": _PROGRAM_NAME, "store_url": "duckdb:///demo/insightroi.duckdb" if is_demo else None,
                "model_versions": mv, "inputs": {"feedback": {"rows": 1_850_000, "start": _WINDOW[0], "end": _WINDOW[1]}}}
        for stage, at, mv in stages
    }


def _roi(kpis: list[dict[str, Any]], rng, is_demo: bool) -> dict[str, Any]:
    months = _DAYS / 30.4375
    by_name = {k["name"]: k for k in kpis}
    se = {k[0]: k[7] for k in _KPIS}

    def avoided(kpi_name: str, effect: np.ndarray | float):
        # Value-positive avoided events: -(effect)/scale x denominator volume ("decrease" KPIs).
        return -np.asarray(effect) / 1000.0 * _TREATED_ORDERS

    n = _N_DRAWS
    effects = {p[2]: rng.normal(by_name[p[2]]["estimate"], se[p[2]], n) for p in _POOLS}
    values = {p[0]: _tri(rng, p[4], n) for p in _POOLS}
    cost_draws = {c[0]: _cost_total(c[3], 1.0, months) * _tri(rng, c[4], n) for c in _COSTS}
    pool_draws = {p[0]: avoided(p[2], effects[p[2]]) * values[p[0]] for p in _POOLS}
    hard_draw = sum(pool_draws[p[0]] for p in _POOLS if p[3])
    cost_draw = sum(cost_draws.values())
    roi_draw = (hard_draw - cost_draw) / cost_draw

    def point(effect_q: dict[str, float], value_pick: int, cost_pick: int) -> tuple[float, float, float]:
        benefit = sum(float(avoided(p[2], effect_q[p[2]])) * p[4][value_pick] for p in _POOLS if p[3])
        cost = sum(_cost_total(c[3], c[4][cost_pick], months) for c in _COSTS)
        return (benefit - cost) / cost, benefit, cost

    mode_eff = {p[2]: by_name[p[2]]["estimate"] for p in _POOLS}
    roi_mode, benefit_mode, cost_mode = point(mode_eff, 1, 1)
    worst_eff = {p[2]: by_name[p[2]]["ci_high"] for p in _POOLS}  # the smaller avoided effect
    best_eff = {p[2]: by_name[p[2]]["ci_low"] for p in _POOLS}
    scenarios = []
    for label, eff, vpick, cpick in (("worst", worst_eff, 0, 2), ("expected", mode_eff, 1, 1), ("best", best_eff, 2, 0)):
        r, b, c = point(eff, vpick, cpick)
        scenarios.append({"name": label, "roi": _r(r), "benefit": _r(b, 2), "cost": _r(c, 2)})

    tornado = []
    for p in _POOLS:
        if not p[3]:
            continue
        lo_eff, hi_eff = dict(mode_eff), dict(mode_eff)
        lo_eff[p[2]], hi_eff[p[2]] = by_name[p[2]]["ci_high"], by_name[p[2]]["ci_low"]
        lo, hi = point(lo_eff, 1, 1)[0], point(hi_eff, 1, 1)[0]
        tornado.append({"input": f"effect on {p[2]}", "low_roi": _r(lo), "high_roi": _r(hi), "swing": _r(abs(hi - lo))})
        others = sum(float(avoided(q[2], mode_eff[q[2]])) * q[4][1] for q in _POOLS if q[3] and q[0] != p[0])
        base = float(avoided(p[2], mode_eff[p[2]]))
        lo = (others + base * p[4][0] - cost_mode) / cost_mode
        hi = (others + base * p[4][2] - cost_mode) / cost_mode
        tornado.append({"input": f"unit value of {p[0]}", "low_roi": _r(lo), "high_roi": _r(hi), "swing": _r(abs(hi - lo))})
    for c in _COSTS:
        unit = _cost_total(c[3], 1.0, months)
        hi_cost = cost_mode + unit * (c[4][2] - c[4][1])
        lo_cost = cost_mode - unit * (c[4][1] - c[4][0])
        lo, hi = (benefit_mode - hi_cost) / hi_cost, (benefit_mode - lo_cost) / lo_cost
        tornado.append({"input": f"cost of {c[0]}", "low_roi": _r(lo), "high_roi": _r(hi), "swing": _r(abs(hi - lo))})
    tornado.sort(key=lambda t: -t["swing"])

    counts, edges = np.histogram(roi_draw, bins=30)
    hard_mean = float(hard_draw.mean())
    pools = []
    for p in _POOLS:
        d = pool_draws[p[0]]
        pools.append({
            "name": p[0], "function": p[1], "kpi": p[2], "hard": p[3],
            "benefit_median": _r(float(np.median(d)), 2),
            "benefit_ci_low": _r(float(np.quantile(d, 0.05)), 2),
            "benefit_ci_high": _r(float(np.quantile(d, 0.95)), 2),
            "share": _r(float(d.mean()) / hard_mean, 4) if p[3] else None,
            "unit_value": {"low": p[4][0], "mode": p[4][1], "high": p[4][2]},
            "avoided_events": _r(float(avoided(p[2], mode_eff[p[2]])), 1),
            "description": p[5],
        })
    costs = [
        {"name": c[0], "category": c[1], "kind": c[2], "per": c[3],
         "total_mode": _r(_cost_total(c[3], c[4][1], months), 2),
         "amount": {"low": c[4][0], "mode": c[4][1], "high": c[4][2]}}
        for c in _COSTS
    ]
    monthly_benefit = benefit_mode / months
    monthly_cost = sum(_cost_total(c[3], c[4][1], months) for c in _COSTS if c[2] == "recurring") / months
    one_off = sum(c[4][1] for c in _COSTS if c[2] == "one_off")
    payback = one_off / (monthly_benefit - monthly_cost) if monthly_benefit > monthly_cost else None
    # Truth: realized ROI with the true effects at the modes (contract's definition).
    truth_eff = {k[0]: k[8] for k in _KPIS}
    truth = point({p[2]: truth_eff[p[2]] for p in _POOLS}, 1, 1)[0] if is_demo else None
    return {
        "estimate": _r(roi_mode), "median": _r(float(np.median(roi_draw))),
        "ci_low": _r(float(np.quantile(roi_draw, 0.05))), "ci_high": _r(float(np.quantile(roi_draw, 0.95))),
        "p_positive": _r(float((roi_draw > 0).mean()), 4),
        "conservative": _r(float(np.quantile(roi_draw, 0.10))),
        "truth": _r(truth) if truth is not None else None,
        "benefit": _r(benefit_mode, 2), "cost": _r(cost_mode, 2), "bcr": _r(benefit_mode / cost_mode),
        "payback_months": _r(payback, 3) if payback is not None else None, "months": _r(months, 4),
        "n_draws": n, "pools": pools, "costs": costs, "scenarios": scenarios, "tornado": tornado,
        "histogram": {"edges": [_r(float(e)) for e in edges], "counts": [int(c) for c in counts]},
    }


def sample_bundle(*, is_demo: bool = True, seed: int = 7) -> dict[str, Any]:
    """A complete report bundle (``insightroi.bundle.Bundle``, schema 2) with consistent figures.

    For tests and previews; ``Bundle.model_validate(sample_bundle())`` passes.

    Parameters
    ----------
    is_demo : bool
        Include the ground truth ("truth" fields), as a demo-world bundle does.
    seed : int
        Seed of the Monte Carlo draws behind the ROI interval and histogram.
    """
    rng = np.random.default_rng(seed)
    kpis = _kpi_rows(is_demo)
    roi = _roi(kpis, rng, is_demo)
    teams = [  # team, alerts, acknowledged, acted, fixed, median hours to ack, median days to fix, override rate
        ("product_quality", 71, 62, 52, 38, 9.5, 6.0, 0.04),
        ("logistics", 48, 42, 33, 22, 14.0, 4.5, 0.06),
        ("fulfillment", 31, 27, 21, 14, 20.0, 5.0, 0.10),
        ("support", 26, 23, 18, 12, 6.0, 2.5, 0.08),
        ("merchandising", 22, 17, 12, 7, 31.0, 9.0, 0.14),
        ("pricing", 14, 10, 8, 4, 40.0, 12.0, 0.21),
    ]
    funnel = {
        "insights": 18400,
        "alerts": sum(t[1] for t in teams), "acknowledged": sum(t[2] for t in teams),
        "acted": sum(t[3] for t in teams), "fixed": sum(t[4] for t in teams),
    }
    topics = [
        ("shipping_delay", 4210, "logistics"), ("product_defect", 3380, "product_quality"),
        ("sizing", 2650, "merchandising"), ("customer_service", 2140, "support"),
        ("battery_power", 1720, "product_quality"), ("damaged_packaging", 1460, "fulfillment"),
        ("price_value", 1180, "pricing"), ("praise", 1660, "marketing"),
    ]
    total = sum(t[1] for t in topics)
    alerts = [
        ("alr-0001", "product_defect", "fam-017", "2026-03-02", 41, 12.5, 1.2e-9, "product_quality"),
        ("alr-0002", "battery_power", "fam-042", "2026-03-04", 27, 9.0, 3.4e-6, "product_quality"),
        ("alr-0003", "shipping_delay", "fam-008", "2026-03-05", 58, 31.0, 2.1e-5, "logistics"),
        ("alr-0004", "damaged_packaging", "fam-033", "2026-03-09", 19, 7.5, 6.0e-4, "fulfillment"),
        ("alr-0005", "customer_service", "fam-021", "2026-03-12", 22, 10.0, 1.5e-3, "support"),
        ("alr-0006", "sizing", "fam-051", "2026-03-15", 25, 13.0, 2.6e-3, "merchandising"),
        ("alr-0007", "price_value", "fam-011", "2026-03-20", 16, 8.0, 8.1e-3, "pricing"),
    ]
    checks = [
        _check("sample_ratio_mismatch", "pass", "Arms split 60/60 as designed (chi-square p = 1.00).",
               statistic=0.0, p_value=1.0, threshold=0.001),
        _check("covariate_balance", "pass", "Largest standardized difference 0.07 (pre-period orders).",
               statistic=0.07, threshold=0.1),
        _check("pre_trends", "warn", "Pre-period difference in negative reviews is small but not zero (p = 0.08).",
               statistic=1.75, p_value=0.08, threshold=0.1),
        _check("regression_to_the_mean", "pass", "Treated families were not selected on a recent spike.",
               statistic=0.02, threshold=0.1),
        _check("contamination", "skip", "No cross-arm alert deliveries recorded; check not applicable."),
        _check("placebo_outcome", "pass", "No effect on a placebo KPI (praise mentions), p = 0.61.",
               statistic=0.51, p_value=0.61, threshold=0.05),
    ]
    decay = [("2025-Q3", -0.17, -0.25, -0.09), ("2025-Q4", -0.16, -0.23, -0.09), ("2026-Q1", -0.12, -0.20, -0.04)]
    topic_owners = {t[0]: t[2] for t in topics}
    return {
        "schema_version": 2,
        "program": {
            "name": _PROGRAM_NAME,
            "value_hypothesis": (
                "Routing detected complaint themes to the owning team within two days cuts negative reviews per "
                "1,000 orders by 15% in treated SKU families, with fewer tickets and refunds."
            ),
            "currency": "USD", "horizon_months": 12,
            "primary_kpi": "negative_reviews_per_1000_orders", "design": "cluster", "unit": "sku_family",
            "alpha": _ALPHA,
            "kpi_owners": {k["name"]: k["owner"] for k in kpis}, "kpi_layers": {k["name"]: k["layer"] for k in kpis},
            "topic_owners": topic_owners,
            # Audience view -> owners whose KPIs, alerts and teams that view shows.
            "audiences": {"support": ["support", "customer_service"], "product": ["product", "product_quality", "ml_platform"],
                          "finance": ["finance"]},
        },
        "generated_at": "2026-04-02T08:00:00",
        "is_demo": is_demo,
        "window": {"start": _WINDOW[0], "end": _WINDOW[1]},
        "experiment": {
            "name": "theme-alerts-2025", "design": "cluster", "unit": "sku_family",
            "n_treatment": 60, "n_control": 60, "checks": checks, "alpha": _ALPHA,
            "window": {"start": _WINDOW[0], "end": _WINDOW[1]},
        },
        "kpis": kpis,
        "decision_rules": _rules(kpis),
        "quasi": _quasi(kpis, is_demo),
        "roi": roi,
        "chain": {
            "funnel": funnel,
            "by_team": [
                {"team": t[0], "alerts": t[1], "acknowledged": t[2], "acted": t[3], "fixed": t[4],
                 "adoption_rate": _r(t[3] / t[1], 4), "median_hours_to_ack": t[5], "median_days_to_fix": t[6],
                 "override_rate": t[7], "backlog": t[1] - t[3]}
                for t in teams
            ],
            "inferred_links": 37,
        },
        "insights": {
            "model_version": "lexicon-vader-1.3+topics-0.9",
            "topics": [{"topic": t[0], "count": t[1], "share": _r(t[1] / total, 4), "owner": t[2]} for t in topics],
            "alerts": [
                {"alert_id": a[0], "topic": a[1], "sku_family": a[2], "day": a[3], "observed": a[4],
                 "expected": a[5], "p_value": a[6], "owner": a[7]}
                for a in alerts
            ],
            "new_themes": [{
                "terms": ["subscription", "auto-renew", "cancel"], "size": 86,
                "examples": ["I was charged again after I cancelled the auto-renew",
                             "no way to cancel the subscription in the app"],
            }],
            "validation": {"macro_f1": 0.81, "accuracy": 0.86, "n_labels": 1200, "coverage": 0.93},
        },
        "monitor": {
            "decision": "retrain",
            "reasons": [
                "Topic-mix drift on feedback text: PSI 0.27 above the 0.25 action threshold.",
                "Effect on negative reviews decayed from -17% to -12% over three quarters.",
                "Value at risk over 90 days ($11,800) exceeds the retraining cost ($5,000).",
            ],
            "drift": [
                {"feature": "topic_mix", "psi": 0.27, "p_value": 0.0004, "status": "fail"},
                {"feature": "text_length", "psi": 0.12, "p_value": 0.03, "status": "warn"},
                {"feature": "sentiment_score", "psi": 0.04, "p_value": 0.41, "status": "pass"},
                {"feature": "other_share", "psi": 0.06, "p_value": 0.22, "status": "pass"},
            ],
            "decay": [{"period": d[0], "estimate": d[1], "ci_low": d[2], "ci_high": d[3]} for d in decay],
            "policy": {"retrain_cost": 5000.0, "horizon_days": 90, "retire_after_periods": 3, "period_days": 28,
                       "value_at_risk": 11800.0},
        },
        "claims": [
            {"claim": "Alerts cut negative reviews by 15%", "label": "naive", "verdict": "supported",
             "incremental_relative": -0.15, "incremental_relative_ci": [-0.224, -0.076],
             "reasons": ["Estimate -15.0% with 95% CI [-22.4%, -7.6%]; checks pass except a pre-trend warning."]},
            {"claim": "The program raised conversion", "label": "naive", "verdict": "not_supported",
             "incremental_relative": 0.019, "incremental_relative_ci": [-0.012, 0.05],
             "reasons": ["Conversion effect +1.9%, CI includes zero (p = 0.23)."]},
            # As `insightroi validate-claim` saves it: the parsed claim, the validator's verdict words.
            {"claim": {"text": "tickets per 1000 orders fell 12%", "direction": "decrease", "magnitude": 0.12,
                       "kind": "relative"},
             "kpi": "tickets_per_1000_orders", "label": "saved", "verdict": "weak",
             "incremental_relative": -0.08, "incremental_relative_ci": [-0.129, -0.031],
             "reasons": ["The incremental effect (-8.0%) is real but smaller than the claimed -12%."]},
        ],
        "provenance": _provenance(is_demo),
    }


def sample_sections(program_hash: str, *, is_demo: bool = False, seed: int = 7) -> dict[str, dict[str, Any]]:
    """The sample bundle split into the stage sections the stages save (``insightroi.bundle``).

    Saving each with ``store.save_result("section", stage, payload)`` gives a store that
    :func:`insightroi.bundle.assemble_bundle` reads like one the stages filled, without running
    them: what tests of the report, the ``report`` command and the dashboard need.

    Parameters
    ----------
    program_hash : str
        ``insightroi.bundle.program_hash(program)`` of the program the sections are for; a
        section under another hash is reported stale, not shown.
    is_demo, seed
        As for :func:`sample_bundle`.

    Returns
    -------
    dict of str to dict
        Stage name -> section payload (JSON), each with its provenance.
    """
    b = sample_bundle(is_demo=is_demo, seed=seed)
    prov = {stage: {**p, "program_hash": program_hash} for stage, p in _provenance(is_demo).items()}
    exp = b["experiment"]
    sections = {
        "analyze": {"name": exp["name"], "design": exp["design"], "unit": exp["unit"],
                    "n_treatment": exp["n_treatment"], "n_control": exp["n_control"], "alpha": exp["alpha"],
                    "window": exp["window"], "checks": exp["checks"], "kpis": b["kpis"],
                    "decision_rules": b["decision_rules"]},
        "insights": dict(b["insights"]),
        "chain": dict(b["chain"]),
        "roi": dict(b["roi"]),
        # The quasi stage's own claims; claims saved by validate-claim live under kind "claim".
        "quasi": {"rows": b["quasi"], "claims": [c for c in b["claims"] if c.get("label") != "saved"]},
        "monitor": dict(b["monitor"]),
    }
    return {stage: {**payload, "provenance": prov[stage]} for stage, payload in sections.items()}

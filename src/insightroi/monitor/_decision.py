"""The retrain / retire / keep decision, in money rather than calendar terms."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from insightroi._constants import MONITOR_GATES
from insightroi.errors import DataError
from insightroi.monitor._decay import decay_rows
from insightroi.program import Program
from insightroi.roi import MONTH_DAYS, pool_coefficient
from insightroi.stats import Result
from insightroi.stats import critical_value, jsonable

__all__ = ["MonitorDecision", "decide", "decide_total", "hard_valued_kpis", "running_cost_per_period", "value_per_unit", "decision_kpi", "MONITOR_GATES",
           "monitor_gate_failures"]

Decision = Literal["keep", "retrain", "retire"]
_DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class MonitorDecision:
    """What to do with the insight model, and why.

    Attributes
    ----------
    decision : {"keep", "retrain", "retire"}
    reasons : list of str
        Sentences naming the figures and thresholds behind the decision.
    evidence : list of dict
        ``{name, value, threshold, triggered, detail}`` for every rule that was evaluated
        (economic rules and drift alerts), triggered or not.
    kpi : str
        The KPI whose effect was valued.
    figures : dict
        Baseline and current benefit, value lost over the horizon, costs, volumes.
    policy : dict
        The retraining policy and monitoring thresholds used.
    """

    decision: Decision
    reasons: list[str]
    evidence: list[dict[str, Any]] = field(default_factory=list)
    kpi: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return jsonable(asdict(self))


def decision_kpi(program: Program) -> str:
    """The KPI the decision values: the primary KPI if a hard value pool prices it, else the first
    KPI that has one (soft value never drives a retrain or retire decision), else the primary KPI."""
    hard = [p.kpi for p in program.value_pools if p.hard]
    primary = program.experiment.primary_kpi
    if primary in hard:
        return primary
    for k in program.kpis:
        if k.name in hard:
            return k.name
    return primary


def value_per_unit(program: Program, kpi: str) -> float:
    """Money per avoided (or gained) numerator event of ``kpi``: sum of its hard per-event pools' modes.

    Share-of-value-at-risk pools have no value per event; :func:`decide_total` values them.
    """
    return float(sum(p.unit_value.mode for p in program.value_pools
                     if p.kpi == kpi and p.hard and p.formula == "per_event"))


def _money_per_effect(program: Program, kpi: str, *, treated_volume: float, control_mean: float | None,
                      months: float) -> float:
    # Every hard pool of the KPI at its most likely value, through the ROI engine's conversion.
    k = program.kpi(kpi)
    total = 0.0
    for p in program.value_pools:
        if p.kpi == kpi and p.hard:
            try:
                total += p.value.mode * pool_coefficient(p.formula, direction=k.direction, scale=k.scale,
                                                         treated_volume=treated_volume, control_mean=control_mean,
                                                         months=months)
            except ValueError as exc:
                raise DataError(f"value pool {p.name!r} in a period: {exc}") from None
    return total


def running_cost_per_period(program: Program, *, feedback_per_period: float = 0.0) -> float:
    """Cost of keeping the program running for one policy period (``retraining.period_days``).

    Recurring lines only, at their mode: per-month lines x period months, per-1000-feedback
    lines x ``feedback_per_period`` / 1000, recurring "total" lines spread over the program
    horizon. One-off lines are sunk and do not enter a forward-looking retire decision.
    """
    months = program.retraining.period_days / _DAYS_PER_MONTH
    total = 0.0
    for c in program.costs:
        if c.kind != "recurring":
            continue
        if c.per == "month":
            total += c.amount.mode * months
        elif c.per == "1000_feedback":
            total += c.amount.mode * feedback_per_period / 1000.0
        else:
            total += c.amount.mode * months / program.program.horizon_months
    return float(total)


def decide(
    effects: Sequence[Result | Mapping[str, Any]],
    program: Program,
    *,
    volume_per_period: float | None = None,
    kpi: str | None = None,
    unit_value: float | None = None,
    running_cost: float | None = None,
    feedback_per_period: float = 0.0,
    baseline_periods: int | None = None,
    drift: Sequence[Mapping[str, Any]] = (),
    in_money: bool = False,
) -> MonitorDecision:
    """Retrain, retire or keep monitoring, from per-period effects and the program's economics.

    Rules (evaluated in this order; each is listed in ``evidence`` whether it fired or not):

    1. **Retrain** when the expected value lost over the policy horizon exceeds the retraining
       cost (the "pain budget", ``retraining.retrain_cost``, default 5000)::

           value_lost = max(0, baseline_benefit - current_benefit)
                        x unit_value x volume_per_period x horizon_days / period_days

       where benefit is the value-positive effect per denominator unit (``-estimate / scale`` for
       a "decrease" KPI), ``baseline_benefit`` is the inverse-variance mean of the first
       ``baseline_periods`` periods (default: the earlier half of the periods before the last)
       and ``current_benefit`` the last period's. Retraining restores the baseline at best, so it
       is only proposed when the baseline's value per period covered the running cost.
    2. **Retire** when the upper confidence bound of the benefit, valued the same way, stayed
       below the running cost per period for the last ``retraining.retire_after_periods``
       (default 3) periods in a row.
    3. Otherwise **keep** monitoring.

    Drift rows (from :func:`insightroi.monitor.monitor_store` or the drift helpers) are listed as
    evidence; they explain a decline but do not by themselves trigger a retrain, because
    retraining is worth paying for only when value is being lost.

    Parameters
    ----------
    effects : sequence of Result or dict
        Per-period treatment-minus-control effects in KPI units, in time order (from
        :func:`insightroi.monitor.outcome_decay` or dicts ``{period, estimate, ci_low, ci_high}``).
    program : Program
        Supplies the KPI (direction, scale), value pools, cost stack and retraining policy.
    volume_per_period : float, optional
        Denominator volume of the treated units per period (e.g. orders). Default: the mean
        ``treatment_denominator`` recorded in the effects.
    kpi : str, optional
        KPI the effects are about (default :func:`decision_kpi`).
    unit_value : float, optional
        Money per avoided event (default: the KPI's hard value pools, :func:`value_per_unit`).
    running_cost : float, optional
        Running cost per period (default :func:`running_cost_per_period`).
    feedback_per_period : float
        Feedback volume per period, for per-1000-feedback cost lines.
    baseline_periods : int, optional
        How many leading periods form the baseline.
    drift : sequence of dict
        Drift rows ``{feature, psi, p_value, status}`` shown as evidence.
    """
    policy = program.retraining
    kpi = kpi or decision_kpi(program)
    k = program.kpi(kpi)
    rows = decay_rows(effects)
    if in_money:
        unit_value, volume_per_period = 1.0, 1.0
    value = value_per_unit(program, kpi) if unit_value is None else float(unit_value)
    cost_period = (
        running_cost_per_period(program, feedback_per_period=feedback_per_period)
        if running_cost is None
        else float(running_cost)
    )
    if volume_per_period is None:
        vols = [r["treatment_denominator"] for r in rows if "treatment_denominator" in r]
        volume_per_period = float(np.mean(vols)) if vols else float("nan")
    policy_dict = {
        **policy.model_dump(),
        **{f"monitoring_{k_}": v for k_, v in program.monitoring.model_dump().items()},
    }
    drift_evidence = [
        {
            "name": f"drift:{d.get('feature')}",
            "value": d.get("psi") if d.get("psi") is not None else d.get("value"),
            "threshold": d.get("threshold", program.monitoring.psi_alert),
            "triggered": d.get("status") == "alert",
            "detail": d.get("detail", ""),
        }
        for d in drift
        if d.get("status") in ("alert", "warn")
    ]
    alerts = [e["name"].removeprefix("drift:") for e in drift_evidence if e["triggered"]]

    sign = 1.0 if in_money else (-1.0 if k.direction == "decrease" else 1.0)
    scale = 1.0 if in_money else k.scale
    figures: dict[str, Any] = {
        "kpi": kpi,
        "unit_value": value,
        "volume_per_period": volume_per_period,
        "running_cost_per_period": cost_period,
        "retrain_cost": policy.retrain_cost,
        "periods": len(rows),
    }
    if not rows:
        return MonitorDecision("keep", ["no per-period effects yet: keep monitoring"], drift_evidence, kpi, figures, policy_dict)
    if value <= 0 or not np.isfinite(volume_per_period):
        why = (
            f"no hard value pool prices KPI {kpi!r}" if value <= 0 else "the treated volume per period is unknown"
        )
        return MonitorDecision(
            "keep", [f"{why}: the effect cannot be valued, keep monitoring"], drift_evidence, kpi, figures, policy_dict
        )

    benefit = np.array([sign * r["estimate"] / scale for r in rows])
    se = np.array([r.get("se", np.nan) / scale for r in rows])
    # The favourable end of the interval: -ci_low for a "decrease" KPI, ci_high for "increase".
    upper = np.array(
        [(sign * (r["ci_low"] if sign < 0 else r["ci_high"])) / scale for r in rows]
    )
    to_money = value * volume_per_period

    n_base = baseline_periods or max(1, (len(rows) - 1) // 2)
    n_base = min(n_base, max(1, len(rows) - 1))
    w = 1.0 / np.where(np.isfinite(se[:n_base]) & (se[:n_base] > 0), se[:n_base] ** 2, np.nan)
    if np.all(np.isfinite(w)):
        baseline = float(np.sum(w * benefit[:n_base]) / np.sum(w))
    else:
        baseline = float(np.mean(benefit[:n_base]))
    current = float(benefit[-1])
    decline = max(0.0, baseline - current) if len(rows) > 1 else 0.0
    horizon_periods = policy.horizon_days / policy.period_days
    value_lost = decline * to_money * horizon_periods
    baseline_value = baseline * to_money
    figures.update(
        baseline_benefit_per_unit=baseline,
        current_benefit_per_unit=current,
        decline_per_unit=decline,
        baseline_value_per_period=baseline_value,
        current_value_per_period=current * to_money,
        value_lost_over_horizon=value_lost,
        horizon_periods=horizon_periods,
        baseline_periods=n_base,
    )

    below = upper * to_money < cost_period
    streak = 0
    for b in below[::-1]:
        if not b:
            break
        streak += 1
    figures["periods_upper_bound_below_cost"] = streak

    retrain_worth = value_lost > policy.retrain_cost
    baseline_pays = baseline_value >= cost_period
    retire = streak >= policy.retire_after_periods
    evidence = [
        {
            "name": "value_lost_over_horizon",
            "value": value_lost,
            "threshold": policy.retrain_cost,
            "triggered": retrain_worth,
            # Rows already in money (the hard value of every priced KPI summed) have no unit value
            # or volume to show: their 1 x 1 read as placeholders.
            "detail": (
                f"hard value decline {decline:,.4g} {program.program.currency}/period x {horizon_periods:.3g} periods"
                if in_money else
                f"effect decline {decline:.4g} per unit x {value:.4g} {program.program.currency} x "
                f"{volume_per_period:.4g} units/period x {horizon_periods:.3g} periods"
            ),
        },
        {
            "name": "baseline_value_covers_running_cost",
            "value": baseline_value,
            "threshold": cost_period,
            "triggered": baseline_pays,
            "detail": "retraining restores at most the baseline effect",
        },
        {
            "name": "periods_upper_bound_below_running_cost",
            "value": float(streak),
            "threshold": float(policy.retire_after_periods),
            "triggered": retire,
            "detail": f"upper bound of value per period vs running cost {cost_period:.4g}",
        },
        *drift_evidence,
    ]
    cur = program.program.currency
    drift_note = f"; drift alerts on {', '.join(alerts)}" if alerts else "; no input-drift alert"
    if retrain_worth and baseline_pays:
        reasons = [
            f"expected value lost over {policy.horizon_days} days ({value_lost:,.0f} {cur}) exceeds the "
            f"retraining cost ({policy.retrain_cost:,.0f} {cur}){drift_note}",
            f"effect per unit fell from {baseline:.4g} (first {n_base} period(s)) to {current:.4g}",
        ]
        return MonitorDecision("retrain", reasons, evidence, kpi, figures, policy_dict)
    if retire:
        reasons = [
            f"the effect's upper bound was worth less than the running cost ({cost_period:,.0f} {cur} per "
            f"{policy.period_days}-day period) for the last {streak} periods "
            f"(retire_after_periods = {policy.retire_after_periods})"
        ]
        if retrain_worth:
            reasons.append("retraining would only restore a baseline that did not cover its running cost")
        return MonitorDecision("retire", reasons, evidence, kpi, figures, policy_dict)
    reasons = [
        f"expected value lost over {policy.horizon_days} days ({value_lost:,.0f} {cur}) is within the "
        f"retraining cost ({policy.retrain_cost:,.0f} {cur}){drift_note}",
        f"upper bound below running cost in {streak} trailing period(s) "
        f"(retire after {policy.retire_after_periods})",
    ]
    return MonitorDecision("keep", reasons, evidence, kpi, figures, policy_dict)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def hard_valued_kpis(program: Program) -> list[str]:
    """The KPIs a hard value pool prices, in program order: the value a retire decision weighs."""
    hard = {p.kpi for p in program.value_pools if p.hard}
    return [k.name for k in program.kpis if k.name in hard]


def decide_total(
    effects_by_kpi: Mapping[str, Sequence[Result | Mapping[str, Any]]],
    program: Program,
    *,
    volumes: Mapping[str, float] | None = None,
    running_cost: float | None = None,
    feedback_per_period: float = 0.0,
    baseline_periods: int | None = None,
    drift: Sequence[Mapping[str, Any]] = (),
) -> MonitorDecision:
    """:func:`decide` on the whole hard value the model drives: every priced KPI, summed in money.

    Valuing one KPI against the whole running cost retires a model that pays for itself through
    the others (the demo's tickets are under a tenth of its hard value). Each KPI's per-period
    effect becomes money, ``sign x estimate / scale x unit_value x volume``, with its standard
    error; the per-period totals (periods all KPIs share, in the first KPI's order) and their
    standard errors (KPIs' effects taken as independent, which ignores their correlation through
    shared units) go through the rules of :func:`decide` unchanged. The figures add each KPI's
    share and the decision's expected value: the net value of keeping the model over the policy
    horizon, ``(current total - running cost) x periods``, with its standard error and the
    probability it is positive.

    Parameters
    ----------
    effects_by_kpi : mapping of KPI name -> per-period effects
        As :func:`decide` takes for one KPI; KPIs without a hard value pool are ignored.
    program : Program
    volumes : mapping of KPI name -> float, optional
        Treated denominator volume per period, for effects that carry no ``treatment_denominator``.
    running_cost, feedback_per_period, baseline_periods, drift
        As in :func:`decide`.

    Returns
    -------
    MonitorDecision
        ``kpi`` is ``"total hard value"``; ``figures["kpis"]`` holds each KPI's baseline and current
        value per period.
    """
    priced = [k for k in hard_valued_kpis(program) if k in effects_by_kpi]
    per_kpi: dict[str, dict[str, tuple[float, float]]] = {}
    months = program.retraining.period_days / MONTH_DAYS
    for name in priced:
        rows = decay_rows(effects_by_kpi[name])
        money: dict[str, tuple[float, float]] = {}
        for r in rows:
            vol = r.get("treatment_denominator", (volumes or {}).get(name, float("nan")))
            to_money = _money_per_effect(program, name, treated_volume=float(vol), control_mean=r.get("control_mean"),
                                         months=months)
            money[r["period"]] = (r["estimate"] * to_money, r.get("se", float("nan")) * abs(to_money))
        per_kpi[name] = money
    periods = [p for p in next(iter(per_kpi.values()), {}) if all(p in m for m in per_kpi.values())]
    z = critical_value(0.05)
    total_rows = []
    for p in periods:
        est = sum(per_kpi[k][p][0] for k in per_kpi)
        se = math.sqrt(sum(per_kpi[k][p][1] ** 2 for k in per_kpi))
        total_rows.append({"period": p, "estimate": est, "se": se, "ci_low": est - z * se, "ci_high": est + z * se})
    label = priced[0] if priced else decision_kpi(program)
    out = decide(total_rows, program, kpi=label, running_cost=running_cost, feedback_per_period=feedback_per_period,
                 baseline_periods=baseline_periods, drift=drift, in_money=True)
    figures = dict(out.figures)
    figures["valued_kpis"] = priced
    if total_rows:
        n_base = int(figures.get("baseline_periods") or 1)
        current = total_rows[-1]
        horizon = program.retraining.horizon_days / program.retraining.period_days
        cost = float(figures["running_cost_per_period"])
        net, net_se = (current["estimate"] - cost) * horizon, current["se"] * horizon
        figures["kpis"] = {k: {"baseline_value_per_period": float(np.mean([per_kpi[k][p][0] for p in periods[:n_base]])),
                               "current_value_per_period": per_kpi[k][periods[-1]][0],
                               "current_se": per_kpi[k][periods[-1]][1]} for k in per_kpi}
        figures.update(current_value_per_period=current["estimate"], current_value_se=current["se"],
                       net_value_of_keeping_over_horizon=net, net_value_se=net_se,
                       p_net_value_positive=_normal_cdf(net / net_se) if net_se > 0 else float(net > 0))
        reasons = list(out.reasons) + [
            f"hard value now {current['estimate']:,.0f} ± {current['se']:,.0f} {program.program.currency} per "
            f"{program.retraining.period_days}-day period across {len(per_kpi)} KPI(s) "
            f"({', '.join(f'{k} {v[periods[-1]][0]:,.0f}' for k, v in per_kpi.items())}) vs running cost {cost:,.0f}; "
            f"keeping it for {horizon:.3g} periods is worth {net:,.0f} ± {net_se:,.0f} "
            f"(P > 0 = {figures['p_net_value_positive']:.0%})"]
        out = replace(out, reasons=reasons)
    return replace(out, kpi="total hard value", figures=figures)


def monitor_gate_failures(section: Mapping[str, Any], gate: str) -> list[str]:
    """Why a monitoring run should stop a pipeline at ``gate`` (empty: it passes).

    Parameters
    ----------
    section : mapping
        The saved ``monitor`` section as JSON (``decision``, ``evidence``, ``drift``).
    gate : {"warn", "alert", "retrain", "retire"}
        ``"retire"`` trips on a retire decision; ``"retrain"`` on retrain or retire; ``"alert"``
        on those or any triggered rule or drift alert; ``"warn"`` on those or a drift warning.
        Each level includes the ones after it, as Evidently's test-suite severities do.

    in_money : bool
        ``effects`` are already value-positive money per period (the sum over KPIs that
        :func:`decide_total` builds): direction, scale, unit value and volume are 1.

    Returns
    -------
    list of str
        One line per tripped condition.
    """
    if gate not in MONITOR_GATES:
        raise DataError(f"--fail-on: unknown gate {gate!r}; choose from {', '.join(MONITOR_GATES)}")
    level = MONITOR_GATES.index(gate)
    decision = section.get("decision")
    out: list[str] = []
    if decision == "retire" or (decision == "retrain" and level <= MONITOR_GATES.index("retrain")):
        out.append(f"decision {decision}: " + "; ".join(section.get("reasons") or []))
    if level <= MONITOR_GATES.index("alert"):
        out += [f"rule {e.get('name')} triggered (value {e.get('value')}, threshold {e.get('threshold')})"
                for e in section.get("evidence") or [] if e.get("triggered") and not str(e.get("name")).startswith("drift:")]
        out += [f"drift alert on {d.get('feature')}" for d in section.get("drift") or [] if d.get("status") == "alert"]
    if level == 0:
        out += [f"drift warning on {d.get('feature')}" for d in section.get("drift") or [] if d.get("status") == "warn"]
    return out

"""The field's ROI arithmetic as small exact functions (the worked examples are tested against them).

These are the formulas finance reads; the Monte Carlo engine in :mod:`insightroi.roi._engine`
applies exactly the same definitions to every draw.
"""

from __future__ import annotations

import math

__all__ = [
    "incremental_lift",
    "revenue_saved",
    "roi_ratio",
    "benefit_cost_ratio",
    "payback_months",
    "avoided_events",
    "pool_coefficient",
    "MONTH_DAYS",
]

#: Days per month in every figure "per month" (365.25 / 12).
MONTH_DAYS = 30.4375


def incremental_lift(treated_change: float, control_change: float) -> float:
    """Incremental effect: the change in the exposed group minus the change in the control group.

    Parameters
    ----------
    treated_change, control_change : float
        The change (or rate) observed in the treated (exposed) and the control (holdout) group,
        in the same units (e.g. 0.12 and 0.04, or 12 and 4 percentage points).

    Returns
    -------
    float
        ``treated_change - control_change``: "negative reviews fell by 12% in the exposed group and
        4% in the holdout: the incremental effect is 8 points, not 12" (seed article "How to
        Measure ROI for Customer Insight Models").
    """
    return float(treated_change) - float(control_change)


def revenue_saved(rate_reduction: float, value_at_risk: float) -> float:
    """Revenue saved by a reduction in a loss rate: reduction x total value exposed to it.

    Example from the field: churn drops by 5% of a churned value of $70,000 -> $3,500.
    """
    return float(rate_reduction) * float(value_at_risk)


def roi_ratio(benefit: float, cost: float) -> float:
    """Return on investment, net of cost: ``(benefit - cost) / cost``.

    A benefit of $85,000 on a cost of $60,000 is an ROI of 41.7%, not 142%. Raises
    ``ZeroDivisionError``-free: a zero cost gives ``inf`` (or NaN for 0/0), never an exception.
    """
    benefit, cost = float(benefit), float(cost)
    if cost == 0.0:
        return math.nan if benefit == 0.0 else math.copysign(math.inf, benefit)
    return (benefit - cost) / cost


def benefit_cost_ratio(benefit: float, cost: float) -> float:
    """Benefit-cost ratio, ``benefit / cost``.

    Vendors often quote this as "ROI": a "3.5x ROI" read as benefit / cost = 3.5 is an ROI of
    (benefit - cost) / cost = 2.5, i.e. 250%, not 350%.
    """
    benefit, cost = float(benefit), float(cost)
    if cost == 0.0:
        return math.nan if benefit == 0.0 else math.copysign(math.inf, benefit)
    return benefit / cost


def payback_months(one_off_cost: float, monthly_benefit: float, monthly_recurring_cost: float) -> float:
    """Months until cumulative benefit covers the one-off cost plus the recurring cost so far.

    Solves ``monthly_benefit * m = one_off_cost + monthly_recurring_cost * m`` for ``m``, assuming
    benefit and recurring cost accrue evenly. ``inf`` when the monthly net benefit is not positive
    (the program never pays back); 0 when there is no one-off cost and the net is positive.
    """
    net = float(monthly_benefit) - float(monthly_recurring_cost)
    if net <= 0.0:
        return math.inf
    return max(float(one_off_cost), 0.0) / net


def avoided_events(effect: float, scale: float, denominator_volume: float, direction: str = "decrease") -> float:
    """Events avoided (value-positive) implied by a KPI effect over a treated denominator volume.

    ``-effect / scale x denominator_volume`` for a KPI we want to decrease (fewer tickets per 1,000
    orders is good), and ``+effect / scale x denominator_volume`` for one we want to increase
    (more conversions per session), so that a positive number is always worth money. This is the
    contract's definition (CONTRACTS.md, "ROI truth definition").
    """
    if direction not in ("decrease", "increase"):
        raise ValueError(f"The 'direction' parameter must be one of ['decrease', 'increase']. Got {direction!r} instead.")
    sign = -1.0 if direction == "decrease" else 1.0
    return sign * float(effect) / float(scale) * float(denominator_volume)


def pool_coefficient(formula: str, *, direction: str, scale: float, treated_volume: float,
                     control_mean: float | None, months: float) -> float:
    """Money per unit of KPI effect and per unit of the pool's value, over a span.

    The one conversion every stage uses (the ROI engine, the cadence series, the retrain/retire
    decision), so a value pool is worth the same everywhere.

    Parameters
    ----------
    formula : {"per_event", "share_of_value_at_risk"}
        ``per_event``: the value is money per avoided numerator event, so the coefficient is
        :func:`avoided_events` per unit of effect, ``sign / scale x treated_volume``.
        ``share_of_value_at_risk``: the value is money per month at risk, and the effect's
        relative change against the control level recovers that share of it (:func:`revenue_saved`):
        ``sign / control_mean x months``.
    direction : {"decrease", "increase"}
        The KPI's good direction (the sign that makes a good effect positive money).
    scale : float
        The KPI's scale (1,000 for "per 1,000 orders").
    treated_volume : float
        The treated units' denominator volume over the span (per_event).
    control_mean : float or None
        The KPI in the control arm, in KPI units (share_of_value_at_risk).
    months : float
        Length of the span in months (share_of_value_at_risk).

    Raises
    ------
    ValueError
        A share-of-value pool without a positive control level: a relative change is undefined.
    """
    sign = -1.0 if direction == "decrease" else 1.0
    if formula == "per_event":
        return sign / float(scale) * float(treated_volume)
    if formula == "share_of_value_at_risk":
        if control_mean is None or not math.isfinite(control_mean) or control_mean <= 0:
            raise ValueError(f"a share-of-value-at-risk pool needs the KPI's control level (> 0) to turn the effect "
                             f"into a relative change; got {control_mean!r}")
        return sign / float(control_mean) * float(months)
    raise ValueError(f"unknown value pool formula {formula!r}")

"""Projected vs realized ROI: what the plan assumed, what was measured, and which driver made the gap.

At plan time nothing is measured yet, so the projection prices the effect the design is powered
to detect (``mde_relative`` of each priced KPI's pre-period baseline, with the standard error the
power analysis expects at the planned end), the pre-period's treated volumes and the program's
unit values and costs. After the analysis the same arithmetic runs on the estimates. The gap
between the two expected-case figures is split over four drivers -- effect, volume, unit value,
cost -- by Shapley values: each driver's share is its average marginal change over every order of
swapping the drivers from projected to realized, so the parts add up to the gap exactly and, unlike
a one-order waterfall, do not depend on which driver is swapped first.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np

from insightroi.errors import DataError
from insightroi.program import Program
from insightroi.roi._engine import RoiVolumes, _build_model
from insightroi.stats import Result, critical_value

__all__ = ["DRIVERS", "DRIVER_LABELS", "expected_roi", "projected_effects", "roi_drivers", "roi_waterfall"]

DRIVERS = ("effect", "volume", "unit_value", "cost")
# How each driver of the gap reads to finance (CLI, report and dashboard use the same words).
DRIVER_LABELS = {"effect": "effect (estimated vs planned MDE)", "volume": "volume (treated orders, sessions, ...)",
                 "unit_value": "unit value (program file)", "cost": "cost (program file)"}


def projected_effects(program: Program, power_rows: Sequence[Mapping[str, Any]]) -> dict[str, Result]:
    """The effect each priced KPI is planned for, as a Result the ROI engine can price.

    Parameters
    ----------
    program : Program
        ``experiment.mde_relative``, ``alpha`` and ``power``; each KPI's direction.
    power_rows : sequence of dict
        Rows of :func:`insightroi.experiments.power_table` (``kpi``, ``baseline`` in KPI units,
        ``mde_at_planned_end_cuped`` / ``mde_at_planned_end`` as relative changes).

    Returns
    -------
    dict of str to Result
        Per priced KPI with a non-zero baseline: estimate ``-/+ mde_relative x baseline`` (a fall
        for ``direction = "decrease"``), and the standard error at which the design detects its
        own planned MDE at the planned power -- ``MDE_end x baseline / (z_(1-alpha/2) + z_power)``
        -- or, without a planned end, the one at which the planned effect is exactly the MDE.
    """
    e = program.experiment
    priced = {p.kpi for p in program.value_pools}
    z_sum = critical_value(e.alpha) + critical_value(2 * (1 - e.power))
    out: dict[str, Result] = {}
    for row in power_rows:
        name, base = row.get("kpi"), row.get("baseline")
        if name not in priced or not base:
            continue
        kpi = program.kpi(name)
        effect = e.mde_relative * abs(base) * (-1.0 if kpi.direction == "decrease" else 1.0)
        mde_end = row.get("mde_at_planned_end_cuped") or row.get("mde_at_planned_end")
        se = (mde_end if mde_end else e.mde_relative) * abs(base) / z_sum
        z = critical_value(e.alpha)
        out[name] = Result(estimate=effect, se=se, ci=(effect - z * se, effect + z * se), p_value=math.nan,
                           method="projected_mde", n=int(row.get("units_treatment", 0)) + int(row.get("units_control", 0)),
                           alpha=e.alpha, metric=name,
                           # The baseline is the control level a share-of-value pool's relative change is taken on.
                           extra={"baseline": base, "control_mean": abs(base), "mde_relative": e.mde_relative,
                                  "mde_at_planned_end": mde_end})
    return out


def roi_drivers(program: Program, effects: Mapping[str, Result], volumes: RoiVolumes,
                horizon_months: float) -> dict[str, Any]:
    """The expected-case inputs of the ROI, per value pool, in the form the waterfall swaps.

    Parameters
    ----------
    program, effects, volumes, horizon_months :
        As for :func:`insightroi.roi.compute_roi`.

    Returns
    -------
    dict
        ``pools``: per pool ``name, kpi, hard, effect`` (KPI units), ``volume`` (treated
        denominator over the horizon), ``per_volume`` (avoided events per unit of effect and of
        volume: the KPI's direction over its scale) and ``unit_value`` (most likely);
        ``cost`` (the cost stack at most likely amounts over the horizon) and ``months``.
        :func:`expected_roi` of it equals ``compute_roi(...).estimate``.
    """
    notes: list[str] = []
    m = _build_model(program, effects, volumes, horizon_months, notes)
    run_rate = m.months / volumes.months
    pools = []
    pool_of = {p.name: p for p in program.value_pools}
    for i, name in enumerate(m.pool_names):
        pool = pool_of[name]
        # A share-of-value pool's "volume" is the months of value at risk it recovers a share of.
        volume = volumes.kpis[pool.kpi] * run_rate if pool.formula == "per_event" else m.months
        if volume:
            per_volume = float(m.pool_coef[i]) / volume
        else:  # no treated volume: the coefficient is 0 whatever the rate; keep the KPI's own rate
            k = program.kpi(pool.kpi)
            per_volume = (-1.0 if k.direction == "decrease" else 1.0) / k.scale
        pools.append({"name": name, "kpi": pool.kpi, "hard": bool(m.pool_hard[i]),
                      "effect": float(m.mu[m.pool_k[i]]), "volume": float(volume), "per_volume": per_volume,
                      "unit_value": float(m.v_mode[i])})
    return {"pools": pools, "cost": float((m.c_mode * m.c_mult).sum()), "months": m.months}


def _figures(pools: Sequence[Mapping[str, Any]], cost: float) -> tuple[float, float]:
    hard = sum(p["effect"] * p["per_volume"] * p["volume"] * p["unit_value"] for p in pools if p["hard"])
    roi = (hard - cost) / cost if cost else math.nan
    return roi, hard - cost


def expected_roi(drivers: Mapping[str, Any]) -> float:
    """The expected-case ROI, ``(hard benefit - cost) / cost``, of :func:`roi_drivers`' output."""
    return _figures(drivers["pools"], drivers["cost"])[0]


def roi_waterfall(projected: Mapping[str, Any], realized: Mapping[str, Any]) -> dict[str, Any]:
    """Split the gap between projected and realized ROI over effect, volume, unit value and cost.

    Parameters
    ----------
    projected, realized : dict
        :func:`roi_drivers` outputs. Pools are matched by name; a pool on one side only counts
        with effect 0 on the other (the program gained or lost it), its volume and value taken
        from the side that has it.

    Returns
    -------
    dict
        ``projected_roi``, ``realized_roi``, ``projected_net``, ``realized_net`` (hard benefit
        minus cost, money) and ``steps``: per driver its Shapley share of the ROI gap (``roi``)
        and of the net-value gap (``net``). The shares add up to the gaps (to rounding).
    """
    if projected.get("months") and realized.get("months") and abs(projected["months"] - realized["months"]) > 1e-9:
        raise DataError(f"projected ({projected['months']:.2f} months) and realized ({realized['months']:.2f} "
                        "months) ROI cover different horizons: the gap would mix the horizon into every driver")
    proj = {p["name"]: p for p in projected["pools"]}
    real = {p["name"]: p for p in realized["pools"]}
    names = list(dict.fromkeys([*proj, *real]))

    def side(src: Mapping[str, Any], other: Mapping[str, Any], name: str) -> dict[str, Any]:
        if name in src:
            return dict(src[name])
        return {**other[name], "effect": 0.0}

    a = [side(proj, real, n) for n in names]
    b = [side(real, proj, n) for n in names]
    field_of = {"effect": "effect", "volume": "volume", "unit_value": "unit_value"}

    def value(swapped: frozenset[str]) -> tuple[float, float]:
        pools = [{**pa, **{f: pb[f] for d, f in field_of.items() if d in swapped}, "per_volume": pb["per_volume"]
                  if "volume" in swapped else pa["per_volume"]} for pa, pb in zip(a, b)]
        cost = realized["cost"] if "cost" in swapped else projected["cost"]
        return _figures(pools, cost)

    n = len(DRIVERS)
    cache = {frozenset(s): value(frozenset(s)) for r in range(n + 1) for s in combinations(DRIVERS, r)}
    steps = []
    for d in DRIVERS:
        others = [x for x in DRIVERS if x != d]
        share = np.zeros(2)
        for r in range(n):
            w = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for s in combinations(others, r):
                share += w * (np.array(cache[frozenset(s) | {d}]) - np.array(cache[frozenset(s)]))
        steps.append({"driver": d, "label": DRIVER_LABELS[d], "roi": float(share[0]), "net": float(share[1])})
    p_roi, p_net = cache[frozenset()]
    r_roi, r_net = cache[frozenset(DRIVERS)]
    return {"projected_roi": p_roi, "realized_roi": r_roi, "projected_net": p_net, "realized_net": r_net,
            "steps": steps}

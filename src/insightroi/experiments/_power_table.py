"""The power table of ``insightroi plan``: weeks needed per KPI, from the store's pre-period data.

For a ratio KPI analysed at the randomization unit (a SKU family in a cluster design: the
variance is taken over clusters, so the intra-cluster correlation is already in it), the
per-unit variance of the linearised ratio over a window of ``T`` weeks behaves like
``V(T) = a + b / T``: ``b / T`` is the noise of counting events (it shrinks as the window
grows) and ``a`` the lasting between-unit heterogeneity, which no duration removes. ``a`` and
``b`` are fitted from the pre-period at one week and at its full length.

The analysis (:func:`insightroi.experiments.analyze_experiment`) adjusts each KPI by the unit's
pre-period KPI (CUPED), which removes most of ``a`` when units keep their level. So the table
also measures the covariance of a unit's KPI in two adjacent pre-period windows of equal length
and gives, for each duration, the variance CUPED leaves
(:func:`insightroi.stats.duration_variances`). For ``n_t`` and ``n_c`` randomization
units (assigned units, whether or not they had pre-period rows) the effect
``mde_relative x baseline`` is detected with power ``power_from_se(effect, se(T))``,
``se(T)^2 = V(T) (f/n_t + 1/n_c)``, where ``f = max(m, m^2)`` for the effect's rate multiplier
``m`` is the treated arm's variance change under the effect, on a t reference with
``n_t + n_c - 2`` degrees of freedom (the analysis' Welch t over units; it matters with few
clusters). ``V(T)`` is the plain variance or the one CUPED leaves.

With more than one treatment arm (A/B/n: assignment labels besides ``control``), each row also
gets ``arms``: every arm's MDE against control at the planned end, from
:func:`insightroi.stats.multi_arm_mde` with the same ``V(T)`` and the arm's own units, at the
family-wise level the analysis' Holm (or Dunnett) comparison across arms holds (see
:func:`arm_mdes`).
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd

from insightroi.experiments._common import quantile_measure, whole_window_kpis
from insightroi.metrics import unit_measures_expr
from insightroi.program import Program
from insightroi.stats import (
    Ratio,
    RatioRegressionAdjusted,
    design_effect,
    duration_variances,
    mde_from_se,
    multi_arm_mde,
    power_from_se,
    ratio_unit_variance,
    ratio_window_moments,
)
from insightroi.store import Store

__all__ = ["adjacent_window_covariance", "arm_mdes", "power_table", "variance_model"]

MAX_WEEKS = 156


def variance_model(weekly_num: np.ndarray, weekly_den: np.ndarray) -> tuple[float, float, float]:
    """Fit ``V(T) = a + b / T`` from a units x weeks matrix of numerators and denominators.

    Returns
    -------
    (a, b, baseline)
        Between-unit and per-week variance components of the linearised ratio, and the ratio
        of sums over the whole matrix.
    """
    weeks = weekly_num.shape[1]
    full = Ratio.from_arrays(weekly_num.sum(axis=1), weekly_den.sum(axis=1))
    v_full = ratio_unit_variance(full)
    one = [ratio_unit_variance(Ratio.from_arrays(weekly_num[:, w], weekly_den[:, w]))
           for w in range(weeks) if weekly_den[:, w].sum() > 0]
    one = [v for v in one if math.isfinite(v)]
    if weeks < 2 or not one:
        return max(v_full, 0.0), 0.0, full.mean
    v1 = float(np.mean(one))
    b = (v1 - v_full) / (1 - 1 / weeks)
    a = v1 - b
    if b < 0:
        a, b = max(v_full, 0.0), 0.0
    elif a < 0:
        a, b = 0.0, v_full * weeks
    return float(a), float(b), float(full.mean)


def _icc_from_sums(num: np.ndarray, den: np.ndarray) -> float | None:
    # ANOVA ICC for a 0/1 outcome per denominator item (e.g. "this order got a negative review"),
    # from cluster sums alone: y^2 = y, so the within sum of squares is sum(s - s^2 / m).
    ok = den > 0
    s, m = num[ok], den[ok]
    if s.size < 2 or np.any(s > m):
        return None
    big_n, k = m.sum(), s.size
    if big_n <= k:
        return None
    p = s.sum() / big_n
    ssb = float((m * (s / m - p) ** 2).sum())
    ssw = float((s - s**2 / m).sum())
    msb, msw = ssb / (k - 1), ssw / (big_n - k)
    n0 = (big_n - (m**2).sum() / big_n) / (k - 1)
    denom = msb + (n0 - 1) * msw
    return float(max((msb - msw) / denom, 0.0)) if denom > 0 else None


def adjacent_window_covariance(weekly_num: np.ndarray, weekly_den: np.ndarray) -> tuple[float, float, int]:
    """Covariance and correlation of each unit's linearised KPI in the last two equal pre-period windows.

    The pre-period's weeks are split into two adjacent windows of ``h = weeks // 2`` weeks
    (the latest ``2 h``, nearest the experiment); the later one plays the experiment window,
    the earlier one the CUPED covariate, through the sufficient statistics the analysis uses.

    Returns
    -------
    (cov, rho, h)
        ``(0.0, 0.0, 0)`` when the pre-period has fewer than two weeks or a window has no
        denominator.
    """
    weeks = weekly_num.shape[1]
    h = weeks // 2
    if h < 1:
        return 0.0, 0.0, 0
    first, second = slice(weeks - 2 * h, weeks - h), slice(weeks - h, weeks)
    den1, den2 = weekly_den[:, first].sum(axis=1), weekly_den[:, second].sum(axis=1)
    if den1.sum() <= 0 or den2.sum() <= 0 or weekly_num.shape[0] < 3:
        return 0.0, 0.0, 0
    stat = RatioRegressionAdjusted.from_arrays(weekly_num[:, second].sum(axis=1), den2,
                                               weekly_num[:, first].sum(axis=1), den1)
    v2, v1, cov = ratio_window_moments(stat)
    if not (v1 > 0 and v2 > 0) or not math.isfinite(cov):
        return 0.0, 0.0, 0
    return float(cov), float(cov / math.sqrt(v1 * v2)), h


def arm_mdes(n_control: int, arm_units: dict[str, int], variance: float, variance_cuped: float, baseline: float, *,
             alpha: float, power: float, correction: str = "holm") -> list[dict]:
    """Relative MDE of each treatment arm against control, plain and with CUPED.

    :func:`insightroi.stats.multi_arm_mde` (a normal two-sample test at the Bonferroni level
    ``alpha / m`` for ``m`` arms: the level Holm's first step and, conservatively, Dunnett's
    comparison hold) with ``sd = sqrt(V)``, divided by ``|baseline|``. Unlike the two-arm
    rows, the treated arm's variance is taken at the null (as ``multi_arm_mde`` does).

    Parameters
    ----------
    n_control : int
        Control units.
    arm_units : dict
        Treatment arm label -> its units.
    variance, variance_cuped : float
        Per-unit variance of the linearised KPI over the duration, plain and what CUPED leaves.
    baseline : float
        The KPI's pre-period value (its unscaled ratio).
    alpha, power : float
        Family-wise level and target power.
    correction : {"holm", "dunnett", "bonferroni", "none"}

    Returns
    -------
    list of dict
        Per arm: ``arm, units, mde_relative, mde_relative_cuped, variance, variance_cuped,
        correction``.
    """
    labels = sorted(arm_units)
    sizes = [arm_units[a] for a in labels]
    plain = multi_arm_mde(n_control, sizes, sd=math.sqrt(max(variance, 0.0)), alpha=alpha, power_target=power,
                          correction=correction)
    cup = multi_arm_mde(n_control, sizes, sd=math.sqrt(max(variance_cuped, 0.0)), alpha=alpha, power_target=power,
                        correction=correction)
    return [{"arm": a, "units": arm_units[a], "mde_relative": float(plain[i]) / abs(baseline),
             "mde_relative_cuped": float(cup[i]) / abs(baseline), "variance": variance,
             "variance_cuped": variance_cuped, "correction": correction} for i, a in enumerate(labels)]


def _unit_arms(store: Store, e) -> dict[str, int]:
    # Arm of each randomization unit as the analysis reads it (its first assignment), so the
    # counts are units, not assignment rows, and a unit assigned twice is counted once.
    a = store.table("assignments")
    a = a.filter((a.experiment == e.name) & (a.unit_type == e.unit))
    arms = a.group_by(unit_id=a.unit_id.cast("string")).aggregate(arm=a.arm.argmin(a.assigned_at)).execute()
    return dict(zip(arms.unit_id, arms.arm))


def power_table(program: Program, store: Store, *, kpis=None) -> list[dict]:
    """Weeks needed to detect the program's ``mde_relative`` on each KPI at its power, without and with CUPED.

    Parameters
    ----------
    program : Program
        Uses ``experiment``: unit, treatment_share, start/end, pre_period_days, alpha, power,
        mde_relative (a drop for ``direction = "decrease"`` KPIs, a rise otherwise).
    store : Store
        Its pre-period (``pre_period_days`` before ``start``) gives baselines, variances and the
        pre/post correlation; the assignments give the randomization units per arm.

    Returns
    -------
    list of dict
        Per KPI: ``kpi, baseline, mde_relative, units_treatment, units_control``;
        without CUPED ``weeks_needed`` (None when no duration up to ``MAX_WEEKS`` suffices: the
        between-unit variance alone is too large), ``power_at_planned_end``,
        ``mde_at_planned_end``; with CUPED, as the analysis runs it, ``weeks_needed_cuped``,
        ``power_at_planned_end_cuped``, ``mde_at_planned_end_cuped``; ``rho`` (the correlation
        of a unit's KPI in the experiment window with its pre-period KPI, at the planned end or
        else at ``weeks_needed_cuped``), ``rho_adjacent`` (measured between two adjacent
        pre-period windows of ``rho_window_weeks`` weeks each); ``planned_weeks, icc,
        design_effect, verdict``; with several treatment arms also ``arms`` (:func:`arm_mdes` at
        ``arms_weeks``: the planned end, else ``weeks_needed_cuped``).
    """
    e = program.experiment
    if e.pre_period_days < 7:
        return []
    weeks = e.pre_period_days // 7
    pre_weeks = e.pre_period_days / 7  # the analysis' CUPED covariate spans the whole pre-period
    pre_start = e.start - timedelta(days=e.pre_period_days)
    pre_window = (pre_start, pre_start + timedelta(days=7 * weeks - 1))
    chosen = [program.kpi(k) for k in kpis] if kpis else list(program.kpis)
    # A per-unit condition or a time to a first event has no weekly sums to build the variance
    # model from (and asking for them is an error).
    whole_window = whole_window_kpis(program, chosen)
    measures = sorted({m for k in chosen if k.name not in whole_window for m in (k.numerator, k.denominator)})
    df = (unit_measures_expr(store, program, measures, window=pre_window, by=("week",)).execute() if measures
          else pd.DataFrame(columns=["unit_id", "week"]))
    arm_of = _unit_arms(store, e)
    n_t = sum(1 for a in arm_of.values() if a != "control")  # every arm but control (A/B/n)
    n_c = sum(1 for a in arm_of.values() if a == "control")
    planned = ((e.end - e.start).days + 1) / 7 if e.end else None
    per_arm = {}
    for a in arm_of.values():
        if a != "control":
            per_arm[a] = per_arm.get(a, 0) + 1
    dof = n_t + n_c - 2
    # Every assigned unit is a row, also those without pre-period rows (the weekly join drops
    # them): the analysis counts them, and leaving their zeros out understates the variance.
    units = sorted(arm_of)
    idx = {u: i for i, u in enumerate(units)}
    rows = []
    for k in chosen:
        row = {"kpi": k.name, "baseline": None, "mde_relative": e.mde_relative, "units_treatment": n_t,
               "units_control": n_c, "weeks_needed": None, "weeks_needed_cuped": None, "planned_weeks": planned,
               "power_at_planned_end": None, "power_at_planned_end_cuped": None, "mde_at_planned_end": None,
               "mde_at_planned_end_cuped": None, "rho": None, "rho_adjacent": None, "rho_window_weeks": None,
               "icc": None, "design_effect": None, "verdict": ""}
        if k.name in whole_window:
            row["verdict"] = ("per-unit condition or time to a first event: not in the power table (its value is "
                              "read over each unit's whole window, so there are no weekly sums to model)")
            rows.append(row)
            continue
        if quantile_measure(program, k) is not None:
            # The table's power model is a ratio of per-unit totals; a quantile KPI is not one.
            row["verdict"] = "quantile KPI: not in the power table (its variance comes from the rows' density)"
            rows.append(row)
            continue
        if df.empty or n_t < 2 or n_c < 2:
            row["verdict"] = "no pre-period data or assignments in the store"
            rows.append(row)
            continue
        d = df[(df.week >= 0) & (df.week < weeks) & df.unit_id.isin(idx)]
        num = np.zeros((len(units), weeks))
        den = np.zeros((len(units), weeks))
        ui = d.unit_id.map(idx).to_numpy()
        wi = d.week.to_numpy().astype(int)
        np.add.at(num, (ui, wi), d[k.numerator].to_numpy(dtype=float))
        if k.denominator == "units":
            den[:, :] = 1.0  # per-unit weekly mean: one unit-week per cell
        else:
            np.add.at(den, (ui, wi), d[k.denominator].to_numpy(dtype=float))
        if den.sum() == 0:
            row["verdict"] = f"no {k.denominator} in the pre-period"
            rows.append(row)
            continue
        a, b, base = variance_model(num, den)
        if not base:
            row["baseline"] = 0.0
            row["verdict"] = f"no {k.numerator} in the pre-period: a relative change of zero is undefined"
            rows.append(row)
            continue
        cross_cov, rho_adj, h = adjacent_window_covariance(num, den)
        row["baseline"] = base * k.scale
        row["rho_adjacent"], row["rho_window_weeks"] = (rho_adj, h) if h else (None, None)
        effect = e.mde_relative * base
        # Under the alternative each treated unit's rate is m times its own, which scales the
        # treated arm's linearised variance by m^2 for the lasting part and by m for the
        # counting noise; max(m, m^2) keeps the plan on the safe side of both (for a 15% rise,
        # without it the simulated detection rate fell ~5 points short of the planned power).
        m = 1 - e.mde_relative if k.direction == "decrease" else 1 + e.mde_relative
        inv_n = max(m, m * m) / n_t + 1 / n_c

        def variances(t: float) -> tuple[float, float, float]:
            return duration_variances(a, b, t, cross_cov=cross_cov, pre_weeks=pre_weeks if h else None)

        def pw(t: float, cuped: bool) -> float:
            return power_from_se(effect, math.sqrt(variances(t)[int(cuped)] * inv_n), alpha=e.alpha, df=dof)

        needed = next((t for t in range(1, MAX_WEEKS + 1) if pw(t, False) >= e.power), None)
        needed_cuped = next((t for t in range(1, (needed or MAX_WEEKS) + 1) if pw(t, True) >= e.power), None)
        row["weeks_needed"], row["weeks_needed_cuped"] = needed, needed_cuped
        if planned:
            v, v_cuped, rho = variances(planned)
            row["rho"] = rho
            for suffix, var in (("", v), ("_cuped", v_cuped)):
                row[f"power_at_planned_end{suffix}"] = pw(planned, suffix == "_cuped")
                row[f"mde_at_planned_end{suffix}"] = mde_from_se(math.sqrt(var * inv_n), alpha=e.alpha,
                                                                 power_target=e.power, df=dof) / abs(base)
        elif needed_cuped:
            row["rho"] = variances(needed_cuped)[2]
        horizon = planned or needed_cuped
        if len(per_arm) > 1 and horizon and min(per_arm.values()) > 0:
            v, v_cuped, _ = variances(horizon)
            row["arms"] = arm_mdes(n_c, per_arm, v, v_cuped, base, alpha=e.alpha, power=e.power)
            row["arms_weeks"] = horizon
        icc = _icc_from_sums(num.sum(axis=1), den.sum(axis=1)) if k.denominator != "units" else None
        if icc is not None:
            row["icc"] = icc
            row["design_effect"] = design_effect(float(den.sum(axis=1).mean()) * (planned or weeks) / weeks, icc)
        row["verdict"] = _verdict(e, k, n_t + n_c, needed, needed_cuped,
                                  variances(needed_cuped)[2] if needed_cuped else None)
        rows.append(row)
    return rows


def _weeks(n: int | None) -> str:
    return f"{n} week{'s' if n != 1 else ''}" if n else f"no duration up to {MAX_WEEKS} weeks"


def _verdict(e, k, n_units: int, needed: int | None, needed_cuped: int | None, rho: float | None) -> str:
    word = "drop" if k.direction == "decrease" else "rise"
    target = f"a {e.mde_relative:.0%} {word} at {e.power:.0%} power"
    plain = _weeks(needed) if needed else f"not detectable in any duration up to {MAX_WEEKS} weeks"
    if needed_cuped is None:
        return (f"{target} is not detectable with {n_units} units in any duration up to {MAX_WEEKS} weeks, "
                "even with CUPED: add units")
    rho_txt = f", rho {rho:.2f} at that duration" if rho is not None else ""
    return f"you need {_weeks(needed_cuped)} for {target} with CUPED (as analysed{rho_txt}); without CUPED: {plain}"

"""The power table of ``insightroi plan``: weeks needed per KPI, from the store's pre-period data.

For a ratio KPI analysed at the randomization unit, the per-unit variance of the linearised
ratio over a window of ``T`` weeks behaves like ``V(T) = a + b / T``: ``b / T`` is the noise of
counting events (it shrinks as the window grows) and ``a`` the lasting between-unit
heterogeneity (the intra-cluster correlation, which no duration removes). ``a`` and ``b`` are
fitted from the pre-period at one week and at its full length; then for ``n_t`` and ``n_c``
units the effect ``mde_relative x baseline`` is detected with power
``Phi(|effect| / se(T) - z_{1-alpha/2})`` where ``se(T)^2 = V(T) (1/n_t + 1/n_c)``.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
from scipy import stats as sps

from insightroi.metrics import unit_measures_expr
from insightroi.program import Program
from insightroi.stats import Ratio, design_effect, power_from_se, ratio_unit_variance

__all__ = ["power_table", "variance_model"]

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


def power_table(program: Program, store, *, kpis=None) -> list[dict]:
    """Weeks needed to detect the program's ``mde_relative`` on each KPI at its power.

    Parameters
    ----------
    program : Program
        Uses ``experiment``: unit, treatment_share, start/end, pre_period_days, alpha, power,
        mde_relative (a drop for ``direction = "decrease"`` KPIs, a rise otherwise).
    store : Store
        Its pre-period (``pre_period_days`` before ``start``) gives baselines and variances;
        the assignments give the number of units per arm (else all units seen, split by share).

    Returns
    -------
    list of dict
        Per KPI: ``kpi, baseline, mde_relative, units_treatment, units_control, weeks_needed``
        (None when no duration suffices: the between-unit variance alone is too large),
        ``planned_weeks, power_at_planned_end, mde_at_planned_end, icc, design_effect, verdict``.
    """
    e = program.experiment
    if e.pre_period_days < 7:
        return []
    weeks = e.pre_period_days // 7
    pre_start = e.start - timedelta(days=e.pre_period_days)
    pre_window = (pre_start, pre_start + timedelta(days=7 * weeks - 1))
    chosen = [program.kpi(k) for k in kpis] if kpis else list(program.kpis)
    measures = sorted({m for k in chosen for m in (k.numerator, k.denominator)})
    df = unit_measures_expr(store, program, measures, window=pre_window, by=("week",)).execute()
    a_df = store.table("assignments")
    a_df = a_df.filter((a_df.experiment == e.name) & (a_df.unit_type == e.unit))
    counts = a_df.group_by("arm").aggregate(n=a_df.unit_id.nunique()).execute()
    by_arm = dict(zip(counts.arm, counts.n))
    if by_arm.get("treatment") and by_arm.get("control"):
        n_t, n_c = int(by_arm["treatment"]), int(by_arm["control"])
    else:
        units = df.unit_id.nunique() if not df.empty else 0
        n_t, n_c = int(round(units * e.treatment_share)), int(round(units * (1 - e.treatment_share)))
    planned = ((e.end - e.start).days + 1) / 7 if e.end else None
    z_a, z_b = sps.norm.isf(e.alpha / 2), sps.norm.isf(1 - e.power)
    rows = []
    for k in chosen:
        row = {"kpi": k.name, "baseline": None, "mde_relative": e.mde_relative, "units_treatment": n_t,
               "units_control": n_c, "weeks_needed": None, "planned_weeks": planned, "power_at_planned_end": None,
               "mde_at_planned_end": None, "icc": None, "design_effect": None, "verdict": ""}
        if df.empty or n_t < 2 or n_c < 2:
            row["verdict"] = "no pre-period data or assignments in the store"
            rows.append(row)
            continue
        d = df[(df.week >= 0) & (df.week < weeks)]
        units = sorted(d.unit_id.unique())
        idx = {u: i for i, u in enumerate(units)}
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
        row["baseline"] = base * k.scale
        effect = e.mde_relative * base
        inv_n = 1 / n_t + 1 / n_c

        def se(t: float) -> float:
            return math.sqrt((a + b / t) * inv_n)

        needed = next((t for t in range(1, MAX_WEEKS + 1) if power_from_se(effect, se(t), alpha=e.alpha) >= e.power), None)
        row["weeks_needed"] = needed
        if planned:
            row["power_at_planned_end"] = power_from_se(effect, se(planned), alpha=e.alpha)
            row["mde_at_planned_end"] = float((z_a + z_b) * se(planned) / abs(base))
        icc = _icc_from_sums(num.sum(axis=1), den.sum(axis=1)) if k.denominator != "units" else None
        if icc is not None:
            row["icc"] = icc
            row["design_effect"] = design_effect(float(den.sum(axis=1).mean()) * (planned or weeks) / weeks, icc)
        word = "drop" if k.direction == "decrease" else "rise"
        if needed is None:
            row["verdict"] = (f"a {e.mde_relative:.0%} {word} is not detectable at {e.power:.0%} power with "
                              f"{n_t + n_c} units in any duration up to {MAX_WEEKS} weeks: add units")
        else:
            row["verdict"] = f"you need {needed} week{'s' if needed > 1 else ''} for a {e.mde_relative:.0%} {word} at {e.power:.0%} power"
        rows.append(row)
    return rows

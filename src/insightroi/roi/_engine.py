"""The ROI engine: value pools x estimated effects - cost stack, with Monte Carlo uncertainty.

Pure: it reads a :class:`~insightroi.program.Program` (value pools, costs, KPIs), the experiment
``Result`` per KPI and the treated volumes, and never touches a store.

Definitions (CONTRACTS.md, "ROI truth definition")
--------------------------------------------------
- avoided events of pool p (KPI k) = -effect_k / scale_k x treated denominator volume of k, with
  the sign flipped for ``direction = "increase"`` KPIs, so avoided events are value-positive;
- benefit_p = avoided events x unit value of p; hard benefit = sum over ``hard`` pools; soft
  benefit = sum over the others, reported separately and never in the headline;
- cost = sum of cost lines: ``per = "month"`` x months, ``per = "total"`` once,
  ``per = "1000_feedback"`` x treated feedback / 1000;
- ROI = (hard benefit - cost) / cost; benefit-cost ratio = hard benefit / cost; payback = months
  until cumulative hard benefit covers one-off + recurring cost (one-off lines are paid up front,
  the rest accrues evenly).

Uncertainty
-----------
Each KPI effect is drawn from its ``Result``'s sampling distribution, normal with its standard
error (the large-sample distribution every estimator in ``insightroi.experiments`` reports). By
default the KPIs are independent; when they share data (e.g. two KPIs with the same orders
denominator measured on the same SKU families) pass their correlation. Unit values and cost
amounts are drawn independently from triangular(low, mode, high) distributions, the usual
three-point estimate (Vose, *Risk Analysis*, 3rd ed., 2008, ch. 9). The headline is the 10th
percentile of the ROI distribution: finance trusts numbers that understate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from insightroi.errors import DataError
from insightroi.program import Program
from insightroi.roi._formulas import pool_coefficient
from insightroi.stats import Result, critical_value, se_from_interval

__all__ = ["RoiVolumes", "RoiResult", "compute_roi"]

_Z90 = 1.6448536269514722  # standard normal 95th percentile


@dataclass(frozen=True)
class RoiVolumes:
    """What the effects apply to: treated volumes over the window the ROI covers.

    Parameters
    ----------
    kpis : dict of str to float
        Per KPI name, the denominator volume of the treated units in the window (orders for a
        "per 1,000 orders" KPI, sessions for a conversion rate, number of units for a per-unit mean).
    feedback : float
        Feedback rows of treated units in the window (drives ``per = "1000_feedback"`` costs).
    months : float
        Length of the window in months (days / 30.4375); recurring monthly costs are multiplied
        by it and payback is computed from the monthly run-rate it implies.
    """

    kpis: dict[str, float]
    feedback: float
    months: float

    def __post_init__(self) -> None:
        if not (self.months > 0 and math.isfinite(self.months)):
            raise DataError(f"RoiVolumes.months must be positive, got {self.months!r}")
        if not (self.feedback >= 0 and math.isfinite(self.feedback)):
            raise DataError(f"RoiVolumes.feedback must be >= 0, got {self.feedback!r}")
        for name, v in self.kpis.items():
            if not (v >= 0 and math.isfinite(v)):
                raise DataError(f"RoiVolumes.kpis[{name!r}] must be a volume >= 0, got {v!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RoiVolumes":
        """Read the pipeline's saved ``volumes`` result.

        Format: ``{"kpis": {name: {"treated_denominator": x}}, "feedback_treated": n, "months": m}``
        (a plain ``{name: x}`` per KPI is accepted too).
        """
        try:
            kpis = {
                str(k): float(v["treated_denominator"] if isinstance(v, Mapping) else v)
                for k, v in d["kpis"].items()
            }
            return cls(kpis=kpis, feedback=float(d.get("feedback_treated", d.get("feedback", 0.0))),
                       months=float(d["months"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                "volumes payload must look like {'kpis': {name: {'treated_denominator': x}}, "
                f"'feedback_treated': n, 'months': m}}; problem: {exc!r}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The same format :meth:`from_dict` reads."""
        return {
            "kpis": {k: {"treated_denominator": v} for k, v in self.kpis.items()},
            "feedback_treated": self.feedback,
            "months": self.months,
        }


@dataclass(frozen=True, eq=False)
class RoiResult:
    """The ROI of the program with its uncertainty (see :func:`compute_roi`).

    Scalars are over ``months`` (the horizon). ``estimate`` is the deterministic ROI at the point
    estimates and the most-likely unit values and costs (the "expected" scenario); ``median``,
    ``ci`` (90% interval), ``p_positive`` and ``conservative`` (10th percentile, the headline)
    come from the Monte Carlo draws. Soft value appears only in ``benefit_soft`` /
    ``soft`` and the soft pools' rows, never in any ROI figure.
    """

    estimate: float
    median: float
    ci: tuple[float, float]
    p_positive: float
    conservative: float
    benefit: float
    benefit_soft: float
    cost: float
    bcr: float
    payback_months: float
    months: float
    currency: str
    draws: int
    roi_draws: np.ndarray = field(repr=False)
    benefit_draws: np.ndarray = field(repr=False)
    soft_draws: np.ndarray = field(repr=False)
    cost_draws: np.ndarray = field(repr=False)
    payback_draws: np.ndarray = field(repr=False)
    pools: list[dict[str, Any]] = field(default_factory=list)
    by_function: list[dict[str, Any]] = field(default_factory=list)
    costs: list[dict[str, Any]] = field(default_factory=list)
    cost_summary: dict[str, Any] = field(default_factory=dict)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    tornado: list[dict[str, Any]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ci_low(self) -> float:
        """5th percentile of the ROI draws."""
        return self.ci[0]

    @property
    def ci_high(self) -> float:
        """95th percentile of the ROI draws."""
        return self.ci[1]

    def histogram(self, bins: int = 40) -> dict[str, list]:
        """Histogram of the ROI draws between their 0.5th and 99.5th percentiles."""
        finite = self.roi_draws[np.isfinite(self.roi_draws)]
        lo, hi = np.quantile(finite, [0.005, 0.995]) if finite.size else (0.0, 0.0)
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        counts, edges = np.histogram(np.clip(finite, lo, hi), bins=bins, range=(lo, hi))
        return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}

    def to_dict(self) -> dict[str, Any]:
        """The report bundle's ``"roi"`` section (CONTRACTS.md), plus soft value, costs and notes."""
        soft_q = np.quantile(self.soft_draws, [0.05, 0.5, 0.95]) if self.soft_draws.size else [0.0, 0.0, 0.0]
        d = {
            "estimate": self.estimate,
            "ci_low": self.ci[0],
            "ci_high": self.ci[1],
            "interval": 0.90,
            "median": self.median,
            "p_positive": self.p_positive,
            "conservative": self.conservative,
            "benefit": self.benefit,
            "cost": self.cost,
            "bcr": self.bcr,
            "payback_months": self.payback_months,
            "payback_months_median": float(np.median(self.payback_draws)),
            "months": self.months,
            "currency": self.currency,
            "draws": self.draws,
            "soft": {
                "benefit": self.benefit_soft,
                "median": float(soft_q[1]),
                "ci_low": float(soft_q[0]),
                "ci_high": float(soft_q[2]),
                "note": "soft value is reported separately and never enters the ROI headline",
            },
            "pools": self.pools,
            "by_function": self.by_function,
            "costs": self.costs,
            "cost_summary": self.cost_summary,
            "scenarios": self.scenarios,
            "tornado": self.tornado,
            "effects": self.effects,
            "histogram": self.histogram(),
            "notes": list(self.notes),
        }
        return _jsonable(d)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (float, np.floating)):
        obj = float(obj)
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---- sampling -------------------------------------------------------------------------------

def _triangular(u: np.ndarray, low: np.ndarray, mode: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Inverse-CDF triangular draws, vectorised over columns; zero-width ranges give constants.

    numpy's ``Generator.triangular`` refuses ``low == high``, and programs legitimately fix a
    value (a contracted price), so the inverse CDF is written out.
    """
    width = high - low
    safe = np.where(width > 0, width, 1.0)
    fc = np.where(width > 0, (mode - low) / safe, 0.0)
    left = low + np.sqrt(u * safe * (mode - low))
    right = high - np.sqrt((1.0 - u) * safe * (high - mode))
    out = np.where(u < fc, left, right)
    return np.where(width > 0, out, mode)


def _effect_sd(res: Result, name: str) -> float:
    se = res.se
    if se is None or not math.isfinite(se):
        lo, hi = res.ci
        if math.isfinite(lo) and math.isfinite(hi):
            se = se_from_interval(lo, hi, alpha=res.alpha)
        else:
            raise DataError(f"effect for KPI {name!r} has neither a standard error nor a finite interval")
    if se < 0:
        raise DataError(f"effect for KPI {name!r} has a negative standard error ({se})")
    return float(se)


def _correlation_matrix(names: list[str], correlation: Any) -> np.ndarray | None:
    k = len(names)
    if correlation is None:
        return None
    if isinstance(correlation, Mapping):
        r = np.eye(k)
        index = {n: i for i, n in enumerate(names)}
        for (a, b), rho in correlation.items():
            if a not in index or b not in index:
                continue  # a KPI without an effect contributes nothing to correlate
            r[index[a], index[b]] = r[index[b], index[a]] = float(rho)
    else:
        r = np.asarray(correlation, dtype=float)
        if r.shape != (k, k):
            raise DataError(f"correlation must be {k}x{k} (one row per effect, in the order of `effects`), got {r.shape}")
    if not np.allclose(r, r.T) or not np.allclose(np.diag(r), 1.0) or np.any(np.abs(r) > 1 + 1e-12):
        raise DataError("correlation must be symmetric with a unit diagonal and entries in [-1, 1]")
    return r


def _chol(r: np.ndarray) -> np.ndarray:
    # Eigen-decomposition rather than Cholesky so that singular (perfectly correlated) matrices work.
    w, v = np.linalg.eigh(r)
    if w.min() < -1e-8:
        raise DataError("correlation matrix is not positive semi-definite")
    return v * np.sqrt(np.clip(w, 0.0, None))


# ---- the engine ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Model:
    """Everything compute_roi needs, as arrays, so one function evaluates any batch of inputs."""

    effect_names: list[str]
    mu: np.ndarray          # K point estimates
    sd: np.ndarray          # K standard errors
    eff_lo: np.ndarray      # K interval bounds (the Result's own interval)
    eff_hi: np.ndarray
    pool_names: list[str]
    pool_k: np.ndarray      # P index into effects
    pool_coef: np.ndarray   # P: avoided events per unit of effect
    pool_hard: np.ndarray   # P bool
    v_lo: np.ndarray
    v_mode: np.ndarray
    v_hi: np.ndarray
    cost_names: list[str]
    c_mult: np.ndarray      # C: multiplier of the amount to get the line's total over the horizon
    c_one_off: np.ndarray   # C bool
    c_lo: np.ndarray
    c_mode: np.ndarray
    c_hi: np.ndarray
    months: float

    def evaluate(self, effects: np.ndarray, values: np.ndarray, amounts: np.ndarray) -> dict[str, np.ndarray]:
        """Vectorised over rows: effects (n, K), unit values (n, P), cost amounts (n, C)."""
        avoided = effects[:, self.pool_k] * self.pool_coef          # (n, P)
        pool_benefit = avoided * values                            # (n, P)
        hard = pool_benefit[:, self.pool_hard].sum(axis=1)
        soft = pool_benefit[:, ~self.pool_hard].sum(axis=1)
        line_total = amounts * self.c_mult                          # (n, C)
        cost = line_total.sum(axis=1)
        one_off = line_total[:, self.c_one_off].sum(axis=1)
        recurring = cost - one_off
        with np.errstate(divide="ignore", invalid="ignore"):
            roi = (hard - cost) / cost
            bcr = hard / cost
            net_month = (hard - recurring) / self.months
            payback = np.where(net_month > 0, np.maximum(one_off, 0.0) / net_month, np.inf)
        return {"roi": roi, "bcr": bcr, "hard": hard, "soft": soft, "cost": cost,
                "payback": payback, "pool_benefit": pool_benefit}


def _build_model(program: Program, effects: Mapping[str, Result], volumes: RoiVolumes,
                 horizon_months: float | None, notes: list[str]) -> _Model:
    priced = {p.kpi for p in program.value_pools}
    for n in effects:
        program.kpi(n)  # KeyError naming the known KPIs
    unused = [n for n in effects if n not in priced]
    if unused:
        notes.append(f"effects on KPIs no value pool prices are not used: {unused}")
    names = [n for n in effects if n in priced]
    if not names:
        raise DataError("no value pool has an estimated effect: nothing to turn into money")
    for n in names:
        program.kpi(n)  # KeyError naming the known KPIs
        unit = (effects[n].unit or "").lower()
        if unit in ("relative", "percent", "pct", "ratio"):
            raise DataError(f"effect for KPI {n!r} is {unit}; the ROI engine needs the absolute effect in KPI units")
    mu = np.array([float(effects[n].estimate) for n in names])
    if not np.all(np.isfinite(mu)):
        bad = [n for n, m in zip(names, mu) if not math.isfinite(m)]
        raise DataError(f"effects without a finite estimate: {bad}")
    sd = np.array([_effect_sd(effects[n], n) for n in names])
    lo, hi = [], []
    for n, m, s in zip(names, mu, sd):
        a, b = effects[n].ci
        if not (math.isfinite(a) and math.isfinite(b)):
            z = critical_value(effects[n].alpha)
            a, b = m - z * s, m + z * s
        lo.append(a)
        hi.append(b)

    window = volumes.months
    months = float(horizon_months) if horizon_months is not None else window
    if months <= 0:
        raise DataError(f"horizon_months must be positive, got {horizon_months!r}")
    run_rate = months / window  # volume-driven quantities scale with the horizon

    index = {n: i for i, n in enumerate(names)}
    pool_names, pool_k, coef, hard, vl, vm, vh = [], [], [], [], [], [], []
    for pool in program.value_pools:
        if pool.kpi not in index:
            notes.append(f"value pool {pool.name!r} left out: no effect estimated for KPI {pool.kpi!r}")
            continue
        if pool.kpi not in volumes.kpis:
            raise DataError(
                f"value pool {pool.name!r}: no treated denominator volume for KPI {pool.kpi!r} in RoiVolumes.kpis"
            )
        kpi = program.kpi(pool.kpi)
        try:
            c = pool_coefficient(pool.formula, direction=kpi.direction, scale=kpi.scale,
                                 treated_volume=volumes.kpis[pool.kpi] * run_rate,
                                 control_mean=effects[pool.kpi].extra.get("control_mean"), months=months)
        except ValueError as exc:
            raise DataError(f"value pool {pool.name!r}: {exc}") from None
        pool_names.append(pool.name)
        pool_k.append(index[pool.kpi])
        coef.append(c)
        hard.append(pool.hard)
        vl.append(pool.value.low)
        vm.append(pool.value.mode)
        vh.append(pool.value.high)
    if not pool_names:
        raise DataError("no value pool has an estimated effect: nothing to turn into money")
    if not any(hard):
        notes.append("every value pool is soft: the hard benefit (and so the ROI headline) is zero")

    if not program.costs:
        raise DataError("the program file lists no costs: ROI = (benefit - cost) / cost is undefined")
    mult, one_off = [], []
    for c in program.costs:
        if c.per == "month":
            mult.append(months)
        elif c.per == "total":
            mult.append(1.0 if c.kind == "one_off" else run_rate)
        else:  # per 1000 feedback
            mult.append(volumes.feedback * run_rate / 1000.0)
        one_off.append(c.kind == "one_off")
    return _Model(
        effect_names=names, mu=mu, sd=sd, eff_lo=np.array(lo), eff_hi=np.array(hi),
        pool_names=pool_names, pool_k=np.array(pool_k, dtype=int), pool_coef=np.array(coef),
        pool_hard=np.array(hard, dtype=bool), v_lo=np.array(vl), v_mode=np.array(vm), v_hi=np.array(vh),
        cost_names=[c.name for c in program.costs], c_mult=np.array(mult), c_one_off=np.array(one_off, dtype=bool),
        c_lo=np.array([c.amount.low for c in program.costs]),
        c_mode=np.array([c.amount.mode for c in program.costs]),
        c_hi=np.array([c.amount.high for c in program.costs]),
        months=months,
    )


def zero_cost_reason(program: Program) -> str:
    """Why a program whose every cost line is 0 has no ROI (the message ``roi`` and ``plan`` give)."""
    lines = ", ".join(c.name for c in program.costs) or "none"
    return (f"ROI = (benefit - cost) / cost is undefined at zero cost: the program's cost lines ({lines}) come "
            "to 0 over the horizon; enter what the program costs under [[costs]] (model, people, tooling)")


def compute_roi(
    program: Program,
    effects: Mapping[str, Result],
    volumes: RoiVolumes,
    *,
    draws: int = 100_000,
    rng: np.random.Generator | int | None = None,
    correlation: Mapping[tuple[str, str], float] | np.ndarray | None = None,
    horizon_months: float | None = None,
) -> RoiResult:
    """ROI of the insight program with Monte Carlo uncertainty, scenarios and a tornado table.

    Parameters
    ----------
    program : Program
        Supplies the value pools, the cost stack and each KPI's scale and direction.
    effects : dict of str to Result
        Per KPI name, the estimated absolute effect (treated minus control, in KPI units) with its
        standard error. Pools whose KPI has no effect are left out (and named in ``notes``).
    volumes : RoiVolumes
        Treated denominator volume per KPI, treated feedback volume and the window's months.
    draws : int
        Monte Carlo draws (default 100,000).
    rng : numpy Generator or int, optional
        Source of randomness (``np.random.default_rng(rng)``); pass one for reproducible output.
    correlation : dict {(kpi_a, kpi_b): rho} or (K, K) array, optional
        Correlation of the effect estimates where KPIs share data (array rows in the order of
        ``effects``; effects no value pool prices are dropped from it). Default: independent.
    horizon_months : float, optional
        Horizon of the ROI. Default: the window (``volumes.months``), i.e. the realized ROI of what
        was run. A longer horizon extrapolates the window's monthly run-rate of benefit and of
        volume-driven costs; one-off costs count once.

    Returns
    -------
    RoiResult
        ``estimate`` (expected scenario), ``median``, ``ci`` (90% interval), ``p_positive``,
        ``conservative`` (10th percentile: the headline), hard and soft benefit, cost, benefit-cost
        ratio, payback, per-pool attribution, cost stack, scenarios and tornado.

    Notes
    -----
    Scenarios: *worst* puts every effect at the least favourable end of its Result's interval
    (its own ``1 - alpha`` interval, 95% by default), every unit value at ``low`` and every cost at
    ``high``; *best* the opposite; *expected* uses point estimates and modes. The tornado moves
    one input at a time to its low and high end (effects: interval bounds; values and costs:
    range ends) with the others at expected, sorted by swing. Soft pools move nothing in the ROI
    and are left out of the tornado.
    """
    if draws < 100:
        raise ValueError(f"draws must be at least 100, got {draws}")
    if not effects:
        raise DataError("no effects given: run the experiment analysis first")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    notes: list[str] = []
    m = _build_model(program, effects, volumes, horizon_months, notes)
    if not np.any(m.c_hi * m.c_mult > 0):
        raise DataError(zero_cost_reason(program))
    K, P, C = len(m.mu), len(m.pool_names), len(m.cost_names)

    # ---- Monte Carlo ----
    z = rng.standard_normal((draws, K))
    corr = _correlation_matrix(list(effects), correlation)
    if corr is not None:
        keep = [list(effects).index(n) for n in m.effect_names]
        corr = corr[np.ix_(keep, keep)]
    if corr is not None:
        z = z @ _chol(corr).T
    eff = m.mu + z * m.sd
    vals = _triangular(rng.random((draws, P)), m.v_lo, m.v_mode, m.v_hi)
    amts = _triangular(rng.random((draws, C)), m.c_lo, m.c_mode, m.c_hi)
    out = m.evaluate(eff, vals, amts)
    roi = out["roi"]
    q05, q10, q50, q95 = np.quantile(roi, [0.05, 0.10, 0.50, 0.95])

    # ---- deterministic rows: expected, worst, best, then tornado low/high per input ----
    value_dir = np.array([-1.0 if program.kpi(n).direction == "decrease" else 1.0 for n in m.effect_names])
    eff_bad = np.where(value_dir > 0, m.eff_lo, m.eff_hi)
    eff_good = np.where(value_dir > 0, m.eff_hi, m.eff_lo)
    rows_e = [m.mu, eff_bad, eff_good]
    rows_v = [m.v_mode, m.v_lo, m.v_hi]
    rows_c = [m.c_mode, m.c_hi, m.c_lo]
    labels: list[tuple[str, str]] = []
    for i, n in enumerate(m.effect_names):
        if not np.any((m.pool_k == i) & m.pool_hard):
            continue  # priced only by soft pools: cannot move the ROI
        for bound in (m.eff_lo, m.eff_hi):
            e = m.mu.copy()
            e[i] = bound[i]
            rows_e.append(e); rows_v.append(m.v_mode); rows_c.append(m.c_mode)
        labels.append((f"effect: {n}", "effect"))
    for j, n in enumerate(m.pool_names):
        if not m.pool_hard[j]:
            continue
        for bound in (m.v_lo, m.v_hi):
            v = m.v_mode.copy()
            v[j] = bound[j]
            rows_e.append(m.mu); rows_v.append(v); rows_c.append(m.c_mode)
        formula = next(p.formula for p in program.value_pools if p.name == n)
        what = "unit value" if formula == "per_event" else "value at risk"
        labels.append((f"{what}: {n}", "unit_value"))
    for j, n in enumerate(m.cost_names):
        for bound in (m.c_lo, m.c_hi):
            c = m.c_mode.copy()
            c[j] = bound[j]
            rows_e.append(m.mu); rows_v.append(m.v_mode); rows_c.append(c)
        labels.append((f"cost: {n}", "cost"))
    det = m.evaluate(np.array(rows_e), np.array(rows_v), np.array(rows_c))

    scenarios = [
        {"name": name, "roi": det["roi"][i], "benefit": det["hard"][i], "benefit_soft": det["soft"][i],
         "cost": det["cost"][i], "bcr": det["bcr"][i], "payback_months": det["payback"][i]}
        for i, name in ((1, "worst"), (0, "expected"), (2, "best"))
    ]
    tornado = []
    for t, (name, kind) in enumerate(labels):
        lo_roi, hi_roi = det["roi"][3 + 2 * t], det["roi"][4 + 2 * t]
        tornado.append({"input": name, "kind": kind, "low_roi": lo_roi, "high_roi": hi_roi,
                        "swing": abs(hi_roi - lo_roi)})
    tornado.sort(key=lambda r: -r["swing"])

    # ---- attribution ----
    pb = out["pool_benefit"]
    pq = np.quantile(pb, [0.05, 0.5, 0.95], axis=0)
    pmean = pb.mean(axis=0)
    hard_total = pmean[m.pool_hard].sum()
    soft_total = pmean[~m.pool_hard].sum()
    pools = []
    for j, n in enumerate(m.pool_names):
        pool = next(p for p in program.value_pools if p.name == n)
        denom = hard_total if m.pool_hard[j] else soft_total
        per_event = pool.formula == "per_event"
        pools.append({
            "name": n, "function": pool.function, "kpi": pool.kpi, "hard": bool(m.pool_hard[j]),
            "formula": pool.formula,
            "unit_value": {"low": pool.value.low, "mode": pool.value.mode, "high": pool.value.high},
            # Per event: events avoided; share of value at risk: the share of a month's value at
            # risk recovered, times the months (avoided events make no sense there).
            "avoided_events": float(m.mu[m.pool_k[j]] * m.pool_coef[j]) if per_event else None,
            "share_recovered": None if per_event else float(m.mu[m.pool_k[j]] * m.pool_coef[j] / m.months),
            "benefit_expected": float(det["pool_benefit"][0, j]),
            "benefit_mean": float(pmean[j]),
            "benefit_median": float(pq[1, j]), "benefit_ci_low": float(pq[0, j]), "benefit_ci_high": float(pq[2, j]),
            "share": float(pmean[j] / denom) if denom != 0 else None,
        })
    functions: dict[tuple[str, bool], float] = {}
    for p in pools:
        functions[(p["function"], p["hard"])] = functions.get((p["function"], p["hard"]), 0.0) + p["benefit_mean"]
    by_function = [
        {"function": f, "hard": h, "benefit_mean": v,
         "share": (v / (hard_total if h else soft_total)) if (hard_total if h else soft_total) != 0 else None}
        for (f, h), v in sorted(functions.items(), key=lambda kv: (not kv[0][1], -kv[1]))
    ]

    # ---- cost stack ----
    costs = []
    for j, c in enumerate(program.costs):
        tot = np.array([m.c_lo[j], m.c_mode[j], m.c_hi[j]]) * m.c_mult[j]
        costs.append({
            "name": c.name, "category": c.category, "kind": c.kind, "per": c.per,
            "amount": {"low": c.amount.low, "mode": c.amount.mode, "high": c.amount.high},
            "total_low": tot[0], "total_mode": tot[1], "total_high": tot[2],
            "per_month_mode": tot[1] / m.months,
        })
    cost_mode = float(det["cost"][0])
    by_cat: dict[str, float] = {}
    for c in costs:
        by_cat[c["category"]] = by_cat.get(c["category"], 0.0) + c["total_mode"]
    one_off_mode = float(sum(c["total_mode"] for c in costs if c["kind"] == "one_off"))
    feedback_h = volumes.feedback * m.months / volumes.months
    cost_summary = {
        "total_mode": cost_mode,
        "total_ci_low": float(np.quantile(out["cost"], 0.05)),
        "total_ci_high": float(np.quantile(out["cost"], 0.95)),
        "one_off_mode": one_off_mode,
        "recurring_mode": cost_mode - one_off_mode,
        "per_month_mode": cost_mode / m.months,
        "recurring_per_month_mode": (cost_mode - one_off_mode) / m.months,
        "per_1000_feedback_mode": cost_mode / feedback_h * 1000.0 if feedback_h > 0 else None,
        "by_category": by_cat,
    }

    effects_rows = [
        {"kpi": n, "estimate": m.mu[i], "se": m.sd[i], "ci_low": m.eff_lo[i], "ci_high": m.eff_hi[i],
         "method": effects[n].method, "direction": program.kpi(n).direction}
        for i, n in enumerate(m.effect_names)
    ]
    if corr is None and K > 1:
        notes.append("effects drawn as independent (no correlation given)")

    return RoiResult(
        estimate=float(det["roi"][0]), median=float(q50), ci=(float(q05), float(q95)),
        p_positive=float(np.mean(roi > 0)), conservative=float(q10),
        benefit=float(det["hard"][0]), benefit_soft=float(det["soft"][0]), cost=cost_mode,
        bcr=float(det["bcr"][0]), payback_months=float(det["payback"][0]), months=m.months,
        currency=program.program.currency, draws=int(draws),
        roi_draws=roi, benefit_draws=out["hard"], soft_draws=out["soft"], cost_draws=out["cost"],
        payback_draws=out["payback"], pools=pools, by_function=by_function, costs=costs,
        cost_summary=cost_summary, scenarios=scenarios, tornado=tornado, effects=effects_rows, notes=notes,
    )

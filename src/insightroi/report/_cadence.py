"""Cadence reports: the experiment window cut into calendar periods, each with its figures to date.

``run_cadence(store, program, "week" | "month" | "quarter")`` computes, for every calendar period
(ISO week Monday-Sunday, calendar month, calendar quarter) that overlaps the experiment window:

* the primary KPI's effect *to date*: one analysis of the primary KPI over the cumulative window
  from the experiment start to the period's end (clipped to the window), so the last period's
  figure is the full-window analysis itself. The analysis reads the program, so its intervals are
  always valid when ``experiment.sequential`` is true (a confidence sequence); otherwise they are
  fixed-horizon intervals, and reading them at every period overstates the evidence;
* the alerts delivered in the period and the acknowledgements, actions and fixes recorded in it
  (the decision chain, counted as ``insightroi chain`` counts them: praise alerts, and the events
  naming one, are left out as the chain's funnel leaves them out);
* the value of the primary KPI to date: effect x treated volume to date x the most-likely unit
  value of each of its value pools, hard and soft apart. It is not the ROI to date: the ROI needs
  every priced KPI's effect and the cost stack per period (several analyses per period); the
  saved ROI section has the whole window's.

The series is saved in the store (``store.save_result("cadence", unit, payload)``), so the report
and the dashboard show the same numbers.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from insightroi.chain import alert_table
from insightroi.errors import DataError, EstimationError, check_option
from insightroi.experiments import analyze_experiment, treated_volumes
from insightroi.metrics import analysis_windows, measure_totals
from insightroi.program import Program
from insightroi.roi import MONTH_DAYS, pool_coefficient
# ``weekly``/``monthly``/``quarterly``: the spellings `--cadence` took when it only relabelled the header.
from insightroi.report._render import CADENCE_ALIASES, CADENCE_UNITS
from insightroi.store import Store

__all__ = ["CADENCE_UNITS", "CADENCE_ALIASES", "cadence_unit", "calendar_periods", "run_cadence", "load_cadence"]

CadenceUnit = Literal["week", "month", "quarter"]

_VALUE_BASIS = ("value of the primary KPI's value pools to date: effect x treated volume to date x most-likely "
                "unit value (not the ROI: costs and the other KPIs' effects are in the ROI section, whole window)")


def cadence_unit(cadence: str) -> str:
    """The period unit (``week``, ``month``, ``quarter``) of a cadence, old spellings accepted.

    Parameters
    ----------
    cadence : str
        ``week``, ``month``, ``quarter``, or the older ``weekly``, ``monthly``, ``quarterly``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Naming the parameter, the allowed values and what was passed.
    """
    check_option("cadence", cadence, CADENCE_UNITS + tuple(CADENCE_ALIASES))
    return CADENCE_ALIASES.get(cadence, cadence)


def _period_of(d: date, unit: str) -> tuple[date, date, str]:
    if unit == "week":
        ps = d - timedelta(days=d.weekday())
        iso = ps.isocalendar()
        return ps, ps + timedelta(days=6), f"{iso.year}-W{iso.week:02d} ({ps:%d %b} – {ps + timedelta(days=6):%d %b %Y})"
    if unit == "month":
        last = calendar.monthrange(d.year, d.month)[1]
        return d.replace(day=1), d.replace(day=last), f"{d:%B %Y}"
    q = (d.month - 1) // 3
    last_month = 3 * q + 3
    return (date(d.year, 3 * q + 1, 1), date(d.year, last_month, calendar.monthrange(d.year, last_month)[1]),
            f"Q{q + 1} {d.year}")


def calendar_periods(start: date, end: date, cadence: str) -> list[dict[str, Any]]:
    """The calendar periods that overlap ``[start, end]`` (inclusive dates), in order.

    Parameters
    ----------
    start, end : date
        The window (the experiment's).
    cadence : str
        ``week`` (ISO weeks, Monday to Sunday), ``month`` (calendar months) or ``quarter``
        (calendar quarters, Q1 = January to March); old spellings accepted.

    Returns
    -------
    list of dict
        ``label``, ``short`` (axis label), ``start``, ``end`` (the calendar period) and
        ``covered_start``, ``covered_end`` (its part inside the window), ``partial`` (the window
        covers only part of it); dates as ``datetime.date``.
    """
    unit = cadence_unit(cadence)
    if end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    out, d = [], start
    while d <= end:
        ps, pe, label = _period_of(d, unit)
        short = {"week": f"W{ps.isocalendar().week:02d}", "month": f"{ps:%b %y}",
                 "quarter": f"Q{(ps.month - 1) // 3 + 1} {ps:%y}"}[unit]
        cs, ce = max(ps, start), min(pe, end)
        out.append({"label": label, "short": short, "start": ps, "end": pe, "covered_start": cs, "covered_end": ce,
                    "partial": (cs, ce) != (ps, pe)})
        d = pe + timedelta(days=1)
    return out


def _finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _effect_fields(analysis: Any, kpi: str) -> dict[str, Any]:
    r = analysis.results.get(kpi)
    rel = (getattr(analysis, "relative", None) or {}).get(kpi)
    if r is None:
        return {"estimate": None, "error": f"no result for {kpi}"}
    out = {
        "estimate": _finite_or_none(r.estimate), "se": _finite_or_none(r.se),
        "ci_low": _finite_or_none(r.ci[0]) if r.ci else None, "ci_high": _finite_or_none(r.ci[1]) if r.ci else None,
        "p_value": _finite_or_none(r.p_value), "method": r.method, "n": int(r.n) if r.n is not None else None,
        "control_mean": _finite_or_none(r.extra.get("control_mean")),
    }
    if rel is not None:
        out.update(relative=_finite_or_none(rel.estimate),
                   relative_ci_low=_finite_or_none(rel.ci[0]) if rel.ci else None,
                   relative_ci_high=_finite_or_none(rel.ci[1]) if rel.ci else None)
    if out["estimate"] is None:
        # Result.not_estimable carries its reason in the first diagnostic.
        why = next((getattr(c, "message", None) for c in r.diagnostics or ()), None)
        out["error"] = why or "not estimable"
    return out


def _denominator_to_date(store: Store, program: Program, kpi: str, window: tuple[date, date]) -> float:
    k = program.kpi(kpi)
    if program.experiment.design == "did":
        # A staggered rollout counts each unit from its assignment week, as the ROI's volumes do.
        return float(treated_volumes(store, program, window=window)[kpi]["denominator"])
    # Only the one measure: treated_volumes would total every KPI's measures once per period.
    return float(measure_totals(store, program, [k.denominator], window=window, arm="treatment")[k.denominator])


def _value_fields(program: Program, kpi: str, row: dict[str, Any], denominator: float) -> dict[str, Any]:
    k = program.kpi(kpi)
    to_date = row["to_date"]
    months = ((date.fromisoformat(to_date["end"]) - date.fromisoformat(to_date["start"])).days + 1) / MONTH_DAYS
    out: dict[str, Any] = {"treated_volume": denominator}
    est, lo, hi = row.get("estimate"), row.get("ci_low"), row.get("ci_high")
    for kind, hard in (("hard", True), ("soft", False)):
        pools = [p for p in program.value_pools if p.kpi == kpi and p.hard is hard]
        if not pools or est is None:
            out.update({f"value_{kind}": None, f"value_{kind}_low": None, f"value_{kind}_high": None})
            continue
        # Money per unit of effect, by the ROI engine's conversion for each pool's formula.
        try:
            unit = sum(p.value.mode * pool_coefficient(p.formula, direction=k.direction, scale=k.scale,
                                                       treated_volume=denominator, control_mean=row.get("control_mean"),
                                                       months=months) for p in pools)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        ends = sorted(x * unit for x in (lo, hi) if x is not None)
        out.update({f"value_{kind}": est * unit, f"value_{kind}_low": ends[0] if len(ends) == 2 else None,
                    f"value_{kind}_high": ends[1] if len(ends) == 2 else None})
    return out


def _chain_counts(store: Store, periods: list[dict], window: tuple[date, date]) -> list[dict[str, int]]:
    """Alerts delivered, and acknowledgements, actions and fixes recorded, per period (no praise)."""
    lo = datetime.combine(window[0], datetime.min.time())
    hi = datetime.combine(window[1] + timedelta(days=1), datetime.min.time())
    # The alerts `insightroi chain` counts (one per alert id, at its first delivery), not raw
    # alert_delivered rows: a re-delivered alert is still one alert. Praise alerts are left out by
    # alert_table's own flag, as the chain's funnel leaves them out (good news waits on nobody).
    # Every alert, not only the window's: an acknowledgement in the window may be of a praise
    # alert delivered before it.
    every = alert_table(store)
    praise_ids = list(every.alert_id[every.praise])
    alerts = every[~every.praise & (every.delivered_at >= lo) & (every.delivered_at < hi)]
    ev = store.table("chain_events")
    keep = ev.event_type.isin(["acknowledged", "action_taken", "fix_deployed"]) & (ev.event_time >= lo) & (
        ev.event_time < hi)
    if praise_ids:
        # An event naming no alert cannot be a praise alert's by id; it still counts.
        keep = keep & (ev.alert_id.isnull() | ~ev.alert_id.isin(praise_ids))
    events = ev.filter(keep).select("event_type", "event_time").execute()
    starts = pd.to_datetime([p["covered_start"] for p in periods])

    def bucket(times: pd.Series) -> list[int]:
        if times.empty:
            return [0] * len(periods)
        idx = starts.searchsorted(pd.to_datetime(times).dt.floor("D"), side="right") - 1
        return [int(x) for x in pd.Series(idx).value_counts().reindex(range(len(periods)), fill_value=0)]

    out = {"alerts": bucket(alerts.delivered_at)}
    for col, kind in (("acknowledged", "acknowledged"), ("actions", "action_taken"), ("fixes", "fix_deployed")):
        out[col] = bucket(events.event_time[events.event_type == kind])
    return [{k: v[i] for k, v in out.items()} for i in range(len(periods))]


def run_cadence(store: Store, program: Program, cadence: str, *,
                progress: Callable[[int, int], None] | None = None, save: bool = True) -> dict[str, Any]:
    """The experiment window as a series of calendar periods, each with its figures to date; saved.

    Parameters
    ----------
    store : Store
    program : Program
        Its ``experiment`` names the window, the design, the primary KPI and whether intervals are
        sequential (always valid: ``experiment.sequential``); its ``value_pools`` price the effect.
    cadence : {"week", "month", "quarter"}
        Old spellings (``weekly``, ``monthly``, ``quarterly``) are accepted.
    progress : callable, optional
        Called as ``progress(done, total)`` after each period's analysis.
    save : bool
        Save the series as result ``cadence:<unit>`` (what the report and dashboard read).

    Returns
    -------
    dict
        ``cadence``, ``kpi``, ``window``, ``sequential``, ``design``, ``alpha``, ``value_basis``,
        ``seconds``, ``notes`` and ``periods``: per period ``label``, ``start``, ``end`` (the calendar
        period), ``covered_start``/``covered_end``, ``to_date`` (the cumulative window analysed),
        the effect to date (``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``relative`` and its
        interval, ``method``, ``n``), the chain counts of the period (``alerts``, ``acknowledged``,
        ``actions``, ``fixes``) and the value to date (``value_hard``, ``value_soft`` with intervals
        from the effect's interval; None where the KPI has no pool of that kind).

    Raises
    ------
    DataError
        When the program names no primary KPI.
    """
    unit = cadence_unit(cadence)
    e = program.experiment
    kpi = e.primary_kpi
    if not kpi:
        raise DataError("the program names no experiment.primary_kpi: a cadence report follows the primary KPI")
    t0 = time.perf_counter()
    window, _ = analysis_windows(program)
    periods = calendar_periods(window[0], window[1], unit)
    counts = _chain_counts(store, periods, window)
    notes: list[str] = []
    if not e.sequential:
        notes.append("experiment.sequential is false: each period's interval is fixed-horizon, valid only when read "
                     "once; reading it every period overstates the evidence (set sequential = true in [experiment])")
    rows: list[dict[str, Any]] = []
    value_ok = e.design != "switchback"
    if not value_ok:
        notes.append("value to date is not computed for a switchback design (time blocks, not units, are treated)")
    if not any(p.kpi == kpi for p in program.value_pools):
        notes.append(f"no value pool prices {kpi}: no value to date")
    analysis_s = 0.0
    for i, p in enumerate(periods):
        to_date = (window[0], p["covered_end"])
        row: dict[str, Any] = {
            **{k: (v.isoformat() if isinstance(v, date) else v) for k, v in p.items()},
            "to_date": {"start": to_date[0].isoformat(), "end": to_date[1].isoformat()}, **counts[i],
        }
        ta = time.perf_counter()
        try:
            # weekly=False: the novelty check would add a pass over the tables per period and
            # changes no estimate.
            analysis = analyze_experiment(store, program, kpis=[kpi], window=to_date, weekly=False)
            row.update(_effect_fields(analysis, kpi))
        except (DataError, EstimationError, ValueError) as exc:
            # An early period can be too thin to estimate; the rest of the series still stands.
            row.update(estimate=None, error=str(exc))
        analysis_s += time.perf_counter() - ta
        if value_ok:
            try:
                row.update(_value_fields(program, kpi, row, _denominator_to_date(store, program, kpi, to_date)))
            except (DataError, KeyError) as exc:
                row.update(value_hard=None, value_soft=None, value_error=str(exc))
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(periods))
    k = program.kpi(kpi)
    payload = {
        "cadence": unit, "kpi": kpi, "direction": k.direction, "scale": k.scale, "design": e.design,
        "sequential": bool(e.sequential), "alpha": e.alpha,
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat()},
        "value_basis": _VALUE_BASIS, "currency": program.program.currency,
        "alerts_total": int(sum(r["alerts"] for r in rows)), "notes": notes, "periods": rows,
        "seconds": round(time.perf_counter() - t0, 3), "analysis_seconds": round(analysis_s, 3),
    }
    if save:
        store.save_result("cadence", unit, payload)
    return payload


def load_cadence(store: Store, cadence: str) -> dict[str, Any] | None:
    """The series ``run_cadence`` saved for a cadence, or None.

    Parameters
    ----------
    store : Store
    cadence : str
        ``week``, ``month`` or ``quarter`` (old spellings accepted).

    Returns
    -------
    dict or None
    """
    return store.load_result(f"cadence:{cadence_unit(cadence)}")

"""Claims checked against the store: the unit x week panel of program KPIs and the claim check on it."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from insightroi.errors import DataError
from insightroi.experiments._analysis import store_annotations
from insightroi.experiments._checks import annotation_check
from insightroi.experiments._claim import ClaimReport, validate_claim
from insightroi.metrics import unit_measures_expr
from insightroi.program import Program

__all__ = ["claim_panel", "validate_claim_in_store"]


def _pre_weeks(program: Program) -> int:
    # The panel's weeks count from the pre-period's start, rounded up to whole weeks so the
    # rollout falls on a week boundary.
    return max(1, -(-program.experiment.pre_period_days // 7))


def claim_panel(store: Any, program: Program, kpis: list[str], *, end: date | None = None):
    """Unit x week panel of the numerators and denominators of ``kpis`` (plus ``treated``).

    Weeks are whole weeks counted from the start of the pre-period, which is
    ``experiment.pre_period_days`` before ``experiment.start`` rounded up to whole weeks, so the
    rollout falls on a week boundary. ``treated`` is the unit's first assigned arm ==
    ``"treatment"`` (intention to treat). Built with ``insightroi.metrics.unit_metrics`` (Ibis),
    so it runs on any backend the store supports.

    Returns
    -------
    (DataFrame, int)
        The panel (``unit, period, treated, <measure>...``) and the rollout week index.
    """
    e = program.experiment
    pre_weeks = _pre_weeks(program)
    start = e.start - timedelta(days=7 * pre_weeks)
    stop = end or e.end or date.today()
    columns = _panel_columns(program, kpis)
    measures = columns[3:]
    t = unit_measures_expr(store, program, measures, window=(start, stop), by=("week",))
    df = t.execute()
    if df.empty:
        raise DataError("validate-claim: no rows in the store for the experiment's units and window; ingest data and assignments first")
    df = df.rename(columns={"unit_id": "unit", "week": "period"})
    df["treated"] = df["arm"] != "control"  # every arm but control (A/B/n included)
    # Last week may be partial: drop it unless the window ends on a week boundary.
    n_days = (stop - start).days + 1
    if n_days % 7:
        df = df[df["period"] < n_days // 7]
    df = df.sort_values(["unit", "period"], kind="stable").reset_index(drop=True)
    return df[columns], pre_weeks


def _panel_columns(program: Program, kpis: list[str]) -> list[str]:
    # The columns of ``claim_panel(store, program, kpis)``, in its order.
    measures = [m for name in kpis for m in (program.kpi(name).numerator, program.kpi(name).denominator)]
    return ["unit", "period", "treated", *[m for m in dict.fromkeys(measures) if m != "units"]]


def validate_claim_in_store(store: Any, program: Program, claim: str, kpi: str, *, window: int = 4, alpha: float | None = None) -> ClaimReport:
    """Run :func:`validate_claim` for a program KPI on the store's unit x week panel.

    Adjacent signals are the program's other KPIs measured on the same unit (their own good
    direction from the program file).
    """
    return _validate_on_panel(store, program, claim, kpi, _kpi_claim_panel(store, program, kpi), window=window,
                              alpha=alpha)


def _adjacent_kpis(program: Program, kpi: str) -> list:
    k = program.kpi(kpi)
    return [o for o in program.kpis
            if o.name != k.name and o.unit == k.unit and "units" not in (o.numerator, o.denominator)]


def _claim_kpis(program: Program, kpi: str) -> list[str]:
    # What a claim about ``kpi`` is checked on: the KPI and its adjacent signals.
    return [kpi] + [o.name for o in _adjacent_kpis(program, kpi)]


def _kpi_claim_panel(store: Any, program: Program, kpi: str):
    return claim_panel(store, program, _claim_kpis(program, kpi))


def _validate_on_panel(store: Any, program: Program, claim: str, kpi: str, panel_rollout, *, window: int = 4,
                       alpha: float | None = None) -> ClaimReport:
    k = program.kpi(kpi)
    others = _adjacent_kpis(program, kpi)
    panel, rollout = panel_rollout
    adjacent = {o.name: (o.numerator, o.denominator, o.direction, o.scale) for o in others}
    report = validate_claim(
        claim, panel, rollout=rollout, unit="unit", period="period", numerator=k.numerator, denominator=k.denominator,
        treated="treated", scale=k.scale, kpi=k.name, window=window, adjacent=adjacent, kpi_direction=k.direction,
        alpha=alpha if alpha is not None else program.experiment.alpha,
    )
    # Weeks are counted from the panel's first day: the claim compares the "before" weeks with the
    # "after" weeks, so an event anywhere in that span can explain the change.
    e = program.experiment
    first = e.start - timedelta(days=7 * _pre_weeks(program))
    span = (first + timedelta(days=7 * int(report.windows["before"][0])),
            first + timedelta(days=7 * int(report.windows["after"][1]) + 6))
    check = annotation_check(store_annotations(store, span), span, rule=e.annotation_rule,
                             excluded=e.exclude_windows, what="the claim's before and after weeks")
    reasons, verdict = list(report.reasons), report.verdict
    if check.status == "fail" and verdict == "supported":
        verdict = "weak"
        reasons.append("annotated events overlap the claim's windows (annotation_rule = fail): at most weak")
    elif check.status in ("warn", "fail"):
        reasons.append(check.message)
    return replace(report, annotations=check, verdict=verdict, reasons=tuple(reasons))

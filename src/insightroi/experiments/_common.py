"""What every experiment analysis shares: the arm labels, the result shape and the KPI annotations.

:mod:`._analysis` (randomized units), :mod:`._switchback_analysis` (time blocks) and
:mod:`._design_analysis` (did, synthetic control, its) all return an :class:`ExperimentAnalysis`;
keeping it here lets the dispatcher in ``_analysis`` import the other two at module level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from insightroi.metrics import measure_specs
from insightroi.program import Kpi, Measure, Program
from insightroi.stats import Check, Result, adjust_pvalues, jsonable

__all__ = ["CONTROL", "TREATMENT", "ExperimentAnalysis", "annotate_kpi_results", "finite_or_none", "quantile_measure"]

TREATMENT, CONTROL = "treatment", "control"


@dataclass(frozen=True)
class ExperimentAnalysis:
    """Everything :func:`analyze_experiment` found.

    Attributes
    ----------
    results : dict
        KPI name -> Result of the absolute effect in KPI units (``scale`` applied). ``extra`` holds
        ``control_mean``, ``treatment_mean``, ``relative``, ``relative_ci_low``,
        ``relative_ci_high``, ``relative_se``, ``p_adjusted`` (Holm), ``p_adjusted_bh``, the KPI's
        metadata and the estimator details.
    relative : dict
        KPI name -> Result of the relative effect ``treatment / control - 1``.
    segments : dict
        segment column -> KPI name -> segment value -> Result (relative; BH across segments).
    checks : tuple of Check
        Experiment-level checks (SRM, contamination, balance, novelty of the primary KPI).
    arms : dict
        A/B/n only (several treatment arms): KPI name -> arm -> Result of that arm against control
        (absolute, KPI units), ``extra["p_adjusted"]`` Holm-adjusted across the arms. ``results``
        then pools the arms.
    treated_totals : dict, optional
        Measure -> total over the treated units (every arm but control) in the window, for the
        ``volume_measures`` :func:`analyze_experiment` was given, plus ``units`` (their count):
        the per-unit query's own sums, so the treated volumes need no second pass over the
        store. None for designs analysed without that query (switchback, quasi-experiments).
    """

    name: str
    design: str
    unit: str
    window: tuple[date, date]
    pre_window: tuple[date, date] | None
    n_treatment: int
    n_control: int
    results: dict[str, Result]
    relative: dict[str, Result]
    checks: tuple[Check, ...] = ()
    segments: dict[str, dict[str, dict[str, Result]]] = field(default_factory=dict)
    alpha: float = 0.05
    arms: dict[str, dict[str, Result]] = field(default_factory=dict)
    treated_totals: dict[str, float] | None = field(default=None, repr=False, compare=False)

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    def experiment_section(self) -> dict[str, Any]:
        """The report bundle's ``experiment`` section (CONTRACTS.md)."""
        return {"name": self.name, "design": self.design, "unit": self.unit, "n_treatment": self.n_treatment,
                "n_control": self.n_control, "checks": [c.to_dict() for c in self.checks]}

    def kpi_rows(self, program: Program | None = None) -> list[dict[str, Any]]:
        """The report bundle's ``kpis`` rows (``truth`` fields left None for the caller to fill)."""
        rows = []
        for name, r in self.results.items():
            x = r.extra
            rows.append({
                "name": name, "layer": x.get("layer"), "owner": x.get("owner"), "direction": x.get("direction"),
                "decision_rule": x.get("decision_rule"), "method": r.method, "unit": x.get("kpi_unit"),
                "control_mean": x.get("control_mean"), "treatment_mean": x.get("treatment_mean"),
                "estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value,
                "p_adjusted": x.get("p_adjusted"), "relative": x.get("relative"),
                "relative_ci_low": x.get("relative_ci_low"), "relative_ci_high": x.get("relative_ci_high"),
                "n": r.n, "truth": None, "truth_relative": None,
                "chance_to_win": x.get("chance_to_win"), "risk_control": x.get("risk_control"),
                "risk_treatment": x.get("risk_treatment"),
                "checks": [c.to_dict() for c in r.diagnostics], "summary_html": r.summary("html"),
            })
        return jsonable(rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            **self.experiment_section(),
            "window": {"start": self.window[0].isoformat(), "end": self.window[1].isoformat()},
            "pre_window": None if self.pre_window is None else
            {"start": self.pre_window[0].isoformat(), "end": self.pre_window[1].isoformat()},
            "alpha": self.alpha,
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "relative": {k: r.to_dict() for k, r in self.relative.items()},
            "segments": {s: {k: {v: r.to_dict() for v, r in byv.items()} for k, byv in d.items()}
                         for s, d in self.segments.items()},
            "arms": {k: {a: r.to_dict() for a, r in by.items()} for k, by in self.arms.items()},
        }


def annotate_kpi_results(results: dict[str, Result], relative: dict[str, Result], program: Program, *,
                         analysis_unit: str, n_treatment: int, n_control: int, window) -> None:
    """Add each KPI's metadata and its Holm and Benjamini-Hochberg adjusted p-values (across the
    KPIs analysed together) to ``results[name].extra`` and ``relative[name].extra``, in place."""
    names = list(results)
    pvals = [results[n].p_value for n in names]
    holm_p, bh_p = adjust_pvalues(pvals, "holm"), adjust_pvalues(pvals, "bh")
    for i, name in enumerate(names):
        k = program.kpi(name)
        rel = relative[name]
        adjusted = {"p_adjusted": finite_or_none(holm_p[i]), "p_adjusted_bh": finite_or_none(bh_p[i])}
        meta = {"layer": k.layer, "owner": k.owner, "direction": k.direction, "decision_rule": k.decision_rule,
                "kpi_unit": k.unit, "analysis_unit": analysis_unit, "scale": k.scale, "numerator": k.numerator,
                "denominator": k.denominator, **adjusted,
                "relative": rel.estimate, "relative_ci_low": rel.ci[0], "relative_ci_high": rel.ci[1],
                "relative_se": rel.se, "relative_p_value": rel.p_value, "n_treatment": n_treatment,
                "n_control": n_control, "window": [window[0].isoformat(), window[1].isoformat()]}
        results[name] = replace(results[name], extra={**results[name].extra, **meta})
        relative[name] = replace(rel, extra={**rel.extra, **adjusted})


def finite_or_none(x: float) -> float | None:
    """``x`` as a float, or None when it is NaN or infinite (JSON has neither)."""
    return float(x) if math.isfinite(x) else None


def whole_window_kpis(program: Program, kpis) -> set[str]:
    """Names of the ``kpis`` with a per-unit condition or a time to a first event in a measure.

    Their value is read over each unit's whole window, so they have no weekly (or per-segment)
    breakdown: the novelty trend and the power table's weekly variance model leave them out.
    """
    specs = measure_specs(program)
    return {k.name for k in kpis
            if any(m != "units" and (specs[m].per_unit is not None or specs[m].time_to_first)
                   for m in (k.numerator, k.denominator))}


def quantile_measure(program: Program, kpi: Kpi) -> Measure | None:
    """The ``quantile`` measure a KPI is the quantile of (its numerator), or None for a ratio KPI.

    Such a KPI is analysed from its rows (the clustered quantile delta method), not from
    per-unit totals; estimators built on totals must dispatch on it.
    """
    m = program.measure(kpi.numerator)
    return m if isinstance(m, Measure) and m.aggregation == "quantile" else None

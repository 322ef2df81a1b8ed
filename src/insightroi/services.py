"""One service call per stage: ``run_<stage>(store, program, ...) -> <Stage>Section``.

Each reads what earlier stages saved in the store, computes its stage, saves its section with
provenance (:mod:`insightroi.bundle`) and returns it. The CLI commands, ``insightroi run``, the
demo pipeline, the report and the server call these and nothing else of a stage, so the same
store gives the same numbers through every door: the ROI the CLI prints is the ROI the report and
the dashboard show, computed once from the same saved inputs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from insightroi import __version__
from insightroi._constants import ROI_DRAWS, ROI_SEED
from insightroi.bundle import (
    STAGES,
    Bundle,
    ChainSection,
    ClaimsSection,
    ClassifySection,
    DetectSection,
    ExperimentSection,
    InsightsSection,
    MonitorSection,
    Provenance,
    QuasiSection,
    RoiSection,
    RuleEvaluation,
    TableExtent,
    assemble_bundle,
    load_section,
    program_hash,
    save_section,
)
from insightroi.chain import chain_summary
from insightroi.errors import DataError, EstimationError, check_option
from insightroi.experiments import (
    analyze_experiment,
    effect_correlation,
    power_table,
    quasi_section,
    treated_volumes,
    validate_claim_in_store,
)
from insightroi.insights import Alert, classify_store, current_topic_version, detect_spikes, insights_summary, write_alerts
from insightroi.metrics import volume_measures
from insightroi.monitor import monitor_store
from insightroi.program import Program
from insightroi.report import VIEWS, cadence_unit, export_pdf, load_cadence, render_html, run_cadence, write_report
from insightroi.roi import RoiVolumes, compute_roi, projected_effects, roi_drivers, roi_waterfall
from insightroi.roi._engine import zero_cost_reason
from insightroi.stats import Result
from insightroi.store import TABLES, Store

__all__ = [
    "ROI_SEED",
    "ROI_DRAWS",
    "RunReport",
    "run_classify",
    "run_detect",
    "run_insights",
    "run_chain",
    "run_analyze",
    "run_roi",
    "run_quasi",
    "run_claim",
    "run_monitor",
    "run_report",
    "run_all",
    "evaluate_decision_rule",
    "withheld_units",
]

# The tables each stage reads, for its provenance.
_INPUTS: dict[str, tuple[str, ...]] = {
    "classify": ("feedback",),
    "detect": ("feedback", "insights", "assignments"),
    "insights": ("feedback", "insights", "chain_events"),
    "chain": ("chain_events",),
    "analyze": ("orders", "feedback", "tickets", "refunds", "traffic", "assignments", "chain_events"),
    "roi": ("results",),
    "quasi": ("orders", "feedback", "tickets", "refunds", "assignments"),
    "monitor": ("feedback", "insights"),
    "report": ("results",),
}


def _extent(store: Store, table: str) -> TableExtent:
    spec = TABLES[table]
    t = store.table(table)
    if spec.time_column:
        agg = t.aggregate(n=t.count(), lo=t[spec.time_column].min(), hi=t[spec.time_column].max()).execute()
        lo, hi = agg.lo.iloc[0], agg.hi.iloc[0]
        return TableExtent(rows=int(agg.n.iloc[0]), start=None if lo is None or lo != lo else str(lo)[:19],
                           end=None if hi is None or hi != hi else str(hi)[:19])
    return TableExtent(rows=store.count(table))


def _provenance(store: Store, program: Program, stage: str, started: float,
                model_versions: dict[str, str] | None = None) -> Provenance:
    return Provenance(
        stage=stage, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__, program_hash=program_hash(program), program_name=program.program.name,
        store_url=getattr(store, "url", None), model_versions=model_versions or {},
        inputs={t: _extent(store, t) for t in _INPUTS[stage]}, seconds=round(time.perf_counter() - started, 3),
    )


def _truth(store: Store) -> dict[str, Any] | None:
    """The simulated company's ground truth, saved by the demo (None on a user's store)."""
    return store.load_result("demo:truth")


# ---------------------------------------------------------------------------------------------
# model layer
def run_classify(store: Store, program: Program, *, method: str = "lexicon", batch_size: int = 5000,
                 jobs: int = 1, progress: Callable[[int, int], None] | None = None) -> ClassifySection:
    """Classify feedback not yet classified by the current model versions (sentiment, topic, severity).

    Parameters
    ----------
    store, program : Store, Program
    method : {"lexicon", "embedding", "seeded", "auto"}
        ``seeded``: taxonomy-seeded topics (trained on the review queue's topic labels once there
        are 50) and the cross-domain sentiment head.
    batch_size : int
        Feedback rows per transaction.
    jobs : int
        Worker processes (-1 = one per core).
    progress : callable, optional
        ``progress(done, total)``.
    """
    t0 = time.perf_counter()
    rep = classify_store(store, program, method=method, batch_size=batch_size, n_jobs=jobs, progress=progress)
    section = ClassifySection(
        n_feedback=rep.n_feedback, n_classified=rep.n_classified, method=rep.method,
        model_versions=dict(rep.model_versions), n_todo=rep.n_todo, n_rows_written=rep.n_rows_written,
        n_unclassifiable=rep.n_unclassifiable, topic_counts=dict(rep.topic_counts), classify_seconds=rep.seconds,
    )
    section.provenance = _provenance(store, program, "classify", t0, dict(rep.model_versions))
    save_section(store, "classify", section)
    return section


def withheld_units(store: Store, program: Program) -> set[str]:
    """Units no alert may reach: the control (holdout) arm of the program's experiment.

    Alerts are raised per SKU family; when the experiment randomizes SKU families (any design
    with a control arm in the assignments table), an alert about a control family would treat it
    and contaminate the comparison the ROI rests on.
    """
    e = program.experiment
    if e.unit != "sku_family":
        return set()
    a = store.table("assignments")
    rows = a.filter((a.experiment == e.name) & (a.unit_type == e.unit) & (a.arm == "control")).select("unit_id")
    return set(rows.execute().unit_id)


def _evidence_ids(store: Store, alerts: Sequence[Any], limit: int = 20) -> dict[str, list[str]]:
    """Per alert, ids of the feedback rows (topic x family x the alert's window) that made it fire."""
    if not alerts:
        return {}

    version = current_topic_version(store)
    ins = store.table("insights")
    fb = store.table("feedback")
    # Only the alerts' topics and families are read: over a long window the whole feedback table
    # would not fit in memory at the larger scales.
    topics = ins.filter((ins.task == "topic") & (ins.model_version == version)
                        & ins.label.isin(sorted({a.topic for a in alerts}))).select(fid=ins.feedback_id, topic=ins.label)
    lo = min(a.day for a in alerts)
    lo = lo.fromordinal(lo.toordinal() - max(a.window_days for a in alerts) + 1)
    hi = max(a.day for a in alerts)
    day = fb.event_time.cast("date")
    rows = fb.filter((day >= ibis.literal(lo)) & (day <= ibis.literal(hi))
                     & fb.sku_family.isin(sorted({a.sku_family for a in alerts}))).select(
        fid=fb.id, sku_family=fb.sku_family, day=day)
    joined = rows.join(topics, "fid").execute()
    # Backends return a date column as datetime64 or as date objects; compare as dates.
    joined["day"] = pd.to_datetime(joined["day"]).dt.date
    out: dict[str, list[str]] = {}
    for a in alerts:
        first = a.day.fromordinal(a.day.toordinal() - a.window_days + 1)
        d = joined[(joined.topic == a.topic) & (joined.sku_family == a.sku_family)
                   & (joined.day >= first) & (joined.day <= a.day)]
        out[a.alert_id] = sorted(map(str, d.fid))[:limit]
    return out


def run_detect(store: Store, program: Program, *, start: date | None = None, end: date | None = None,
               alpha: float = 1e-3, dry_run: bool = False) -> DetectSection:
    """Detect topic spikes per SKU family and day; route them to owners, never to control units.

    Every alert carries the ids of the feedback rows that triggered it (``feedback_ids``), so an
    owner can read the evidence and the trace can link the alert to its rows.
    """
    t0 = time.perf_counter()
    alerts = detect_spikes(store, program, start=start, end=end, alpha=alpha)
    control = withheld_units(store, program)
    routed = [a for a in alerts if a.sku_family not in control]
    evidence = _evidence_ids(store, routed)
    written = 0 if dry_run else write_alerts(store, routed, evidence=evidence)
    rows = [{**a.to_dict(), "feedback_ids": evidence.get(a.alert_id, [])} for a in routed]
    section = DetectSection(alerts=rows, n_detected=len(alerts), n_written=written,
                            withheld_control=len(alerts) - len(routed), dry_run=dry_run)
    if not dry_run:
        section.provenance = _provenance(store, program, "detect", t0)
        save_section(store, "detect", section)
    return section


def run_insights(store: Store, program: Program, *, validation: dict[str, Any] | None = None) -> InsightsSection:
    """Summarise the insight layer (topics, routed alerts, new themes, model quality)."""
    t0 = time.perf_counter()
    detect = load_section(store, "detect")
    alerts = None
    if detect is not None:
        alerts = [Alert(**{k: (date.fromisoformat(v) if k == "day" else v) for k, v in a.items()
                           if k in Alert.__dataclass_fields__}) for a in detect.get("alerts", [])]
    summary = insights_summary(store, program, alerts=alerts, validation=validation)
    if detect is not None:
        ids = {a["alert_id"]: a.get("feedback_ids", []) for a in detect.get("alerts", [])}
        for a in summary.get("alerts", []):
            a["feedback_ids"] = ids.get(a.get("alert_id"), [])
    section = InsightsSection.model_validate(summary)
    section.provenance = _provenance(store, program, "insights", t0)
    save_section(store, "insights", section)
    return section


# ---------------------------------------------------------------------------------------------
# workflow layer
def run_chain(store: Store, program: Program) -> ChainSection:
    """The decision chain's funnel and workflow KPIs per team."""
    t0 = time.perf_counter()
    # Reviewer disagreement belongs to the topic's owner, not to whoever got most of its alerts.
    section = ChainSection.model_validate(chain_summary(store, owners={t.topic: t.owner for t in program.taxonomy}))
    section.provenance = _provenance(store, program, "chain", t0)
    save_section(store, "chain", section)
    return section


# ---------------------------------------------------------------------------------------------
# business layer
_RULE = re.compile(
    r"^\s*(?P<neg>not\s+)?(?P<dir>down|up|decrease|increase|reduced?|raised?|lower|higher)"
    r"(?:\s+(?:by\s+)?(?P<pct>\d+(?:\.\d+)?)\s*%)?", re.I)
_AT_LEAST = re.compile(r"^\s*at\s+(?P<which>least|most)\s+(?P<pct>\d+(?:\.\d+)?)\s*%", re.I)


def evaluate_decision_rule(rule: str, row: dict[str, Any], *, alpha: float) -> RuleEvaluation:
    """Evaluate a KPI's decision rule (program file) on its multiplicity-adjusted result.

    Rules read like the program file writes them: ``"down 15% vs control"``, ``"up vs control"``,
    ``"not down vs control"`` (a guardrail) and ``"at least 60% ..."`` (a level for the treated
    arm). A directional rule passes when the Holm-adjusted p-value is below ``alpha`` in the
    rule's direction and the point estimate reaches the target; it fails when the effect is
    significant the other way or the relative interval excludes the target; otherwise it is
    inconclusive. A guardrail fails only on a significant move in the forbidden direction.
    """
    name = row.get("name", "?")
    rel, lo, hi = row.get("relative"), row.get("relative_ci_low"), row.get("relative_ci_high")
    p_adj = row.get("p_adjusted")
    m = _AT_LEAST.match(rule)
    if m:
        level = float(m.group("pct")) / 100
        value = row.get("treatment_mean")
        if value is None:
            return RuleEvaluation(kpi=name, rule=rule, status="not_evaluable",
                                  message="no treated-arm value for this KPI")
        ok = value >= level if m.group("which").lower() == "least" else value <= level
        return RuleEvaluation(kpi=name, rule=rule, status="pass" if ok else "fail", target_relative=None,
                              message=f"treated arm at {value:.1%} vs the {level:.0%} target")
    m = _RULE.match(rule)
    if not m or rel is None or p_adj is None:
        why = "rule not understood (write e.g. 'down 15% vs control')" if not m else "no effect estimate for this KPI"
        return RuleEvaluation(kpi=name, rule=rule, status="not_evaluable", message=why)
    down = m.group("dir").lower() in ("down", "decrease", "reduce", "reduced", "lower")
    sign = -1.0 if down else 1.0
    good = sign * rel  # > 0 = the rule's direction
    significant = p_adj < alpha
    detail = f"{rel:+.1%}, Holm p = {p_adj:.3g}"
    if lo is not None and hi is not None:
        detail = f"{rel:+.1%} [{lo:+.1%}, {hi:+.1%}], Holm p = {p_adj:.3g}"
    if m.group("neg"):
        # A guardrail ("not down"): only a significant move in the named direction breaks it.
        return RuleEvaluation(kpi=name, rule=rule, status="fail" if significant and good > 0 else "pass",
                              message=detail)
    target = float(m.group("pct")) / 100 if m.group("pct") else 0.0
    best = None if lo is None or hi is None else max(sign * lo, sign * hi)
    if significant and good < 0:
        status = "fail"
    elif significant and good >= target:
        status = "pass"
    elif target > 0 and best is not None and best < target:
        # The interval excludes the target: more of the same data cannot make the rule pass.
        status = "fail"
    else:
        status = "inconclusive"
    return RuleEvaluation(kpi=name, rule=rule, status=status, message=detail,
                          target_relative=sign * target if target else None)


def _correlation_rows(corr: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    return [{"a": a, "b": b, "rho": float(r)} for (a, b), r in corr.items()]


def run_analyze(store: Store, program: Program, *, kpis: Sequence[str] | None = None,
                segments: Sequence[str] | None = None) -> ExperimentSection:
    """Analyse the program's experiment, whatever its design, and save what the ROI needs.

    Saves each KPI's Result (kind ``experiment``), the experiment section (checks, KPI rows with
    Holm-adjusted significance, evaluated decision rules), the treated volumes over the window and
    the correlation of the priced KPIs' effects, so ``run_roi`` has every input it uses.
    """
    t0 = time.perf_counter()
    # The treated volumes are sums of the per-unit totals the analysis reads anyway: asking it for
    # their measures saves a second aggregation of every fact table over the same window.
    analysis = analyze_experiment(store, program, kpis=list(kpis) if kpis else None,
                                  segments=list(segments) if segments else None,
                                  volume_measures=volume_measures(program))
    truth = _truth(store) or {}
    alpha = analysis.alpha
    rows = analysis.kpi_rows(program)
    for row in rows:
        t = truth.get("kpis", {}).get(row["name"]) or {}
        row["truth"] = t.get("ate")
        row["truth_relative"] = t.get("ate_relative")
        p_adj = row.get("p_adjusted")
        row["significant_adjusted"] = None if p_adj is None else bool(p_adj < alpha)
    rules = [evaluate_decision_rule(r["decision_rule"], r, alpha=alpha) for r in rows if r.get("decision_rule")]
    for name, result in analysis.results.items():
        store.save_result("experiment", name, result.to_dict())
    volumes, volumes_note = None, None
    if analysis.design == "switchback":
        # Time blocks, not units, are treated; the unit-level volume query does not apply.
        volumes_note = "treated volumes of a switchback design (volume in treatment blocks) are not computed yet"
    else:
        volumes_by_kpi = treated_volumes(store, program, window=analysis.window, totals=analysis.treated_totals)
        feedback = volumes_by_kpi.pop("_feedback", {}).get("feedback", 0.0)
        months = ((analysis.window[1] - analysis.window[0]).days + 1) / 30.4375
        volumes = RoiVolumes(kpis={k: float(v["denominator"]) for k, v in volumes_by_kpi.items()},
                             feedback=float(feedback), months=months)
        store.save_result("volumes", "latest", volumes.to_dict())
    priced = [k for k in dict.fromkeys(p.kpi for p in program.value_pools) if k in analysis.results]
    # KPIs sharing units and denominators have correlated errors; independent draws would
    # understate the ROI's uncertainty. Only randomized unit-level designs have the unit table.
    corr = effect_correlation(store, program, priced, window=analysis.window) \
        if analysis.design in ("ab", "cluster", "holdout") and len(priced) > 1 else {}
    full = analysis.to_dict()
    section = ExperimentSection(
        name=analysis.name, design=analysis.design, unit=analysis.unit, n_treatment=analysis.n_treatment,
        n_control=analysis.n_control, alpha=alpha, window=full["window"], pre_window=full["pre_window"],
        checks=[c.to_dict() for c in analysis.checks], kpis=rows, decision_rules=rules,
        results=full["results"], volumes=None if volumes is None else volumes.to_dict(),
        volumes_note=volumes_note, correlation=_correlation_rows(corr),
        segments=full["segments"], arms=full.get("arms", {}),
    )
    section.provenance = _provenance(store, program, "analyze", t0)
    save_section(store, "analyze", section)
    store.save_result("experiment_checks", analysis.name, analysis.experiment_section())
    return section


def run_roi(store: Store, program: Program, *, draws: int = ROI_DRAWS, seed: int = ROI_SEED,
            horizon_months: float | None = None, method: str | None = None) -> RoiSection:
    """The program's ROI from the saved experiment section, over the program's horizon.

    Parameters
    ----------
    draws, seed : int
        Monte Carlo draws and seed; the defaults are what every other door uses.
    horizon_months : float, optional
        Default: ``program.horizon_months``. The window's monthly run-rate of benefit and cost is
        extrapolated to the horizon (one-off costs counted once).
    method : str, optional
        Use only KPI results estimated with this method.

    Raises
    ------
    DataError
        When ``insightroi analyze`` has not saved its section.
    """
    t0 = time.perf_counter()
    exp = load_section(store, "analyze")
    if exp is None:
        raise DataError("no saved experiment section in the store: run `insightroi analyze` first")
    priced = {p.kpi for p in program.value_pools}
    effects = {}
    for name, payload in exp.get("results", {}).items():
        res = Result.from_dict(payload)
        if name in priced and (method is None or res.method == method):
            effects[name] = res
    if not effects:
        raise DataError("no priced KPI has an effect estimate" + (f" with method {method!r}" if method else "")
                        + ": check the program's value_pools and run `insightroi analyze`")
    if not exp.get("volumes"):
        raise DataError(exp.get("volumes_note") or "the saved experiment section has no treated volumes: rerun "
                        "`insightroi analyze` so the ROI knows how many orders, sessions and feedback items were treated")
    volumes = RoiVolumes.from_dict(exp["volumes"])
    corr = {(r["a"], r["b"]): r["rho"] for r in exp.get("correlation", []) if r["a"] in effects and r["b"] in effects}
    horizon = float(horizon_months if horizon_months is not None else program.program.horizon_months)
    result = compute_roi(program, effects, volumes, draws=draws, rng=seed, correlation=corr or None,
                         horizon_months=horizon)
    payload = result.to_dict()
    payload["projection"] = _projected_vs_realized(store, program, effects, volumes, horizon)
    store.save_result("roi", "latest", payload)
    truth = (_truth(store) or {}).get("roi")
    section = RoiSection.model_validate({**payload, "seed": seed, "draws": draws})
    if truth and abs(truth.get("months", 0) - horizon) < 0.05:
        # The simulated truth is the realized ROI over the window; it is comparable only when the
        # horizon is the window.
        section.truth = truth.get("roi")
        section.truth_detail = truth
    section.provenance = _provenance(store, program, "roi", t0)
    save_section(store, "roi", section)
    return section


PROJECTION_ID = "roi_projection:plan"


def save_roi_projection(store: Store, program: Program, power_rows: Sequence[dict[str, Any]], *,
                        draws: int = ROI_DRAWS, seed: int = ROI_SEED) -> dict[str, Any]:
    """Price the planned effect at plan time and save it, so reports can set the realized ROI beside it.

    The effect of each priced KPI is the planned MDE on its pre-period baseline (the effect the
    design is powered to detect), with the standard error the power analysis expects; volumes
    are the treated units' pre-period volumes, run at the same monthly rate over the program's
    horizon; unit values and costs are the program's. Saved as ``roi_projection:plan``.

    Returns
    -------
    dict
        ``saved`` (bool), and either ``reason`` (why nothing could be projected) or the
        projection: ``roi`` (as the ROI stage's payload), ``drivers`` (see
        :func:`insightroi.roi.roi_drivers`), ``effects``, ``window`` (the pre-period the volumes
        come from) and ``horizon_months``.
    """
    if not program.value_pools or not program.costs:
        return {"saved": False, "reason": "the program prices no KPI or lists no cost"}
    if not any(c.amount.high > 0 for c in program.costs):
        return {"saved": False, "reason": zero_cost_reason(program)}
    effects = projected_effects(program, power_rows)
    if not effects:
        return {"saved": False, "reason": "no priced KPI has a pre-period baseline in the store"}
    e = program.experiment
    pre = (e.start - timedelta(days=e.pre_period_days), e.start - timedelta(days=1))
    # Only the priced KPIs with a planned effect are turned into money: the other KPIs' volumes
    # would be counted and never read.
    by_kpi = treated_volumes(store, program, window=pre, kpis=list(effects))
    feedback = by_kpi.pop("_feedback", {}).get("feedback", 0.0)
    if not any(by_kpi[k]["denominator"] for k in effects):
        return {"saved": False, "reason": "no treated units with pre-period volume: assign units first (insightroi assign)"}
    volumes = RoiVolumes(kpis={k: float(v["denominator"]) for k, v in by_kpi.items()}, feedback=float(feedback),
                         months=((pre[1] - pre[0]).days + 1) / 30.4375)
    horizon = float(program.program.horizon_months)
    result = compute_roi(program, effects, volumes, draws=draws, rng=seed, horizon_months=horizon)
    payload = {"saved": True, "roi": result.to_dict(), "drivers": roi_drivers(program, effects, volumes, horizon),
               "effects": {k: r.to_dict() for k, r in effects.items()},
               "window": [pre[0].isoformat(), pre[1].isoformat()], "horizon_months": horizon,
               "basis": f"planned MDE of {e.mde_relative:.0%} on each priced KPI's pre-period baseline"}
    store.save_result("roi_projection", "plan", payload, result_id=PROJECTION_ID)
    return payload


def ensure_roi_projection(store: Store, program: Program) -> dict[str, Any] | None:
    """Save the projection ``insightroi plan`` would have saved, when none is in the store.

    ``insightroi run`` and the demo skip ``plan``; the projection reads only the pre-period, so
    saving it late gives the same figures as at plan time. A projection already saved (by an
    earlier ``plan``) is kept: it is the record of what was expected. A projection that cannot
    be made (a design whose pre-period has no power table, volumes that cannot be counted) is
    skipped with its reason: it must never cost the run its realized ROI.
    """
    if store.load_result(PROJECTION_ID) is not None:
        return None
    try:
        # The projection prices the priced KPIs' rows alone; the other KPIs' rows are what
        # `insightroi plan` prints, not what it saves, and computing them was most of this
        # stage's time. Program order is kept: it is the order the ROI engine draws effects in.
        priced = {p.kpi for p in program.value_pools}
        kpis = [k.name for k in program.kpis if k.name in priced]
        return save_roi_projection(store, program, power_table(program, store, kpis=kpis) if kpis else [])
    except (DataError, EstimationError, ValueError) as exc:
        return {"saved": False, "reason": f"{type(exc).__name__}: {exc}"}


def _projected_vs_realized(store: Store, program: Program, effects: dict[str, Result], volumes: RoiVolumes,
                           horizon: float) -> dict[str, Any] | None:
    # The realized side is the same expected-case arithmetic on the estimates; a projection
    # over another horizon (the program changed since plan) is not comparable and is named so.
    saved = store.load_result(PROJECTION_ID)
    if not saved or not saved.get("saved"):
        return None
    proj = saved["roi"]
    out = {"projected": {k: proj.get(k) for k in ("estimate", "median", "conservative", "ci_low", "ci_high",
                                                   "p_positive", "benefit", "cost")},
           "basis": saved.get("basis"), "window": saved.get("window"), "waterfall": None}
    if abs(float(saved.get("horizon_months", 0)) - horizon) > 1e-9:
        out["note"] = (f"the projection covers {saved.get('horizon_months')} months, this ROI {horizon:g}: "
                       "no driver split; re-run `insightroi plan`")
        return out
    out["waterfall"] = roi_waterfall(saved["drivers"], roi_drivers(program, effects, volumes, horizon))
    return out


def run_quasi(store: Store, program: Program) -> QuasiSection:
    """Observational re-analyses (DiD, time-series counterfactual) and the demo's validated claims."""
    t0 = time.perf_counter()
    out = quasi_section(store, program, truth=_truth(store))
    section = QuasiSection(rows=out.get("quasi") or [], claims=out.get("claims") or [])
    section.provenance = _provenance(store, program, "quasi", t0)
    save_section(store, "quasi", section)
    return section


def run_claim(store: Store, program: Program, claim: str, kpi: str, *, window: int = 4, save: bool = True):
    """Validate a before/after claim about ``kpi``; saved claims appear in the report."""
    report = validate_claim_in_store(store, program, claim, kpi, window=window)
    if save:
        payload = report.to_dict()
        payload["label"] = "saved"
        # One saved result per claim text (several claims about one KPI all reach the report).
        store.save_result("claim", kpi, payload, result_id=f"claim:{kpi}:{claim}")
    return report


def run_monitor(store: Store, program: Program) -> MonitorSection:
    """Drift, calibration, lift decay and the keep / retrain / retire decision."""
    t0 = time.perf_counter()
    payload = monitor_store(store, program).to_dict()
    store.save_result("monitor", "latest", payload)
    section = MonitorSection.model_validate(payload)
    section.provenance = _provenance(store, program, "monitor", t0)
    save_section(store, "monitor", section)
    return section


def run_report(store: Store, program: Program, out_dir: str | Path, *, view: str | None = None,
               cadence: str | None = None, pdf: bool = False, failures: list[dict[str, Any]] | None = None,
               timings: dict[str, float] | None = None) -> tuple[Bundle, dict[str, Path]]:
    """Assemble the saved sections into the bundle and write report.html, report.json and the views.

    With ``cadence``, the series saved for it (:func:`insightroi.report.run_cadence`) is added to
    what is written, so each period is its own section.

    Returns
    -------
    (Bundle, dict)
        The bundle written and the paths per view (plus ``json`` and, with ``pdf``, ``pdf``).
    """
    if view is not None:
        check_option("view", view, VIEWS)
    bundle = assemble_bundle(store, program, failures=failures, timings=timings)
    data = bundle.to_report()
    series = load_cadence(store, cadence) if cadence is not None else None
    if series is not None:
        # The period-by-period series `report --cadence` computed and saved (run_cadence): the
        # pages, report.json and bundle:latest carry the same numbers.
        data["cadence"] = series
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if view is None:
        paths = dict(write_report(data, out, cadence=cadence, pdf=pdf))
    else:
        target = out / ("report.html" if view == "full" else f"report-{view}.html")
        target.write_text(render_html(data, view=view, cadence=cadence), encoding="utf-8")
        paths = {view: target}
        if pdf:
            paths["pdf"] = export_pdf(target, out / f"report-{view}.pdf")
    json_path = out / "report.json"
    json_path.write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
    paths["json"] = json_path
    store.save_result("bundle", "latest", data)
    return bundle, paths


# ---------------------------------------------------------------------------------------------
# all stages
@dataclass
class RunReport:
    """What ``run_all`` did: the sections per stage, failures, timings and the report paths."""

    sections: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    bundle: Bundle | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def run_all(store: Store, program: Program, *, out_dir: str | Path = "report", start_from: str | None = None,
            only: Sequence[str] | None = None, classify_jobs: int = 1, validation: Callable[[], Any] | None = None,
            progress: Callable[[str], None] | None = None, cadence: str | None = None) -> RunReport:
    """Run the stages in flow order on ``store`` (``insightroi run``); a failing stage is recorded.

    Parameters
    ----------
    start_from : str, optional
        Resume: skip the stages before this one (their saved sections are used).
    only : sequence of str, optional
        Run just these stages (the report is written when ``"report"`` is among them).
    classify_jobs : int
        Worker processes for classification.
    validation : callable, optional
        Returns the model-validation dict the insights section shows (the demo's labelled sample).
    cadence : {"week", "month", "quarter"}, optional
        The report stage also computes the period-by-period series (as ``insightroi report
        --cadence``) and renders one section per period.
    """
    import traceback

    unit = cadence_unit(cadence) if cadence is not None else None

    for name in [start_from, *(only or [])]:
        if name is not None:
            check_option("stage", name, STAGES)
    todo = list(STAGES)
    if start_from:
        todo = todo[todo.index(start_from):]
    if only:
        todo = [s for s in todo if s in only]
    rep = RunReport()
    calls: dict[str, Callable[[], Any]] = {
        "classify": lambda: run_classify(store, program, jobs=classify_jobs),
        "detect": lambda: run_detect(store, program),
        "insights": lambda: run_insights(store, program, validation=validation() if validation else None),
        "chain": lambda: run_chain(store, program),
        "analyze": lambda: run_analyze(store, program),
        "roi": lambda: (ensure_roi_projection(store, program), run_roi(store, program))[1],
        "quasi": lambda: run_quasi(store, program),
        "monitor": lambda: run_monitor(store, program),
    }
    for stage in todo:
        if stage == "report":
            continue
        if progress:
            progress(stage)
        t0 = time.perf_counter()
        try:
            rep.sections[stage] = calls[stage]()
        except Exception as exc:  # noqa: BLE001 - the batch convention (DESIGN.md, 6): record and go on
            rep.failures.append({"stage": stage, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=6)})
        finally:
            rep.timings[stage] = time.perf_counter() - t0
    if "report" in todo:
        if progress:
            progress("report")
        t0 = time.perf_counter()
        try:
            if unit is not None:
                run_cadence(store, program, unit)  # saved as cadence:<unit>, which run_report adds
            rep.bundle, rep.paths = run_report(store, program, out_dir, failures=rep.failures, timings=rep.timings,
                                               cadence=unit)
        except Exception as exc:  # noqa: BLE001
            rep.failures.append({"stage": "report", "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=6)})
        finally:
            rep.timings["report"] = time.perf_counter() - t0
    return rep

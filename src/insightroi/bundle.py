"""The report bundle: one typed section per stage, saved in the store, read by report and server.

Every stage's service call (:mod:`insightroi.services`) saves its section in the store's
``results`` table under kind ``"section"`` and the stage's name, with :class:`Provenance`. The
report, the dashboard and ``--json`` outputs read these saved sections and nothing else, so one
store gives one set of numbers everywhere. :func:`assemble_bundle` joins the latest sections into
a :class:`Bundle`; the renderer takes its JSON form.

The sections name the fields every consumer relies on and keep the rest (``extra="allow"``): the
stages' own summaries carry detail (per-team tables, chart series) that only one view shows, and
typing each of those would freeze what is still growing. A field listed here is a contract.

Schema versions
---------------
1. The untyped dict the demo pipeline saved as ``bundle:latest`` (no ``schema_version`` key).
2. Typed sections with provenance; ``program`` carries the primary KPI and the audiences;
   ``decision_rules`` is evaluated. :func:`migrate_bundle` upgrades a version-1 payload.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from insightroi._constants import STAGES
from insightroi.privacy import results_before_erasure

__all__ = [
    "SCHEMA_VERSION",
    "DEFAULT_AUDIENCES",
    "SECTION_KIND",
    "STAGES",
    "Provenance",
    "TableExtent",
    "ProgramSection",
    "KpiRow",
    "RuleEvaluation",
    "ClassifySection",
    "DetectSection",
    "InsightsSection",
    "ChainSection",
    "ExperimentSection",
    "RoiSection",
    "QuasiSection",
    "ClaimsSection",
    "MonitorSection",
    "Bundle",
    "assemble_bundle",
    "migrate_bundle",
    "program_hash",
    "save_section",
    "load_section",
]

SCHEMA_VERSION = 2
SECTION_KIND = "section"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class TableExtent(_Model):
    """Rows and time range of one input table when a stage ran."""

    rows: int
    start: str | None = None
    end: str | None = None


class Provenance(_Model):
    """What a section was computed from: program, code, models, inputs and time."""

    stage: str
    created_at: str
    package_version: str
    program_hash: str
    program_name: str
    store_url: str | None = None
    model_versions: dict[str, str] = {}
    inputs: dict[str, TableExtent] = {}
    seconds: float | None = None


class _Section(_Model):
    provenance: Provenance | None = None


class ProgramSection(_Model):
    """What the report needs of the program file: identity, primary KPI, owners and audiences."""

    name: str
    value_hypothesis: str
    currency: str = "USD"
    horizon_months: float = 12
    primary_kpi: str | None = None
    design: str | None = None
    unit: str | None = None
    alpha: float = 0.05
    kpi_owners: dict[str, str] = {}
    kpi_layers: dict[str, str] = {}
    topic_owners: dict[str, str] = {}
    # Audience view -> owners whose KPIs, alerts and teams that view shows.
    audiences: dict[str, list[str]] = {}


class RuleEvaluation(_Model):
    """A KPI's decision rule from the program file, evaluated on the (multiplicity-adjusted) result."""

    kpi: str
    rule: str
    status: Literal["pass", "fail", "inconclusive", "not_evaluable"]
    message: str
    target_relative: float | None = None


class KpiRow(_Model):
    """One KPI's effect: what the CLI table, the report's forest plot and the dashboard show."""

    name: str
    layer: str | None = None
    owner: str | None = None
    direction: str | None = None
    decision_rule: str | None = None
    method: str | None = None
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    relative: float | None = None
    relative_ci_low: float | None = None
    relative_ci_high: float | None = None
    control_mean: float | None = None
    treatment_mean: float | None = None
    significant_adjusted: bool | None = None
    truth: float | None = None
    truth_relative: float | None = None
    # experiment.bayesian: P(the treatment is better, in the KPI's direction) and the expected
    # relative loss of shipping each arm; None when the program did not ask for them.
    chance_to_win: float | None = None
    risk_control: float | None = None
    risk_treatment: float | None = None


class ClassifySection(_Section):
    n_feedback: int = 0
    n_classified: int = 0
    method: str | None = None
    model_versions: dict[str, str] = {}


class DetectSection(_Section):
    """Alerts written to owners; those about control or holdout units are withheld."""

    alerts: list[dict[str, Any]] = []
    n_detected: int = 0
    n_written: int = 0
    withheld_control: int = 0


class InsightsSection(_Section):
    model_version: str | None = None
    topics: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []


class ChainSection(_Section):
    funnel: dict[str, Any] = {}


class ExperimentSection(_Section):
    name: str
    design: str
    unit: str
    n_treatment: int | None = None
    n_control: int | None = None
    alpha: float = 0.05
    window: dict[str, str] | None = None
    pre_window: dict[str, str] | None = None
    checks: list[dict[str, Any]] = []
    kpis: list[KpiRow] = []
    decision_rules: list[RuleEvaluation] = []
    results: dict[str, dict[str, Any]] = {}
    volumes: dict[str, Any] | None = None
    correlation: list[dict[str, Any]] = []


class RoiSection(_Section):
    # None where a figure is not finite (a zero cost has no ROI); JSON has no infinity.
    conservative: float | None
    median: float | None
    ci_low: float | None
    ci_high: float | None
    p_positive: float | None
    estimate: float | None
    months: float
    benefit: float | None
    cost: float | None
    seed: int | None = None
    draws: int | None = None


class QuasiSection(_Section):
    rows: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []


class ClaimsSection(_Section):
    claims: list[dict[str, Any]] = []


class MonitorSection(_Section):
    decision: str
    reasons: list[str] = []


class Bundle(_Model):
    """Everything the report and the dashboard show, as one validated object."""

    schema_version: int = SCHEMA_VERSION
    generated_at: str
    is_demo: bool = False
    program: ProgramSection
    # start and end (ISO dates); the demo's window adds its length in days.
    window: dict[str, str | int] | None = None
    insights: dict[str, Any] | None = None
    chain: dict[str, Any] | None = None
    experiment: dict[str, Any] | None = None
    kpis: list[KpiRow] = []
    # analyze --segment: column -> KPI -> segment value -> Result (with its pooled estimate).
    segments: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    # A/B/n: KPI -> arm -> Result against control (Holm across arms); empty for two arms.
    arms: dict[str, dict[str, dict[str, Any]]] = {}
    decision_rules: list[RuleEvaluation] = []
    roi: dict[str, Any] | None = None
    quasi: list[dict[str, Any]] | None = None
    claims: list[dict[str, Any]] = []
    monitor: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = []
    # Set when sections or saved claims shown were computed before the store's latest erasure:
    # their figures may still count the erased customer's rows until the stages run again.
    erasure: dict[str, Any] | None = None
    provenance: dict[str, Provenance] = {}
    timings_s: dict[str, float] = {}

    def to_report(self) -> dict[str, Any]:
        """The JSON form the renderer, report.json and the dashboard's ``/api/bundle`` use."""
        return json.loads(self.model_dump_json())


def program_hash(program: Any) -> str:
    """A short, stable hash of the validated program file (key order independent)."""
    text = json.dumps(program.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Owners each audience view shows when the program file names no audiences: the starter and demo
# programs' team names. The program file's `[audiences]` replaces these.
DEFAULT_AUDIENCES: dict[str, list[str]] = {
    "support": ["support", "customer_service", "cs"],
    "product": ["product", "product_quality", "ml_platform", "merchandising"],
    "finance": ["finance"],
}


def program_section(program: Any) -> ProgramSection:
    """The bundle's ``program`` section from a validated :class:`~insightroi.program.Program`."""
    e = program.experiment
    audiences = getattr(program, "audiences", None) or DEFAULT_AUDIENCES
    return ProgramSection(
        name=program.program.name, value_hypothesis=program.program.value_hypothesis,
        currency=program.program.currency, horizon_months=program.program.horizon_months,
        primary_kpi=e.primary_kpi, design=e.design, unit=e.unit, alpha=e.alpha,
        kpi_owners={k.name: k.owner for k in program.kpis}, kpi_layers={k.name: k.layer for k in program.kpis},
        topic_owners={t.topic: t.owner for t in program.taxonomy}, audiences=dict(audiences),
    )


def save_section(store: Any, stage: str, section: _Model) -> None:
    """Save ``section`` as the latest result of ``stage`` (kind ``"section"``)."""
    store.save_result(SECTION_KIND, stage, json.loads(section.model_dump_json()))


def load_section(store: Any, stage: str) -> dict[str, Any] | None:
    """The latest saved section of ``stage`` as a plain dict, or None."""
    return store.load_result(f"{SECTION_KIND}:{stage}")


def migrate_bundle(payload: dict[str, Any]) -> Bundle:
    """Validate a saved bundle, upgrading a version-1 (untyped) payload to the current schema.

    Raises
    ------
    ValueError
        When the payload is from a newer schema than this package knows.
    """
    version = int(payload.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ValueError(f"bundle schema version {version} is newer than this insightroi ({SCHEMA_VERSION}); upgrade it")
    data = dict(payload)
    if version == 1:
        prog = dict(data.get("program") or {})
        prog.setdefault("name", "unnamed program")
        prog.setdefault("value_hypothesis", "")
        data["program"] = prog
        data.setdefault("generated_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        quasi = data.get("quasi")
        if isinstance(quasi, dict):  # never saved that way, but a hand-edited file may be
            data["quasi"] = quasi.get("rows", [])
        data["schema_version"] = SCHEMA_VERSION
    return Bundle.model_validate(data)


def assemble_bundle(store: Any, program: Any, *, failures: list[dict[str, Any]] | None = None,
                    timings: dict[str, float] | None = None) -> Bundle:
    """Join the latest saved section of every stage into one :class:`Bundle`.

    A stage that has not run is absent; the report says so rather than showing stale numbers of
    another program: sections saved under a different program hash are left out with a note in
    ``failures``.

    Parameters
    ----------
    store : Store
        The store the stages saved into.
    program : Program
        The program file the report is for.
    failures, timings : optional
        Stage failures and timings of the run that assembles it (``insightroi run``).
    """
    phash = program_hash(program)
    failures = list(failures or [])
    sections: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        payload = load_section(store, stage)
        if payload is None:
            continue
        prov = payload.get("provenance") or {}
        if prov.get("program_hash") not in (None, phash):
            failures.append({"stage": stage, "status": "stale",
                             "error": f"the saved {stage} section was computed under another program file "
                                      f"({prov.get('program_hash')}); run `insightroi run --from {stage}`"})
            continue
        sections[stage] = payload
    demo = store.load_result("demo:truth")
    exp = sections.get("analyze")
    data: dict[str, Any] = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "is_demo": demo is not None,
        "program": program_section(program),
        "failures": failures,
        "timings_s": dict(timings or {}),
        "provenance": {s: p["provenance"] for s, p in sections.items() if p.get("provenance")},
    }
    if exp:
        data["experiment"] = {k: exp.get(k) for k in ("name", "design", "unit", "n_treatment", "n_control", "checks",
                                                      "alpha", "window", "pre_window")}
        data["kpis"] = exp.get("kpis", [])
        data["segments"] = exp.get("segments") or {}
        data["arms"] = exp.get("arms") or {}
        data["decision_rules"] = exp.get("decision_rules", [])
        if exp.get("window"):
            data["window"] = exp["window"]
    elif demo and demo.get("window"):
        data["window"] = demo["window"]
    if "insights" in sections:
        data["insights"] = _strip(sections["insights"])
    if "chain" in sections:
        data["chain"] = _strip(sections["chain"])
    if "roi" in sections:
        data["roi"] = _strip(sections["roi"])
    if "quasi" in sections:
        data["quasi"] = sections["quasi"].get("rows", [])
    claims = list((sections.get("quasi") or {}).get("claims", []))
    saved_claims = store.load_results("claim")
    claims += [_saved_claim(row["payload"]) for row in saved_claims]
    data["claims"] = claims
    if "monitor" in sections:
        data["monitor"] = _strip(sections["monitor"])
    if demo:
        data["world"] = demo.get("demo_run")
    data["erasure"] = _erasure_marks(store, sections)
    return Bundle.model_validate(data)


def _erasure_marks(store: Any, sections: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The shown sections and saved claims computed before the latest erasure, or None when none is."""
    marks = results_before_erasure(store)
    if marks is None:
        return None
    before = set(marks["results"])
    stages = [s for s in sections if f"{SECTION_KIND}:{s}" in before]
    claims = sorted(i for i in before if i.startswith("claim:"))
    if not stages and not claims:
        return None
    return {"erased_at": marks["erased_at"], "record_id": marks["record_id"], "stages": stages,
            "claims": claims, "rerun": f"insightroi run --from {stages[0]}" if stages else "insightroi validate-claim"}


def _saved_claim(payload: dict[str, Any]) -> dict[str, Any]:
    """A ``validate-claim`` report in the claims table's shape (claim text, verdict with underscores)."""
    out = dict(payload)
    claim = out.get("claim")
    if isinstance(claim, dict):
        out["claim_detail"] = claim
        out["claim"] = claim.get("text") or claim.get("raw") or str(claim)
    out["verdict"] = str(out.get("verdict", "")).replace(" ", "_")
    out.setdefault("label", "saved")
    return out


def _strip(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "provenance"}

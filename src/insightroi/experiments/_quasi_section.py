"""The pipeline's quasi-experiment section: the randomized demo re-analysed as if it were not.

Finance often gets a rollout with no clean split. On the demo world we know the truth, so we can
show what the observational estimators (ratio DiD, a CausalImpact-like counterfactual) recover
when the randomization is ignored, and how the claim validator treats a cherry-picked
before/after claim next to the true effect.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from insightroi.experiments._claim import _incremental
from insightroi.experiments._claim_store import _claim_kpis, _panel_columns, _validate_on_panel, claim_panel
from insightroi.experiments._quasi import quasi_kpi_effects
from insightroi.program import Program

__all__ = ["quasi_section", "naive_before_after_claim"]


def naive_before_after_claim(panel, *, numerator: str, denominator: str, rollout: int, weeks: int = 4) -> float:
    """The relative change a vendor slide would show: treated units, worst pre-period weeks vs first post weeks.

    The "before" is the ``weeks``-long pre-rollout stretch with the highest KPI (the spike that
    made someone buy the tool); the "after" is the first ``weeks`` after rollout. No control.

    Returns
    -------
    float
        after / before - 1 (negative = "down").
    """
    t = panel[panel["treated"]].groupby("period")[[numerator, denominator]].sum().sort_index()
    pre = t[t.index < rollout]
    post = t[t.index >= rollout].iloc[:weeks]
    num = pre[numerator].rolling(weeks).sum()
    den = pre[denominator].rolling(weeks).sum()
    before = float(np.nanmax((num / den).to_numpy()))
    after = float(post[numerator].sum() / post[denominator].sum())
    return after / before - 1.0


def quasi_section(store: Any, program: Program, *, truth: dict[str, Any] | None = None) -> dict[str, Any]:
    """DiD and time-series counterfactual per value-pool KPI, plus two validated claims.

    Returns
    -------
    dict
        ``{"quasi": [{kpi, method, estimate, ci_low, ci_high, truth_att, covered}], "claims": [...]}``
        where each claim is ``ClaimReport.to_dict()`` plus ``"label"`` (``naive`` or ``true``).
        Methods: ``did`` (ratio DiD), ``causal_impact`` (time-series counterfactual) and
        ``did_adjusted`` (the claim validator's pre-period-adjusted comparison).
    """
    kpis = [program.experiment.primary_kpi] + [p.kpi for p in program.value_pools]
    kpis = [k for k in dict.fromkeys(kpis) if "units" not in (program.kpi(k).numerator, program.kpi(k).denominator)]
    primary = program.kpi(program.experiment.primary_kpi)
    claim_kpis = _claim_kpis(program, primary.name)
    # One query for both panels (the stage's largest): the claims' KPI and its adjacent signals
    # beside the value pools; each use takes its columns (rows do not depend on the measures).
    both, rollout = claim_panel(store, program, list(dict.fromkeys(kpis + claim_kpis)))
    panel = both[_panel_columns(program, kpis)]
    rows = []
    truth_kpis = (truth or {}).get("kpis", {})
    # The claim validator's estimator: post-period difference adjusted for every unit's
    # pre-period rates of these KPIs (a DiD whose pre-period weight is estimated).
    cov_specs = list(dict.fromkeys((program.kpi(n).numerator, program.kpi(n).denominator) for n in kpis))
    for name in kpis:
        k = program.kpi(name)
        effects = quasi_kpi_effects(panel, numerator=k.numerator, denominator=k.denominator, rollout=rollout,
                                    scale=k.scale, metric=name, alpha=program.experiment.alpha)
        effects["did_adjusted"] = _incremental(panel, k.numerator, k.denominator, k.scale, "unit", "period", "treated", rollout,
                                               program.experiment.alpha, name, cov_specs)[0]
        att = (truth_kpis.get(name) or {}).get("att")
        for method, r in effects.items():
            rows.append({
                "kpi": name, "method": method, "estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high,
                "p_value": r.p_value, "truth_att": att,
                "covered": None if att is None else bool(r.ci_low <= att <= r.ci_high),
            })
    naive = naive_before_after_claim(panel, numerator=primary.numerator, denominator=primary.denominator,
                                     rollout=rollout)
    words = primary.name.replace("_", " ")
    claims = []
    texts = [("naive", f"{words} {'down' if naive < 0 else 'up'} {abs(naive):.0%}")]
    true_rel = (truth_kpis.get(primary.name) or {}).get("ate_relative")
    if true_rel is not None:
        texts.append(("true", f"{words} {'down' if true_rel < 0 else 'up'} {abs(true_rel):.0%}"))
    # Both claims are about the primary KPI: one panel (validate_claim copies it) serves both.
    primary_panel = (both[_panel_columns(program, claim_kpis)], rollout)
    for label, text in texts:
        report = _validate_on_panel(store, program, text, primary.name, primary_panel)
        claims.append({**report.to_dict(), "label": label, "claim": text})
    return {"quasi": rows, "claims": claims}

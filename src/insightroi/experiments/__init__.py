"""Experiments: design (assignment, power), checks, and the analysis of the program's experiment."""

from insightroi.experiments._analysis import analyze_experiment, kpi_effect
from insightroi.experiments._common import ExperimentAnalysis
from insightroi.experiments._checks import (
    ANALYZE_GATES,
    analyze_gate_failures,
    balance_check,
    contamination_check,
    novelty_check,
    pre_period_check,
    regression_to_mean_check,
    srm_check,
)
from insightroi.experiments._design import assign, hash_uniform, switchback_schedule
from insightroi.experiments._design_analysis import (
    DesignPanel,
    analyze_quasi_design,
    design_panel,
    did_design_effect,
    its_design_effect,
    market_panel,
    synth_design_effect,
    synth_panel_effect,
    synth_variant_rule,
)
from insightroi.experiments._geo import GeoCandidate, GeoDesign, design_geo, geo_backtest, geo_candidate_sets, geo_power
from insightroi.experiments._switchback_analysis import (
    analyze_switchback,
    block_arms,
    carryover_check,
    switchback_kpi_effect,
)
from insightroi.experiments._power_table import MAX_WEEKS, power_table, variance_model
from insightroi.metrics import treated_volumes
from insightroi.experiments._chooser import MethodChoice, choose_method
from insightroi.experiments._correlation import effect_correlation, effect_correlation_from_units
from insightroi.experiments._claim import ClaimReport, ParsedClaim, parse_claim, validate_claim
from insightroi.experiments._claim_store import claim_panel, validate_claim_in_store
from insightroi.experiments._quasi import (
    diff_in_diff,
    kpi_rate,
    matched_cohort_panel,
    quasi_kpi_effects,
    synthetic_control_panel,
    time_series_impact,
)
from insightroi.experiments._quasi_section import naive_before_after_claim, quasi_section

__all__ = [
    "GeoCandidate",
    "GeoDesign",
    "design_geo",
    "geo_backtest",
    "geo_candidate_sets",
    "geo_power",
    "market_panel",
    "synth_panel_effect",
    "synth_variant_rule",
    "ANALYZE_GATES",
    "analyze_gate_failures",
    "ExperimentAnalysis",
    "analyze_experiment",
    "kpi_effect",
    "power_table",
    "variance_model",
    "MAX_WEEKS",
    "effect_correlation",
    "effect_correlation_from_units",
    "treated_volumes",
    "assign",
    "hash_uniform",
    "switchback_schedule",
    "analyze_switchback",
    "block_arms",
    "carryover_check",
    "switchback_kpi_effect",
    "srm_check",
    "balance_check",
    "pre_period_check",
    "regression_to_mean_check",
    "novelty_check",
    "contamination_check",
    # quasi-experimental: DiD, synthetic control, time-series impact, claim checks
    "diff_in_diff",
    "synthetic_control_panel",
    "time_series_impact",
    "matched_cohort_panel",
    "quasi_kpi_effects",
    "kpi_rate",
    "choose_method",
    "MethodChoice",
    "validate_claim",
    "parse_claim",
    "ClaimReport",
    "ParsedClaim",
    "claim_panel",
    "validate_claim_in_store",
    "quasi_section",
    "naive_before_after_claim",
    # quasi-experimental program designs (did, synthetic_control, its) run by analyze_experiment
    "analyze_quasi_design",
    "design_panel",
    "DesignPanel",
    "did_design_effect",
    "synth_design_effect",
    "its_design_effect",
]

"""Experiments: design (assignment, power), checks, and the analysis of the program's experiment."""

from insightroi.experiments._analysis import ExperimentAnalysis, analyze_experiment, kpi_effect
from insightroi.experiments._checks import (
    balance_check,
    contamination_check,
    novelty_check,
    pre_period_check,
    regression_to_mean_check,
    srm_check,
)
from insightroi.experiments._design import assign, hash_uniform, switchback_schedule
from insightroi.experiments._power_table import power_table, variance_model
from insightroi.metrics import treated_volumes

__all__ = [
    "ExperimentAnalysis",
    "analyze_experiment",
    "kpi_effect",
    "power_table",
    "variance_model",
    "treated_volumes",
    "assign",
    "hash_uniform",
    "switchback_schedule",
    "srm_check",
    "balance_check",
    "pre_period_check",
    "regression_to_mean_check",
    "novelty_check",
    "contamination_check",
]

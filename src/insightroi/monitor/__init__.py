"""Monitoring the insight model: input drift, quality drift, outcome decay, retrain / retire.

The drift statistics (PSI, chi-square, KS, Jensen-Shannon) live in :mod:`insightroi.stats` and are
re-exported here for monitoring code; OOV rate, ECE and F1 are computed here over counts.
:func:`monitor_store` computes the group counts in the database and :func:`decide` turns
per-period effects and the program's economics into a decision.
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.monitor._decay": ("decay_rows", "outcome_decay", "ratio_difference"),
    "insightroi.monitor._decision": (
        "MONITOR_GATES", "MonitorDecision", "decide_total", "hard_valued_kpis", "monitor_gate_failures", "decide",
        "decision_kpi", "running_cost_per_period", "value_per_unit",
    ),
    "insightroi.monitor._drift": (
        "category_counts", "oov_rate", "psi_categorical", "text_drift", "token_counts", "tokenize",
    ),
    "insightroi.monitor._quality": (
        "confusion_matrix", "expected_calibration_error", "per_label_f1", "quality_by_slice",
    ),
    "insightroi.monitor._scan": (
        "categorical_drift", "detect_drift", "drift_by_week", "drift_by_week_counts", "drift_family", "drift_status",
        "numeric_drift", "psi_status", "taxonomy_drift", "text_drift_row",
    ),
    "insightroi.monitor._store": ("MonitorReport", "monitor_store", "store_period_effects"),
    "insightroi.stats": (
        "centroid_distance", "chi_square_counts", "js_distance", "ks_two_sample", "psi_from_counts", "psi_numeric",
        "quantile_edges",
    ),
})

__all__ = [
    "MONITOR_GATES",
    "monitor_gate_failures",
    "decide_total",
    "hard_valued_kpis",
    "MonitorDecision",
    "MonitorReport",
    "categorical_drift",
    "detect_drift",
    "drift_family",
    "drift_status",
    "category_counts",
    "centroid_distance",
    "chi_square_counts",
    "confusion_matrix",
    "decay_rows",
    "decide",
    "decision_kpi",
    "drift_by_week",
    "drift_by_week_counts",
    "expected_calibration_error",
    "js_distance",
    "ks_two_sample",
    "monitor_store",
    "numeric_drift",
    "oov_rate",
    "outcome_decay",
    "per_label_f1",
    "psi_categorical",
    "psi_from_counts",
    "psi_numeric",
    "psi_status",
    "quality_by_slice",
    "quantile_edges",
    "ratio_difference",
    "running_cost_per_period",
    "store_period_effects",
    "taxonomy_drift",
    "text_drift",
    "text_drift_row",
    "token_counts",
    "tokenize",
    "value_per_unit",
]

"""Pure statistics: functions over numpy arrays and sufficient statistics. No I/O, no pandas."""

from insightroi.stats._result import Check, Result
from insightroi.stats._did import did_2x2, event_study, staggered_did, twfe, within_demean
from insightroi.stats._its import causal_impact
from insightroi.stats._matching import matched_cohorts, propensity_scores, standardized_mean_differences
from insightroi.stats._synth import simplex_weights, synth_fit, synthetic_control

__all__ = [
    "Check",
    "Result",
    # quasi-experimental (issue 6)
    "did_2x2",
    "twfe",
    "event_study",
    "staggered_did",
    "within_demean",
    "synthetic_control",
    "synth_fit",
    "simplex_weights",
    "causal_impact",
    "matched_cohorts",
    "propensity_scores",
    "standardized_mean_differences",
]

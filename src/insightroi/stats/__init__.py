"""Pure statistics: functions over numpy arrays and sufficient statistics. No I/O, no pandas."""

from insightroi.stats._power import (
    cohens_h,
    cuped_residual_variance,
    design_effect,
    duration_variances,
    icc_anova,
    mde_from_se,
    minimum_detectable_effect,
    power,
    power_from_se,
    ratio_unit_variance,
    ratio_window_moments,
    sample_size,
    sample_size_proportions,
    sample_size_ratio,
)
from insightroi.stats._result import (
    NO_DENOMINATOR_IN_ARM,
    NO_DENOMINATOR_IN_EITHER_ARM,
    NOT_ESTIMABLE,
    TOO_FEW_UNITS,
    UNDEFINED_COUNTERFACTUAL,
    ZERO_CONTROL_MEAN,
    ZERO_DENOMINATOR,
    Check,
    Result,
    jsonable,
)
from insightroi.stats._bayes import EffectPrior, bayesian_two_arm, beta_binomial, gaussian_risk
from insightroi.stats._counts import count_dispersion, count_tail_pvalue
from insightroi.stats._diagnostics import SrmTest, TrendTest, srm_test, trend_test
from insightroi.stats._did import did_2x2, did_ratio, event_study, ratio_ancova, staggered_did, twfe
from insightroi.stats._multiarm import (
    DunnettTest,
    MultiArmResult,
    dunnett,
    dunnett_critical_value,
    dunnett_pvalues,
    multi_arm,
    multi_arm_mde,
)
from insightroi.stats._drift import (
    PSI_EPS,
    centroid_distance,
    chi_square_counts,
    js_distance,
    ks_two_sample,
    psi_from_counts,
    psi_numeric,
    psi_terms,
    quantile_edges,
    unseen_category_pvalue,
)
from insightroi.stats._panel import period_positions, treated_cluster_check, within_demean
from insightroi.stats._regadj import MultiRegressionAdjusted, cupac, post_stratified, regression_adjusted
from insightroi.stats._wild import WildBootstrap, wild_cluster_bootstrap
from insightroi.stats._pooling import PooledEstimates, partial_pool, tau2_dersimonian_laird, tau2_paule_mandel
from insightroi.stats._quantile import QUANTILE_METHODS, ClusteredQuantile, clustered_quantile, quantile_effect
from insightroi.stats._its import ITS_DEFAULTS, ItsDefaults, causal_impact
from insightroi.stats._matching import matched_cohorts, propensity_scores, standardized_mean_differences
from insightroi.stats._synth import scale_predictors, simplex_weights, synth_fit, synthetic_control
from insightroi.stats._synth_ext import conformal_att, synth_weights, synthetic_control_panel
from insightroi.stats._suffstats import (
    Proportion,
    Ratio,
    RatioRegressionAdjusted,
    RegressionAdjusted,
    SampleMean,
)
from insightroi.stats._intervals import critical_value, se_from_interval, wald_interval, welch_df
from insightroi.stats._switchback import (
    switchback,
    switchback_blocks,
    switchback_carryover,
    switchback_power,
    switchback_ratio_effect,
)
from insightroi.stats._twoarm import (
    adjust_pvalues,
    benjamini_hochberg,
    cluster_randomized,
    cuped,
    holdout,
    holm,
    proportions_test,
    ratio_test,
    segment_breakdown,
    two_arm,
    welch_t,
)

__all__ = [
    "ITS_DEFAULTS",
    "ItsDefaults",
    "scale_predictors",
    "conformal_att",
    "synth_weights",
    "synthetic_control_panel",
    "period_positions",
    "treated_cluster_check",
    "MultiRegressionAdjusted",
    "cupac",
    "post_stratified",
    "regression_adjusted",
    "WildBootstrap",
    "wild_cluster_bootstrap",
    "PooledEstimates",
    "partial_pool",
    "tau2_dersimonian_laird",
    "tau2_paule_mandel",
    "Check",
    "Result",
    "jsonable",
    # "cannot compute" label and message templates (Result.not_estimable)
    "NOT_ESTIMABLE",
    "TOO_FEW_UNITS",
    "ZERO_DENOMINATOR",
    "ZERO_CONTROL_MEAN",
    "NO_DENOMINATOR_IN_ARM",
    "NO_DENOMINATOR_IN_EITHER_ARM",
    "UNDEFINED_COUNTERFACTUAL",
    # sufficient statistics
    "SampleMean",
    "Proportion",
    "Ratio",
    "RegressionAdjusted",
    "RatioRegressionAdjusted",
    # two-arm estimators
    "two_arm",
    "welch_t",
    "proportions_test",
    "ratio_test",
    "cuped",
    "cluster_randomized",
    "holdout",
    "switchback",
    "switchback_blocks",
    "switchback_ratio_effect",
    "switchback_carryover",
    "segment_breakdown",
    # Bayesian two-arm (gbstats' gaussian effect model; conjugate beta-binomial)
    "EffectPrior",
    "bayesian_two_arm",
    "beta_binomial",
    "gaussian_risk",
    # A/B/n: several arms against one control (Holm, Dunnett, SRM across arms, per-arm MDE)
    "multi_arm",
    "MultiArmResult",
    "multi_arm_mde",
    "dunnett",
    "DunnettTest",
    "dunnett_pvalues",
    "dunnett_critical_value",
    # quantiles of clustered rows (delta method, outer interval)
    "QUANTILE_METHODS",
    "ClusteredQuantile",
    "clustered_quantile",
    "quantile_effect",
    # intervals
    "critical_value",
    "wald_interval",
    "se_from_interval",
    "welch_df",
    # multiple testing
    "adjust_pvalues",
    "holm",
    "benjamini_hochberg",
    # power
    "power",
    "sample_size",
    "minimum_detectable_effect",
    "cohens_h",
    "sample_size_proportions",
    "sample_size_ratio",
    "ratio_unit_variance",
    "power_from_se",
    "icc_anova",
    "design_effect",
    "switchback_power",
    "mde_from_se",
    "ratio_window_moments",
    "cuped_residual_variance",
    "duration_variances",
    # assumption-check tests (the Check objects are built in insightroi.experiments)
    "srm_test",
    "SrmTest",
    "trend_test",
    "TrendTest",
    # count surveillance (spike detection)
    "count_dispersion",
    "count_tail_pvalue",
    # drift between a reference and a current window (insightroi.monitor reads them)
    "PSI_EPS",
    "psi_terms",
    "psi_from_counts",
    "psi_numeric",
    "quantile_edges",
    "chi_square_counts",
    "ks_two_sample",
    "js_distance",
    "centroid_distance",
    "unseen_category_pvalue",
    # quasi-experimental
    "did_2x2",
    "did_ratio",
    "ratio_ancova",
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

"""ROI of the insight program: value pools x estimated effects - cost stack, with uncertainty.

Pure over ``Result`` objects and the program file (no store access); ``insightroi roi`` reads
saved results from the store and calls :func:`compute_roi`.
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.roi._engine": ("RoiResult", "RoiVolumes", "compute_roi"),
    "insightroi.roi._projection": (
        "DRIVER_LABELS", "DRIVERS", "expected_roi", "projected_effects", "roi_drivers", "roi_waterfall",
    ),
    "insightroi.roi._formulas": (
        "MONTH_DAYS", "pool_coefficient", "avoided_events", "benefit_cost_ratio", "incremental_lift",
        "payback_months", "revenue_saved", "roi_ratio",
    ),
})

__all__ = [
    "DRIVERS",
    "DRIVER_LABELS",
    "MONTH_DAYS",
    "pool_coefficient",
    "expected_roi",
    "projected_effects",
    "roi_drivers",
    "roi_waterfall",
    "RoiResult",
    "RoiVolumes",
    "avoided_events",
    "benefit_cost_ratio",
    "compute_roi",
    "incremental_lift",
    "payback_months",
    "revenue_saved",
    "roi_ratio",
]

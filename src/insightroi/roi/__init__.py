"""ROI of the insight program: value pools x estimated effects - cost stack, with uncertainty.

Pure over ``Result`` objects and the program file (no store access); ``insightroi roi`` reads
saved results from the store and calls :func:`compute_roi`.
"""

from insightroi.roi._engine import RoiResult, RoiVolumes, compute_roi
from insightroi.roi._projection import DRIVER_LABELS, DRIVERS, expected_roi, projected_effects, roi_drivers, roi_waterfall
from insightroi.roi._formulas import (
    MONTH_DAYS,
    pool_coefficient,
    avoided_events,
    benefit_cost_ratio,
    incremental_lift,
    payback_months,
    revenue_saved,
    roi_ratio,
)

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

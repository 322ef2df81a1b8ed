"""KPI definitions compiled to Ibis expressions: per-unit totals and per-arm sufficient statistics."""

from insightroi.metrics._compile import (
    MEASURE_SPECS,
    UNIT_COLUMNS,
    MeasureSpec,
    analysis_windows,
    arm_statistics,
    block_measures_expr,
    measure_totals,
    treated_volumes,
    unit_measures_expr,
    unit_metrics,
    unit_metrics_expr,
)

__all__ = [
    "MEASURE_SPECS",
    "UNIT_COLUMNS",
    "MeasureSpec",
    "analysis_windows",
    "arm_statistics",
    "block_measures_expr",
    "measure_totals",
    "treated_volumes",
    "unit_measures_expr",
    "unit_metrics",
    "unit_metrics_expr",
]

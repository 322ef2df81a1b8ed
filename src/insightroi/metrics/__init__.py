"""KPI definitions compiled to Ibis expressions: per-unit totals and per-arm sufficient statistics."""

from insightroi.metrics._compile import (
    analysis_windows,
    arm_statistics,
    block_measures_expr,
    measure_caps,
    measure_rows_expr,
    measure_totals,
    treated_volumes,
    unit_measures_expr,
    unit_metrics,
    unit_metrics_expr,
    volume_measures,
)
from insightroi.metrics._measures import (
    MEASURE_SPECS,
    MEASURE_TABLES,
    UNIT_COLUMNS,
    MeasureSpec,
    compile_expression,
    describe_measures,
    measure_specs,
)

__all__ = [
    "MEASURE_SPECS",
    "MEASURE_TABLES",
    "UNIT_COLUMNS",
    "MeasureSpec",
    "analysis_windows",
    "arm_statistics",
    "block_measures_expr",
    "compile_expression",
    "describe_measures",
    "measure_caps",
    "measure_rows_expr",
    "measure_specs",
    "measure_totals",
    "treated_volumes",
    "unit_measures_expr",
    "unit_metrics",
    "unit_metrics_expr",
    "volume_measures",
]

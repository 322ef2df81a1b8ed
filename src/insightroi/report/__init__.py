"""Reports: one self-contained HTML page per audience (inline CSS and SVG charts), plus JSON and PDF.

Input is the JSON form of :class:`insightroi.bundle.Bundle` (``Bundle.to_report()``), which
:func:`insightroi.bundle.assemble_bundle` builds from the stages' saved sections.
"""

from insightroi.report._charts import bars_svg, forest_svg, funnel_svg, histogram_svg, tornado_svg, trend_svg
from insightroi.report._pdf import export_pdf
from insightroi.report._render import (
    CADENCES,
    VIEWS,
    bundle_alpha,
    cadence_period,
    forest_rows,
    format_helpers,
    kpi_verdict,
    kpi_verdict_title,
    primary_kpi_row,
    render_html,
    write_report,
)

__all__ = [
    "CADENCES",
    "VIEWS",
    "cadence_period",
    "export_pdf",
    "render_html",
    "write_report",
    # the pieces the dashboard shares with the report (formatters, verdicts, SVG charts)
    "format_helpers",
    "bundle_alpha",
    "kpi_verdict",
    "kpi_verdict_title",
    "primary_kpi_row",
    "forest_rows",
    "forest_svg",
    "tornado_svg",
    "histogram_svg",
    "funnel_svg",
    "bars_svg",
    "trend_svg",
]

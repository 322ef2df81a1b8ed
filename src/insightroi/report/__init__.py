"""Reports: one self-contained HTML page per audience (inline CSS and SVG charts), plus JSON and PDF.

Input is the JSON form of :class:`insightroi.bundle.Bundle` (``Bundle.to_report()``), which
:func:`insightroi.bundle.assemble_bundle` builds from the stages' saved sections. The one
computation here is :func:`run_cadence` (the window period by period, one analysis of the primary
KPI per period, saved like a stage's section); the pages render what it saved.
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.report._charts": (
        "bars_svg", "forest_svg", "funnel_svg", "histogram_svg", "tornado_svg", "trend_svg",
    ),
    "insightroi.report._cadence": ("calendar_periods", "cadence_unit", "load_cadence", "run_cadence"),
    "insightroi.report._pdf": ("export_pdf",),
    "insightroi.report._render": (
        "CADENCE_ALIASES", "CADENCE_UNITS", "CADENCES", "VIEWS", "bundle_alpha", "cadence_period", "cadence_rows",
        "decay_title", "forest_rows", "format_helpers", "kpi_verdict", "kpi_verdict_title", "primary_kpi_row", "render_html",
        "write_report",
    ),
})

__all__ = [
    "CADENCES",
    "CADENCE_UNITS",
    "CADENCE_ALIASES",
    "VIEWS",
    "cadence_period",
    # the series of a cadence report: one analysis of the primary KPI per calendar period, saved
    "run_cadence",
    "load_cadence",
    "calendar_periods",
    "cadence_unit",
    "cadence_rows",
    "export_pdf",
    "render_html",
    "write_report",
    # the pieces the dashboard shares with the report (formatters, verdicts, SVG charts)
    "format_helpers",
    "bundle_alpha",
    "kpi_verdict",
    "kpi_verdict_title",
    "primary_kpi_row",
    "decay_title",
    "forest_rows",
    "forest_svg",
    "tornado_svg",
    "histogram_svg",
    "funnel_svg",
    "bars_svg",
    "trend_svg",
]

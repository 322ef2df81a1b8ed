"""Reports: one self-contained HTML page per audience (inline CSS and SVG charts), plus JSON and PDF.

Input is the JSON form of :class:`insightroi.bundle.Bundle` (``Bundle.to_report()``), which
:func:`insightroi.bundle.assemble_bundle` builds from the stages' saved sections.
"""

from insightroi.report._pdf import export_pdf
from insightroi.report._render import CADENCES, VIEWS, cadence_period, render_html, write_report
from insightroi.report._sample import sample_bundle

__all__ = ["CADENCES", "VIEWS", "cadence_period", "export_pdf", "render_html", "sample_bundle", "write_report"]

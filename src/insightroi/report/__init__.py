"""Reports: one self-contained HTML page per audience (inline CSS and SVG charts), plus JSON and PDF.

Input is the report bundle of CONTRACTS.md (``store.load_result("bundle:latest")``).
"""

from insightroi.report._pdf import export_pdf
from insightroi.report._render import CADENCES, VIEWS, cadence_period, render_html, write_report
from insightroi.report._sample import sample_bundle

__all__ = ["CADENCES", "VIEWS", "cadence_period", "export_pdf", "render_html", "sample_bundle", "write_report"]

"""The report in a real headless Chromium: renders offline with no console errors; PDF export."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.report_sample import sample_bundle
from insightroi.report import VIEWS, export_pdf, write_report
from insightroi.report._pdf import CHROMIUM

pytestmark = pytest.mark.browser
pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "report"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    write_report(sample_bundle(), out, cadence="quarterly")
    return out


def test_every_view_renders_offline_without_console_errors(browser, report_dir):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    page = context.new_page()
    errors: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    for view in VIEWS:
        name = "report.html" if view == "full" else f"report-{view}.html"
        page.goto((report_dir / name).as_uri())
        assert page.locator("body").get_attribute("data-view") == view
        # Charts are laid out (non-zero size), not just present in the markup.
        boxes = [b for b in (s.bounding_box() for s in page.locator("svg").all()) if b]
        assert boxes and all(b["width"] > 100 and b["height"] > 30 for b in boxes)
        page.screenshot(path=str(ARTIFACTS / f"report-{view}.png"), full_page=True)
    assert errors == [] and failed == []
    context.close()


def test_view_links_navigate_between_files(browser, report_dir):
    page = browser.new_page()
    page.goto((report_dir / "report.html").as_uri())
    page.get_by_role("link", name="Finance view").click()
    page.wait_for_load_state()
    assert page.url.endswith("report-finance.html")
    assert page.get_by_role("heading", name="Three numbers").is_visible()
    page.close()


def test_executive_view_prints_to_pdf(report_dir):
    pdf = export_pdf(report_dir / "report-executive.html", report_dir / "exec.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000
    assert data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report-executive.pdf").write_bytes(data)

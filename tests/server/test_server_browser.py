"""The dashboard in headless Debian Chromium against a real uvicorn server on loopback.

Opens every page (no console errors, no failed requests), signs in, acknowledges an alert and
records an action through the inbox forms, and follows the link to the chain trace where both
steps appear. Screenshots go to test-artifacts/dashboard/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _srv_helpers import TOKEN, seed_store

from insightroi.report._pdf import CHROMIUM
from insightroi.server import create_app

pytestmark = pytest.mark.browser
pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
PAGES = {"overview": "/", "themes": "/themes", "inbox": "/inbox", "experiment": "/experiment",
         "monitoring": "/monitoring", "trace": "/trace/alr-0004", "login": "/login"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, live_server):
    url = f"duckdb:///{tmp_path_factory.mktemp('browser')}/b.duckdb"
    seed_store(url)
    return live_server(create_app(url, token=TOKEN))


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(60_000)  # a shared 2-core machine; chain traces join several tables
    pg = context.new_page()
    pg.console_errors = []
    pg.failed = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.on("requestfailed", lambda r: pg.failed.append(r.url))
    yield pg
    context.close()


def _sign_in(server, page) -> None:
    page.goto(server.url + "/login?next=/")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/")


def test_every_page_opens_without_console_errors(server, page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _sign_in(server, page)
    for name, path in PAGES.items():
        response = page.goto(server.url + path)
        assert response.status == 200, name
        assert page.locator("h2").first.is_visible()
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert page.console_errors == [] and page.failed == []


def test_nav_links_reach_each_page(server, page):
    _sign_in(server, page)
    for label, heading in (("Themes & alerts", "Alerts with evidence"), ("Owner's inbox", "Owner's inbox"),
                           ("Experiment & checks", "Experiment design"), ("Monitoring", "Retrain or retire?"),
                           ("Overview", "Headline ROI")):
        page.get_by_role("link", name=label, exact=True).click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", name=heading).first.is_visible(), label
    assert page.console_errors == []


def test_owner_acknowledges_and_records_action_then_sees_trace(server, page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Not signed in: the page is the sign-in form (401), which comes back to the inbox after.
    first = page.goto(server.url + "/inbox?team=product_quality")
    assert first.status == 401
    page.console_errors.clear()  # Chromium logs the 401 of the page itself as a console error
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/inbox?team=product_quality")
    assert page.get_by_text("signed in").is_visible()

    card = page.locator('[data-alert="alr-0001"]')
    assert card.get_attribute("data-status") == "delivered"
    card.get_by_label("Your name").first.fill("dana")
    card.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url("**/inbox?*done=alr-0001*")
    assert page.get_by_role("status").inner_text().startswith("Recorded acknowledged for alert alr-0001")
    card = page.locator('[data-alert="alr-0001"]')
    assert card.get_attribute("data-status") == "acknowledged"
    assert card.get_by_role("button", name="Acknowledge").count() == 0

    card.get_by_label("Record").select_option("action_taken")
    card.get_by_label("What was done").fill("Supplier QA hold on hinge batch 7; contact qa@acme.example")
    card.locator('form[data-form="action"]').get_by_label("Your name").fill("dana")
    card.get_by_role("button", name="Record action").click()
    page.wait_for_url("**/inbox?*done=alr-0001*")
    assert page.locator('[data-alert="alr-0001"]').get_attribute("data-status") == "acted"
    page.screenshot(path=str(ARTIFACTS / "inbox-after-action.png"), full_page=True)

    page.get_by_role("link", name="See it in the chain trace").click()
    page.wait_for_url("**/trace/alr-0001")
    steps = page.locator("ol.timeline li").evaluate_all("els => els.map(e => e.dataset.eventType)")
    assert steps[:3] == ["alert_delivered", "acknowledged", "action_taken"]
    timeline = page.locator("ol.timeline").inner_text()
    assert "by dana" in timeline and "Supplier QA hold on hinge batch 7" in timeline
    assert "qa@acme.example" not in timeline and "[EMAIL]" in timeline  # redacted before storage
    page.screenshot(path=str(ARTIFACTS / "trace-after-action.png"), full_page=True)
    assert page.console_errors == [] and page.failed == []


def test_report_file_opens_in_the_same_browser(page, tmp_path):
    from helpers.report_sample import sample_bundle
    from insightroi.report import write_report

    paths = write_report(sample_bundle(), tmp_path)
    page.goto(paths["full"].as_uri())
    assert page.get_by_role("heading", name="Executive summary").is_visible()
    assert page.console_errors == [] and page.failed == []

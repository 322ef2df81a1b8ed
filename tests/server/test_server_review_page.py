"""The dashboard's review page in a real browser (Playwright, Debian Chromium) over a classified
DuckDB store: it shows the queue ``insightroi review`` exports (same items, same order for the same
seed), records the labels a signed-in reviewer picks, and reports the reviewed items' agreement;
a bad label is refused naming the item and field, with nothing stored."""

from __future__ import annotations

import json

import httpx
import pytest
from sklearn.metrics import f1_score

from helpers.review_world import review_world

pytest.importorskip("fastapi")
from insightroi.server import create_app  # noqa: E402

TOKEN = "test-token-for-the-review-page-0123456789"


def _cli_queue(world, n: int) -> list[dict]:
    app, runner, url, prog, _ = world
    res = runner.invoke(app, ["review", "--store", url, "--program", str(prog), "--n", str(n), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["items"]


def test_review_page_shows_the_cli_queue_and_records_labels(tmp_path, live_server, browser):
    world = review_world(tmp_path)
    _, _, url, prog, _ = world
    queue = _cli_queue(world, 20)
    assert len(queue) >= 6
    srv = live_server(create_app(url, program=prog, token=TOKEN))
    context = browser.new_context()
    page = context.new_page()
    assert page.goto(f"{srv.url}/review").status == 401
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{srv.url}/review")
    assert page.locator("nav.main a.on").inner_text() == "Review"
    shown = page.eval_on_selector_all("tr[data-review-item]", "rows => rows.map(r => r.dataset.reviewItem)")
    assert shown == [q["feedback_id"] for q in queue]
    assert page.locator("[data-labels-recorded]").get_attribute("data-labels-recorded") == "0"

    # A bad label (a forged form: the page only offers the taxonomy) is refused naming the item and
    # field, and nothing is stored, not even the good item beside it.
    bad = httpx.post(f"{srv.url}/review", data={"token": TOKEN, "reviewer": "qa", "id.0": queue[0]["feedback_id"],
                                                  "label.0": "other", "id.1": queue[1]["feedback_id"],
                                                  "label.1": "teleportation"}, timeout=30)
    assert bad.status_code == 422
    assert "review form: item 2, field &#39;label&#39;: &#39;teleportation&#39; is not a topic label" in bad.text
    anonymous = httpx.post(f"{srv.url}/review", data={"reviewer": "qa", "id.0": queue[0]["feedback_id"],
                                                        "label.0": "other"}, timeout=30)
    assert anonymous.status_code == 401  # neither a signed-in session's CSRF token nor the API token
    page.reload()
    assert page.locator("[data-labels-recorded]").get_attribute("data-labels-recorded") == "0"

    # The reviewer agrees with the model on the first item and corrects the next two; the rest skipped.
    labels = page.eval_on_selector("tr[data-review-item] select", "s => Array.from(s.options).map(o => o.value)")
    agree = queue[0]["model_label"]
    assert agree in labels
    picks = {0: agree}
    for i in (1, 2):
        picks[i] = next(lab for lab in labels[1:] if lab != queue[i]["model_label"])
    for i, lab in picks.items():
        page.locator(f'tr[data-review-item="{queue[i]["feedback_id"]}"] select').select_option(lab)
    page.get_by_label("Reviewer").fill("qa.kim")
    page.get_by_role("button", name="Record labels").click()
    page.wait_for_url(f"{srv.url}/review?recorded=3&reviewer=qa.kim")
    assert page.locator("[data-recorded]").get_attribute("data-recorded") == "3"
    assert page.locator("[data-labels-recorded]").get_attribute("data-labels-recorded") == "3"
    # 1 of 3 reviewed items agrees with the model: what validate_from_reviews computes from the store.
    assert page.locator("[data-review-accuracy]").get_attribute("data-review-accuracy") == "0.3333"
    # Macro-F1 over the labels the reviewer used (scikit-learn's, restricted to them, as the
    # project's validation averages only classes with support).
    truth = [picks[i] for i in range(3)]
    model = [queue[i]["model_label"] for i in range(3)]
    expected = f1_score(truth, model, labels=sorted(set(truth)), average="macro", zero_division=0)
    assert page.locator("[data-review-macro-f1]").get_attribute("data-review-macro-f1") == f"{expected:.4f}"
    left = page.eval_on_selector_all("tr[data-review-item]", "rows => rows.map(r => r.dataset.reviewItem)")
    assert not {queue[i]["feedback_id"] for i in picks} & set(left)
    context.close()

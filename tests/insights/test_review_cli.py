"""``insightroi review`` on a real DuckDB store: export the queue, record a reviewer's labels, refuse bad files."""

from __future__ import annotations

import csv
import json

import pytest

from helpers.review_world import review_world
from insightroi.store import open_store

@pytest.fixture()
def world(tmp_path):
    """A store of its own: the test records labels in it."""
    return review_world(tmp_path)


@pytest.fixture(scope="module")
def read_only_world(tmp_path_factory):
    """One store for the tests that must leave it unchanged (refused files, printing)."""
    return review_world(tmp_path_factory.mktemp("review"))


def _invoke(world, *args):
    app, runner, url, prog, _ = world
    return runner.invoke(app, ["review", "--store", url, "--program", str(prog), *args])


def test_export_fill_and_record_labels(world):
    tmp = world[4]
    out = tmp / "queue.csv"
    res = _invoke(world, "--n", "20", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "items to review (written to" in res.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["feedback_id", "text", "model_label", "confidence", "severity", "stratum",
                             "inclusion_prob", "model_version", "label"]
    assert 10 <= len(rows) <= 20 and all(r["label"] == "" and r["feedback_id"].startswith("fb-") for r in rows)
    assert all(r["stratum"] in ("high_severity", "low_confidence") for r in rows)
    # the reviewer labels all but the last two rows
    for r in rows[:-2]:
        r["label"] = "other" if r["model_label"] == "other" else r["model_label"]
    rows[0]["label"] = "shipping_delay"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = _invoke(world, "--labels", str(out), "--reviewer", "qa.kim", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got == {"file": str(out), "rows": len(rows) - 2, "recorded": len(rows) - 2, "already_recorded": 0,
                   "blank_skipped": 2}
    with open_store(world[2]) as st:
        rl = st.table("review_labels").execute()
    assert len(rl) == len(rows) - 2 and set(rl.reviewer) == {"qa.kim"} and set(rl.task) == {"topic"}
    first = rl.set_index("feedback_id").loc[rows[0]["feedback_id"]]
    assert first.label == "shipping_delay" and first.model_label == rows[0]["model_label"]
    # recording the same file again stores nothing twice
    again = json.loads(_invoke(world, "--labels", str(out), "--reviewer", "qa.kim", "--json").stdout)
    assert again["recorded"] == 0 and again["already_recorded"] == len(rows) - 2
    # reviewed items leave the queue
    left = json.loads(_invoke(world, "--n", "20", "--json").stdout)["items"]
    assert not {r["feedback_id"] for r in rows[:-2]} & {r["feedback_id"] for r in left}


def test_customer_text_is_not_rich_markup(read_only_world):
    world = read_only_world
    items = json.loads(_invoke(world, "--n", "60", "--json").stdout)["items"]
    marked = [i["feedback_id"] for i in items if "[bold]" in i["text"]]
    assert len(marked) == 5  # measured: all 5 such items are "other", so in the low-confidence stratum
    res = _invoke(world, "--n", "60")
    assert res.exit_code == 0, res.output
    # printed as the customer wrote it: rich did not take "[bold]...[/bold]" as markup
    lines = [ln for ln in res.output.splitlines() if any(m in ln for m in marked)]
    assert len(lines) == 5 and all("note [bold]inside[/bold]" in ln for ln in lines)


@pytest.mark.parametrize("content, reviewer, message", [
    ("feedback_id,label\nfb-001,shipping_delay\nfb-002,teleportation\n", "qa", "line 3, field 'label': 'teleportation'"),
    ("feedback_id,label\nfb-999,other\n", "qa", "line 2, field 'feedback_id': 'fb-999' is not in the store"),
    ("id,topic\nfb-001,other\n", "qa", "line 1: missing column(s) label"),
    ("feedback_id,label\nfb-001,other\n", None, "no reviewer column"),
    ("feedback_id,label\n,other\n", "qa", "line 2, field 'feedback_id': empty"),
    ("feedback_id,label,task\nfb-001,happy,sentiment\n", "qa", "line 2, field 'label': 'happy' is not a sentiment label"),
    ("feedback_id,label\nfb-001,other\nfb-001,sizing\n", "qa", "line 3, field 'label': fb-001 was labelled 'other' on line 2"),
])
def test_bad_label_files_are_refused_naming_file_line_field(read_only_world, content, reviewer, message):
    world = read_only_world
    bad = world[4] / "bad.csv"
    bad.write_text(content)
    args = ["--labels", str(bad)] + (["--reviewer", reviewer] if reviewer else [])
    res = _invoke(world, *args)
    assert res.exit_code == 1
    err = " ".join(res.output.split())
    assert str(bad) in err and message in err, err
    with open_store(world[2]) as st:
        assert st.count("review_labels") == 0  # a bad file records nothing, not even its good rows

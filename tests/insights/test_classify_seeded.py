"""``insightroi classify --method seeded``: taxonomy-seeded topics and cross-domain sentiment in the store,
then a topic head trained on the review queue's labels once owners have given enough of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.ingest import ingest_frame
from insightroi.insights import embeddings_available
from insightroi.insights._classify import OWNER_LABELS_MIN
from insightroi.program import load_program, starter_program_text
from insightroi.store import open_store

pytestmark = pytest.mark.skipif(not embeddings_available(), reason="the embeddings extra is not installed")

# Real-sounding customer texts, written for this test (not the taxonomy's own examples).
TEXTS = {
    "shipping_delay": ["parcel is ten days overdue and the tracking page is frozen",
                       "courier keeps postponing the delivery date again",
                       "ordered in march and it still has not shipped"],
    "product_defect": ["the zipper broke off the first week", "screen went black after three uses",
                       "left strap snapped while I was wearing it"],
    "battery_power": ["charge lasts barely forty minutes", "phone dies overnight even when idle",
                      "charger gets scorching hot and stops"],
    "customer_service": ["nobody replied to my three support tickets", "the rep hung up on me twice",
                         "chat agent ignored my question and closed the chat"],
}


def _store(tmp_path):
    prog_path = tmp_path / "insightroi.toml"
    prog_path.write_text(starter_program_text(), encoding="utf-8")
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    rows, t0 = [], datetime(2025, 6, 1)
    for topic, texts in TEXTS.items():
        for k in range(15):  # 5 copies of each text with a suffix: 60 distinct rows
            text = f"{texts[k % 3]} (order {k})"
            rows.append({"id": f"{topic}-{k}", "source": "review", "channel": "web", "locale": "en-US",
                         "sku_family": "fam-1", "event_time": (t0 + timedelta(hours=len(rows))).isoformat() + "Z",
                         "text": text, "rating": 2.0, "_topic": topic})
    df = pd.DataFrame(rows)
    with open_store(url) as st:
        ingest_frame(st, "feedback", df.drop(columns="_topic"), program=load_program(prog_path))
    return url, prog_path, df


def _topics(url, version_prefix):
    with open_store(url) as st:
        ins = st.table("insights").to_pandas()
    t = ins[(ins.task == "topic") & ins.model_version.str.startswith(version_prefix)]
    return dict(zip(t.feedback_id, t.label)), ins


def test_seeded_classification_then_an_owner_head_from_the_review_queue(tmp_path):
    url, prog_path, df = _store(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["classify", "--method", "seeded", "--store", url, "--program", str(prog_path)])
    assert out.exit_code == 0, out.output
    few, ins = _topics(url, "topic-seeded")
    assert len(few) == len(df)
    truth = dict(zip(df.id, df._topic))
    few_acc = sum(few[i] == truth[i] for i in truth) / len(truth)
    assert few_acc >= 0.6  # few-shot, from two or three examples per topic in the starter taxonomy
    sent = ins[ins.task == "sentiment"]
    assert sent.model_version.str.startswith("minilm-l6-domain-logreg").all() and len(sent) == len(df)

    # Owners label every item in the review queue; the next run trains the head on them.
    labels = pd.DataFrame({"id": [f"rl-{i}" for i in df.id], "feedback_id": df.id, "task": "topic",
                           "label": df._topic, "reviewer": "qa", "reviewed_at": "2025-07-01T00:00:00Z"})
    assert len(labels) >= OWNER_LABELS_MIN
    with open_store(url) as st:
        ingest_frame(st, "review_labels", labels, program=load_program(prog_path))
    out = runner.invoke(app, ["classify", "--method", "seeded", "--store", url, "--program", str(prog_path)])
    assert out.exit_code == 0, out.output
    head, _ = _topics(url, "topic-seeded-head")
    assert len(head) == len(df)
    head_acc = sum(head[i] == truth[i] for i in truth) / len(truth)
    assert head_acc >= 0.95 and head_acc >= few_acc  # trained on these very labels

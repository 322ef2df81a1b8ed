"""The one-pass lexicon stack (insights/_fast.py) writes exactly the rows of the per-model path.

The per-model path (``InsightModels._classify_frame_generic``: LexiconSentiment, TopicClassifier
and SeverityRules each on their own) is the oracle; equality is exact, evidence JSON included.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from insightroi.insights import build_models, classify_store, load_reference_sentiment
from insightroi.insights._fast import _prepare_fast
from insightroi.insights._fast_corpus import shuffled_documents
from insightroi.insights._severity import _CRITICAL, _ESCALATE, _terms
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "sentiment"
PROGRAM = parse_program(starter_program_text())

# Each VADER rule and each fallback of the fast path, with real-text wording.
EDGE = [
    "", None, float("nan"), "   \t\n ", "<b>Great</b> product, <script>x()</script> love it", "Tom &amp; Jerry broke it",
    "Das ist nicht gut und sehr schlecht, aber der Preis ist ok", "😀😀", "très bon produit, merci beaucoup",
    "I got a refund but it caught FIRE!!", "The battery is not charging, I want my money back???",
    "no good at all", "It is kind of bad", "kind of", "it's the bomb, to die for", "yeah right, great service",
    "good good but good", "GREAT but bad", "It was GOOD but NOT GREAT and very BAD", "at least it works",
    "very least bad", "least good", "never so good", "never this bad", "without doubt the best", "without a doubt good",
    "not bad", "isn't good", "no no no good", "no or nor good", "sort of ok", "just enough love", "bad ass phone",
    "I ' ' ' not late", "it'sue them", "I will sue you", "ER visit after the burn", "the box was on fire-ish",
    "Shipping was late again", "The package never arrived and support never answered. I want a refund!",
    "Doesn't fit, returning it", "not worth it", "I'm reporting you to the BBB", "electrocuted by the charger",
    "hazardous smoke from the battery", "poisoned", "cancelled my order, chargeback filed", "x" * 25_000,
    "Good.\x1cBad", "A" * 30, "THE BEST EVER!!!!", "meh?", "wow?!?!", "☺ good 😀 bad",
]


def _models():
    return build_models(PROGRAM, "lexicon")


def _frame(texts, seed=0):
    rng = np.random.default_rng(seed)
    n = len(texts)
    ratings = np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 6, n).astype(float))
    ratings[rng.random(n) < 0.03] = 0.5
    return pd.DataFrame({"id": [f"fb-{i:07d}" for i in range(n)], "text": texts, "rating": ratings})


def _assert_same(old: pd.DataFrame, new: pd.DataFrame) -> None:
    assert list(new.columns) == list(old.columns)
    assert len(new) == len(old)
    for c in old.columns:
        a, b = old[c].to_numpy(), new[c].to_numpy()
        if a.dtype.kind == "f":
            same = (a == b) | (np.isnan(a) & np.isnan(b))
        else:
            same = a == b
        bad = np.flatnonzero(~same)
        assert not len(bad), f"column {c}: {len(bad)} rows differ, e.g. {old.iloc[bad[0]].to_dict()} vs {b[bad[0]]!r}"


def test_fast_rows_equal_per_model_rows_on_real_text():
    ref = load_reference_sentiment(REF).text.tolist()
    texts = ref + shuffled_documents(REF, 3000, seed=3) + EDGE + ref[:500]  # repeats too
    m = _models()
    assert m.fast_path() is not None
    df = _frame(texts)
    old = m._classify_frame_generic(df)
    new = m.classify_frame(df)
    _assert_same(old, new)
    # The fast path really was used for nearly all of them (not the generic fallback).
    assert sum(_prepare_fast(t) is not None for t in ref) / len(ref) > 0.95


def test_batches_the_fast_path_cannot_take_at_all_still_classify():
    # Only texts for the per-model path (too long, markup, non-English): the token table is
    # still empty when the batch is triaged.
    m = _models()
    texts = ["x " * 12_000, "<p>broken</p>", "Das ist nicht gut und sehr schlecht, aber ok"]
    df = _frame(texts)
    _assert_same(m._classify_frame_generic(df), m.classify_frame(df))


def test_fast_vader_equals_reference_vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    texts = shuffled_documents(REF, 3000, seed=5) + [t for t in EDGE if isinstance(t, str) and t.isascii()]
    m = _models()
    ref = SentimentIntensityAnalyzer()
    rows = m.classify_frame(_frame(texts))
    sent = rows[rows.task == "sentiment"].reset_index(drop=True)
    fast = m.fast_path()
    for k, t in enumerate(texts):
        if _prepare_fast(t) is None:
            continue
        want = ref.polarity_scores(" ".join(t.split()))
        assert sent.score[k] == want["compound"], t
        c, pos, neu, neg, _ = fast.vader(t)
        assert (c, pos, neu, neg) == (want["compound"], want["pos"], want["neu"], want["neg"]), t


# One phrase per alternative of the severity patterns: the fast path only runs the regexes on
# texts holding one of their first words, so every alternative must be found through that gate.
CRITICAL_SAMPLES = [
    "he got injured", "it hurt my hand", "burned", "fire", "it caught fire", "smoke", "smoking", "sparks",
    "electrical shock", "shocked me", "electrocuted", "it exploded", "exploded", "melted", "choking", "choke hazard",
    "hospital", "emergency room", "er visit", "unsafe", "dangerous", "hazardous", "my lawyer", "attorney",
    "legal action", "a lawsuit", "I will sue", "suing", "recall", "poisoning", "allergic reaction", "a rash",
]
ESCALATE_SAMPLES = [
    "refund", "my money back", "chargeback", "charge back", "dispute", "cancelled", "returning it",
    "never again", "bbb", "better business bureau", "complaint", "reporting you",
]


def _alternatives(pattern: re.Pattern) -> list[str]:
    body = pattern.pattern[len(r"\b("): -len(r")\b")]
    out, depth, cur = [], 0, ""
    for ch in body:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


@pytest.mark.parametrize("pattern,samples", [(_CRITICAL, CRITICAL_SAMPLES), (_ESCALATE, ESCALATE_SAMPLES)])
def test_severity_gate_lets_every_pattern_alternative_through(pattern, samples):
    alts = _alternatives(pattern)
    for alt in alts:
        rx = re.compile(rf"\b(?:{alt})\b", re.I)
        assert any(rx.search(s) for s in samples), f"no sample for {alt!r}"
    for s in samples:
        for text in (f"Honestly {s} today.", f"{s.upper()}!", f"({s})", f"so,{s}"):
            prep = _prepare_fast(text)
            assert prep is not None, text
            assert prep[2] == _terms(text), text
            assert prep[2] != ((), ()), text


def test_classify_store_fast_and_per_model_write_the_same_rows(tmp_path):
    texts = shuffled_documents(REF, 1500, seed=11) + EDGE
    df = _frame(texts, seed=2)
    rows = {}
    for name, fast in (("fast", True), ("generic", False)):
        store = open_store(f"duckdb:///{tmp_path / name}.duckdb")
        store.migrate()
        fb = df.assign(event_time=pd.Timestamp("2025-01-01"), ingested_at=pd.Timestamp("2025-01-02"))
        with store.transaction():
            store.append("feedback", fb[["id", "text", "rating", "event_time", "ingested_at"]])
        m = _models()
        if not fast:
            m._fast = False
        rep = classify_store(store, PROGRAM, models=m, batch_size=400, n_jobs=2 if fast else 1)
        assert rep.n_rows_written == 3 * len(df)
        rows[name] = store.table("insights").drop("created_at").order_by("id").execute()
        store.close()
    _assert_same(rows["generic"], rows["fast"])


def test_token_fields_in_arrow_equal_the_python_definitions():
    # The ASCII tokens' fields are computed in Arrow; _fields_scalar (used for the other tokens)
    # is their definition. Every token of real documents plus the edge cases, field by field.
    docs = shuffled_documents(REF, 3000, seed=3) if REF.exists() else []
    words = [t for d in docs + [e for e in EDGE if isinstance(e, str)] for t in d.split()]
    words += ["!", "!!", "-a-", "ab", "ABC", "Ab1", "n't", "DON'T", "...", "--kind", "OF", "Kind", "I'M", "x-ray's",
              "'''", "u.s.a.", "Injury!", "EXPLODED", "(refund)", "Nicht", "sehr", "9", "a1b2"]
    toks = sorted({w for w in words if w.isascii()})
    assert len(toks) > 2000
    table = _models().fast_path()._tokens
    arrow, python = table._fields_ascii(toks), table._fields_scalar(toks)
    assert set(arrow) == set(python)
    for field, want in python.items():
        got = arrow[field]
        if field in ("enc", "topic", "tfirst"):
            assert list(got) == list(want), field
        else:
            assert np.array_equal(np.asarray(got, float), np.asarray(want, float), equal_nan=True), field

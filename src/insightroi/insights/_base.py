"""Shared pieces of the insight models: input cleaning, output rows, model-version hashing."""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "OUTPUT_COLUMNS",
    "UNCLASSIFIABLE",
    "Prepared",
    "prepare_texts",
    "model_version",
    "make_rows",
]

OUTPUT_COLUMNS = ("label", "score", "confidence", "evidence", "method", "model_version")
UNCLASSIFIABLE = "unclassifiable"

# Texts beyond this are truncated before scoring: a 100 KB paste is almost always a log dump or
# a thread; its first 20,000 characters carry the complaint, and lexicon cost stays linear.
MAX_CHARS = 20_000

_TAG = re.compile(r"<[^>]{0,2000}>")
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_LOOKS_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*[^>]*>")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_WS = re.compile(r"\s+")
# A few English function words; a Latin-script text of five or more words with none of them is
# very unlikely to be English (the lexicon and keyword models would silently score it neutral).
_EN_FUNCTION = frozenset(
    "the a an and or but is are was were it this that i you we they he she my your our not no to of "
    "in on for with at by from as be have has had do does did so very too just can will would "
    "me its it's i'm don't didn't doesn't won't".split()
)


_FOREIGN_FUNCTION = frozenset(
    "der das und ist nicht ein eine einen zu mit auf für von den dem des sich auch sehr aber wir ich "
    "le la les et est une un pour pas dans que qui avec sur très mais nous je ce cette "
    "el los las y es por con para una del muy pero como lo se mi "
    "het een niet ik je met voor van zijn "
    "il non che per sono della molto questo "
    "não um uma com para muito".split()
)


@dataclass(frozen=True)
class Prepared:
    """One input text after cleaning: ``text`` is None when it cannot be classified."""

    text: str | None
    reason: str | None
    notes: tuple[str, ...] = ()
    has_words: bool = True


def _prepare_one(raw: Any) -> Prepared:
    if isinstance(raw, str) and len(raw) < 4096:
        return _prepare_cached(raw)
    return _prepare_uncached(raw)


@lru_cache(maxsize=65536)
def _prepare_cached(raw: str) -> Prepared:
    return _prepare_uncached(raw)


def _prepare_uncached(raw: Any) -> Prepared:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return Prepared(None, "empty text (null)")
    text = raw if isinstance(raw, str) else str(raw)
    notes: list[str] = []
    if len(text) > MAX_CHARS * 5:
        # Cut before regex work so a pathological input stays O(MAX_CHARS).
        text = text[: MAX_CHARS * 5]
    if "<" in text and _LOOKS_HTML.search(text):
        text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
        notes.append("html markup removed")
    if "&" in text:
        text = html.unescape(text)
    text = _WS.sub(" ", text).strip()
    if not text:
        return Prepared(None, "empty text" + (" after removing markup" if notes else ""), tuple(notes))
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        notes.append(f"truncated to the first {MAX_CHARS} characters")
    words = _WORD.findall(text)
    if not words:
        return Prepared(text, None, tuple(notes + ["no words (emoji or symbols only)"]), has_words=False)
    letters = "".join(words)
    latin = len(letters) if letters.isascii() else sum(1 for ch in letters if ch.isascii() or "\u00c0" <= ch <= "\u024f")
    if latin / len(letters) < 0.5:
        return Prepared(None, "not English (mostly non-Latin script)", tuple(notes))
    if len(words) >= 4:
        # Latin-script non-English: more function words of German/French/Spanish/Italian/
        # Dutch/Portuguese than of English. (A ratio of English words alone flags hashtag and
        # slang tweets; see test_insights_sentiment.)
        low = [w.lower() for w in words[:400]]
        foreign = sum(1 for w in low if w in _FOREIGN_FUNCTION)
        english = sum(1 for w in low if w in _EN_FUNCTION)
        if foreign >= 2 and foreign > english:
            return Prepared(None, "not English (function words of another language)", tuple(notes))
    return Prepared(text, None, tuple(notes))


def prepare_texts(texts) -> list[Prepared]:
    """Clean every input text, or say why it cannot be classified (never raises).

    Handles None/NaN, empty or whitespace, HTML markup (tags and entities stripped), very long
    text (truncated, noted), emoji/symbol-only text (kept for the lexicon, flagged ``has_words``
    False) and non-English text (unclassifiable with the reason).
    """
    if isinstance(texts, str):
        texts = [texts]
    return [_prepare_one(t) for t in texts]


def model_version(name: str, **parts: Any) -> str:
    """``name`` plus a short hash of everything that determines the model's outputs.

    Any change of parameters, taxonomy or training data gives a new version, so the insights
    table keeps old and new outputs side by side.
    """
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def make_rows(
    labels, scores, confidences, evidence: list[dict], method: str, version: str
) -> pd.DataFrame:
    """Assemble the standard output frame (one row per input text)."""
    return pd.DataFrame(
        {
            "label": pd.Series(list(labels), dtype="object"),
            "score": np.asarray(scores, dtype=float),
            "confidence": np.asarray(confidences, dtype=float),
            "evidence": [json.dumps(e, ensure_ascii=False, default=_jsonable) for e in evidence],
            "method": method,
            "model_version": version,
        }
    )


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def as_text_list(X) -> list:
    """Accept a list, a pandas Series/DataFrame column or a numpy array of texts."""
    if isinstance(X, str):
        return [X]
    if isinstance(X, pd.DataFrame):
        X = X["text"] if "text" in X.columns else X.iloc[:, 0]
    if isinstance(X, (pd.Series, np.ndarray)):
        return list(X.tolist())
    return list(X)

"""Counting categories and tokens for drift, and the drift summaries built on those counts.

The statistics themselves (PSI, chi-square, KS, Jensen-Shannon, centroid distance) are pure
functions in :mod:`insightroi.stats`; this module turns raw values and texts into the counts they
take (categories over the union of both windows, word tokens) and reads the result.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from insightroi.stats import PSI_EPS, centroid_distance, js_distance, psi_from_counts

__all__ = [
    "category_counts",
    "psi_categorical",
    "tokenize",
    "token_counts",
    "oov_rate",
    "text_drift",
]


def category_counts(reference, current) -> tuple[list, np.ndarray, np.ndarray]:
    """Counts of each category in both windows over the union of categories (nulls dropped).

    Returns ``(categories, reference_counts, current_counts)`` with categories sorted by their
    string form, so the result does not depend on input order.
    """
    ref = [v for v in reference if v is not None and v == v]
    cur = [v for v in current if v is not None and v == v]
    rc, cc = Counter(ref), Counter(cur)
    cats = sorted(set(rc) | set(cc), key=str)
    return cats, np.array([rc[k] for k in cats], float), np.array([cc[k] for k in cats], float)


def psi_categorical(reference, current, *, eps: float = PSI_EPS) -> float:
    """PSI of a categorical feature, one bin per category of the union of both windows.

    See :func:`insightroi.stats.psi_from_counts` for the index and ``eps``.
    """
    _, r, c = category_counts(reference, current)
    return psi_from_counts(r, c, eps=eps)


_TOKEN = re.compile(r"[a-z][a-z']+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of two or more letters (apostrophes kept: "won't")."""
    return _TOKEN.findall(text.lower()) if isinstance(text, str) else []


def token_counts(texts: Iterable[str]) -> Counter:
    """Token frequencies over a collection of texts."""
    c: Counter = Counter()
    for t in texts:
        c.update(tokenize(t))
    return c


def oov_rate(
    reference_vocabulary: Iterable[str] | Counter, current_counts: Counter, *, min_count: int = 1, min_repeat: int = 1
) -> float:
    """Share of current tokens (by frequency) that are not in the reference vocabulary.

    The reference vocabulary is every token seen at least ``min_count`` times in the reference
    window. A current token counts as out-of-vocabulary only if it occurs at least ``min_repeat``
    times in the current window: a new complaint pattern ("drone", "locker") repeats, while typos
    and one-off names do not, so ``min_repeat=3`` keeps the no-drift OOV rate near zero.
    """
    if isinstance(reference_vocabulary, Counter):
        vocab = {t for t, k in reference_vocabulary.items() if k >= min_count}
    else:
        vocab = set(reference_vocabulary)
    total = sum(current_counts.values())
    if total == 0:
        return 0.0
    return sum(k for t, k in current_counts.items() if t not in vocab and k >= min_repeat) / total


def text_drift(
    reference_texts: Sequence[str] | Counter,
    current_texts: Sequence[str] | Counter,
    *,
    reference_embeddings=None,
    current_embeddings=None,
    min_count: int = 1,
    min_repeat: int = 1,
) -> dict[str, float]:
    """Vocabulary shift between two windows of text.

    Returns a dict with ``oov_rate`` (share of current tokens unseen in the reference),
    ``js_distance`` (base 2, over the union vocabulary), the token totals, and
    ``centroid_distance`` when both embedding arrays are given (else None). Token counters may be
    passed instead of texts (the store computes them in the database). ``min_count`` and
    ``min_repeat`` are passed to :func:`oov_rate`.
    """
    rc = reference_texts if isinstance(reference_texts, Counter) else token_counts(reference_texts)
    cc = current_texts if isinstance(current_texts, Counter) else token_counts(current_texts)
    vocab = sorted(set(rc) | set(cc))
    r = np.array([rc.get(t, 0) for t in vocab], float)
    c = np.array([cc.get(t, 0) for t in vocab], float)
    out = {
        "oov_rate": oov_rate(rc, cc, min_count=min_count, min_repeat=min_repeat),
        "js_distance": js_distance(r, c) if r.sum() > 0 and c.sum() > 0 else float("nan"),
        "reference_tokens": float(r.sum()),
        "current_tokens": float(c.sum()),
        "centroid_distance": None,
    }
    if reference_embeddings is not None and current_embeddings is not None:
        out["centroid_distance"] = centroid_distance(reference_embeddings, current_embeddings)
    return out

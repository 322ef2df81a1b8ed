"""New-theme discovery: cluster recent "other" / low-confidence feedback into candidate topics.

Two paths. ``tfidf``: TF-IDF + k-means, k by silhouette (fast, no model). ``embedding``: the
packaged MiniLM vectors clustered by a Ward tree cut where clusters are as cohesive as one
customer intent (the BERTopic recipe with a scale-free cut instead of UMAP + HDBSCAN), named by
class-based TF-IDF, with outliers joined to the nearest theme when similar enough.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from insightroi.errors import check_option
from insightroi.insights._embed import get_encoder
from insightroi.insights._spikes import current_topic_version
from insightroi.store import Store

__all__ = ["Theme", "discover_themes", "cluster_texts", "embedding_clusters", "reduce_outliers",
           "DEFAULT_COHESION", "DEFAULT_MIN_SIMILARITY"]

#: Mean cosine similarity of a theme's members to its centroid at which the Ward tree is cut.
#: Chosen on BANKING77's TRAIN split (3,080 sampled rows): 0.76 -> 53 clusters ARI 0.447,
#: 0.78 -> 71 / 0.476, 0.80 -> 95 / 0.499, 0.82 -> 129 / 0.489. It is a property of the clusters,
#: not of the corpus size: 1,000 rows give 72 clusters at 0.80.
DEFAULT_COHESION = 0.80
#: An outlier joins the nearest theme when its cosine similarity to that theme's centroid is at
#: least this (BERTopic's ``reduce_outliers`` with the "embeddings" strategy, thresholded).
DEFAULT_MIN_SIMILARITY = 0.5
#: The Ward tree needs n^2/2 distances in memory (6,000 rows: 144 MB); larger inputs are
#: clustered on a sample of this size and the rest assigned to the nearest centroid.
MAX_TREE_ROWS = 6000


@dataclass(frozen=True)
class Theme:
    """A candidate topic: its most characteristic terms, example texts and size."""

    terms: list[str]
    examples: list[str]
    size: int
    feedback_ids: list[str] = field(default_factory=list)
    cohesion: float = 0.0  # mean cosine similarity of members to the centroid
    growth: float | None = None  # mean lift of its top terms vs the baseline window (emerging themes > 1)
    label: str = ""  # snake_case name from the top c-TF-IDF terms (or the LLM's, see label_source)
    summary: str = ""
    label_source: str = "terms"  # terms | c-tf-idf | llm | c-tf-idf (llm failed: <reason>)
    llm_call: dict | None = None  # latency_s, prompt/completion tokens, cost of the LLM call that named it

    def to_dict(self, with_ids: bool = False) -> dict:
        """The theme as a JSON-ready dict (member ids only when ``with_ids``).

        ``evidence`` holds up to 5 readable snippets of its examples (about 160 characters each)
        with its terms marked (:mod:`insightroi.insights._themes_evidence`).
        """
        from insightroi.insights._themes_evidence import snippets

        d = asdict(self)
        d["evidence"] = [s.to_dict() for s in snippets(self.examples, self.terms, n=5)]
        if not with_ids:
            d.pop("feedback_ids")
        return d


def _cohesion(Z: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine similarity of the rows of ``Z`` (unit vectors) to their cluster's centroid."""
    total = 0.0
    for c in np.unique(labels):
        m = Z[labels == c]
        cen = m.sum(axis=0)
        total += float(np.linalg.norm(cen))  # sum of m @ (cen / |cen|) = |cen|
    return total / len(Z)


def _centroids(Z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes = np.unique(labels[labels >= 0])
    C = np.stack([Z[labels == c].mean(axis=0) for c in classes]) if classes.size else np.zeros((0, Z.shape[1]))
    C /= np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-12)
    return classes, C


def reduce_outliers(Z: np.ndarray, labels, *, min_similarity: float = DEFAULT_MIN_SIMILARITY) -> np.ndarray:
    """Join each outlier (label ``-1``) to the nearest cluster centroid if close enough.

    Parameters
    ----------
    Z : ndarray, shape (n, d)
        Unit-length embeddings.
    labels : array-like of int
        Cluster per row, ``-1`` for outliers.
    min_similarity : float
        Cosine similarity to the nearest centroid an outlier needs to join it; below it the row
        stays an outlier (a text that resembles no theme should not inflate one).

    Returns
    -------
    ndarray of int
        New labels (a copy).
    """
    lab = np.asarray(labels).copy()
    out = np.flatnonzero(lab < 0)
    classes, C = _centroids(Z, lab)
    if out.size == 0 or classes.size == 0:
        return lab
    S = Z[out] @ C.T
    best = S.argmax(axis=1)
    ok = S[np.arange(out.size), best] >= min_similarity
    lab[out[ok]] = classes[best[ok]]
    return lab


def embedding_clusters(
    Z: np.ndarray,
    *,
    cohesion: float = DEFAULT_COHESION,
    min_size: int = 5,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    max_tree_rows: int = MAX_TREE_ROWS,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Cluster unit-length embeddings into themes; ``-1`` marks outliers.

    A Ward tree (scipy) is cut at the fewest clusters whose members lie, on average, at cosine
    similarity ``cohesion`` or more from their centroid (found by bisection on the number of
    clusters). Clusters with fewer than ``min_size`` members become outliers, then every outlier
    joins its nearest centroid when the similarity reaches ``min_similarity``
    (:func:`reduce_outliers`).

    Parameters
    ----------
    Z : ndarray, shape (n, d)
        Unit-length embeddings (e.g. :func:`insightroi.insights._embed.get_encoder`).
    cohesion : float
        Target mean member-to-centroid cosine similarity; higher gives more, tighter themes.
    min_size : int
        Smallest theme kept.
    min_similarity : float
        See :func:`reduce_outliers`.
    max_tree_rows : int
        Above this many rows the tree is built on a uniform sample and the other rows are
        assigned like outliers (nearest centroid, thresholded).
    rng : numpy.random.Generator, optional
        Draws that sample.

    Returns
    -------
    ndarray of int, shape (n,)
        Theme of each row, numbered 0.. by decreasing size; ``-1`` for outliers.
    """
    from scipy.cluster.hierarchy import fcluster, ward

    Z = np.asarray(Z, dtype=np.float64)
    n = len(Z)
    lab = np.full(n, -1, dtype=int)
    if n < max(2 * min_size, 4):
        return lab
    rng = rng if rng is not None else np.random.default_rng(0)
    tree_idx = np.sort(rng.choice(n, max_tree_rows, replace=False)) if n > max_tree_rows else np.arange(n)
    Zt = Z[tree_idx]
    L = ward(Zt)
    lo, hi = 1, max(1, len(Zt) // 2)
    while lo < hi:  # cohesion grows with the number of clusters cut from one tree
        mid = (lo + hi) // 2
        if _cohesion(Zt, fcluster(L, mid, "maxclust")) >= cohesion:
            hi = mid
        else:
            lo = mid + 1
    sub = fcluster(L, lo, "maxclust") - 1
    sizes = np.bincount(sub)
    sub[sizes[sub] < min_size] = -1
    lab[tree_idx] = sub
    lab = reduce_outliers(Z, lab, min_similarity=min_similarity)
    # number themes by size, largest first, so theme 0 is the one worth reading first
    kept = lab >= 0
    if not kept.any():
        return lab
    classes, counts = np.unique(lab[kept], return_counts=True)
    rank = {c: i for i, c in enumerate(classes[np.lexsort((classes, -counts))])}
    lab[kept] = [rank[c] for c in lab[kept]]
    return lab


def _snake(terms: list[str], n: int = 3) -> str:
    import re

    words: list[str] = []
    for t in terms:
        for w in t.split():
            if w not in words:
                words.append(w)
    name = re.sub(r"[^a-z0-9]+", "_", "_".join(words[:n]).lower()).strip("_")
    return name if name and name[0].isalpha() else f"theme_{name}".strip("_")


def _cluster_embedding(texts, ids, Z, *, min_size, n_terms, n_examples, exclude_terms, rng, baseline_texts,
                       cohesion, min_similarity) -> list[Theme]:
    from insightroi.insights._ctfidf import class_tfidf, top_terms

    lab = embedding_clusters(Z, cohesion=cohesion, min_size=min_size, min_similarity=min_similarity, rng=rng)
    classes, terms, W = class_tfidf(texts, lab)
    lift = None
    if baseline_texts:
        from sklearn.feature_extraction.text import CountVectorizer

        vocab = list(dict.fromkeys(str(t) for t in terms)) if len(terms) else []
        if vocab:
            cv = CountVectorizer(vocabulary=vocab, ngram_range=(1, 2))
            df_r = np.asarray((cv.transform(texts) > 0).sum(axis=0)).ravel() / len(texts)
            df_b = np.asarray((cv.transform(baseline_texts) > 0).sum(axis=0)).ravel() / len(baseline_texts)
            lift = dict(zip(vocab, np.clip((df_r + 0.5 / len(texts)) / (df_b + 0.5 / len(baseline_texts)), 0, 10)))
    Zn = np.asarray(Z, dtype=np.float64)
    themes = []
    for row, c in enumerate(classes):
        members = np.flatnonzero(lab == c)
        top = top_terms(terms, W[row], n_terms, exclude=exclude_terms) if W.shape[1] else []
        cen = Zn[members].mean(axis=0)
        cen /= np.linalg.norm(cen) or 1.0
        sims = Zn[members] @ cen
        ex_order = members[np.argsort(-sims)]
        examples = list(dict.fromkeys(texts[i] for i in ex_order))[:n_examples]
        growth = float(np.mean([lift[t] for t in top[:5]])) if lift is not None and top else None
        themes.append(Theme(terms=top, examples=examples, size=int(members.size),
                            feedback_ids=[ids[i] for i in members], cohesion=float(np.mean(sims)),
                            growth=growth, label=_snake(top), label_source="c-tf-idf"))
    if lift is not None:
        return sorted(themes, key=lambda t: (-(t.growth or 0), -t.size))
    return sorted(themes, key=lambda t: -t.size)


# The TF-IDF path's choice of k scans 2..max_clusters on this many texts at most.
K_SELECTION_SAMPLE = 1000


def cluster_texts(
    texts: list[str],
    ids: list[str] | None = None,
    *,
    method: str = "tfidf",
    n_clusters: int | None = None,
    min_size: int = 5,
    n_terms: int = 8,
    n_examples: int = 5,
    exclude_terms=(),
    rng: np.random.Generator | None = None,
    device: str = "cpu",
    baseline_texts: list[str] | None = None,
    max_clusters: int = 16,
    embeddings: np.ndarray | None = None,
    cohesion: float = DEFAULT_COHESION,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> list[Theme]:
    """Cluster texts and describe each cluster (largest first).

    ``tfidf``: TF-IDF (unigrams + bigrams, English stop words) + k-means, with k chosen by
    silhouette over 2..max_clusters when not given (Rousseeuw 1987), scanned on a seeded sample of at
    most ``K_SELECTION_SAMPLE`` texts and then fitted on all of them. ``embedding``: MiniLM vectors
    (or ``embeddings`` when given) clustered by :func:`embedding_clusters` (the number of themes
    follows from ``cohesion``; ``n_clusters`` and ``max_clusters`` are ignored), each named by its
    class-based TF-IDF terms (:mod:`insightroi.insights._ctfidf`) and a snake_case ``label``;
    outliers that resemble no theme are left out. Terms already in the taxonomy can be excluded so
    the names point at what is new. On BANKING77's test split the embedding path reaches ARI
    0.5 against the 77 intents (``benchmarks/bench_themes.py``).

    With ``baseline_texts`` (the same kind of feedback from an earlier window), each term is
    weighted by its lift (document frequency now / before, capped at 10) before clustering, and
    themes are ordered by growth then size, so an emerging theme is not buried under the
    perennial chatter of the "other" bucket.
    """
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    check_option("method", method, ("tfidf", "embedding"))
    rng = rng if rng is not None else np.random.default_rng(0)
    ids = ids if ids is not None else [str(i) for i in range(len(texts))]
    if len(texts) < max(2 * min_size, 4):
        return []
    if embeddings is not None and len(embeddings) != len(texts):
        raise ValueError(f"cluster_texts: {len(embeddings)} embeddings for {len(texts)} texts")
    if method == "embedding":
        Z = embeddings if embeddings is not None else get_encoder(device).encode(texts)
        return _cluster_embedding(list(texts), ids, Z, min_size=min_size, n_terms=n_terms, n_examples=n_examples,
                                  exclude_terms=exclude_terms, rng=rng, baseline_texts=baseline_texts,
                                  cohesion=cohesion, min_similarity=min_similarity)
    vec = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), min_df=2, max_df=0.5, sublinear_tf=True)
    try:
        X = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary
        return []
    lift = None
    if baseline_texts:
        from sklearn.preprocessing import normalize

        B = vec.transform(baseline_texts)
        df_r = np.asarray((X > 0).sum(axis=0)).ravel() / X.shape[0]
        df_b = np.asarray((B > 0).sum(axis=0)).ravel() / max(B.shape[0], 1)
        lift = np.clip((df_r + 0.5 / X.shape[0]) / (df_b + 0.5 / max(B.shape[0], 1)), 0.0, 10.0)
        X = normalize(X.multiply(np.maximum(lift, 0.2)).tocsr())
    Z = X
    seed = int(rng.integers(0, 2**31 - 1))
    # One OpenMP thread: k-means on these sparse matrices gains little from a second core, and its
    # threads busy-wait when the cores are shared (issue 21: 1.9 s alone, 12.5 s beside two busy
    # processes, 3.0 s on one thread).
    with threadpool_limits(limits=1, user_api="openmp"):
        if n_clusters is None:
            # k is chosen on a sample of at most K_SELECTION_SAMPLE texts (issue 21: the scan fitted
            # 15 k-means on every text, 1.5 s of the demo's 3,306), then fitted once on all of them.
            n_distinct = len(set(texts))
            ks = range(2, min(max_clusters, len(texts) // min_size, n_distinct - 1) + 1)
            pick = (np.sort(np.random.default_rng(seed).choice(len(texts), K_SELECTION_SAMPLE, replace=False))
                    if len(texts) > K_SELECTION_SAMPLE else np.arange(len(texts)))
            Zs = Z[pick]
            best_k, best_s = None, -1.0
            for k in ks:
                labels = KMeans(n_clusters=k, n_init=2, random_state=seed).fit_predict(Zs)
                if len(set(labels)) < 2:
                    continue
                s = silhouette_score(Zs, labels, random_state=seed)
                if s > best_s:
                    best_k, best_s = k, s
            if best_k is None:
                return []
            km = KMeans(n_clusters=best_k, n_init=4, random_state=seed).fit(Z)
        else:
            km = KMeans(n_clusters=min(n_clusters, len(set(texts))), n_init=4, random_state=seed).fit(Z)
    terms = np.array(vec.get_feature_names_out())
    excl = {t.lower() for t in exclude_terms}
    themes = []
    Xd = X.tocsr()
    for c in range(km.n_clusters):
        members = np.flatnonzero(km.labels_ == c)
        if members.size < min_size:
            continue
        mean_tfidf = np.asarray(Xd[members].mean(axis=0)).ravel()
        order = np.argsort(-mean_tfidf)
        top = [t for t in terms[order] if t not in excl and not any(w in excl for w in t.split())][:n_terms]
        centroid = km.cluster_centers_[c]
        Zm = Z[members]
        sims = np.asarray(Zm @ centroid).ravel() if not hasattr(Zm, "toarray") else np.asarray(Zm.toarray() @ centroid).ravel()
        norm = np.linalg.norm(centroid) or 1.0
        sims = sims / norm
        ex_order = members[np.argsort(-sims)]
        examples = list(dict.fromkeys(texts[i] for i in ex_order))[:n_examples]
        growth = None
        if lift is not None and top:
            pos = {t: i for i, t in enumerate(terms)}
            growth = float(np.mean([lift[pos[t]] for t in top[:5]]))
        themes.append(
            Theme(terms=top, examples=examples, size=int(members.size),
                  feedback_ids=[ids[i] for i in members], cohesion=float(np.mean(sims)), growth=growth)
        )
    if lift is not None:
        return sorted(themes, key=lambda t: (-(t.growth or 0), -t.size))
    return sorted(themes, key=lambda t: -t.size)


def discover_themes(
    store: Store,
    program,
    *,
    days: int = 56,
    model_version: str | None = None,
    method: str = "tfidf",
    min_size: int = 10,
    max_items: int | None = None,
    rng: np.random.Generator | None = None,
) -> list[Theme]:
    """Propose new topics from the last ``days`` (default 8 weeks) days of feedback whose topic was "other" or whose
    topic confidence was below the program's ``monitoring.low_confidence``.

    Returns themes with top terms (taxonomy keywords excluded) and examples, emerging ones first
    (growth vs the previous max(days, 56) days), then by size. ``max_items`` (default 20,000 for
    ``tfidf``, 5,000 for ``embedding``) caps the texts clustered: a uniform sample above it.

    Parameters
    ----------
    store : Store
        Holds the feedback and the topic model's insights.
    program : Program
        Its taxonomy keywords are left out of theme terms; ``monitoring.low_confidence`` picks rows.
    days : int
        Look-back window.
    model_version : str, optional
        The topic model whose "other" / low-confidence rows are clustered (default: the latest).
    method : str
        ``tfidf`` or ``embedding`` (see :func:`cluster_texts`).
    min_size : int
        Smallest theme kept.
    max_items : int, optional
        See above.
    rng : numpy.random.Generator, optional
        Sampling and clustering seed.

    Returns
    -------
    list of Theme
    """
    version = model_version or current_topic_version(store)
    if version is None:
        return []
    ins = store.table("insights")
    fb = store.table("feedback")
    last = fb.event_time.max().execute()
    if last is None or pd.isna(last):
        return []
    since = pd.Timestamp(last) - timedelta(days=days)
    thr = program.monitoring.low_confidence
    t = ins.filter((ins.task == "topic") & (ins.model_version == version))
    t = t.filter((t.label == "other") | ((t.label != "unclassifiable") & (t.confidence < thr)))
    j = t.join(fb, t.feedback_id == fb.id)
    df = j.filter(fb.event_time >= since.to_pydatetime()).select(id=fb.id, text=fb.text).execute()
    # the previous window of the same kind of feedback: what was already there is not new
    before = since - timedelta(days=max(days, 56))
    base = j.filter((fb.event_time >= before.to_pydatetime()) & (fb.event_time < since.to_pydatetime()))
    base_texts = base.select(text=fb.text).execute().text.astype(str).tolist()
    # the encoder runs at ~100 texts/s per core: 5,000 keeps the embedding path near a minute
    max_items = max_items or (5_000 if method == "embedding" else 20_000)
    if len(df) > max_items:
        rng_s = rng if rng is not None else np.random.default_rng(0)
        df = df.iloc[np.sort(rng_s.choice(len(df), max_items, replace=False))]
    exclude = {w for tp in program.taxonomy for k in tp.keywords for w in k.lower().split()}
    return cluster_texts(
        df.text.astype(str).tolist(), df.id.astype(str).tolist(), method=method, min_size=min_size,
        exclude_terms=exclude, rng=rng, baseline_texts=base_texts[:max_items] or None,
    )

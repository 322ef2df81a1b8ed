"""New-theme discovery: cluster recent "other" / low-confidence feedback into candidate topics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from insightroi.errors import check_option
from insightroi.insights._embed import get_encoder
from insightroi.insights._spikes import current_topic_version
from insightroi.store import Store

__all__ = ["Theme", "discover_themes", "cluster_texts"]


@dataclass(frozen=True)
class Theme:
    """A candidate topic: its most characteristic terms, example texts and size."""

    terms: list[str]
    examples: list[str]
    size: int
    feedback_ids: list[str] = field(default_factory=list)
    cohesion: float = 0.0  # mean cosine similarity of members to the centroid
    growth: float | None = None  # mean lift of its top terms vs the baseline window (emerging themes > 1)

    def to_dict(self, with_ids: bool = False) -> dict:
        d = asdict(self)
        if not with_ids:
            d.pop("feedback_ids")
        return d


def cluster_texts(
    texts: list[str],
    ids: list[str] | None = None,
    *,
    method: str = "tfidf",
    n_clusters: int | None = None,
    min_size: int = 5,
    n_terms: int = 8,
    n_examples: int = 3,
    exclude_terms=(),
    rng: np.random.Generator | None = None,
    device: str = "cpu",
    baseline_texts: list[str] | None = None,
    max_clusters: int = 16,
) -> list[Theme]:
    """Cluster texts and describe each cluster (largest first).

    TF-IDF (unigrams + bigrams, English stop words) + k-means, with k chosen by silhouette over
    2..max_clusters when not given (Rousseeuw 1987); ``embedding`` clusters MiniLM vectors instead and still
    names clusters by their TF-IDF terms. Terms already in the taxonomy can be excluded so the
    names point at what is new.

    With ``baseline_texts`` (the same kind of feedback from an earlier window), each term is
    weighted by its lift (document frequency now / before, capped at 10) before clustering, and
    themes are ordered by growth then size, so an emerging theme is not buried under the
    perennial chatter of the "other" bucket.
    """
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import silhouette_score

    check_option("method", method, ("tfidf", "embedding"))
    rng = rng if rng is not None else np.random.default_rng(0)
    ids = ids if ids is not None else [str(i) for i in range(len(texts))]
    if len(texts) < max(2 * min_size, 4):
        return []
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
    if method == "embedding":
        Z = get_encoder(device).encode(texts)
    else:
        Z = X
    seed = int(rng.integers(0, 2**31 - 1))
    if n_clusters is None:
        best, best_s = None, -1.0
        sample = min(len(texts), 2000)
        n_distinct = len(set(texts))
        for k in range(2, min(max_clusters, len(texts) // min_size, n_distinct - 1) + 1):
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(Z)
            s = silhouette_score(Z, km.labels_, sample_size=sample, random_state=seed)
            if s > best_s:
                best, best_s = km, s
        if best is None:
            return []
        km = best
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
    max_items: int = 20_000,
    rng: np.random.Generator | None = None,
) -> list[Theme]:
    """Propose new topics from the last ``days`` (default 8 weeks) days of feedback whose topic was "other" or whose
    topic confidence was below the program's ``monitoring.low_confidence``.

    Returns themes with top terms (taxonomy keywords excluded) and examples, emerging ones first
    (growth vs the previous max(days, 56) days), then by size.
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
    if len(df) > max_items:
        rng_s = rng if rng is not None else np.random.default_rng(0)
        df = df.iloc[np.sort(rng_s.choice(len(df), max_items, replace=False))]
    exclude = {w for tp in program.taxonomy for k in tp.keywords for w in k.lower().split()}
    return cluster_texts(
        df.text.astype(str).tolist(), df.id.astype(str).tolist(), method=method, min_size=min_size,
        exclude_terms=exclude, rng=rng, baseline_texts=base_texts[:max_items] or None,
    )

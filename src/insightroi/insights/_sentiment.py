"""Sentiment: VADER lexicon baseline (always there) and a MiniLM embedding + logistic head.

Both are calibrated on the human-labelled reference data of Hutto & Gilbert (2014) — 4,200 tweets
and 10,605 movie-review snippets with the mean of 20 human ratings (-4..+4); MIT licence,
cjhutto/vaderSentiment. Split: rows whose numeric id is divisible by 5 are HELD OUT (test); the
rest train the calibrator and the head. The fitted parameters are bundled as JSON in
``insights/_models`` (rebuilt by ``python -m insightroi.insights._train``), so nothing is trained
or downloaded at run time.

Classes follow the VADER paper's thresholds: positive if score >= 0.05, negative if <= -0.05,
neutral in between; the human classes use the same cut on the human mean rating.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from insightroi.errors import check_option
from insightroi.insights._base import UNCLASSIFIABLE, as_text_list, make_rows, model_version, prepare_texts
from insightroi.insights._embed import get_encoder
from insightroi.insights._vader import VaderCore

__all__ = [
    "SENTIMENT_CLASSES",
    "LexiconSentiment",
    "EmbeddingSentiment",
    "sentiment_class",
    "load_reference_sentiment",
]

SENTIMENT_CLASSES = ("negative", "neutral", "positive")
# Fitted parameters ship inside the package (package-data) so an installed wheel runs offline
# with no checkout beside it; the human-labelled texts they were fitted on are not shipped.
_MODELS = Path(__file__).parent / "_models"


def sentiment_class(values, threshold: float = 0.05) -> np.ndarray:
    """Map scores to negative / neutral / positive with VADER's +-0.05 cut (on any scale)."""
    v = np.asarray(values, dtype=float)
    return np.where(v >= threshold, "positive", np.where(v <= -threshold, "negative", "neutral")).astype(object)


def load_reference_sentiment(path: str | Path):
    """The Hutto & Gilbert (2014) human-labelled texts as a DataFrame.

    Parameters
    ----------
    path : str or Path
        Folder holding ``tweets_GroundTruth.txt`` and ``movieReviewSnippets_GroundTruth.txt``
        (in a checkout: ``shared/reference/sentiment``). The package does not ship these texts,
        so the caller always says where they are.

    Returns
    -------
    pandas.DataFrame
        Columns: corpus (tweets | movies), id, rating (mean human rating, -4..+4), text, split
        (``test`` when id % 5 == 0, else ``train``).
    """
    import pandas as pd

    path = Path(path)
    frames = []
    for corpus, fname in (("tweets", "tweets_GroundTruth.txt"), ("movies", "movieReviewSnippets_GroundTruth.txt")):
        rows = []
        with open(path / fname, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t", 2)
                if len(parts) == 3:
                    rows.append((corpus, int(parts[0]), float(parts[1]), parts[2]))
        frames.append(pd.DataFrame(rows, columns=["corpus", "id", "rating", "text"]))
    df = pd.concat(frames, ignore_index=True)
    df["split"] = np.where(df["id"] % 5 == 0, "test", "train")
    return df


def _cal_features(compound: np.ndarray) -> np.ndarray:
    c = np.asarray(compound, dtype=float)
    return np.column_stack([c, np.abs(c), c**3])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@lru_cache(maxsize=4)
def _bundled(name: str) -> dict:
    with open(_MODELS / name, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def _shared_vader() -> VaderCore:
    return VaderCore()


class LexiconSentiment(BaseEstimator, ClassifierMixin):
    """VADER sentiment with a calibrated confidence (Hutto & Gilbert, ICWSM 2014).

    The label comes from VADER's compound score and the paper's +-0.05 thresholds. The
    confidence is the calibrated probability that a human would give that label: a multinomial
    logistic model of the human class on (compound, |compound|, compound^3), Platt-style
    (Platt 1999), fitted on the reference training split (or on the data passed to ``fit``).

    Parameters
    ----------
    threshold : float
        Neutral band half-width on the compound score.
    calibration : {"bundled", "none"}
        ``bundled`` loads the calibrator fitted on the reference data; ``none`` reports
        confidence = |compound| mapped to [0.5, 1] (not calibrated).
    """

    method = "lexicon"

    def __init__(self, threshold: float = 0.05, calibration: str = "bundled"):
        self.threshold = threshold
        self.calibration = calibration

    def fit(self, X=None, y=None):
        """Load the bundled calibrator, or fit one on texts ``X`` with human ratings ``y``.

        ``y`` may be numeric ratings (cut at +-threshold) or class labels.
        """
        check_option("calibration", self.calibration, ("bundled", "none"))
        self.core_ = _shared_vader()
        self.classes_ = np.array(SENTIMENT_CLASSES, dtype=object)
        if X is not None and y is not None:
            from sklearn.linear_model import LogisticRegression

            comp = self.compound(X)
            yy = np.asarray(y)
            ycls = sentiment_class(yy, self.threshold) if yy.dtype.kind in "fi" else yy.astype(object)
            lr = LogisticRegression(C=10.0, max_iter=1000).fit(_cal_features(comp), ycls)
            coef = np.zeros((3, 3))
            inter = np.full(3, -30.0)  # a class absent from y gets ~0 probability
            for k, cls in enumerate(lr.classes_):
                j = SENTIMENT_CLASSES.index(cls)
                if len(lr.classes_) == 2:
                    sign = 1.0 if k == 1 else -1.0
                    coef[j], inter[j] = sign * lr.coef_[0] / 2, sign * lr.intercept_[0] / 2
                else:
                    coef[j], inter[j] = lr.coef_[k], lr.intercept_[k]
            self.cal_coef_, self.cal_intercept_ = coef, inter
            self.training_data_ = f"user data n={len(comp)}"
        elif self.calibration == "bundled":
            params = _bundled("lexicon_calibration.json")
            self.cal_coef_ = np.array(params["coef"])
            self.cal_intercept_ = np.array(params["intercept"])
            self.training_data_ = params["training_data"]
        else:
            self.cal_coef_ = None
            self.cal_intercept_ = None
            self.training_data_ = "none"
        self.model_version_ = model_version(
            "vader-3.3.2",
            threshold=self.threshold,
            calibration=None if self.cal_coef_ is None else np.round(self.cal_coef_, 6).tolist(),
            data=self.training_data_,
        )
        return self

    def _check(self):
        if not hasattr(self, "core_"):
            self.fit()

    def compound(self, X) -> np.ndarray:
        """VADER compound score of each (cleaned) text; 0 for unclassifiable ones."""
        self._check()
        prepared = prepare_texts(as_text_list(X))
        score = self.core_.score
        return np.array([score(p.text)[0] if p.text is not None else 0.0 for p in prepared])

    def _proba_from_compound(self, comp: np.ndarray) -> np.ndarray:
        if self.cal_coef_ is None:
            lab = sentiment_class(comp, self.threshold)
            conf = 0.5 + 0.5 * np.abs(comp)
            out = np.full((len(comp), 3), 0.0)
            for j, c in enumerate(SENTIMENT_CLASSES):
                out[:, j] = np.where(lab == c, conf, (1 - conf) / 2)
            return out
        return _softmax(_cal_features(comp) @ self.cal_coef_.T + self.cal_intercept_)

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated P(human class) for classes_ (negative, neutral, positive)."""
        return self._proba_from_compound(self.compound(X))

    def predict(self, X) -> np.ndarray:
        """negative / neutral / positive from the compound score (VADER thresholds)."""
        return sentiment_class(self.compound(X), self.threshold)

    def classify(self, X):
        """Standard output rows: label, score (compound), confidence, evidence, method, model_version.

        Evidence lists the tokens that drove the score with their valence. Empty, non-English
        or word-less text without any emoji valence is labelled ``unclassifiable`` with the reason.
        """
        self._check()
        prepared = prepare_texts(as_text_list(X))
        n = len(prepared)
        comp = np.zeros(n)
        evidence: list[dict] = []
        ok = np.zeros(n, dtype=bool)
        for i, p in enumerate(prepared):
            if p.text is None:
                evidence.append({"reason": p.reason})
                continue
            c, pos, neu, neg, drivers = self.core_.score(p.text)
            if not p.has_words and not drivers:
                evidence.append({"reason": "no words and no emoji with known sentiment"})
                continue
            ok[i] = True
            comp[i] = c
            top = sorted(drivers, key=lambda d: -abs(d[1]))[:5]
            ev = {"drivers": [[w, v] for w, v in top], "pos": pos, "neu": neu, "neg": neg}
            if p.notes:
                ev["notes"] = list(p.notes)
            evidence.append(ev)
        proba = self._proba_from_compound(comp)
        labels = sentiment_class(comp, self.threshold)
        idx = np.array([SENTIMENT_CLASSES.index(lab) for lab in labels])
        conf = proba[np.arange(n), idx] if n else np.zeros(0)
        labels = np.where(ok, labels, UNCLASSIFIABLE)
        conf = np.where(ok, conf, 0.0)
        return make_rows(labels, comp, conf, evidence, self.method, self.model_version_)


class EmbeddingSentiment(BaseEstimator, ClassifierMixin):
    """MiniLM sentence embeddings + a multinomial logistic head (and a ridge head for the score).

    Needs the ``[embeddings]`` extra. By default the head is the one bundled with the package,
    trained on the reference training split (Hutto & Gilbert 2014 tweets + movie snippets, ids
    not divisible by 5). Logistic regression outputs are close to calibrated for this kind of
    linear probe; ``validate_model`` reports the ECE on held-out data.

    Parameters
    ----------
    C : float
        Inverse L2 strength of the logistic head (used only when ``fit`` gets data).
    device : str
        Torch device for the encoder.
    """

    method = "embedding"

    def __init__(self, C: float = 1.0, device: str = "cpu", threshold: float = 0.05):
        self.C = C
        self.device = device
        self.threshold = threshold

    def _encoder(self):
        return get_encoder(self.device)

    def fit(self, X=None, y=None, embeddings: np.ndarray | None = None):
        """Load the bundled head, or train one on texts ``X`` (or ``embeddings``) with ratings ``y``.

        ``y`` must be numeric mean ratings (the ridge head predicts them; classes use +-threshold).
        """
        self.classes_ = np.array(SENTIMENT_CLASSES, dtype=object)
        if y is not None:
            from sklearn.linear_model import LogisticRegression, Ridge

            E = embeddings if embeddings is not None else self._encoder().encode(
                [p.text or "" for p in prepare_texts(as_text_list(X))]
            )
            yy = np.asarray(y, dtype=float)
            ycls = sentiment_class(yy, self.threshold)
            lr = LogisticRegression(C=self.C, max_iter=2000).fit(E, ycls)
            coef = np.zeros((3, E.shape[1]))
            inter = np.full(3, -30.0)
            for k, cls in enumerate(lr.classes_):
                j = SENTIMENT_CLASSES.index(cls)
                coef[j], inter[j] = lr.coef_[k], lr.intercept_[k]
            ridge = Ridge(alpha=1.0).fit(E, yy)
            self.coef_, self.intercept_ = coef, inter
            self.ridge_coef_, self.ridge_intercept_ = ridge.coef_, float(ridge.intercept_)
            self.rating_scale_ = float(np.max(np.abs(yy))) or 1.0
            self.training_data_ = f"n={len(yy)} sum={float(np.round(yy.sum(), 4))}"
        else:
            p = _bundled("embedding_sentiment_head.json")
            self.coef_, self.intercept_ = np.array(p["coef"]), np.array(p["intercept"])
            self.ridge_coef_, self.ridge_intercept_ = np.array(p["ridge_coef"]), float(p["ridge_intercept"])
            self.rating_scale_ = float(p["rating_scale"])
            self.training_data_ = p["training_data"]
        self.model_version_ = model_version(
            "minilm-l6-logreg",
            C=self.C,
            threshold=self.threshold,
            head=float(np.round(np.abs(self.coef_).sum(), 6)),
            data=self.training_data_,
        )
        return self

    def _check(self):
        if not hasattr(self, "coef_"):
            self.fit()

    def _embed(self, X):
        prepared = prepare_texts(as_text_list(X))
        ok = np.array([p.text is not None and p.has_words for p in prepared], dtype=bool)
        texts = [p.text for p, k in zip(prepared, ok) if k]
        E = self._encoder().encode(texts) if texts else np.zeros((0, self.coef_.shape[1]), np.float32)
        return prepared, ok, E

    def _heads(self, E):
        proba = _softmax(E @ self.coef_.T + self.intercept_)
        rating = np.clip(E @ self.ridge_coef_ + self.ridge_intercept_, -self.rating_scale_, self.rating_scale_)
        return proba, rating / self.rating_scale_

    def predict_proba(self, X) -> np.ndarray:
        """P(negative, neutral, positive); uniform for texts that cannot be embedded."""
        self._check()
        prepared, ok, E = self._embed(X)
        out = np.full((len(prepared), 3), 1 / 3)
        if ok.any():
            out[ok] = self._heads(E)[0]
        return out

    def predict(self, X) -> np.ndarray:
        """The most probable class."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_rating(self, X) -> np.ndarray:
        """Predicted mean human rating rescaled to [-1, 1] (the ``score`` column)."""
        self._check()
        prepared, ok, E = self._embed(X)
        out = np.zeros(len(prepared))
        if ok.any():
            out[ok] = self._heads(E)[1]
        return out

    def classify(self, X):
        """Standard output rows; evidence gives the class probabilities."""
        self._check()
        prepared, ok, E = self._embed(X)
        n = len(prepared)
        labels = np.full(n, UNCLASSIFIABLE, dtype=object)
        score, conf = np.zeros(n), np.zeros(n)
        evidence: list[dict] = [{"reason": p.reason or "no words"} for p in prepared]
        if ok.any():
            proba, rating = self._heads(E)
            k = np.argmax(proba, axis=1)
            idx = np.flatnonzero(ok)
            labels[idx] = self.classes_[k]
            conf[idx] = proba[np.arange(len(k)), k]
            score[idx] = rating
            for j, i in enumerate(idx):
                ev = {"proba": dict(zip(SENTIMENT_CLASSES, np.round(proba[j], 4).tolist()))}
                if prepared[i].notes:
                    ev["notes"] = list(prepared[i].notes)
                evidence[i] = ev
        return make_rows(labels, score, conf, evidence, self.method, self.model_version_)

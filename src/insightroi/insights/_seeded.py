"""Topics seeded by the taxonomy: every text scored against every topic in embedding space.

Two modes in one estimator, so a program moves from the first to the second as its owners label:

* **few-shot** (``fit()`` with no labels): each topic's ``"name: description"`` and its examples
  are embedded with the packaged MiniLM. A text's score for a topic mixes its cosine to the topic
  prototype with the mean of its ``k`` nearest seeds, plus a small bonus when
  one of the topic's keywords appears un-negated (word boundaries, phrases; the matcher of
  :class:`~insightroi.insights.TopicClassifier`). The keyword is one signal, never the decision:
  "The Shipping News" does not become a shipping delay unless the text also *reads* like one.
  The prototype mixes the name-and-description vector with the mean of the example vectors; how
  much the name counts is chosen per taxonomy by leave-one-out over the seed examples, because it
  differs by data: five long, rambling complaints describe their product worse than its name does,
  while five short banking queries pin an intent down better than its name.
* **owner labels** (``fit(texts, labels)``): a multinomial logistic head on the embeddings
  (the seeds are added as training rows so a topic nobody labelled yet still exists), with
  cross-validated figures in ``validation_``.

Abstention into ``"other"`` is calibrated on training data only: the threshold is the score below
which at most ``max_other`` of the in-taxonomy training texts fall (leave-one-out over the seeds,
or cross-validated over the labels); when the labels include ``"other"`` rows the threshold is the
one that maximises macro-F1 over the cross-validated predictions instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from insightroi.insights._base import UNCLASSIFIABLE, as_text_list, make_rows, model_version, prepare_texts
from insightroi.insights._embed import get_encoder
from insightroi.insights._topic import OTHER, TopicClassifier, _norm_tokens

__all__ = ["SeededTopics"]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    labels = sorted(set(y_true.tolist()))
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def _data_hash(texts, labels) -> str:
    h = hashlib.sha256()
    for t, y in zip(texts, labels):
        h.update(f"{t}\x1f{y}\x1e".encode())
    return h.hexdigest()[:12]


# Candidate shares of the name in a topic's prototype; fit() keeps the one with the best seed
# leave-one-out accuracy. The span covers both data sets studied for issue #18: on held-out TRAIN
# rows BANKING77 did best near 0.3-0.5 and CFPB near 0.6-0.8, so no single fixed value suits both.
NAME_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _choose_threshold(top: np.ndarray, pred: np.ndarray, truth: np.ndarray, max_other: float) -> float:
    """Abstention threshold from training predictions (never from the data being scored)."""
    if top.size == 0:
        return -np.inf
    if (truth == OTHER).any():
        grid = np.unique(np.quantile(top, np.linspace(0, 0.95, 96)))
        best = max(grid, key=lambda t: _macro_f1(truth, np.where(top >= t, pred, OTHER)))
        return float(best)
    # only in-taxonomy rows: give up at most max_other of them to "other"
    return float(np.quantile(top[truth != OTHER], max_other))


class SeededTopics(BaseEstimator, ClassifierMixin):
    """Multi-label topic model seeded by the program's taxonomy, with calibrated abstention.

    Parameters
    ----------
    taxonomy : sequence of insightroi.program.Topic
        Topics with ``description``, ``examples`` and ``keywords`` (any may be empty, not all).
    k_nearest : int
        Seeds per topic averaged for the nearest-example part of the score.
    prototype_weight : float
        Weight of the cosine to the topic prototype; ``1 - prototype_weight`` goes to the nearest seeds.
    name_weight : float or "auto"
        Share of the ``"name: description"`` vector in a topic's prototype, the rest going to the mean
        of its examples. ``"auto"`` picks it from ``NAME_WEIGHTS`` by leave-one-out accuracy over the
        seed examples (ties: the larger mean margin of the true topic over the best other one).
    keyword_weight : float
        Added to a topic's score (cosine units) when one of its keywords matches un-negated.
    max_other : float
        Share of in-taxonomy training texts allowed to fall below the abstention threshold.
    multi_margin : float
        Further topics are listed (``evidence.labels``) when within this margin of the best one
        (few-shot scores) and above the threshold.
    C : float
        Inverse L2 strength of the owner-label head.
    cv : int
        Folds for the owner-label head's validation figures and threshold.
    negation_window : int
        Tokens before a keyword searched for a negator.
    device : str
        Torch device of the packaged encoder.
    encoder : object or None
        Anything with ``encode(list[str]) -> (n, d) unit vectors``; None uses the packaged MiniLM.

    Attributes
    ----------
    threshold_ : float
        Abstention threshold on the few-shot score (or on the head's top probability).
    name_weight_ : float
        The name's share in the prototypes actually used.
    validation_ : dict
        Training-data figures: leave-one-out accuracy over the seed examples, and with labels the
        cross-validated accuracy / macro-F1 / "other" share of the head.
    model_version_ : str
    """

    method = "embedding"

    def __init__(
        self,
        taxonomy: Sequence = (),
        k_nearest: int = 3,
        prototype_weight: float = 0.5,
        name_weight: float | str = "auto",
        keyword_weight: float = 0.05,
        max_other: float = 0.05,
        multi_margin: float = 0.03,
        C: float = 10.0,
        cv: int = 3,
        negation_window: int = 3,
        device: str = "cpu",
        encoder=None,
    ):
        self.taxonomy = taxonomy
        self.k_nearest = k_nearest
        self.prototype_weight = prototype_weight
        self.name_weight = name_weight
        self.keyword_weight = keyword_weight
        self.max_other = max_other
        self.multi_margin = multi_margin
        self.C = C
        self.cv = cv
        self.negation_window = negation_window
        self.device = device
        self.encoder = encoder

    # -- fitting -------------------------------------------------------------------------------
    def _enc(self):
        return self.encoder if self.encoder is not None else get_encoder(self.device)

    def fit(self, X=None, y=None):
        """Embed the seeds, calibrate abstention; with labels ``y`` also train the owner head.

        Parameters
        ----------
        X : sequence of str, optional
            Owner-labelled texts.
        y : sequence of str, optional
            Their topics (names from the taxonomy, or ``"other"``).

        Returns
        -------
        SeededTopics
        """
        if not self.taxonomy:
            raise ValueError("SeededTopics needs a non-empty taxonomy")
        self.topics_ = [t.topic for t in self.taxonomy]
        self.owners_ = {t.topic: t.owner for t in self.taxonomy}
        self.classes_ = np.array(self.topics_ + [OTHER], dtype=object)
        phrases, owner, is_example = [], [], []
        for j, t in enumerate(self.taxonomy):
            name = t.topic.replace("_", " ")
            head = f"{name}: {t.description}" if t.description else name
            for ph, ex in [(head, False)] + [(e, True) for e in t.examples]:
                phrases.append(ph)
                owner.append(j)
                is_example.append(ex)
        self.seed_phrases_ = phrases
        self.seed_topic_ = np.array(owner)
        self.seed_is_example_ = np.array(is_example)
        self.seed_emb_ = np.asarray(self._enc().encode(phrases), dtype=np.float32)
        self._cols = [np.flatnonzero(self.seed_topic_ == j) for j in range(len(self.topics_))]
        self.rules_ = TopicClassifier(self.taxonomy, method="rules", negation_window=self.negation_window).fit()
        self.has_keywords_ = any(self.rules_.keywords_)

        if self.name_weight == "auto":
            grid = NAME_WEIGHTS
        elif isinstance(self.name_weight, (int, float)) and 0 <= self.name_weight <= 1:
            grid = (float(self.name_weight),)
        else:
            raise ValueError(f"name_weight must be 'auto' or a number in [0, 1], not {self.name_weight!r}")
        runs = {w: self._leave_one_out(w) for w in grid}
        table = {w: (float(np.mean(r[1] == r[2])) if r[2].size else 0.0, r[3]) for w, r in runs.items()}
        self.name_weight_ = max(grid, key=lambda w: table[w])
        self.proto_ = self._prototypes(self.name_weight_)
        top, pred, truth, _ = runs[self.name_weight_]
        self.threshold_ = _choose_threshold(top, pred, truth, self.max_other)
        self._fit_confidence(top, pred == truth)
        self.validation_ = {
            "seed_examples": int(truth.size),
            "seed_loo_accuracy": float(np.mean(pred == truth)) if truth.size else None,
            "name_weight": self.name_weight_,
            "seed_loo_accuracy_by_name_weight": {w: round(a, 4) for w, (a, _) in table.items()},
            "threshold": self.threshold_,
        }
        self.head_ = None
        data_tag = None
        if X is not None and y is not None:
            data_tag = self._fit_head(as_text_list(X), np.asarray(y, dtype=object))
        self.model_version_ = model_version(
            "topic-seeded" + ("-head" if self.head_ is not None else ""),
            taxonomy=[(t.topic, list(t.keywords), list(t.examples), t.description) for t in self.taxonomy],
            k=self.k_nearest, w=self.prototype_weight, name_w=self.name_weight_, kw=self.keyword_weight,
            max_other=self.max_other, margin=self.multi_margin, C=self.C, window=self.negation_window,
            threshold=round(self.threshold_, 6), data=data_tag,
        )
        return self

    def _prototype(self, j: int, name_weight: float, drop: int = -1) -> np.ndarray:
        c = self._cols[j]
        name = _unit(self.seed_emb_[c[~self.seed_is_example_[c]]].mean(axis=0))
        ex = c[self.seed_is_example_[c] & (c != drop)]
        if ex.size == 0:
            return name
        return _unit(name_weight * name + (1 - name_weight) * _unit(self.seed_emb_[ex].mean(axis=0)))

    def _prototypes(self, name_weight: float) -> np.ndarray:
        """(k, d) unit prototypes: the name vector and the example mean, mixed by ``name_weight``."""
        return np.stack([self._prototype(j, name_weight) for j in range(len(self.topics_))]).astype(np.float32)

    def _leave_one_out(self, name_weight: float):
        """Each seed example scored against the taxonomy with itself removed.

        Returns the top scores, predicted and true topics, and the mean margin of the true topic
        over the best other one (the tie-breaker between name weights).
        """
        ex = np.flatnonzero(self.seed_is_example_)
        if ex.size == 0:
            return np.zeros(0), np.zeros(0, dtype=object), np.zeros(0, dtype=object), 0.0
        E = self.seed_emb_[ex]
        S = E @ self.seed_emb_.T
        S[np.arange(ex.size), ex] = -np.inf
        P = E @ self._prototypes(name_weight).T
        for r, i in enumerate(ex):
            own = self.seed_topic_[i]
            P[r, own] = self._prototype(own, name_weight, drop=i) @ E[r]
        scores = self._combine(S, P, [self.seed_phrases_[i] for i in ex])
        k = np.argmax(scores, axis=1)
        topics = np.array(self.topics_, dtype=object)
        own = self.seed_topic_[ex]
        rows = np.arange(ex.size)
        top, true = scores[rows, k], scores[rows, own]
        scores[rows, own] = -np.inf
        margin = float(np.mean(true - scores.max(axis=1))) if len(self.topics_) > 1 else 0.0
        return top, topics[k], topics[own], margin

    def _fit_confidence(self, top: np.ndarray, correct: np.ndarray) -> None:
        # Platt (1999): P(top topic right | score); falls back to a flat rate when one class is missing
        self.conf_coef_ = None
        self.conf_rate_ = float(correct.mean()) if correct.size else 0.5
        if correct.size >= 10 and 0 < correct.sum() < correct.size:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1.0).fit(top[:, None], correct)
            self.conf_coef_ = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def _confidence(self, top: np.ndarray) -> np.ndarray:
        if self.conf_coef_ is None:
            return np.full(top.shape, self.conf_rate_)
        a, b = self.conf_coef_
        return 1 / (1 + np.exp(-(a * top + b)))

    def _fit_head(self, texts: list[str], y: np.ndarray) -> str:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        known = set(self.topics_) | {OTHER}
        unknown = sorted(set(y.tolist()) - known)
        if unknown:
            raise ValueError(f"labels not in the taxonomy (add the topics first): {unknown[:10]}")
        prepared = prepare_texts(texts)
        ok = np.array([p.text is not None and p.has_words for p in prepared])
        texts_ok = [p.text for p, k in zip(prepared, ok) if k]
        y = y[ok]
        E = np.asarray(self._enc().encode(texts_ok), dtype=np.float32)
        seed_X = self.seed_emb_
        seed_y = np.array(self.topics_, dtype=object)[self.seed_topic_]

        def train(Xl, yl):
            Xa = np.vstack([Xl, seed_X])
            ya = np.concatenate([yl, seed_y])
            return LogisticRegression(C=self.C, max_iter=300).fit(Xa, ya)

        # cross-validated predictions give the threshold and the figures; the seeds stay in every fold
        folds = min(self.cv, int(min(np.unique(y, return_counts=True)[1].min(), self.cv)))
        top = np.zeros(len(y))
        pred = np.empty(len(y), dtype=object)
        if folds >= 2:
            for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(E, y):
                m = train(E[tr], y[tr])
                pr = m.predict_proba(E[te])
                k = np.argmax(pr, axis=1)
                top[te], pred[te] = pr[np.arange(len(te)), k], m.classes_[k]
            self.head_threshold_ = _choose_threshold(top, pred, y, self.max_other)
            final = np.where(top >= self.head_threshold_, pred, OTHER)
            final = np.where(pred == OTHER, OTHER, final)
            inside = y != OTHER
            self.validation_.update({
                "labels": int(len(y)), "cv_folds": folds,
                "cv_accuracy": float(np.mean(final == y)),
                "cv_macro_f1": _macro_f1(y, final),
                "cv_other_share": float(np.mean(final == OTHER)),
                "cv_accuracy_in_taxonomy": float(np.mean(final[inside] == y[inside])) if inside.any() else None,
                "head_threshold": self.head_threshold_,
            })
            self._fit_confidence(top, pred == y)
        else:
            self.head_threshold_ = 0.0
            self.validation_.update({"labels": int(len(y)), "cv_folds": 0,
                                     "note": "too few labels per topic to cross-validate"})
        self.head_ = train(E, y)
        return f"owner labels n={len(y)} sha={_data_hash(texts_ok, y)}"

    # -- scoring --------------------------------------------------------------------------------
    def _combine(self, S: np.ndarray, P: np.ndarray, texts: list[str]) -> np.ndarray:
        n, k = len(texts), len(self.topics_)
        near = np.empty((n, k), dtype=np.float32)
        for j, c in enumerate(self._cols):
            kk = min(self.k_nearest, c.size)
            sub = S[:, c]
            # mean of the kk largest; a removed seed (-inf) must not count
            part = -np.partition(-sub, kk - 1, axis=1)[:, :kk] if kk < c.size else sub
            finite = np.isfinite(part)
            near[:, j] = np.where(finite, part, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
        w = self.prototype_weight
        scores = w * P + (1 - w) * near
        if self.has_keywords_ and self.keyword_weight:
            counts = self.rules_._match_counts([_norm_tokens(t) for t in texts])[0]
            scores = scores + self.keyword_weight * (counts > 0)
        return scores

    def _check(self):
        if not hasattr(self, "topics_"):
            self.fit()

    def _score_texts(self, texts: list[str]):
        E = np.asarray(self._enc().encode(texts), dtype=np.float32) if texts else np.zeros((0, self.seed_emb_.shape[1]), np.float32)
        S = E @ self.seed_emb_.T
        return E, S, self._combine(S, E @ self.proto_.T, texts)

    def decision_function(self, X) -> np.ndarray:
        """(n, k) per-topic scores: few-shot scores (cosine units), or head probabilities when trained."""
        self._check()
        texts = [p.text if p.text is not None and p.has_words else "" for p in prepare_texts(as_text_list(X))]
        E, _, scores = self._score_texts(texts)
        if self.head_ is None:
            return scores
        return self._head_proba(E)

    def _head_proba(self, E: np.ndarray) -> np.ndarray:
        pr = self.head_.predict_proba(E)
        out = np.zeros((len(E), len(self.topics_)))
        for c, name in enumerate(self.head_.classes_):
            if name != OTHER:
                out[:, self.topics_.index(name)] = pr[:, c]
        return out

    def predict(self, X) -> np.ndarray:
        """Best topic per text, or ``"other"`` below the abstention threshold."""
        return self.classify(X)["label"].to_numpy()

    def predict_multilabel(self, X) -> list[list[str]]:
        """Every topic assigned to each text (possibly none)."""
        import json

        return [json.loads(e).get("labels", []) for e in self.classify(X)["evidence"]]

    def classify(self, X):
        """Standard output rows (label, score, confidence, evidence, method, model_version).

        ``score`` is the best topic's score (cosine units few-shot, probability with the head);
        ``confidence`` is the calibrated probability that the best topic is right. Evidence:
        ``labels`` (all assigned topics), ``scores`` (the five best), matched and negated
        keywords, the nearest seed phrase per assigned topic, the threshold and the mode.
        """
        self._check()
        prepared = prepare_texts(as_text_list(X))
        n = len(prepared)
        ok = [i for i, p in enumerate(prepared) if p.text is not None and p.has_words]
        labels = np.full(n, UNCLASSIFIABLE, dtype=object)
        score, conf = np.zeros(n), np.zeros(n)
        evidence: list[dict] = [{"reason": p.reason or "no words (emoji or symbols only)"} for p in prepared]
        if not ok:
            return make_rows(labels, score, conf, evidence, self.method, self.model_version_)
        texts = [prepared[i].text for i in ok]
        E, S, few = self._score_texts(texts)
        if self.head_ is not None:
            R = self._head_proba(E)
            thr, margin = self.head_threshold_, None
            head_other = self.head_.predict_proba(E)[:, list(self.head_.classes_).index(OTHER)] if OTHER in self.head_.classes_ else np.zeros(len(E))
        else:
            R, thr, margin, head_other = few, self.threshold_, self.multi_margin, np.zeros(len(E))
        kw_matched, kw_negated = (
            self.rules_._match_counts([_norm_tokens(t) for t in texts])[1:] if self.has_keywords_ else (None, None)
        )
        best = R.max(axis=1)
        c_all = self._confidence(best)
        for r, i in enumerate(ok):
            row = R[r]
            order = np.argsort(-row)
            top = row[order[0]]
            if top >= thr and top > head_other[r]:
                floor = max(thr, top - margin) if margin is not None else max(thr, 0.5 * top)
                assigned = [self.topics_[j] for j in order[:5] if row[j] >= floor]
            else:
                assigned = []
            ev: dict = {"labels": assigned, "scores": {self.topics_[j]: round(float(row[j]), 4) for j in order[:5]},
                        "threshold": round(float(thr), 4), "mode": "owner_head" if self.head_ is not None else "few_shot"}
            labels[i] = assigned[0] if assigned else OTHER
            score[i] = float(top)
            conf[i] = float(c_all[r]) if assigned else float(1 - c_all[r])
            if kw_matched is not None:
                kws = {self.topics_[j]: v for j, v in sorted(kw_matched[r].items())}
                if kws:
                    ev["keywords"] = kws
                if kw_negated[r]:
                    ev["negated_keywords"] = kw_negated[r]
            near = {}
            for t in assigned or [self.topics_[order[0]]]:
                c = self._cols[self.topics_.index(t)]
                m = c[np.argmax(S[r, c])]
                near[t] = [self.seed_phrases_[m], round(float(S[r, m]), 3)]
            ev["nearest_seed"] = near
            if prepared[i].notes:
                ev["notes"] = list(prepared[i].notes)
            evidence[i] = ev
        return make_rows(labels, score, conf, evidence, self.method, self.model_version_)

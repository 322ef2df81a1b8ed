"""Topic classification into the program's taxonomy: keyword rules, embedding similarity, both.

Multi-label: every topic whose probability clears ``threshold`` is kept (``evidence.labels``);
the row's ``label`` is the most probable one, or ``"other"`` when none clears the threshold, so
new themes surface instead of being forced into old categories.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from insightroi.errors import check_option
from insightroi.insights._base import UNCLASSIFIABLE, as_text_list, make_rows, model_version, prepare_texts
from insightroi.insights._embed import get_encoder
from insightroi.program import Topic

__all__ = ["TopicClassifier", "OTHER", "NEGATION_TOLERANT"]

OTHER = "other"
TOPIC_METHODS = ("rules", "embedding", "combined")
_NEGATORS = frozenset(
    "not no never without isnt wasnt arent werent dont doesnt didnt cant couldnt wont wouldnt hardly "
    "neither nor shouldnt havent hasnt hadnt aint".split()
)
# Aspect words whose negation still names the theme ("doesn't fit", "not worth it", "won't charge");
# evaluative words ("not late", "not happy", "not broken") are cancelled by a negation instead.
NEGATION_TOLERANT = frozenset(
    "fit size sizing worth value charge charging power battery work working support agent hold "
    "delivery shipping tracking packaging price cost response refund request arrived turn".split()
)
_TOKEN = re.compile(r"[a-z0-9']+")


def _norm_tokens(text: str) -> list[str]:
    return [t.replace("'", "").replace("\u2019", "") for t in _TOKEN.findall(text.lower().replace("\u2019", "'"))]


class TopicClassifier(BaseEstimator, ClassifierMixin):
    """Multi-label topic classifier over a taxonomy of :class:`insightroi.program.Topic`.

    ``rules``: word-boundary keyword/phrase matches (the last word may carry -s/-es/-ed/-ing),
    ignoring a match when one of the three
    preceding tokens negates it (NegEx-style window; Chapman et al. 2001), except for aspect words
    in :data:`NEGATION_TOLERANT`. Probability from the number of distinct matched keywords,
    ``1 - (1 - p1)^m``. ``embedding``: cosine similarity of the MiniLM embedding to each topic's
    example phrases (and "topic: description"), mapped to a probability with a logistic curve.
    ``combined``: noisy-or of the two. ``fit(X, y)`` with single labels recalibrates the per-method
    curves on labelled data (Platt 1999); without data the defaults below apply.

    Parameters
    ----------
    taxonomy : sequence of Topic
    method : {"rules", "embedding", "combined"}
    threshold : float
        Minimum probability for a topic to be assigned (the program's ``monitoring.low_confidence``).
    p_single_match : float
        Probability of the topic given one non-negated keyword match.
    sim_center, sim_scale : float
        Logistic map of the best cosine similarity: ``p = 1 / (1 + exp(-scale (sim - center)))``.
    negation_window : int
    device : str
    """

    def __init__(
        self,
        taxonomy: Sequence[Topic] = (),
        method: str = "rules",
        threshold: float = 0.5,
        p_single_match: float = 0.7,
        sim_center: float = 0.5,
        sim_scale: float = 14.0,
        negation_window: int = 3,
        device: str = "cpu",
    ):
        self.taxonomy = taxonomy
        self.method = method
        self.threshold = threshold
        self.p_single_match = p_single_match
        self.sim_center = sim_center
        self.sim_scale = sim_scale
        self.negation_window = negation_window
        self.device = device

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Compile the rules (and embed the example phrases); recalibrate if labels are given."""
        check_option("method", self.method, TOPIC_METHODS)
        if not self.taxonomy:
            raise ValueError("TopicClassifier needs a non-empty taxonomy")
        self.topics_ = [t.topic for t in self.taxonomy]
        self.owners_ = {t.topic: t.owner for t in self.taxonomy}
        self.classes_ = np.array(self.topics_ + [OTHER], dtype=object)
        self.keywords_ = [[_norm_tokens(k) for k in t.keywords if _norm_tokens(k)] for t in self.taxonomy]
        self._kw_index = None
        self.rule_coef_ = (np.log(1 - self.p_single_match),)
        self.sim_params_ = (self.sim_center, self.sim_scale)
        if self.method != "rules":
            self.encoder_ = get_encoder(self.device)
            phrases, owner = [], []
            for k, t in enumerate(self.taxonomy):
                for ph in list(t.examples) + ([f"{t.topic.replace('_', ' ')}: {t.description}"] if t.description else []):
                    phrases.append(ph)
                    owner.append(k)
                if not t.examples:
                    phrases.append(t.topic.replace("_", " ") + " " + " ".join(t.keywords[:5]))
                    owner.append(k)
            self.example_phrases_ = phrases
            self.example_topic_ = np.array(owner)
            self.example_emb_ = self.encoder_.encode(phrases)
        self.calibrated_on_ = None
        if X is not None and y is not None:
            self._calibrate(as_text_list(X), np.asarray(y, dtype=object))
        self.model_version_ = model_version(
            f"topic-{self.method}",
            taxonomy=[(t.topic, list(t.keywords), list(t.examples), t.description) for t in self.taxonomy],
            threshold=self.threshold,
            rule=self.rule_coef_,
            sim=self.sim_params_,
            window=self.negation_window,
            calibrated_on=self.calibrated_on_,
        )
        return self

    def _calibrate(self, texts: list[str], y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        prepared = prepare_texts(texts)
        ok = np.array([p.text is not None for p in prepared])
        tok = [_norm_tokens(p.text) if p.text else [] for p in prepared]
        Y = np.array([[lab == t for t in self.topics_] for lab in y])[ok]
        if self.method != "embedding":
            m = self._match_counts(tok)[0][ok].ravel()
            # keep the 1-(1-p1)^m form; p1 = share of single-keyword matches that are right
            hit1 = Y.ravel()[m == 1]
            if hit1.size >= 10:
                self.rule_coef_ = (float(np.log(1 - np.clip(hit1.mean(), 0.05, 0.99))),)
        if self.method != "rules":
            sims = self._similarities([p.text for p, k in zip(prepared, ok) if k]).ravel()
            lr = LogisticRegression(C=100.0).fit(sims[:, None], Y.ravel())
            scale = float(lr.coef_[0, 0])
            self.sim_params_ = (float(-lr.intercept_[0] / scale), scale)
        self.calibrated_on_ = f"n={int(ok.sum())}"

    # -- scoring --------------------------------------------------------------------------------
    def _match_counts(self, token_lists: list[list[str]]):
        n, k = len(token_lists), len(self.topics_)
        counts = np.zeros((n, k))
        matched: list[dict[int, list[str]]] = [{} for _ in range(n)]
        negated: list[list[str]] = [[] for _ in range(n)]
        w = self.negation_window
        index = self._first_token_index()
        for i, toks in enumerate(token_lists):
            if not toks:
                continue
            seen: set[tuple[int, str]] = set()
            for s, tok in enumerate(toks):
                for j, kw in index.get(tok, ()):
                    L = len(kw)
                    if toks[s : s + L] != kw:
                        continue
                    phrase = " ".join(kw)
                    if (j, phrase) in seen:
                        continue
                    window = toks[max(0, s - w) : s]
                    if any(t in _NEGATORS for t in window) and not (set(kw) & NEGATION_TOLERANT):
                        negated[i].append(phrase)
                        continue
                    seen.add((j, phrase))
                    matched[i].setdefault(j, []).append(phrase)
                    counts[i, j] += 1
        return counts, matched, negated

    def _first_token_index(self) -> dict[str, list[tuple[int, list[str]]]]:
        idx = getattr(self, "_kw_index", None)
        if idx is None:
            idx = {}
            for j, kws in enumerate(self.keywords_):
                for kw in kws:
                    # light inflection of the last word ("malfunction" -> "malfunctions"),
                    # still whole-token matches
                    last = kw[-1]
                    forms = {last, last + "s", last + "es", last + "ed", last + "d", last + "ing"}
                    if last.endswith("e"):
                        forms.add(last[:-1] + "ing")
                    for form in forms:
                        variant = kw[:-1] + [form]
                        idx.setdefault(variant[0], []).append((j, variant))
            self._kw_index = idx
        return idx

    def _similarities(self, texts: list[str]) -> np.ndarray:
        E = self.encoder_.encode(texts)
        S = E @ self.example_emb_.T
        out = np.full((len(texts), len(self.topics_)), -1.0)
        nearest = np.zeros((len(texts), len(self.topics_)), dtype=int)
        for j in range(len(self.topics_)):
            cols = np.flatnonzero(self.example_topic_ == j)
            if cols.size:
                sub = S[:, cols]
                nearest[:, j] = cols[np.argmax(sub, axis=1)]
                out[:, j] = sub.max(axis=1)
        self._last_nearest = nearest
        return out

    def _probabilities(self, texts: list[str]):
        tok = [_norm_tokens(t) for t in texts]
        n, k = len(texts), len(self.topics_)
        p_rule = np.zeros((n, k))
        p_emb = np.zeros((n, k))
        info: dict = {}
        if self.method in ("rules", "combined"):
            counts, matched, negated = self._match_counts(tok)
            p_rule = 1 - np.exp(self.rule_coef_[0] * counts)
            info["matched"], info["negated"] = matched, negated
        if self.method in ("embedding", "combined"):
            sims = self._similarities(texts)
            c, s = self.sim_params_
            p_emb = 1 / (1 + np.exp(-s * (sims - c)))
            info["sims"] = sims
            info["nearest"] = self._last_nearest
        if self.method == "rules":
            P = p_rule
        elif self.method == "embedding":
            P = p_emb
        else:
            P = 1 - (1 - p_rule) * (1 - p_emb)
        return P, info

    def _check(self):
        if not hasattr(self, "topics_"):
            self.fit()

    def predict_proba(self, X) -> np.ndarray:
        """(n, k) per-topic probabilities (independent, multi-label; no "other" column)."""
        self._check()
        prepared = prepare_texts(as_text_list(X))
        texts = [p.text if (p.text is not None and p.has_words) else "" for p in prepared]
        return self._probabilities(texts)[0]

    def predict(self, X) -> np.ndarray:
        """Most probable topic, or "other" when none reaches ``threshold``."""
        P = self.predict_proba(X)
        top = np.argmax(P, axis=1) if P.size else np.zeros(0, dtype=int)
        best = P[np.arange(len(P)), top] if P.size else np.zeros(0)
        return np.where(best >= self.threshold, np.array(self.topics_, dtype=object)[top], OTHER)

    def predict_multilabel(self, X) -> list[list[str]]:
        """All topics at or above ``threshold`` for each text (possibly empty)."""
        P = self.predict_proba(X)
        return [[self.topics_[j] for j in np.argsort(-row) if row[j] >= self.threshold] for row in P]

    def classify(self, X):
        """Standard output rows. Evidence: labels (multi-label), matched / negated keywords,
        nearest example phrase per assigned topic, per-topic probabilities above 0.05."""
        self._check()
        prepared = prepare_texts(as_text_list(X))
        ok_idx = [i for i, p in enumerate(prepared) if p.text is not None and p.has_words]
        n = len(prepared)
        labels = np.full(n, UNCLASSIFIABLE, dtype=object)
        score, conf = np.zeros(n), np.zeros(n)
        evidence: list[dict] = [
            {"reason": p.reason or "no words (emoji or symbols only)"} for p in prepared
        ]
        if ok_idx:
            texts = [prepared[i].text for i in ok_idx]
            P, info = self._probabilities(texts)
            topics = np.array(self.topics_, dtype=object)
            for r, i in enumerate(ok_idx):
                row = P[r]
                order = np.argsort(-row)
                assigned = [self.topics_[j] for j in order if row[j] >= self.threshold]
                ev: dict = {"labels": assigned}
                if assigned:
                    labels[i] = assigned[0]
                    conf[i] = row[order[0]]
                    score[i] = row[order[0]]
                else:
                    labels[i] = OTHER
                    # P(no topic applies) under independence of the per-topic probabilities
                    conf[i] = float(np.prod(1 - row))
                    score[i] = float(row.max()) if row.size else 0.0
                ev["proba"] = {str(topics[j]): round(float(row[j]), 4) for j in order if row[j] >= 0.05}
                if "matched" in info:
                    kws = {self.topics_[j]: v for j, v in sorted(info["matched"][r].items())}
                    if kws:
                        ev["keywords"] = kws
                    if info["negated"][r]:
                        ev["negated_keywords"] = info["negated"][r]
                if "sims" in info:
                    near = {}
                    for t in assigned or [self.topics_[order[0]]]:
                        j = self.topics_.index(t)
                        near[t] = [self.example_phrases_[info["nearest"][r, j]], round(float(info["sims"][r, j]), 3)]
                    ev["similarity"] = near
                if prepared[i].notes:
                    ev["notes"] = list(prepared[i].notes)
                evidence[i] = ev
        method = {"rules": "rules", "embedding": "embedding", "combined": "embedding"}[self.method]
        return make_rows(labels, score, conf, evidence, method, self.model_version_)

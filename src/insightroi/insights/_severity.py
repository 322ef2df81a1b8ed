"""Severity from topic, sentiment, rating and safety / money / legal keywords (transparent rules)."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from insightroi.insights._base import UNCLASSIFIABLE, make_rows, model_version

__all__ = ["SeverityRules", "SEVERITY_LEVELS"]

SEVERITY_LEVELS = ("low", "medium", "high", "critical")
_CRITICAL = re.compile(
    r"\b(injur\w*|hurt (?:me|my|him|her|us|them)|burn(?:s|ed|t|ing)?|fire|caught fire|smoke|smoking|sparks?|"
    r"electric(?:al)? shock|shocked me|electrocut\w*|explod\w*|exploded|melt(?:ed|ing)|choking|choke hazard|"
    r"hospital|emergency room|er visit|unsafe|dangerous|hazard\w*|lawyer|attorney|legal action|lawsuit|sue|suing|"
    r"recall|poison\w*|allergic reaction|rash)\b",
    re.I,
)
_ESCALATE = re.compile(
    r"\b(refund|money back|chargeback|charge back|dispute|cancel(?:led|ing)?|return(?:ing|ed)? it|"
    r"never (?:again|buying)|bbb|better business bureau|complaint|report(?:ing)? you)\b",
    re.I,
)


@lru_cache(maxsize=65536)
def _terms(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    t = text[:20000]
    crit = tuple(sorted({w.lower() for w in _CRITICAL.findall(t)}))
    esc = () if crit else tuple(sorted({w.lower() for w in _ESCALATE.findall(t)}))
    return crit, esc


class SeverityRules:
    """Rule-based severity (low < medium < high < critical).

    Start from the taxonomy severity of the item's topic ("other" = low); any safety or legal
    term (injury, fire, burn, shock, lawyer, lawsuit, recall, ...) makes it critical; money-back
    or escalation terms (refund, chargeback, cancel, ...) add one level; strongly negative
    sentiment (score <= -0.5) or a rating <= 1 adds one; positive sentiment removes one. Capped at
    high unless a safety/legal term matched. ``confidence`` is rule certainty, not a calibrated
    probability: 0.95 for a safety/legal match, else the topic confidence.
    """

    method = "rules"

    def __init__(self, taxonomy=(), negative_cut: float = -0.5):
        self.taxonomy = taxonomy
        self.negative_cut = negative_cut

    def fit(self, X=None, y=None):
        self.topic_severity_ = {t.topic: t.severity for t in self.taxonomy}
        self.model_version_ = model_version(
            "severity-rules",
            topics=sorted(self.topic_severity_.items()),
            cut=self.negative_cut,
            critical=_CRITICAL.pattern,
            escalate=_ESCALATE.pattern,
        )
        return self

    def classify(self, texts, topics, topic_conf, sentiment_scores, ratings=None):
        """Standard output rows for aligned arrays of text, topic label, topic confidence,
        sentiment score (-1..1) and optional rating (1..5, NaN when absent)."""
        if not hasattr(self, "topic_severity_"):
            self.fit()
        n = len(texts)
        ratings = np.full(n, np.nan) if ratings is None else np.asarray(ratings, dtype=float)
        labels, scores, conf, evidence = [], np.zeros(n), np.zeros(n), []
        for i in range(n):
            text = texts[i]
            topic = topics[i]
            if topic == UNCLASSIFIABLE or not isinstance(text, str):
                labels.append(UNCLASSIFIABLE)
                evidence.append({"reason": "topic unclassifiable"})
                continue
            base = self.topic_severity_.get(topic, "low")
            level = SEVERITY_LEVELS.index(base)
            reasons = [f"topic {topic}: {base}"]
            crit, esc = _terms(text)
            if crit:
                level = 3
                reasons.append("safety/legal terms: " + ", ".join(crit[:5]))
            else:
                if esc:
                    level += 1
                    reasons.append("escalation terms: " + ", ".join(esc[:5]))
                s = sentiment_scores[i]
                if s is not None and np.isfinite(s) and s <= self.negative_cut:
                    level += 1
                    reasons.append(f"strongly negative sentiment ({s:.2f})")
                elif s is not None and np.isfinite(s) and s >= 0.5:
                    level -= 1
                    reasons.append(f"positive sentiment ({s:.2f})")
                if np.isfinite(ratings[i]) and ratings[i] <= 1:
                    level += 1
                    reasons.append(f"rating {ratings[i]:g}")
                level = int(min(max(level, 0), 2))
            labels.append(SEVERITY_LEVELS[level])
            scores[i] = level / 3
            conf[i] = 0.95 if crit else float(topic_conf[i])
            evidence.append({"reasons": reasons})
        return make_rows(labels, scores, conf, evidence, self.method, self.model_version_)

"""A faster, score-identical re-implementation of VADER's ``polarity_scores``.

Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis
of Social Media Text. ICWSM-14. The lexicon, booster list, negations and constants are taken from
the installed ``vaderSentiment`` package (3.3.2, MIT licence); only the control flow is rewritten.

Why: the reference implementation lowercases every token list once per lexicon word and per
look-back step (O(n^2) string work per text) and rebuilds the emoji-free text character by
character. Here each text is tokenised and lowercased once, ASCII text skips the emoji pass, and
results are memoised by text (feedback repeats itself: templates, "great product!"). The scores
are the same to the last rounded digit; ``tests/insights/test_insights_sentiment.py`` checks that
on the 14,805 reference texts.
"""

from __future__ import annotations

import math
import string
from functools import lru_cache

from vaderSentiment import vaderSentiment as _vs

__all__ = ["VaderCore"]

_NEGATE = frozenset(_vs.NEGATE)
_BOOSTER = _vs.BOOSTER_DICT
_SPECIAL = _vs.SPECIAL_CASES
_N_SCALAR = _vs.N_SCALAR
_C_INCR = _vs.C_INCR
_PUNCT = string.punctuation


def _negated_word(w: str) -> bool:
    return w in _NEGATE or "n't" in w


def _strip(token: str) -> str:
    stripped = token.strip(_PUNCT)
    return token if len(stripped) <= 2 else stripped


class VaderCore:
    """Holds the VADER lexicons and scores texts; ``score(text)`` equals ``polarity_scores``.

    Parameters
    ----------
    cache_size : int
        How many distinct texts to memoise (0 disables the cache).
    """

    def __init__(self, cache_size: int = 65536):
        ref = _vs.SentimentIntensityAnalyzer()
        self.lexicon: dict[str, float] = ref.lexicon
        self.emojis: dict[str, str] = ref.emojis
        self.cache_size = cache_size
        self._cached = lru_cache(maxsize=cache_size)(self._score) if cache_size else self._score

    # The memo wraps a bound method, which pickle cannot carry; a copy (a classification worker
    # process) starts with an empty cache instead.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_cached"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cached = lru_cache(maxsize=self.cache_size)(self._score) if self.cache_size else self._score

    # -- public -------------------------------------------------------------------------------
    def score(self, text: str) -> tuple[float, float, float, float, tuple[tuple[str, float], ...]]:
        """(compound, pos, neu, neg, drivers): VADER's four scores plus the tokens that drove them.

        ``drivers`` lists (token, valence) for every token with non-zero valence, in text order.
        """
        return self._cached(text)

    # -- implementation -------------------------------------------------------------------------
    def _demoji(self, text: str) -> str:
        if text.isascii():
            return text.strip()
        emojis = self.emojis
        out: list[str] = []
        prev_space = True
        for ch in text:
            desc = emojis.get(ch)
            if desc is not None:
                if not prev_space:
                    out.append(" ")
                out.append(desc)
                prev_space = False
            else:
                out.append(ch)
                prev_space = ch == " "
        return "".join(out).strip()

    def _score(self, text: str):
        text = self._demoji(text)
        words = [_strip(w) for w in text.split()]
        n = len(words)
        if n == 0:
            return (0.0, 0.0, 0.0, 0.0, ())
        low = [w.lower() for w in words]
        lex = self.lexicon
        n_upper = sum(1 for w in words if w.isupper())
        is_cap_diff = 0 < n - n_upper < n
        sentiments = [0.0] * n
        for i in range(n):
            item_l = low[i]
            if item_l in _BOOSTER:
                continue
            if i < n - 1 and item_l == "kind" and low[i + 1] == "of":
                continue
            base = lex.get(item_l)
            if base is None:
                continue
            valence = base
            if item_l == "no" and i != n - 1 and low[i + 1] in lex:
                valence = 0.0
            if (i > 0 and low[i - 1] == "no") or (i > 1 and low[i - 2] == "no") or (
                i > 2 and low[i - 3] == "no" and low[i - 1] in ("or", "nor")
            ):
                valence = base * _N_SCALAR
            if is_cap_diff and words[i].isupper():
                valence = valence + _C_INCR if valence > 0 else valence - _C_INCR
            for start_i in range(3):
                j = i - (start_i + 1)
                if i > start_i and low[j] not in lex:
                    s = 0.0
                    b = _BOOSTER.get(low[j])
                    if b is not None:
                        s = -b if valence < 0 else b
                        if is_cap_diff and words[j].isupper():
                            s = s + _C_INCR if valence > 0 else s - _C_INCR
                    if start_i == 1 and s != 0:
                        s = s * 0.95
                    if start_i == 2 and s != 0:
                        s = s * 0.9
                    valence = valence + s
                    valence = self._negation(valence, low, start_i, i)
                    if start_i == 2:
                        valence = self._idioms(valence, low, i, n)
            # "least" check
            if i > 1 and low[i - 1] not in lex and low[i - 1] == "least":
                if low[i - 2] != "at" and low[i - 2] != "very":
                    valence = valence * _N_SCALAR
            elif i > 0 and low[i - 1] not in lex and low[i - 1] == "least":
                valence = valence * _N_SCALAR
            sentiments[i] = valence
        if "but" in low:
            sentiments = self._but(low.index("but"), sentiments)
        compound, pos, neu, neg = self._valence(sentiments, text)
        drivers = tuple((words[i], round(v, 3)) for i, v in enumerate(sentiments) if v != 0)
        return (compound, pos, neu, neg, drivers)

    @staticmethod
    def _negation(valence: float, low: list[str], start_i: int, i: int) -> float:
        if start_i == 0:
            if _negated_word(low[i - 1]):
                valence = valence * _N_SCALAR
        elif start_i == 1:
            if low[i - 2] == "never" and (low[i - 1] == "so" or low[i - 1] == "this"):
                valence = valence * 1.25
            elif low[i - 2] == "without" and low[i - 1] == "doubt":
                pass
            elif _negated_word(low[i - 2]):
                valence = valence * _N_SCALAR
        else:
            if (low[i - 3] == "never" and (low[i - 2] == "so" or low[i - 2] == "this")) or (
                low[i - 1] == "so" or low[i - 1] == "this"
            ):
                valence = valence * 1.25
            elif low[i - 3] == "without" and (low[i - 2] == "doubt" or low[i - 1] == "doubt"):
                pass
            elif _negated_word(low[i - 3]):
                valence = valence * _N_SCALAR
        return valence

    @staticmethod
    def _idioms(valence: float, low: list[str], i: int, n: int) -> float:
        onezero = f"{low[i - 1]} {low[i]}"
        twoonezero = f"{low[i - 2]} {low[i - 1]} {low[i]}"
        twoone = f"{low[i - 2]} {low[i - 1]}"
        threetwoone = f"{low[i - 3]} {low[i - 2]} {low[i - 1]}"
        threetwo = f"{low[i - 3]} {low[i - 2]}"
        for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
            if seq in _SPECIAL:
                valence = _SPECIAL[seq]
                break
        if n - 1 > i:
            zeroone = f"{low[i]} {low[i + 1]}"
            if zeroone in _SPECIAL:
                valence = _SPECIAL[zeroone]
        if n - 1 > i + 1:
            zeroonetwo = f"{low[i]} {low[i + 1]} {low[i + 2]}"
            if zeroonetwo in _SPECIAL:
                valence = _SPECIAL[zeroonetwo]
        for ngram in (threetwoone, threetwo, twoone):
            if ngram in _BOOSTER:
                valence = valence + _BOOSTER[ngram]
        return valence

    @staticmethod
    def _but(bi: int, sentiments: list[float]) -> list[float]:
        # Reproduces the reference's list.index() lookup exactly (it rescales the first entry
        # equal to each value, not the entry at each position).
        for sentiment in list(sentiments):
            si = sentiments.index(sentiment)
            if si < bi:
                sentiments[si] = sentiment * 0.5
            elif si > bi:
                sentiments[si] = sentiment * 1.5
        return sentiments

    @staticmethod
    def _valence(sentiments: list[float], text: str, extra_neutral: int = 0) -> tuple[float, float, float, float]:
        # extra_neutral: positions left out of ``sentiments`` because they score 0.0 (the fast
        # path passes only the lexicon hits); zeros change no sum and count as neutral.
        sum_s = float(sum(sentiments))
        ep = min(text.count("!"), 4) * 0.292
        qm_count = text.count("?")
        qm = 0.0
        if qm_count > 1:
            qm = qm_count * 0.18 if qm_count <= 3 else 0.96
        amp = ep + qm
        if sum_s > 0:
            sum_s += amp
        elif sum_s < 0:
            sum_s -= amp
        compound = sum_s / math.sqrt(sum_s * sum_s + 15)
        compound = max(-1.0, min(1.0, compound))
        pos_sum = neg_sum = 0.0
        neu_count = extra_neutral
        for s in sentiments:
            if s > 0:
                pos_sum += float(s) + 1
            if s < 0:
                neg_sum += float(s) - 1
            if s == 0:
                neu_count += 1
        if pos_sum > math.fabs(neg_sum):
            pos_sum += amp
        elif pos_sum < math.fabs(neg_sum):
            neg_sum -= amp
        total = pos_sum + math.fabs(neg_sum) + neu_count
        return (
            round(compound, 4),
            round(math.fabs(pos_sum / total), 3),
            round(math.fabs(neu_count / total), 3),
            round(math.fabs(neg_sum / total), 3),
        )

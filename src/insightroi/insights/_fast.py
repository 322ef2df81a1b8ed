"""The default lexicon stack (VADER + keyword topics + severity rules) in one pass per distinct text.

Why: the per-model path runs each model on its own -- each cleans and tokenises the text again
(three Python tokenisations, ~75 string objects for a 25-word text), VADER walks every token in
Python, severity's two case-insensitive regex alternations (~48 us a text, more than VADER) run
on every text, and severity and the JSON evidence run once per row. Here:

- distinct texts are split on white space once, in Arrow (C++), and the tokens mapped to ids with
  one hash look-up (``pc.index_in``); everything a model needs from a token (VADER's stripped
  lower-case form and lexicon / booster / negation entries, the letter runs of the language
  check, the topic tokeniser's runs, whether a severity term can start in it) is computed once
  per distinct token. No model's runs span white space, so a text's runs are its tokens' runs;
- VADER's rules run vectorised over the lexicon hits of the whole batch (numpy, with the same
  floating-point operations in the same order), only the rare idiom windows are scored one text
  at a time;
- the severity regexes only run on texts holding one of their first words, and the topic rules
  only on texts holding a keyword's first token;
- every column is built once per distinct text and expanded to rows with Arrow ``take``.

Outputs are identical to the per-model path (labels, scores, confidences and the evidence JSON,
byte for byte): ``tests/insights/test_fast_classify.py`` compares the two on the reference texts,
reshuffled documents and rule edge cases. Texts the fast path does not cover (non-ASCII, markup,
entities, no words, possibly non-English) go through the per-model path unchanged.
"""

from __future__ import annotations

from itertools import chain
from json.encoder import encode_basestring as _jstr
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from insightroi.insights._base import _EN_FUNCTION, _FOREIGN_FUNCTION, MAX_CHARS, UNCLASSIFIABLE
from insightroi.insights._sentiment import LexiconSentiment
from insightroi.insights._severity import _ESCALATE, SEVERITY_LEVELS, SeverityRules, _terms
from insightroi.insights._topic import _NEGATORS, NEGATION_TOLERANT, OTHER, TopicClassifier
from insightroi.insights._vader import _BOOSTER, _C_INCR, _N_SCALAR, _PUNCT, _SPECIAL, VaderCore, _strip
from insightroi.insights._vader import _NEGATE as _NEGATE_SET

__all__ = ["FastLexiconStack", "ROW_COLUMNS"]

ROW_COLUMNS = ("id", "feedback_id", "task", "label", "score", "confidence", "evidence", "method", "model_version")

_ASCII = [chr(c) for c in range(128)]
# ASCII letters survive, everything else becomes a separator: the letter runs of _base._WORD.
_LETTERS = str.maketrans({c: " " for c in _ASCII if not ("a" <= c <= "z")})
# The topic tokeniser's runs ([a-z0-9']+ on lower-case text).
_TOPIC_RUNS = str.maketrans({c: " " for c in _ASCII if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "'")})
_NO_APOS = str.maketrans({"'": None})
# \w runs of lower-case ASCII text: where a \b-anchored severity term can start.
_WORD_RUNS = str.maketrans({c: " " for c in _ASCII if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "_")})

# Every match of severity's _CRITICAL starts at the start of a \w run (the pattern opens with \b
# and each alternative with a letter), and that run is one of these words or starts with one of
# these prefixes; likewise _ESCALATE. A text with none of them cannot match, so the regex (tens
# of microseconds per text) is skipped. tests/insights/test_fast_classify.py checks every
# alternative of both patterns against these lists.
_CRIT_WORDS = frozenset(
    "hurt burn burns burned burnt burning fire caught smoke smoking spark sparks electric electrical shocked "
    "melted melting choking choke hospital emergency er unsafe dangerous lawyer attorney legal lawsuit sue suing "
    "recall allergic rash exploded".split()
)
_CRIT_PREFIXES = ("injur", "electrocut", "explod", "hazard", "poison")
_ESC_WORDS = frozenset(
    "refund money chargeback charge dispute cancel cancelled canceling return returning returned never bbb "
    "better complaint report reporting".split()
)


def _special_words() -> frozenset:
    # Words of VADER's multi-word idioms and boosters: a rule window with none of them cannot
    # change the valence in VaderCore._idioms.
    words = set()
    for key in list(_SPECIAL) + list(_BOOSTER):
        if " " in key:
            words.update(key.split())
    return frozenset(words)


_IDIOM_WORDS = _special_words()


class FastLexiconStack:
    """Score-identical, batch form of ``InsightModels.classify_frame`` for the lexicon models.

    Parameters
    ----------
    sentiment : LexiconSentiment
        Fitted.
    topic : TopicClassifier
        Fitted, ``method="rules"``.
    severity : SeverityRules
        Fitted.
    severity_version : str
        The model version the severity rows carry (it includes the upstream versions).
    token_memo : int
        Per-token memo entries kept before the memo is cleared (bounds memory on open vocabularies).
    """

    def __init__(self, sentiment: LexiconSentiment, topic: TopicClassifier, severity: SeverityRules,
                 severity_version: str, token_memo: int = 200_000):
        self.sentiment = sentiment
        self.topic = topic
        self.severity = severity
        self.severity_version = severity_version
        self.token_memo = token_memo
        core: VaderCore = sentiment.core_
        self._core = core
        self._lex = core.lexicon
        # Lexicon words VADER scores (boosters never carry valence of their own there).
        self._hitlex = {w: v for w, v in core.lexicon.items() if w not in _BOOSTER}
        self._low: dict[str, str] = {}
        self._up: dict[str, bool] = {}
        self._kw_index = topic._first_token_index()
        self._kw_first = frozenset(self._kw_index)
        # The index's entries with what _match_counts derives from each, computed once.
        self._kw_entries = {
            first: tuple((j, kw, len(kw), " ".join(kw), bool(set(kw) & NEGATION_TOLERANT)) for j, kw in ents)
            for first, ents in self._kw_index.items()
        }
        self._tokens = _TokenTable(core.lexicon, self._kw_first)
        self._topic_method = {"rules": "rules", "embedding": "embedding", "combined": "embedding"}[topic.method]

    @staticmethod
    def supports(sentiment, topic, severity) -> bool:
        """Whether these models are the ones this fast path reproduces exactly."""
        return (
            type(sentiment) is LexiconSentiment and hasattr(sentiment, "core_")
            and type(sentiment.core_) is VaderCore
            and type(topic) is TopicClassifier and topic.method == "rules" and hasattr(topic, "topics_")
            and type(severity) is SeverityRules and hasattr(severity, "topic_severity_")
        )

    # ---- per-token memo ------------------------------------------------------------------------
    def _learn(self, toks: list[str]) -> None:
        if len(self._low) > self.token_memo:
            self._low.clear()
            self._up.clear()
        for t in toks:
            if t not in self._low:
                w = _strip(t)
                self._low[t] = w.lower()
                self._up[t] = w.isupper()

    # ---- VADER ------------------------------------------------------------------------------------
    def vader(self, text: str):
        """``VaderCore.score(text)`` computed from memoised tokens: (compound, pos, neu, neg, drivers)."""
        text = text.strip() if text.isascii() else self._core._demoji(text)
        toks = text.split()
        n = len(toks)
        if n == 0:
            return (0.0, 0.0, 0.0, 0.0, ())
        try:
            low = list(map(self._low.__getitem__, toks))
        except KeyError:
            self._learn(toks)
            low = list(map(self._low.__getitem__, toks))
        hitlex = self._hitlex
        if hitlex.keys().isdisjoint(low):
            return (0.0, 0.0, 1.0, 0.0, ())
        lex = self._lex
        up = self._up
        if text.islower():
            is_cap_diff = False
        else:
            n_upper = sum(map(up.__getitem__, toks))
            is_cap_diff = 0 < n - n_upper < n
        hits: list[int] = []
        vals: list[float] = []
        for i, item_l in enumerate(low):
            base = hitlex.get(item_l)
            if base is None:
                continue
            if i < n - 1 and item_l == "kind" and low[i + 1] == "of":
                continue
            valence = base
            if item_l == "no" and i != n - 1 and low[i + 1] in lex:
                valence = 0.0
            if (i > 0 and low[i - 1] == "no") or (i > 1 and low[i - 2] == "no") or (
                i > 2 and low[i - 3] == "no" and low[i - 1] in ("or", "nor")
            ):
                valence = base * _N_SCALAR
            if is_cap_diff and up[toks[i]]:
                valence = valence + _C_INCR if valence > 0 else valence - _C_INCR
            idioms = i > 2 and not _IDIOM_WORDS.isdisjoint(low[i - 3 : i + 3])
            for start_i in range(3):
                j = i - (start_i + 1)
                if i > start_i and low[j] not in lex:
                    s = 0.0
                    b = _BOOSTER.get(low[j])
                    if b is not None:
                        s = -b if valence < 0 else b
                        if is_cap_diff and up[toks[j]]:
                            s = s + _C_INCR if valence > 0 else s - _C_INCR
                    if start_i == 1 and s != 0:
                        s = s * 0.95
                    if start_i == 2 and s != 0:
                        s = s * 0.9
                    valence = valence + s
                    valence = _negation(valence, low, start_i, i)
                    if start_i == 2 and idioms:
                        valence = VaderCore._idioms(valence, low, i, n)
            if i > 1 and low[i - 1] not in lex and low[i - 1] == "least":
                if low[i - 2] != "at" and low[i - 2] != "very":
                    valence = valence * _N_SCALAR
            elif i > 0 and low[i - 1] not in lex and low[i - 1] == "least":
                valence = valence * _N_SCALAR
            hits.append(i)
            vals.append(valence)
        if "but" in low and hits:
            full = [0.0] * n
            for i, v in zip(hits, vals):
                full[i] = v
            full = VaderCore._but(low.index("but"), full)
            vals = [full[i] for i in hits]
        compound, pos, neu, neg = _valence(vals, n, text)
        drivers = tuple((_strip(toks[i]), round(v, 3)) for i, v in zip(hits, vals) if v != 0)
        return (compound, pos, neu, neg, drivers)

    def vader_many(self, texts: list[str]) -> list[tuple[float, float, float, float]]:
        """``(compound, pos, neu, neg)`` of each raw text, as VADER's ``polarity_scores`` gives them.

        Parameters
        ----------
        texts : list of str

        Returns
        -------
        list of tuple
        """
        arr = pa.array(texts, pa.string())
        mask = pc.and_(pc.string_is_ascii(arr), pc.invert(pc.match_substring_regex(arr, "[\x1c-\x1f]")))
        sub = arr.filter(mask)
        lists = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(sub))
        lens = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        ids = self._tokens.encode_arrow(pc.list_flatten(lists))
        # A blank text splits into one empty token in Arrow and into none in Python.
        empty = pc.equal(pc.utf8_length(pc.ascii_trim_whitespace(sub)), 0).to_numpy(zero_copy_only=False)
        bang = pc.count_substring(sub, "!").to_numpy(zero_copy_only=False)
        qmc = pc.count_substring(sub, "?").to_numpy(zero_copy_only=False)
        c, p, u, g, _, scalar = _vader_batch(self._tokens, ids, lens, bang, qmc)
        picked = np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist()
        out: list = [None] * len(texts)
        for r, k in enumerate(picked):
            out[k] = self.vader(texts[k])[:4] if scalar[r] or empty[r] else (c[r], p[r], u[r], g[r])
        for k in range(len(texts)):
            if out[k] is None:
                out[k] = self.vader(texts[k])[:4]
        return out

    # ---- batch ------------------------------------------------------------------------------------
    def classify_columns(self, ids, texts, ratings=None) -> pa.Table:
        """The insight rows (:data:`ROW_COLUMNS`) of aligned feedback ids, texts and ratings.

        Parameters
        ----------
        ids : sequence or pyarrow.Array
            Feedback ids (cast to string).
        texts : list
            Raw texts (None / NaN allowed).
        ratings : array-like of float, optional
            Ratings (NaN when absent).

        Returns
        -------
        pyarrow.Table
            Sentiment rows, then topic rows, then severity rows, in input order within each task:
            what ``classify_frame`` returns.
        """
        texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
        n = len(texts)
        codes, uniq = pd.factorize(pd.Series(texts, dtype=object), sort=False)
        uniq = list(uniq)
        m = len(uniq)
        s_label = [None] * m
        s_score = np.zeros(m)
        s_conf = np.zeros(m)
        s_ev: list[str | None] = [None] * m
        t_label = [None] * m
        t_score = np.zeros(m)
        t_conf = np.zeros(m)
        t_ev: list[str | None] = [None] * m

        fast_idx, slow_idx, terms, tok_ids, tok_lens = self._triage(uniq)
        if fast_idx:
            self._fast_sentiment(uniq, fast_idx, tok_ids, tok_lens, s_label, s_score, s_conf, s_ev)
            self._fast_topics(fast_idx, tok_ids, tok_lens, t_label, t_score, t_conf, t_ev)
        if slow_idx:
            sub = [uniq[k] for k in slow_idx]
            for frame, lab, sc, cf, ev in (
                (self.sentiment.classify(sub), s_label, s_score, s_conf, s_ev),
                (self.topic.classify(sub), t_label, t_score, t_conf, t_ev),
            ):
                for k, la, e in zip(slow_idx, frame["label"].tolist(), frame["evidence"].tolist()):
                    lab[k] = la
                    ev[k] = e
                sc[slow_idx] = frame["score"].to_numpy()
                cf[slow_idx] = frame["confidence"].to_numpy()

        take = pa.array(codes, pa.int64())
        fids = pc.cast(pa.array(ids) if not isinstance(ids, (pa.Array, pa.ChunkedArray)) else ids, pa.string())
        if isinstance(fids, pa.ChunkedArray):
            fids = fids.combine_chunks()
        sent_cols = (pa.array(s_label, pa.string()), pa.array(s_score), pa.array(s_conf), pa.array(s_ev, pa.string()))
        top_cols = (pa.array(t_label, pa.string()), pa.array(t_score), pa.array(t_conf), pa.array(t_ev, pa.string()))
        parts = [
            self._task_table(fids, "sentiment", [c.take(take) for c in sent_cols], self.sentiment.method,
                             self.sentiment.model_version_),
            self._task_table(fids, "topic", [c.take(take) for c in top_cols], self._topic_method,
                             self.topic.model_version_),
        ]
        ratings = np.full(n, np.nan) if ratings is None else np.asarray(ratings, dtype=float)
        sev = self._severity(uniq, terms, codes, ratings, s_label, s_score, t_label, t_conf)
        parts.append(self._task_table(fids, "severity", sev, self.severity.method, self.severity_version))
        return pa.concat_tables(parts)

    @staticmethod
    def _task_table(fids: pa.Array, task: str, cols, method: str, version: str) -> pa.Table:
        n = len(fids)
        label, score, conf, ev = cols
        return pa.table({
            "id": pc.binary_join_element_wise(fids, pa.scalar(f":{task}:{version}"), ""),
            "feedback_id": fids,
            "task": pa.repeat(pa.scalar(task), n),
            "label": label,
            "score": score,
            "confidence": conf,
            "evidence": ev,
            "method": pa.repeat(pa.scalar(method), n),
            "model_version": pa.repeat(pa.scalar(version), n),
        })

    def _triage(self, uniq: list[str]):
        """Split the distinct texts into the fast path and the generic one.

        Returns (fast, slow, terms, ids, lens): indices into ``uniq``; severity terms per text
        (None where the generic path decides); the fast texts' white-space token ids,
        concatenated, and their token counts.
        """
        table = self._tokens
        if len(table.ids) > self.token_memo:
            table.clear()
        arr = pa.array(uniq, pa.string())
        # Python's str.split() also splits on \x1c-\x1f, Arrow's ASCII split does not.
        ok_chars = pc.and_(pc.string_is_ascii(arr), pc.invert(pc.match_substring_regex(arr, "[<&\x1c-\x1f]")))
        mask = pc.and_(ok_chars, pc.less_equal(pc.utf8_length(arr), MAX_CHARS))
        maybe = np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist()
        sub = arr.filter(mask)
        lists = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(sub))
        lens = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        ids = table.encode_arrow(pc.list_flatten(lists))
        bang = pc.count_substring(sub, "!").to_numpy(zero_copy_only=False)
        qmc = pc.count_substring(sub, "?").to_numpy(zero_copy_only=False)
        A = table.arrays
        tix = np.repeat(np.arange(len(maybe)), lens)
        T = len(maybe)
        nlet = np.bincount(tix, A["nlet"][ids], T)
        nfor = np.bincount(tix, A["nfor"][ids], T)
        neng = np.bincount(tix, A["neng"][ids], T)
        crit = np.bincount(tix, A["crit"][ids], T) > 0
        esc = np.bincount(tix, A["esc"][ids], T) > 0
        # _base._prepare_uncached: words present; with 4+ words, not more function words of
        # another language (at least 2) than of English among the first 400.
        ok = (nlet > 0) & ~((nlet >= 4) & (nfor >= 2) & (nfor > neng))
        long = np.flatnonzero(ok & (nlet > 400) & (nfor >= 1))
        for r in long.tolist():
            ok[r] = _prepare_fast(uniq[maybe[r]]) is not None
        terms: list = [None] * len(uniq)
        fast: list[int] = []
        keep = np.flatnonzero(ok)
        for r in keep.tolist():
            k = maybe[r]
            fast.append(k)
            raw = uniq[k]
            if crit[r]:
                terms[k] = _terms(raw)
            elif esc[r]:
                terms[k] = ((), tuple(sorted({w.lower() for w in _ESCALATE.findall(raw)})))
            else:
                terms[k] = _NO_TERMS
        fast_set = set(fast)
        slow = [k for k in range(len(uniq)) if k not in fast_set]
        if len(keep) < T:
            sel = np.repeat(ok, lens)
            ids, lens, bang, qmc = ids[sel], lens[ok], bang[ok], qmc[ok]
        return fast, slow, terms, (ids, bang, qmc), lens

    def _fast_sentiment(self, uniq, idx, tok, lens, label, score, conf, ev) -> None:
        sent = self.sentiment
        ids, bang, qmc = tok
        compound, pos, neu, neg, drivers, scalar = _vader_batch(self._tokens, ids, lens, bang, qmc)
        for r in np.flatnonzero(scalar).tolist():
            c, p, u, g, dr = self.vader(uniq[idx[r]])
            compound[r], pos[r], neu[r], neg[r] = c, p, u, g
            top = sorted(dr, key=lambda d: -abs(d[1]))[:5]
            drivers[r] = ", ".join(f"[{_jstr(w)}, {v!r}]" for w, v in top)
        for r, k in enumerate(idx):
            ev[k] = f'{{"drivers": [{drivers[r]}], "pos": {pos[r]!r}, "neu": {neu[r]!r}, "neg": {neg[r]!r}}}'
        comp = np.array(compound, dtype=float)
        proba = sent._proba_from_compound(comp)
        col = np.where(comp >= sent.threshold, 2, np.where(comp <= -sent.threshold, 0, 1))
        cf = proba[np.arange(len(idx)), col]
        score[idx] = comp
        conf[idx] = cf
        names = ("negative", "neutral", "positive")
        for r, k in enumerate(idx):
            label[k] = names[col[r]]

    def _fast_topics(self, idx, tok, lens, label, score, conf, ev) -> None:
        ids = tok[0]
        topic = self.topic
        table = self._tokens
        tix = np.repeat(np.arange(len(idx)), lens)
        cand = np.flatnonzero(np.bincount(tix, table.arrays["tfirst"][ids], len(idx)) > 0).tolist()
        none_ev = '{"labels": [], "proba": {}}'
        for k in idx:
            label[k] = OTHER
            conf[k] = 1.0
            score[k] = 0.0
            ev[k] = none_ev
        if not cand:
            return
        starts = np.concatenate([[0], np.cumsum(lens)]).tolist()
        id_list = ids.tolist()
        runs = table._lists["topic"].__getitem__
        found = []
        for r in cand:
            toks = list(chain.from_iterable(map(runs, id_list[starts[r]:starts[r + 1]])))
            m = self._match(toks)
            if m is not None:
                found.append((r, *m))
        if not found:
            return
        names = topic.topics_
        counts = np.zeros((len(found), len(names)))
        for q, (_, matched, _neg) in enumerate(found):
            for j, v in matched.items():
                counts[q, j] = len(v)
        P = 1 - np.exp(topic.rule_coef_[0] * counts)
        orders = np.argsort(-P, axis=1)
        R = np.asarray(_round(P.ravel(), 4)).reshape(P.shape).tolist()
        enc = [_jstr(t) for t in names]
        thr = topic.threshold
        for q, (r, matched, negated) in enumerate(found):
            k = idx[r]
            row = P[q]
            order = orders[q].tolist()
            rowl = row.tolist()
            assigned = [j for j in order if rowl[j] >= thr]
            if assigned:
                label[k] = names[assigned[0]]
                conf[k] = row[order[0]]
                score[k] = row[order[0]]
            else:
                label[k] = OTHER
                conf[k] = float(np.prod(1 - row))
                score[k] = float(row.max()) if row.size else 0.0
            Rq = R[q]
            e = ('{"labels": [' + ", ".join(enc[j] for j in assigned) + '], "proba": {'
                 + ", ".join(f"{enc[j]}: {Rq[j]!r}" for j in order if rowl[j] >= 0.05) + "}")
            if matched:
                e += ', "keywords": {' + ", ".join(
                    f"{enc[j]}: [" + ", ".join(map(_jstr, matched[j])) + "]" for j in sorted(matched)) + "}"
            if negated:
                e += ', "negated_keywords": [' + ", ".join(map(_jstr, negated)) + "]"
            ev[k] = e + "}"

    def _match(self, toks: list[str]):
        """``TopicClassifier._match_counts`` for one token list: (matched, negated), or None
        when nothing matched and nothing was negated."""
        entries = self._kw_entries
        w = self.topic.negation_window
        matched: dict[int, list[str]] = {}
        negated: list[str] = []
        seen: set = set()
        for s, t in enumerate(toks):
            ents = entries.get(t)
            if ents is None:
                continue
            for j, kw, L, phrase, tolerant in ents:
                if L > 1 and toks[s : s + L] != kw:
                    continue
                if (j, phrase) in seen:
                    continue
                if not tolerant and not _NEGATORS.isdisjoint(toks[max(0, s - w) : s]):
                    negated.append(phrase)
                    continue
                seen.add((j, phrase))
                matched.setdefault(j, []).append(phrase)
        if not matched and not negated:
            return None
        return matched, negated

    def _severity(self, uniq, terms, codes, ratings, s_label, s_score, t_label, t_conf):
        sev = self.severity
        cut = sev.negative_cut
        m = len(uniq)
        label: list[str] = [UNCLASSIFIABLE] * m
        conf = np.zeros(m)
        head: list[str | None] = [None] * m  # the evidence without its closing "]}"
        level_pre = np.zeros(m, dtype=np.int64)
        rated = np.zeros(m, dtype=bool)  # whether a rating <= 1 can still raise the level
        topic_head = {}
        for t, base in sev.topic_severity_.items():
            topic_head[t] = (SEVERITY_LEVELS.index(base), '{"reasons": [' + _jstr(f"topic {t}: {base}"))
        other = (0, None)
        scores = s_score.tolist()
        tconf = t_conf.tolist()
        for k in range(m):
            topic = t_label[k]
            if topic == UNCLASSIFIABLE:
                continue
            level, h = topic_head.get(topic, other)
            if h is None:
                h = '{"reasons": [' + _jstr(f"topic {topic}: low")
            tk = terms[k]
            crit, esc = _severity_terms(uniq[k]) if tk is None else tk
            if crit:
                level = 3
                h += ", " + _jstr("safety/legal terms: " + ", ".join(crit[:5]))
                conf[k] = 0.95
            else:
                if esc:
                    level += 1
                    h += ", " + _jstr("escalation terms: " + ", ".join(esc[:5]))
                if s_label[k] != UNCLASSIFIABLE:
                    s = scores[k]
                    if s <= cut:
                        level += 1
                        h += ", " + _jstr(f"strongly negative sentiment ({s:.2f})")
                    elif s >= 0.5:
                        level -= 1
                        h += ", " + _jstr(f"positive sentiment ({s:.2f})")
                rated[k] = True
                conf[k] = tconf[k]
            level_pre[k] = level
            head[k] = h
        fin = np.where(rated, np.clip(level_pre, 0, 2), level_pre)
        names = np.array(SEVERITY_LEVELS + (UNCLASSIFIABLE,), dtype=object)
        known = np.array([h is not None for h in head], dtype=bool)
        label = names[np.where(known, fin, 4)].tolist()
        score = np.where(known, fin / 3, 0.0)
        ev = [h + "]}" if h is not None else '{"reason": "topic unclassifiable"}' for h in head]
        # Rows whose rating <= 1 raises the level get their own entries after the m text ones.
        key = np.asarray(codes, dtype=np.int64).copy()
        bump = np.flatnonzero(np.isfinite(ratings) & (ratings <= 1) & rated[key])
        extra_label, extra_score, extra_conf, extra_ev = [], [], [], []
        for i in bump.tolist():
            k = key[i]
            lvl = int(min(max(level_pre[k] + 1, 0), 2))
            key[i] = m + len(extra_label)
            extra_label.append(SEVERITY_LEVELS[lvl])
            extra_score.append(lvl / 3)
            extra_conf.append(conf[k])
            extra_ev.append(head[k] + ", " + _jstr(f"rating {ratings[i]:g}") + "]}")
        take = pa.array(key)
        return [
            pa.array(label + extra_label, pa.string()).take(take),
            pa.array(np.concatenate([score, np.asarray(extra_score, float)])).take(take),
            pa.array(np.concatenate([conf, np.asarray(extra_conf, float)])).take(take),
            pa.array(ev + extra_ev, pa.string()).take(take),
        ]


def _round(x: np.ndarray, digits: int) -> list[float]:
    """``[round(v, digits) for v in x]`` (Python's correctly rounded decimal rounding), vectorised.

    ``rint(x * 10**d) / 10**d`` picks the same integer as exact rounding unless ``x * 10**d``
    lies within rounding error of a half; the quotient of that integer by ``10**d`` is then the
    double nearest k / 10**d, which is what ``round`` returns. The near-half values are rounded
    by Python.
    """
    scale = 10.0**digits
    y = np.asarray(x, dtype=float) * scale
    out = (np.rint(y) / scale).tolist()
    near = np.flatnonzero(np.abs(np.abs(y - np.floor(y)) - 0.5) < 1e-6)
    if len(near):
        xs = np.asarray(x, dtype=float)
        for j in near.tolist():
            out[j] = round(float(xs[j]), digits)
    return out


def _negation(valence: float, low: list[str], start_i: int, i: int) -> float:
    # VaderCore._negation, inlined for the common first step.
    if start_i == 0:
        w = low[i - 1]
        if w in _NEGATE_SET or "n't" in w:
            return valence * _N_SCALAR
        return valence
    return VaderCore._negation(valence, low, start_i, i)


def _valence(vals: list[float], n: int, text: str) -> tuple[float, float, float, float]:
    # VaderCore._valence on the scored positions only: the other n - len(vals) sentiments are
    # 0.0, which leaves every sum unchanged and counts as neutral.
    return VaderCore._valence(vals, text, extra_neutral=n - len(vals))


def _prepare_fast(raw: str):
    """(white-space tokens, topic tokens, severity terms) of ``raw`` when ``_base.prepare_texts``
    would keep it apart from white space (ASCII, no markup or entities, not truncated, words
    present, judged English); else None (generic path)."""
    if not raw.isascii() or "<" in raw or "&" in raw or len(raw) > MAX_CHARS:
        return None
    low = raw.lower()
    words = low.translate(_LETTERS).split()
    if not words:
        return None
    if len(words) >= 4:
        head = words[:400]
        if not _FOREIGN_FUNCTION.isdisjoint(head):
            foreign = sum(1 for w in head if w in _FOREIGN_FUNCTION)
            english = sum(1 for w in head if w in _EN_FUNCTION)
            if foreign >= 2 and foreign > english:
                return None
    # A whole-word severity term is a whole letter run; a prefix term is a substring.
    if not _CRIT_WORDS.isdisjoint(words) or "injur" in low or "electrocut" in low or "explod" in low \
            or "hazard" in low or "poison" in low:
        terms = _terms(raw)
    elif _ESC_WORDS.isdisjoint(words):
        terms = _NO_TERMS
    else:
        terms = ((), tuple(sorted({w.lower() for w in _ESCALATE.findall(raw)})))
    return raw.split(), _topic_tokens(low), terms


_NO_TERMS: tuple = ((), ())


def _topic_tokens(low: str) -> list[str]:
    """``_topic._norm_tokens`` of ASCII lower-case text."""
    runs = low.translate(_TOPIC_RUNS).split()
    if "'" not in low or not runs:
        return runs
    # An apostrophe-only run becomes an empty token there; joining on single spaces and
    # splitting on one space keeps it.
    return " ".join(runs).translate(_NO_APOS).split(" ")


def _severity_terms(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``_severity._terms(text)``, skipping the regexes when no term can start in the text."""
    if not text.isascii():
        return _terms(text)
    low = text[:20000].lower()
    runs = set(low.translate(_WORD_RUNS).split())
    crit_possible = not _CRIT_WORDS.isdisjoint(runs) or any(p in low for p in _CRIT_PREFIXES)
    if crit_possible:
        return _terms(text)
    if _ESC_WORDS.isdisjoint(runs):
        return (), ()
    t = text[:20000]
    return (), tuple(sorted({w.lower() for w in _ESCALATE.findall(t)}))



# Word codes of the low-case tokens VADER's rules compare against.
_CODE_WORDS = ("no", "or", "nor", "least", "at", "very", "never", "so", "this", "without", "doubt", "kind", "of", "but")
_CODE = {w: k + 1 for k, w in enumerate(_CODE_WORDS)}
(_NO, _OR, _NOR, _LEAST, _AT, _VERY, _NEVER, _SO, _THIS, _WITHOUT, _DOUBT, _KIND, _OF, _BUT) = range(1, 15)
# Consecutive word pairs of VADER's multi-word idioms and boosters: a rule window with none of
# them cannot change the valence in VaderCore._idioms (the text is then scored one at a time).
_IDIOM_PAIRS = frozenset(
    (a, b) for key in list(_SPECIAL) + list(_BOOSTER) if " " in key
    for a, b in zip(key.split(), key.split()[1:])
)


_TOKEN_FIELDS = {
    "inlex": bool, "hit": float, "boost": float, "up": bool, "neg": bool, "code": np.int8, "idiom": np.int16,
    "enc": object, "nlet": np.int64, "nfor": np.int64, "neng": np.int64, "crit": bool, "esc": bool,
    "topic": object, "tfirst": bool,
}


class _TokenTable:
    """Per distinct raw token, what VADER's rules need, as arrays indexed by a token id."""

    def __init__(self, lexicon: dict[str, float], topic_first: frozenset = frozenset()):
        self.lex = lexicon
        self.topic_first = topic_first
        self.ids: dict[str, int] = {}
        self.vocab: pa.Array | None = None
        self.idiom_words = sorted({w for pair in _IDIOM_PAIRS for w in pair})
        self.idiom_code = {w: k + 1 for k, w in enumerate(self.idiom_words)}
        k = len(self.idiom_words) + 1
        self.idiom_pair_codes = np.array(sorted(self.idiom_code[a] * k + self.idiom_code[b] for a, b in _IDIOM_PAIRS))
        self.idiom_base = k
        self._lists: dict[str, list] = {f: [] for f, dt in _TOKEN_FIELDS.items() if dt is object}
        keys = list(lexicon)
        self._lex_keys = pa.array(keys, pa.string())
        self._lex_vals = np.array([lexicon[k] for k in keys], float)
        self._booster_keys = pa.array(list(_BOOSTER), pa.string())
        self._booster_vals = np.array(list(_BOOSTER.values()), float)
        self._negate_keys = pa.array(sorted(_NEGATE_SET), pa.string())
        self._code_keys = pa.array(list(_CODE_WORDS), pa.string())
        self._idiom_keys = pa.array(self.idiom_words, pa.string())
        self._word_sets = {name: pa.array(sorted(words), pa.string()) for name, words in
                           (("crit", _CRIT_WORDS), ("esc", _ESC_WORDS), ("foreign", _FOREIGN_FUNCTION),
                            ("english", _EN_FUNCTION))}
        self.clear()

    def learn(self, toks) -> None:
        """Give each new token of ``toks`` an id and its fields (ASCII ones vectorised in Arrow)."""
        new = [t for t in dict.fromkeys(toks) if t not in self.ids]
        plain = [t for t in new if t.isascii()]
        other = [t for t in new if not t.isascii()]
        # Ids follow the order the fields are appended in: the ASCII tokens first, then the rest.
        for part, fields in ((plain, self._fields_ascii), (other, self._fields_scalar)):
            if not part:
                continue
            for t in part:
                self.ids[t] = len(self.ids)
            for f, values in fields(part).items():
                dt = _TOKEN_FIELDS[f]
                if dt is object:
                    self._lists[f] += values
                else:
                    self.arrays[f] = np.concatenate([self.arrays[f], np.asarray(values, dt)])

    def _fields_scalar(self, new: list[str]) -> dict[str, list]:
        # The reference definition of every field; the Arrow path below must give the same.
        lex = self.lex
        ws = [_strip(t) for t in new]
        los = [w.lower() for w in ws]
        tls = [t.lower() for t in new]
        # The other models tokenise the whole text into runs that never span white space,
        # so a text's runs are its tokens' runs in order.
        letter_runs = [tl.translate(_LETTERS).split() for tl in tls]
        topics = [_topic_tokens(tl) for tl in tls]
        return {
            "inlex": [lo in lex for lo in los],
            "hit": [lex[lo] if lo in lex and lo not in _BOOSTER else np.nan for lo in los],
            "boost": [_BOOSTER.get(lo, 0.0) for lo in los],
            "up": [w.isupper() for w in ws],
            "neg": [lo in _NEGATE_SET or "n't" in lo for lo in los],
            "code": [_CODE.get(lo, 0) for lo in los],
            "idiom": [self.idiom_code.get(lo, 0) for lo in los],
            "enc": [_jstr(w) for w in ws],
            "nlet": [len(letters) for letters in letter_runs],
            "nfor": [sum(1 for x in letters if x in _FOREIGN_FUNCTION) for letters in letter_runs],
            "neng": [sum(1 for x in letters if x in _EN_FUNCTION) for letters in letter_runs],
            "crit": [not _CRIT_WORDS.isdisjoint(letters) or any(q in tl for q in _CRIT_PREFIXES)
                     for tl, letters in zip(tls, letter_runs)],
            "esc": [not _ESC_WORDS.isdisjoint(letters) for letters in letter_runs],
            "topic": topics,
            "tfirst": [not self.topic_first.isdisjoint(topic) for topic in topics],
        }

    def _fields_ascii(self, new: list[str]) -> dict[str, Any]:
        # ASCII only, where Arrow's ascii_* kernels are exactly str.lower / str.strip / isupper.
        # With the caches emptied, learning the tokens was a third of a classify call in Python.
        n = len(new)
        arr = pa.array(new, pa.string())
        stripped = pc.ascii_trim(arr, characters=_PUNCT)
        w = pc.if_else(pc.less_equal(pc.binary_length(stripped), 2), arr, stripped)
        lo = pc.ascii_lower(w)
        at = pc.index_in(lo, value_set=self._lex_keys).to_numpy(zero_copy_only=False)
        inlex = ~np.isnan(at)
        hit = np.full(n, np.nan)
        boost_at = pc.index_in(lo, value_set=self._booster_keys).to_numpy(zero_copy_only=False)
        in_boost = ~np.isnan(boost_at)
        use = inlex & ~in_boost
        hit[use] = self._lex_vals[at[use].astype(np.int64)]
        boost = np.zeros(n)
        boost[in_boost] = self._booster_vals[boost_at[in_boost].astype(np.int64)]
        up = (pc.match_substring_regex(w, "[A-Z]").to_numpy(zero_copy_only=False)
              & ~pc.match_substring_regex(w, "[a-z]").to_numpy(zero_copy_only=False))
        neg = (pc.is_in(lo, value_set=self._negate_keys).to_numpy(zero_copy_only=False)
               | pc.match_substring(lo, "n't").to_numpy(zero_copy_only=False))

        def code_of(words: pa.Array) -> np.ndarray:
            k = pc.index_in(lo, value_set=words).to_numpy(zero_copy_only=False)
            return np.where(np.isnan(k), 0, k + 1).astype(np.int64)

        tl = pc.ascii_lower(arr)
        runs = pc.ascii_split_whitespace(pc.replace_substring_regex(tl, "[^a-z]", " "))
        # Arrow keeps the empty strings around leading and trailing blanks that str.split drops.
        flat = pc.list_flatten(runs)
        kept = pc.greater(pc.binary_length(flat), 0)
        flat = flat.filter(kept)
        parent = pc.list_parent_indices(runs).to_numpy(zero_copy_only=False)[kept.to_numpy(zero_copy_only=False)]

        def per_token(words: pa.Array) -> np.ndarray:
            hits = pc.is_in(flat, value_set=words).to_numpy(zero_copy_only=False)
            return np.bincount(parent[hits], minlength=n)

        crit = per_token(self._word_sets["crit"]) > 0
        for q in _CRIT_PREFIXES:
            crit |= pc.match_substring(tl, q).to_numpy(zero_copy_only=False)
        tls = tl.to_pylist()
        topics = [_topic_tokens(x) for x in tls]
        return {
            "inlex": inlex, "hit": hit, "boost": boost, "up": up, "neg": neg,
            "code": code_of(self._code_keys), "idiom": code_of(self._idiom_keys),
            "enc": [_jstr(x) for x in w.to_pylist()],
            "nlet": np.bincount(parent, minlength=n),
            "nfor": per_token(self._word_sets["foreign"]), "neng": per_token(self._word_sets["english"]),
            "crit": crit, "esc": per_token(self._word_sets["esc"]) > 0,
            "topic": topics,
            "tfirst": [not self.topic_first.isdisjoint(topic) for topic in topics],
        }

    def clear(self) -> None:
        self.vocab = None
        self.ids.clear()
        for v in self._lists.values():
            v.clear()
        self.arrays = {f: np.zeros(0, dt) for f, dt in _TOKEN_FIELDS.items() if dt is not object}

    def encode_arrow(self, flat: pa.Array) -> np.ndarray:
        """Token ids of an Arrow string array (new tokens are learnt first)."""
        if self.vocab is None or len(self.vocab) != len(self.ids):
            self.vocab = pa.array(list(self.ids), pa.string())
        idx = pc.index_in(flat, value_set=self.vocab)
        if idx.null_count:
            self.learn(pc.unique(flat.filter(pc.is_null(idx))).to_pylist())
            self.vocab = pa.array(list(self.ids), pa.string())
            idx = pc.index_in(flat, value_set=self.vocab)
        return idx.to_numpy(zero_copy_only=False).astype(np.int64)


def _vader_batch(table: _TokenTable, ids: np.ndarray, lens: np.ndarray, bang: np.ndarray, qmc: np.ndarray):
    """VADER on many ASCII texts at once, vectorised over their lexicon hits.

    ``ids`` are the token ids of the texts' white-space tokens, concatenated; ``lens`` the token
    count of each text; ``bang`` and ``qmc`` the counts of "!" and "?" in each text.

    Returns (compound, pos, neu, neg, drivers_json, scalar) where drivers_json is the evidence's
    drivers list as JSON text and ``scalar`` marks texts whose idiom rules need
    :meth:`FastLexiconStack.vader` instead (their other outputs are to be ignored).
    """
    T = len(lens)
    A = table.arrays
    N = len(ids)
    starts = np.zeros(T, np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    tix_tok = np.repeat(np.arange(T), lens)
    pos = np.arange(N) - starts[tix_tok]
    ntok = lens[tix_tok]
    code = A["code"][ids]
    inlex = A["inlex"][ids]
    up = A["up"][ids]
    neg = A["neg"][ids]
    boost = A["boost"][ids]
    hitv = A["hit"][ids]
    n_upper = np.bincount(tix_tok, weights=up, minlength=T)
    cap = (0 < lens - n_upper) & (lens - n_upper < lens)

    h = np.flatnonzero(~np.isnan(hitv))
    i = pos[h]
    n = ntok[h]
    t_h = tix_tok[h]

    def at(off, arr, fill):
        # arr at h + off where that token lies in the same text, else fill.
        j = h + off
        ok = (i + off >= 0) & (i + off < n)
        out = np.full(len(h), fill, dtype=arr.dtype)
        out[ok] = arr[j[ok]]
        return out

    c0, cn1 = code[h], at(1, code, 0)
    keep = ~((i < n - 1) & (c0 == _KIND) & (cn1 == _OF))
    h, i, n, t_h, c0, cn1 = h[keep], i[keep], n[keep], t_h[keep], c0[keep], cn1[keep]
    c1, c2, c3 = at(-1, code, 0), at(-2, code, 0), at(-3, code, 0)
    base = hitv[h]
    val = base.copy()
    val[(c0 == _NO) & (i != n - 1) & at(1, inlex, False)] = 0.0
    no_before = (c1 == _NO) | (c2 == _NO) | ((c3 == _NO) & ((c1 == _OR) | (c1 == _NOR)))
    val = np.where(no_before, base * _N_SCALAR, val)
    capd = cap[t_h]
    m = capd & up[h]
    val = np.where(m, np.where(val > 0, val + _C_INCR, val - _C_INCR), val)
    in1, in2, in3 = at(-1, inlex, True), at(-2, inlex, True), at(-3, inlex, True)
    so_this1 = (c1 == _SO) | (c1 == _THIS)
    so_this2 = (c2 == _SO) | (c2 == _THIS)
    scalar_hit = np.zeros(len(h), bool)
    for start_i, (inj, off) in enumerate(((in1, -1), (in2, -2), (in3, -3))):
        cond = (i > start_i) & ~inj
        b = at(off, boost, 0.0)
        s = np.where(b != 0, np.where(val < 0, -b, b), 0.0)
        capj = capd & at(off, up, False) & (b != 0)
        s = np.where(capj, np.where(val > 0, s + _C_INCR, s - _C_INCR), s)
        if start_i == 1:
            s = np.where(s != 0, s * 0.95, s)
        elif start_i == 2:
            s = np.where(s != 0, s * 0.9, s)
        val = np.where(cond, val + s, val)
        if start_i == 0:
            mult = cond & at(-1, neg, False)
            val = np.where(mult, val * _N_SCALAR, val)
        elif start_i == 1:
            boost125 = cond & (c2 == _NEVER) & so_this1
            skip = cond & ~boost125 & (c2 == _WITHOUT) & (c1 == _DOUBT)
            negm = cond & ~boost125 & ~skip & at(-2, neg, False)
            val = np.where(boost125, val * 1.25, np.where(negm, val * _N_SCALAR, val))
        else:
            boost125 = cond & (((c3 == _NEVER) & so_this2) | so_this1)
            skip = cond & ~boost125 & (c3 == _WITHOUT) & ((c2 == _DOUBT) | (c1 == _DOUBT))
            negm = cond & ~boost125 & ~skip & at(-3, neg, False)
            val = np.where(boost125, val * 1.25, np.where(negm, val * _N_SCALAR, val))
            # _idioms runs here; it can only act when a pair of idiom words sits in tokens
            # i-3 .. i+2, and those texts are scored one at a time instead.
            idc = A["idiom"][ids]
            kk = table.idiom_base
            for off in (-3, -2, -1, 0, 1):
                a, bb = at(off, idc, 0), at(off + 1, idc, 0)
                pair = (a > 0) & (bb > 0)
                if pair.any():
                    scalar_hit |= cond & pair & np.isin(a.astype(np.int64) * kk + bb, table.idiom_pair_codes)
    least1 = (i > 1) & ~in1 & (c1 == _LEAST)
    val = np.where(least1 & (c2 != _AT) & (c2 != _VERY), val * _N_SCALAR, val)
    least0 = ~least1 & (i > 0) & ~in1 & (c1 == _LEAST)
    val = np.where(least0, val * _N_SCALAR, val)

    scalar = np.zeros(T, bool)
    scalar[t_h[scalar_hit]] = True
    # The "but" rule, exactly as VaderCore._but does it (first equal value wins), per text.
    has_but = np.zeros(T, bool)
    has_but[tix_tok[code == _BUT]] = True
    if has_but[t_h].any():
        first_but = np.full(T, -1)
        bpos = np.flatnonzero(code == _BUT)
        but_texts, first = np.unique(tix_tok[bpos], return_index=True)
        first_but[but_texts] = pos[bpos[first]]
        sel = np.flatnonzero(has_but[t_h])
        bounds = np.flatnonzero(np.diff(t_h[sel])) + 1
        vals = val.tolist()
        for grp in np.split(sel, bounds):
            bi = first_but[t_h[grp[0]]]
            gv = [vals[g] for g in grp]
            gp = i[grp].tolist()
            for v in list(gv):
                ci = gv.index(v)
                if gp[ci] < bi:
                    gv[ci] = v * 0.5
                elif gp[ci] > bi:
                    gv[ci] = v * 1.5
            for g, v in zip(grp, gv):
                vals[g] = v
        val = np.array(vals)

    # Sums in text order, one hit rank at a time: the same additions, in the same order, as
    # Python's sum over the sentiments list.
    rank = np.arange(len(h)) - np.searchsorted(t_h, t_h)
    sum_s = np.zeros(T)
    pos_sum = np.zeros(T)
    neg_sum = np.zeros(T)
    for r in range(int(rank.max()) + 1 if len(h) else 0):
        sl = rank == r
        tt, vv = t_h[sl], val[sl]
        sum_s[tt] += vv
        p = vv > 0
        pos_sum[tt[p]] += vv[p] + 1
        q = vv < 0
        neg_sum[tt[q]] += vv[q] - 1
    nonzero = np.bincount(t_h[val != 0], minlength=T)
    neu_count = lens - nonzero
    ep = np.minimum(bang, 4) * 0.292
    qm = np.where(qmc > 1, np.where(qmc <= 3, qmc * 0.18, 0.96), 0.0)
    amp = ep + qm
    sum_s = np.where(sum_s > 0, sum_s + amp, np.where(sum_s < 0, sum_s - amp, sum_s))
    compound = sum_s / np.sqrt(sum_s * sum_s + 15)
    compound = np.maximum(-1.0, np.minimum(1.0, compound))
    absneg = np.abs(neg_sum)
    pos_sum2 = np.where(pos_sum > absneg, pos_sum + amp, pos_sum)
    neg_sum2 = np.where(~(pos_sum > absneg) & (pos_sum < absneg), neg_sum - amp, neg_sum)
    total = pos_sum2 + np.abs(neg_sum2) + neu_count
    compound = _round(compound, 4)
    pos_r = _round(np.abs(pos_sum2 / total), 3)
    neu_r = _round(np.abs(neu_count / total), 3)
    neg_r = _round(np.abs(neg_sum2 / total), 3)

    # Drivers: non-zero sentiments, the five largest |rounded value| per text (stable).
    d = np.flatnonzero(val != 0)
    dv = _round(val[d], 3)
    dt = t_h[d]
    order = np.lexsort((np.arange(len(d)), -np.abs(np.array(dv)), dt)) if len(d) else np.zeros(0, np.int64)
    dt_o = dt[order]
    drank = np.arange(len(order)) - np.searchsorted(dt_o, dt_o)
    order = order[drank < 5]
    enc = table._lists["enc"]
    tok_ids = ids[h[d]].tolist()
    pieces = [f"[{enc[tok_ids[k]]}, {dv[k]!r}]" for k in order.tolist()]
    dt_keep = dt[order]
    drivers = [""] * T
    if len(pieces):
        cuts = np.flatnonzero(np.diff(dt_keep)) + 1
        begins = np.concatenate([[0], cuts]).tolist()
        ends = np.concatenate([cuts, [len(pieces)]]).tolist()
        for tt, a, b in zip(dt_keep[begins].tolist(), begins, ends):
            drivers[tt] = ", ".join(pieces[a:b])
    return compound, pos_r, neu_r, neg_r, drivers, scalar

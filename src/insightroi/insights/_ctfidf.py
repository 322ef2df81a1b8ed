"""Class-based TF-IDF: the words that set one cluster of texts apart from the others.

The weighting BERTopic uses to name its topics (Grootendorst 2022, eq. 1): all documents of a
cluster are joined into one "class document"; a term's frequency in that class (L1-normalised)
is multiplied by ``log(1 + A / f_t)``, where ``A`` is the average number of words per class and
``f_t`` the term's frequency over all classes. Frequent-everywhere words ("card", "account" in a
bank's inbox) sink; words frequent in one cluster only rise. Pure: no I/O.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_tfidf", "top_terms"]


#: Contractions that carry no theme (the pronoun and copula ones); negations such as "can't" or
#: "hasn't" stay, because they often are the complaint.
_CONTRACTION_STOP_WORDS = frozenset({
    "i'm", "i've", "i'd", "i'll", "it's", "you're", "you've", "you'll", "you'd", "we're", "we've", "they're",
    "they've", "that's", "there's", "what's", "he's", "she's", "let's", "who's", "here's",
})


def class_tfidf(
    texts: list[str],
    labels,
    *,
    ngram_range: tuple[int, int] = (1, 2),
    min_df: int = 2,
    stop_words: str | list[str] | None = "english",
):
    """Class-based TF-IDF weights of every term in every class.

    Parameters
    ----------
    texts : list of str
        The documents.
    labels : array-like of int
        Cluster of each document; ``-1`` (outliers) is left out of every class.
    ngram_range : tuple of int
        Word n-grams counted (unigrams and bigrams by default, as BERTopic's labels read best).
    min_df : int
        A term must occur in at least this many documents (drops typos and ids).
    stop_words : str, list of str or None
        Passed to scikit-learn's ``CountVectorizer``.

    Returns
    -------
    classes : ndarray of int
        The class of each row of ``weights`` (sorted, outliers excluded).
    terms : ndarray of str
        The vocabulary (columns of ``weights``).
    weights : ndarray of float, shape (n_classes, n_terms)
        c-TF-IDF weight of each term in each class.

    Raises
    ------
    ValueError
        ``texts`` and ``labels`` differ in length.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise ValueError(f"class_tfidf: {len(texts)} texts but {len(labels)} labels")
    keep = labels >= 0
    classes = np.unique(labels[keep])
    if classes.size == 0:
        return classes, np.array([], dtype=object), np.zeros((0, 0))
    docs = [t for t, k in zip(texts, keep) if k]
    lab = labels[keep]
    if stop_words == "english":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        stop_words = sorted(ENGLISH_STOP_WORDS | _CONTRACTION_STOP_WORDS)
    try:
        # Words keep their inner apostrophes: the default pattern cut "hasn't" to "hasn" and
        # dropped the "t", so labels read "card hasn"; a negation is part of a complaint.
        vec = CountVectorizer(ngram_range=ngram_range, stop_words=stop_words, min_df=min(min_df, len(docs)),
                              token_pattern=r"(?u)\b\w[\w']*\w\b")
        X = vec.fit_transform(docs)
    except ValueError:  # only stop words / no term reaches min_df
        return classes, np.array([], dtype=object), np.zeros((classes.size, 0))
    # one row per class: the summed counts of its documents
    index = np.searchsorted(classes, lab)
    from scipy.sparse import csr_matrix

    member = csr_matrix((np.ones(lab.size), (index, np.arange(lab.size))), shape=(classes.size, lab.size))
    C = np.asarray((member @ X).todense(), dtype=float)
    tf = C / np.maximum(C.sum(axis=1, keepdims=True), 1.0)
    f_t = C.sum(axis=0)
    avg_words = C.sum() / classes.size
    idf = np.log1p(avg_words / np.maximum(f_t, 1.0))
    return classes, np.asarray(vec.get_feature_names_out(), dtype=object), tf * idf


def top_terms(terms, weights_row, n: int = 8, exclude=()) -> list[str]:
    """The ``n`` highest-weighted terms of one class, skipping excluded words and redundant n-grams.

    A bigram is dropped when both its words are already listed, and a unigram when a listed
    bigram contains it, so "card arrive" and "card", "arrive" do not fill three of the slots.

    Parameters
    ----------
    terms : array-like of str
        The vocabulary.
    weights_row : array-like of float
        The class's weight per term.
    n : int
        How many terms to return.
    exclude : iterable of str
        Words that may not appear (e.g. the taxonomy's keywords, so the label says what is new).

    Returns
    -------
    list of str
    """
    excl = {e.lower() for e in exclude}
    out: list[str] = []
    words: set[str] = set()
    for j in np.argsort(-np.asarray(weights_row))[: max(n * 6, 30)]:
        if weights_row[j] <= 0:
            break
        t = str(terms[j])
        parts = t.split()
        if any(p in excl for p in parts):
            continue
        if len(parts) > 1 and all(p in words for p in parts):
            continue
        if len(parts) == 1 and any(t in o.split() for o in out if " " in o):
            continue
        out.append(t)
        words.update(parts)
        if len(out) == n:
            break
    return out

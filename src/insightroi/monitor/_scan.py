"""Drift rows for one reference/current pair, and the weekly scan that flags drifted weeks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from insightroi.monitor._drift import text_drift, tokenize
from insightroi.program import MonitoringThresholds
from insightroi.stats import (
    chi_square_counts,
    holm,
    ks_two_sample,
    psi_from_counts,
    psi_numeric,
    psi_terms,
    unseen_category_pvalue,
)

__all__ = [
    "detect_drift",
    "drift_family",
    "drift_status",
    "psi_status",
    "categorical_drift",
    "numeric_drift",
    "text_drift_row",
    "taxonomy_drift",
    "drift_by_week",
    "drift_by_week_counts",
]


def psi_status(psi: float, thresholds: MonitoringThresholds) -> str:
    """"alert" at ``psi_alert`` (default 0.25) or above, "warn" at ``psi_warn`` (0.1), else "ok"."""
    if psi is None or not np.isfinite(psi):
        return "skip"
    if psi >= thresholds.psi_alert:
        return "alert"
    if psi >= thresholds.psi_warn:
        return "warn"
    return "ok"


def categorical_drift(
    feature: str,
    reference: Mapping[Any, float],
    current: Mapping[Any, float],
    thresholds: MonitoringThresholds | None = None,
    *,
    pseudocount: float = 0.0,
    alpha: float | None = None,
) -> dict[str, Any]:
    """PSI and chi-square drift row of one categorical feature from per-category counts.

    Status (:func:`drift_status`): "alert" when the chi-square homogeneity p-value is below
    ``alpha`` (default ``thresholds.drift_alpha``, 0.01; :func:`drift_family` adjusts it for the
    features tested together); "warn" when PSI reaches ``psi_warn`` (0.1) without significance
    (PSI's null mean is about ``(K - 1)(1/n_ref + 1/n_cur)``, large for many categories in a small
    window, e.g. the product mix over 80 SKU families in one week); else "ok".

    Parameters
    ----------
    pseudocount : float
        Added to every category's count in both windows before the PSI shares are taken
        (0 = none; empty shares then use ``eps`` = 1e-4). The weekly scan uses 0.5 (Jeffreys):
        with ~100 rows a week a category that happens to be empty would otherwise contribute
        ``share x ln(share / 1e-4)`` and dominate the index. The chi-square uses raw counts.

    Returns ``{feature, kind, psi, chi2, p_value, dof, status, n_reference, n_current,
    top_category, top_change}`` where ``top_category`` is the category with the largest PSI term
    (its signed share change is ``top_change``).
    """
    th = thresholds or MonitoringThresholds()
    cats = sorted(set(reference) | set(current), key=str)
    r = np.array([float(reference.get(c, 0) or 0) for c in cats])
    c = np.array([float(current.get(k, 0) or 0) for k in cats])
    row: dict[str, Any] = {
        "feature": feature, "kind": "categorical", "n_reference": float(r.sum()), "n_current": float(c.sum()),
    }
    if r.sum() == 0 or c.sum() == 0:
        return {**row, "psi": None, "chi2": None, "p_value": None, "dof": 0, "status": "skip",
                "top_category": None, "top_change": None}
    psi = psi_from_counts(r + pseudocount, c + pseudocount)
    chi2, p, dof = chi_square_counts(r, c)
    diff = c / c.sum() - r / r.sum()
    # Rank categories by their PSI term, so a new category (large log ratio) wins over a shift.
    top = int(np.argmax(psi_terms(r + pseudocount, c + pseudocount)))
    status = drift_status(p, psi, th, th.drift_alpha if alpha is None else alpha)
    return {**row, "psi": psi, "chi2": chi2, "p_value": p, "dof": dof, "status": status,
            "top_category": str(cats[top]), "top_change": float(diff[top])}


def numeric_drift(
    feature: str, reference, current, thresholds: MonitoringThresholds | None = None, *, n_bins: int = 10,
    alpha: float | None = None,
) -> dict[str, Any]:
    """PSI on reference deciles plus the two-sample KS test for one numeric feature.

    Status as in :func:`categorical_drift`, with the KS p-value as the test.
    """
    th = thresholds or MonitoringThresholds()
    psi = psi_numeric(reference, current, n_bins=n_bins)
    ks, p = ks_two_sample(reference, current)
    status = drift_status(p, psi, th, th.drift_alpha if alpha is None else alpha)
    return {"feature": feature, "kind": "numeric", "psi": psi, "ks": ks, "p_value": p,
            "status": status, "n_reference": float(np.size(reference)),
            "n_current": float(np.size(current))}


def drift_status(p_value: float | None, psi: float | None, thresholds: MonitoringThresholds, alpha: float) -> str:
    """"alert" when the test rejects at ``alpha``; "warn" when PSI is material without it; else "ok".

    A test, not a PSI level, decides: at monitoring sizes a fixed PSI threshold misses small real
    shifts in a large window and flags noise in a small one, while the test's false-alarm rate is
    the ``alpha`` it is run at whatever the sizes. PSI stays as the size of the shift.
    """
    if p_value is None or not np.isfinite(p_value):
        return "skip"
    if p_value < alpha:
        return "alert"
    if psi is not None and np.isfinite(psi) and psi >= thresholds.psi_warn:
        return "warn"
    return "ok"


def drift_family(rows: Sequence[dict[str, Any]], thresholds: MonitoringThresholds | None = None, *,
                 alpha: float | None = None) -> list[dict[str, Any]]:
    """Re-decide distribution-drift rows tested together, at a family-wise false-alarm rate.

    Holm's step-down adjustment over every row with a p-value (features, and chunks of a
    feature, checked in one run); each row gains ``p_adjusted`` and its status is
    :func:`drift_status` of the adjusted p-value at ``alpha`` (default
    ``thresholds.drift_alpha``). So the chance that a run without any drift raises any alert is
    at most ``alpha``, however many features it checks. Rows without a p-value (text, taxonomy)
    are returned unchanged.
    """
    th = thresholds or MonitoringThresholds()
    a = th.drift_alpha if alpha is None else alpha
    tested = [i for i, r in enumerate(rows) if r.get("p_value") is not None and np.isfinite(r["p_value"])
              and r.get("kind") in ("categorical", "numeric")]
    adjusted = holm([rows[i]["p_value"] for i in tested]) if tested else []
    out = [dict(r) for r in rows]
    for i, p_adj in zip(tested, adjusted):
        out[i]["p_adjusted"] = float(p_adj)
        out[i]["status"] = drift_status(float(p_adj), out[i].get("psi"), th, a)
        out[i]["alpha"] = a
    return out


def detect_drift(reference: Mapping[str, Any], current: Mapping[str, Any], *, categorical: Sequence[str] = (),
                 chunks: int = 1, thresholds: MonitoringThresholds | None = None,
                 alpha: float | None = None) -> list[dict[str, Any]]:
    """Distribution drift of every column between a reference and a current window, at one false-alarm rate.

    Parameters
    ----------
    reference, current : mapping of column name to array (a pandas DataFrame works)
        The same columns in both; nulls and non-finite numbers are dropped per column.
    categorical : sequence of str
        Columns compared as categories (chi-square on counts); the others are numbers (KS).
    chunks : int
        Split the current window into this many consecutive chunks and test each against the
        reference (drift that starts mid-window shows in the later chunks); the family is every
        column x chunk.
    thresholds : MonitoringThresholds, optional
        ``drift_alpha`` (family-wise false-alarm rate, default 0.01) and ``psi_warn``.
    alpha : float, optional
        Overrides ``drift_alpha``.

    Returns
    -------
    list of dict
        One row per column (and chunk: ``chunk`` 0..chunks-1): ``feature, kind, chunk, psi``,
        ``ks`` or ``chi2``, ``p_value``, ``p_adjusted`` (Holm), ``status`` ("alert" / "warn" / "ok"),
        ``n_reference, n_current``.
    """
    th = thresholds or MonitoringThresholds()
    if chunks < 1:
        raise ValueError(f"chunks must be at least 1, got {chunks}")
    cats = set(categorical)
    rows = []
    for col in reference.keys() if hasattr(reference, "keys") else reference:
        ref = np.asarray(reference[col])
        cur_all = np.asarray(current[col])
        if col in cats:
            ref_codes, ref_counts = np.unique(ref[~_is_missing(ref)], return_counts=True)
        else:
            ref = ref.astype(float)
            ref = np.sort(ref[np.isfinite(ref)])  # sorted once for every chunk's KS
        for k, cur in enumerate(np.array_split(cur_all, chunks)):
            if col in cats:
                cur_codes, cur_counts = np.unique(cur[~_is_missing(cur)], return_counts=True)
                row = categorical_drift(col, dict(zip(ref_codes.tolist(), ref_counts.tolist())),
                                        dict(zip(cur_codes.tolist(), cur_counts.tolist())), th)
            else:
                row = numeric_drift(col, ref, cur.astype(float), th)
            rows.append({**row, "chunk": k})
    return drift_family(rows, th, alpha=alpha)


def _is_missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return ~np.isfinite(values)
    if values.dtype.kind == "O":
        return np.array([v is None or v != v for v in values], dtype=bool)
    return np.zeros(values.shape, dtype=bool)


def text_drift_row(
    feature: str,
    reference,
    current,
    thresholds: MonitoringThresholds | None = None,
    *,
    reference_embeddings=None,
    current_embeddings=None,
    min_repeat: int = 3,
) -> dict[str, Any]:
    """Vocabulary drift row.

    Alert when the OOV rate (current tokens unseen in the reference and repeated at least
    ``min_repeat`` times, see :func:`insightroi.monitor.oov_rate`) exceeds ``oov_alert``
    (default 0.05); "warn" above half of it. The Jensen-Shannon distance of the token
    distributions is reported with ``js_alert`` (default 0.1) as its reference level but does not
    set the status: on weekly samples it carries a small-sample bias of roughly
    ``sqrt((V - 1) / (8 N ln 2))`` for V distinct tokens and N tokens, which is of the order of the
    threshold for real vocabularies.
    """
    th = thresholds or MonitoringThresholds()
    t = text_drift(reference, current, reference_embeddings=reference_embeddings,
                   current_embeddings=current_embeddings, min_repeat=min_repeat)
    if t["reference_tokens"] == 0 or t["current_tokens"] == 0:
        status = "skip"
    elif t["oov_rate"] > th.oov_alert:
        status = "alert"
    elif t["oov_rate"] > th.oov_alert / 2:
        status = "warn"
    else:
        status = "ok"
    new_terms = []
    if isinstance(current, Counter) and isinstance(reference, Counter):
        # Ties alphabetically: Counter keeps insertion order, which follows the database's
        # group-by output and so changed between runs on the same data.
        ranked = sorted(current.items(), key=lambda wk: (-wk[1], wk[0]))
        new_terms = [w for w, k in ranked if w not in reference and k >= min_repeat][:10]
    return {"feature": feature, "kind": "text", "psi": None, "p_value": None, "status": status,
            "value": t["oov_rate"], "threshold": th.oov_alert, "js_reference": th.js_alert, **t,
            "new_terms": new_terms}


def taxonomy_drift(
    reference_labels: Mapping[str, float],
    current_labels: Mapping[str, float],
    *,
    current_low_confidence: float | None = None,
    reference_low_confidence: float | None = None,
    other_label: str = "other",
    thresholds: MonitoringThresholds | None = None,
) -> list[dict[str, Any]]:
    """Share of "other" and of low-confidence outputs in the current window vs their thresholds.

    New complaint patterns forced into old categories show up as more "other" and less
    confident outputs before anyone relabels anything. Alerts: "other" share above
    ``other_share_alert`` (default 0.15); low-confidence share (confidence below
    ``low_confidence``, default 0.5) above ``low_confidence_share_alert`` (default 0.25).

    Parameters
    ----------
    reference_labels, current_labels : mapping label -> count
    current_low_confidence, reference_low_confidence : float, optional
        Counts of outputs with confidence below ``thresholds.low_confidence``.
    """
    th = thresholds or MonitoringThresholds()
    nr, nc = sum(reference_labels.values()), sum(current_labels.values())
    rows = []
    if nc:
        share = current_labels.get(other_label, 0) / nc
        ref = reference_labels.get(other_label, 0) / nr if nr else None
        rows.append({"feature": "taxonomy:other_share", "kind": "taxonomy", "psi": None, "p_value": None,
                     "value": share, "reference_value": ref, "threshold": th.other_share_alert,
                     "status": "alert" if share > th.other_share_alert else "ok"})
        if current_low_confidence is not None:
            low = current_low_confidence / nc
            ref_low = reference_low_confidence / nr if (nr and reference_low_confidence is not None) else None
            rows.append({"feature": "taxonomy:low_confidence_share", "kind": "taxonomy", "psi": None,
                         "p_value": None, "value": low, "reference_value": ref_low,
                         "threshold": th.low_confidence_share_alert,
                         "status": "alert" if low > th.low_confidence_share_alert else "ok"})
    return rows


def _new_category(ref: Mapping[Any, float], cur: Mapping[Any, float]) -> tuple[str, float] | None:
    """The most frequent category absent from the reference, and how surprising its count is.

    The p-value is :func:`insightroi.stats.unseen_category_pvalue` (rule of three, Poisson).
    """
    n_ref, n_cur = sum(ref.values()), sum(cur.values())
    fresh = [(k, v) for k, v in cur.items() if v > 0 and not ref.get(k)]
    if not fresh or n_ref <= 0:
        return None
    cat, x = max(fresh, key=lambda kv: kv[1])
    return str(cat), unseen_category_pvalue(x, n_cur, n_ref)


def drift_by_week_counts(
    counts: Mapping[str, Mapping[Any, Mapping[Any, float]]],
    *,
    tokens: Mapping[Any, Counter] | None = None,
    reference_weeks: int = 4,
    min_rows: int = 30,
    thresholds: MonitoringThresholds | None = None,
    scan_alpha: float = 0.001,
) -> list[dict[str, Any]]:
    """Weekly drift scan from per-week category counts (what the store computes in the database).

    Each week is compared with the last ``reference_weeks`` earlier weeks that were *not*
    flagged for that feature, so a one-week outage does not contaminate the following weeks'
    reference and a lasting change keeps being flagged against the last normal weeks.

    A categorical feature is flagged when the change is both material and beyond sampling noise:
    PSI (pseudocount 0.5) at least ``psi_warn`` (default 0.1) *and* the chi-square homogeneity
    p-value below ``scan_alpha`` (default 0.001, strict because every week x feature is a test).
    Weekly samples are small: under no drift ``PSI ~ (1/n_ref + 1/n_cur) chi2_{K-1}``
    (Yurdakul 2018), which for 100 rows a week and 10 categories is ~0.1 on average, so PSI
    thresholds alone would flag noise. A PSI at or above ``psi_warn`` without significance is a
    "warn". A category absent from the reference (a new theme) is flagged on its own when its
    count is improbable at the rule-of-three rate ``3 / n_ref`` (Poisson p < ``scan_alpha``),
    since a theme at 1-2% of feedback moves PSI by less than 0.1. Text is flagged when the OOV rate of repeated new terms exceeds ``oov_alert``
    (default 0.05). ``onset`` marks the first week of a flagged episode (flagged
    now, and the previous week was not flagged for the same feature with the same driver: top
    category, or one of last week's new terms).

    Parameters
    ----------
    counts : mapping feature -> week -> category -> count
    tokens : mapping week -> Counter of tokens, optional
        Adds a ``text`` feature (vocabulary drift).
    reference_weeks : int
        Size of the trailing reference (default 4 weeks, i.e. ``reference_days`` / 7).
    min_rows : int
        Weeks (and references) with fewer rows are reported with status "skip".

    Returns
    -------
    list of dict
        One per week in order: ``{week, n, status, flagged (features), onset, onset_features,
        features: [{feature, psi | value, status, top_category}]}``.
    """
    th = thresholds or MonitoringThresholds()
    weeks = sorted({w for per in counts.values() for w in per} | set(tokens or {}), key=str)
    flagged_hist: dict[str, list[tuple[Any, str | None]]] = {}
    out = []
    prev_flags: dict[str, tuple[Any, set]] = {}
    for i, week in enumerate(weeks):
        feats = []
        flags: dict[str, tuple[Any, set]] = {}
        n_week = 0.0
        for feature, per_week in list(counts.items()) + ([("text", None)] if tokens else []):
            hist = flagged_hist.setdefault(feature, [])
            flagged_weeks = {w for w, _ in hist}
            ref_weeks = [w for w in weeks[:i] if w not in flagged_weeks][-reference_weeks:]
            if feature == "text":
                cur_c = tokens.get(week, Counter())
                ref_c: Counter = Counter()
                for w in ref_weeks:
                    ref_c.update(tokens.get(w, Counter()))
                if not ref_weeks or sum(cur_c.values()) < min_rows:
                    feats.append({"feature": feature, "status": "skip"})
                    continue
                row = text_drift_row(feature, ref_c, cur_c, th)
                top = row["new_terms"][0] if row["new_terms"] else None
                row = {"feature": feature, "value": row["oov_rate"], "js_distance": row["js_distance"],
                       "status": row["status"], "top_category": top, "new_terms": row["new_terms"]}
            else:
                cur = dict(per_week.get(week, {}))
                n_week = max(n_week, float(sum(cur.values())))
                ref: Counter = Counter()
                for w in ref_weeks:
                    ref.update(per_week.get(w, {}))
                if not ref_weeks or sum(cur.values()) < min_rows or sum(ref.values()) < min_rows:
                    feats.append({"feature": feature, "status": "skip", "psi": None})
                    continue
                full = categorical_drift(feature, ref, cur, th, pseudocount=0.5)
                row = {k: full[k] for k in ("feature", "psi", "p_value", "top_category", "top_change")}
                material = full["psi"] >= th.psi_warn
                row["status"] = ("alert" if full["p_value"] < scan_alpha else "warn") if material else "ok"
                new = _new_category(ref, cur)
                if new is not None:
                    row["new_category"], row["new_category_p"] = new
                    if new[1] < scan_alpha:
                        row["status"], row["top_category"] = "alert", new[0]
            feats.append(row)
            if row["status"] == "alert":
                top = row.get("top_category")
                drivers = set(row.get("new_terms") or []) | {top}
                flags[feature] = (top, drivers)
                hist.append((week, top))
        # A new episode: the feature was not flagged last week, or what drives it now (top
        # category, or most frequent new term) was not among last week's drivers.
        onset_features = [
            f for f, (top, _) in flags.items() if f not in prev_flags or top not in prev_flags[f][1]
        ]
        status = "alert" if flags else ("warn" if any(f["status"] == "warn" for f in feats) else "ok")
        if all(f["status"] == "skip" for f in feats):
            status = "skip"
        out.append({"week": week if isinstance(week, (str, int, float)) else str(week), "n": n_week,
                    "status": status, "flagged": sorted(flags), "onset": bool(onset_features),
                    "onset_features": onset_features, "features": feats})
        prev_flags = flags
    return out


def drift_by_week(
    week: Sequence[Any],
    columns: Mapping[str, Sequence[Any]],
    *,
    texts: Sequence[str] | None = None,
    reference_weeks: int = 4,
    min_rows: int = 30,
    thresholds: MonitoringThresholds | None = None,
    scan_alpha: float = 0.001,
) -> list[dict[str, Any]]:
    """Weekly drift scan over row-level data (see :func:`drift_by_week_counts` for the rule).

    Parameters
    ----------
    week : sequence
        The week (e.g. its Monday as a date or ISO string) of each row.
    columns : mapping name -> sequence
        Categorical columns to scan (topic, sentiment, source, locale, sku_family, ...).
    texts : sequence of str, optional
        Row texts, for vocabulary drift.
    """
    wk = np.asarray([str(w) for w in week], dtype=object)
    counts: dict[str, dict[Any, dict[Any, float]]] = {}
    for name, values in columns.items():
        vals = np.asarray(values, dtype=object)
        per: dict[Any, Counter] = {}
        for w, v in zip(wk.tolist(), vals.tolist()):
            if v is None or v != v:
                continue
            per.setdefault(w, Counter())[v] += 1
        counts[name] = {w: dict(c) for w, c in per.items()}
    tokens = None
    if texts is not None:
        tokens = {}
        for w, t in zip(wk.tolist(), texts):
            tokens.setdefault(w, Counter()).update(tokenize(t))
    return drift_by_week_counts(counts, tokens=tokens, reference_weeks=reference_weeks, min_rows=min_rows,
                                thresholds=thresholds, scan_alpha=scan_alpha)

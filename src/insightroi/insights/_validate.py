"""Honest validation of a classifier against labels: per-class P/R/F1, confusion, calibration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

__all__ = ["ValidationReport", "validate_model", "reliability_table"]


@dataclass
class ValidationReport:
    """Result of :func:`validate_model` (``to_dict()`` is JSON-able)."""

    n: int
    accuracy: float
    macro_f1: float
    per_class: list[dict]
    labels: list[str]
    confusion: list[list[int]]
    ece: float | None = None
    reliability: list[dict] = field(default_factory=list)
    by_slice: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def reliability_table(confidence, correct, n_bins: int = 10) -> tuple[list[dict], float]:
    """Equal-width reliability bins and the expected calibration error.

    ECE = sum_b (n_b / n) |accuracy_b - mean confidence_b| (Naeini et al. 2015; Guo et al. 2017).
    """
    conf = np.clip(np.asarray(confidence, float), 0, 1)
    corr = np.asarray(correct, float)
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows, ece = [], 0.0
    for k in range(n_bins):
        m = b == k
        if not m.any():
            continue
        acc, mc = float(corr[m].mean()), float(conf[m].mean())
        ece += m.sum() / len(conf) * abs(acc - mc)
        rows.append({"bin_low": float(edges[k]), "bin_high": float(edges[k + 1]), "n": int(m.sum()),
                     "mean_confidence": mc, "accuracy": acc})
    return rows, float(ece)


def _prf(y_true, y_pred, labels):
    per = []
    f1s = []
    for lab in labels:
        tp = int(np.sum((y_pred == lab) & (y_true == lab)))
        fp = int(np.sum((y_pred == lab) & (y_true != lab)))
        fn = int(np.sum((y_pred != lab) & (y_true == lab)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per.append({"label": str(lab), "precision": p, "recall": r, "f1": f, "support": tp + fn, "predicted": tp + fp})
        if tp + fn > 0:
            f1s.append(f)
    return per, float(np.mean(f1s)) if f1s else 0.0


def validate_model(
    predictions,
    labels,
    *,
    confidence=None,
    times=None,
    slice_freq: str = "M",
    n_bins: int = 10,
    label_set=None,
) -> ValidationReport:
    """Compare predicted labels with true labels.

    Parameters
    ----------
    predictions : array-like of str, or a DataFrame with ``label`` (and ``confidence``)
        E.g. the output of a classifier's ``classify``.
    labels : array-like of str
        True labels (same order).
    confidence : array-like, optional
        Probability that each prediction is right; gives the reliability table and ECE.
    times : array-like of datetimes, optional
        Gives per-slice accuracy and macro-F1 (``slice_freq``: pandas period alias, default month).
    label_set : sequence, optional
        Classes to report (default: union of true and predicted labels). Macro-F1 averages the
        classes that occur in the true labels.
    """
    if isinstance(predictions, pd.DataFrame):
        if confidence is None and "confidence" in predictions:
            confidence = predictions["confidence"].to_numpy()
        predictions = predictions["label"].to_numpy()
    y_pred = np.asarray(predictions, dtype=object).astype(str)
    y_true = np.asarray(labels, dtype=object).astype(str)
    if len(y_pred) != len(y_true):
        raise ValueError(f"predictions ({len(y_pred)}) and labels ({len(y_true)}) differ in length")
    labs = list(label_set) if label_set is not None else sorted(set(y_true) | set(y_pred))
    per, macro = _prf(y_true, y_pred, labs)
    index = {lab: i for i, lab in enumerate(labs)}
    cm = np.zeros((len(labs), len(labs)), dtype=int)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    rep = ValidationReport(
        n=int(len(y_true)), accuracy=float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        macro_f1=macro, per_class=per, labels=[str(x) for x in labs], confusion=cm.tolist(),
    )
    if confidence is not None:
        rep.reliability, rep.ece = reliability_table(confidence, y_true == y_pred, n_bins)
    if times is not None:
        per_t = pd.PeriodIndex(pd.to_datetime(pd.Series(times)).dt.tz_localize(None), freq=slice_freq)
        for period in sorted(set(per_t)):
            m = np.asarray(per_t == period)
            _, mf = _prf(y_true[m], y_pred[m], labs)
            rep.by_slice.append({"slice": str(period), "n": int(m.sum()),
                                 "accuracy": float(np.mean(y_true[m] == y_pred[m])), "macro_f1": mf})
    return rep

"""Quality drift from human review labels: calibration, per-topic F1 and confusion by time slice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from insightroi.stats import chi_square_counts

__all__ = ["expected_calibration_error", "confusion_matrix", "per_label_f1", "quality_by_slice"]


def expected_calibration_error(confidence, correct, *, n_bins: int = 10) -> float:
    """Expected calibration error with equal-width confidence bins.

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over bins ``((b-1)/B, b/B]`` (Naeini, Cooper &
    Hauskrecht 2015; Guo et al. 2017, "On calibration of modern neural networks").
    ``MonitoringThresholds.ece_alert`` (default 0.05) is the alert level.

    Parameters
    ----------
    confidence : array_like of float in [0, 1]
        The model's confidence in the label it output.
    correct : array_like of bool
        Whether the reviewer agreed with that label.
    n_bins : int
        Number of equal-width bins (default 10).
    """
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    ok = np.isfinite(conf)
    conf, hit = conf[ok], hit[ok]
    if conf.size == 0:
        return float("nan")
    # Bin b holds (b/B, (b+1)/B]; confidence 0 goes to the first bin.
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    conf_b = np.bincount(idx, weights=conf, minlength=n_bins)
    hit_b = np.bincount(idx, weights=hit, minlength=n_bins)
    return float(np.sum(np.abs(hit_b - conf_b)) / conf.size)


def confusion_matrix(y_true, y_pred, labels: Sequence[str]) -> np.ndarray:
    """Counts ``C[i, j]`` of items with true label ``labels[i]`` predicted as ``labels[j]``.

    Pairs with a label outside ``labels`` are ignored (as in scikit-learn).
    """
    index = {lab: i for i, lab in enumerate(labels)}
    t = np.array([index.get(v, -1) for v in y_true])
    p = np.array([index.get(v, -1) for v in y_pred])
    keep = (t >= 0) & (p >= 0)
    k = len(labels)
    return np.bincount(t[keep] * k + p[keep], minlength=k * k).reshape(k, k)


def per_label_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of each label from a confusion matrix (0 where a label has no true or predicted item)."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def quality_by_slice(
    slices,
    y_true,
    y_pred,
    *,
    confidence=None,
    labels: Sequence[str] | None = None,
    ece_alert: float = 0.05,
    n_bins: int = 10,
) -> list[dict[str, Any]]:
    """Calibration, per-label F1 and confusion matrix per time slice, compared with the first slice.

    Parameters
    ----------
    slices : array_like
        The slice (e.g. week start or period label) of each reviewed item; slices are sorted and
        the first one is the reference.
    y_true, y_pred : array_like of str
        Reviewer label and model label.
    confidence : array_like of float, optional
        Model confidence, for the ECE.
    labels : sequence of str, optional
        Label order (default: sorted union).
    ece_alert : float
        ECE alert level (``MonitoringThresholds.ece_alert``, default 0.05).

    Returns
    -------
    list of dict
        One per slice: ``slice, n, accuracy, macro_f1, f1 (label -> F1), ece, confusion
        (list of lists), confusion_shift`` (half the L1 distance between the row-normalised
        confusion matrix and the reference slice's, averaged over labels present in both),
        ``confusion_chi2_p`` (chi-square homogeneity of the confusion cells vs the reference
        slice) and ``status`` ("alert" when ECE exceeds ``ece_alert`` or macro-F1 dropped by
        more than 0.05 from the reference slice, else "ok").
    """
    s = np.asarray(slices)
    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    conf = None if confidence is None else np.asarray(confidence, dtype=float)
    labels = list(labels) if labels is not None else sorted(set(yt.tolist()) | set(yp.tolist()), key=str)
    out: list[dict[str, Any]] = []
    ref_cm = None
    ref_f1 = None
    for sl in sorted(set(s.tolist()), key=str):
        m = s == sl
        cm = confusion_matrix(yt[m], yp[m], labels)
        f1 = per_label_f1(cm)
        present = (cm.sum(axis=1) + cm.sum(axis=0)) > 0
        macro = float(f1[present].mean()) if present.any() else float("nan")
        n = int(m.sum())
        ece = (
            expected_calibration_error(conf[m], yt[m] == yp[m], n_bins=n_bins) if conf is not None else None
        )
        row: dict[str, Any] = {
            "slice": str(sl),
            "n": n,
            "accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan"),
            "macro_f1": macro,
            "f1": {lab: float(v) for lab, v, p in zip(labels, f1, present) if p},
            "ece": ece,
            "confusion": cm.tolist(),
            "confusion_shift": 0.0,
            "confusion_chi2_p": 1.0,
        }
        if ref_cm is None:
            ref_cm, ref_f1 = cm, macro
        else:
            rows = (cm.sum(axis=1) > 0) & (ref_cm.sum(axis=1) > 0)
            if rows.any():
                a = cm[rows] / cm[rows].sum(axis=1, keepdims=True)
                b = ref_cm[rows] / ref_cm[rows].sum(axis=1, keepdims=True)
                row["confusion_shift"] = float(np.mean(np.abs(a - b).sum(axis=1) / 2))
            row["confusion_chi2_p"] = chi_square_counts(ref_cm.ravel(), cm.ravel())[1]
        alert = (ece is not None and ece > ece_alert) or (
            ref_f1 is not None and np.isfinite(macro) and macro < ref_f1 - 0.05
        )
        row["status"] = "alert" if alert else "ok"
        out.append(row)
    return out

"""Human review queue: sample high-severity and low-confidence items; store and use the labels."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from insightroi.errors import InsightRoiError
from insightroi.insights._spikes import current_topic_version
from insightroi.insights._validate import ValidationReport, validate_model
from insightroi.store import Store

__all__ = ["review_queue", "record_review_labels", "validate_from_reviews", "read_review_labels",
           "check_review_labels", "ReviewLabelsError", "EXPORT_COLUMNS", "TASK_LABELS"]

#: Columns of the exported queue (``insightroi review --out``); reviewers fill ``label``.
EXPORT_COLUMNS = ["feedback_id", "text", "model_label", "confidence", "severity", "stratum", "inclusion_prob",
                  "model_version", "label"]
#: Labels a reviewer may give per task besides the taxonomy's topics (topic task).
TASK_LABELS = {"sentiment": ("positive", "neutral", "negative"), "severity": ("low", "medium", "high", "critical")}


class ReviewLabelsError(InsightRoiError):
    """A review-labels file that cannot be recorded; the message names the file, line and field."""


def review_queue(
    store: Store,
    program,
    n: int = 50,
    rng: np.random.Generator | None = None,
    *,
    model_version: str | None = None,
    high_share: float = 0.5,
) -> pd.DataFrame:
    """Sample ``n`` items for human review: about ``high_share`` from high/critical severity, the rest
    from low-confidence topic predictions (confidence < ``monitoring.low_confidence`` or "other").

    Items already reviewed are skipped. Sampling is uniform without replacement inside each
    stratum; ``inclusion_prob`` (stratum sample size / stratum size) lets a reviewer weight labels
    back to the stratum (Horvitz-Thompson) when estimating error rates.

    Returns
    -------
    DataFrame with feedback_id, text, task ("topic"), model_version, model_label, confidence,
    severity, stratum (high_severity | low_confidence), inclusion_prob.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    version = model_version or current_topic_version(store)
    cols = ["feedback_id", "text", "task", "model_version", "model_label", "confidence", "severity",
            "stratum", "inclusion_prob"]
    if version is None:
        return pd.DataFrame(columns=cols)
    ins = store.table("insights")
    fb = store.table("feedback")
    topic = ins.filter((ins.task == "topic") & (ins.model_version == version)).select(
        feedback_id=ins.feedback_id, model_label=ins.label, confidence=ins.confidence
    )
    sev = ins.filter(ins.task == "severity").select(sfid=ins.feedback_id, severity=ins.label, smv=ins.model_version)
    df = topic.join(fb.select(fid=fb.id, text=fb.text), topic.feedback_id == fb.id).execute()
    sdf = sev.execute()
    if not sdf.empty:
        sdf = sdf.sort_values("smv").drop_duplicates("sfid", keep="last")
        df = df.merge(sdf[["sfid", "severity"]], left_on="feedback_id", right_on="sfid", how="left")
    else:
        df["severity"] = None
    rl = store.table("review_labels")
    reviewed = set(rl.filter(rl.task == "topic").select("feedback_id").execute()["feedback_id"])
    df = df[~df.feedback_id.isin(reviewed) & (df.model_label != "unclassifiable")]
    thr = program.monitoring.low_confidence
    high = df[df.severity.isin(["high", "critical"])]
    low = df[~df.index.isin(high.index) & ((df.confidence < thr) | (df.model_label == "other"))]
    n_high = min(len(high), int(round(n * high_share)))
    n_low = min(len(low), n - n_high)
    n_high = min(len(high), n - n_low)
    parts = []
    for frame, k, name in ((high, n_high, "high_severity"), (low, n_low, "low_confidence")):
        if k <= 0:
            continue
        pick = frame.iloc[np.sort(rng.choice(len(frame), k, replace=False))].copy()
        pick["stratum"] = name
        pick["inclusion_prob"] = k / len(frame)
        parts.append(pick)
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["task"] = "topic"
    out["model_version"] = version
    return out[cols].reset_index(drop=True)


def record_review_labels(store: Store, labels: pd.DataFrame, *, reviewer: str | None = None) -> int:
    """Store human labels (columns feedback_id, label, optional task, reviewer, model_version,
    model_label, reviewed_at). The row id is ``review:{feedback_id}:{task}:{reviewer}``; a repeat
    of the same reviewer's label for the same item replaces nothing (first label kept)."""
    df = labels.copy()
    if "task" not in df:
        df["task"] = "topic"
    if "reviewer" not in df or reviewer is not None:
        df["reviewer"] = reviewer or "reviewer"
    if "reviewed_at" not in df:
        df["reviewed_at"] = datetime.now(timezone.utc).replace(tzinfo=None)
    df["id"] = [f"review:{f}:{t}:{r}" for f, t, r in zip(df.feedback_id, df.task, df.reviewer)]
    keep = [c for c in ("id", "feedback_id", "task", "label", "reviewer", "reviewed_at", "model_version", "model_label")
            if c in df]
    df = df[keep].drop_duplicates("id")
    rl = store.table("review_labels")
    existing = set(rl.filter(rl.id.isin(df.id.tolist())).select("id").execute()["id"])
    df = df[~df.id.isin(existing)]
    with store.transaction():
        return store.append("review_labels", df)


def store_checked_labels(store: Store, labels: pd.DataFrame, blank: int) -> dict[str, int]:
    """Store labels that :func:`check_review_labels` accepted; what was recorded, counted.

    The CLI (``insightroi review --labels``) and the dashboard's review page report the same
    counts from here.

    Parameters
    ----------
    store : Store
        Where the labels go.
    labels : DataFrame
        As :func:`check_review_labels` or :func:`read_review_labels` returned them.
    blank : int
        The blank items they skipped.

    Returns
    -------
    dict
        ``rows`` (labels given), ``recorded`` (new), ``already_recorded`` (the same reviewer's
        earlier label for the item is kept) and ``blank_skipped``.
    """
    written = record_review_labels(store, labels) if not labels.empty else 0
    return {"rows": int(len(labels)), "recorded": int(written), "already_recorded": int(len(labels) - written),
            "blank_skipped": int(blank)}


def validate_from_reviews(store: Store, *, task: str = "topic", model_version: str | None = None) -> ValidationReport | None:
    """Validate the stored predictions of ``model_version`` against the human review labels."""
    version = model_version or current_topic_version(store)
    rl = store.table("review_labels").filter(lambda t: t.task == task).execute()
    if rl.empty or version is None:
        return None
    ins = store.table("insights")
    pred = ins.filter((ins.task == task) & (ins.model_version == version)).select(
        "feedback_id", "label", "confidence").execute()
    m = rl.drop_duplicates("feedback_id", keep="last").merge(pred, on="feedback_id", suffixes=("_true", ""))
    if m.empty:
        return None
    rep = validate_model(m["label"].to_numpy(), m["label_true"].to_numpy(), confidence=m["confidence"].to_numpy(),
                         times=m["reviewed_at"])
    rep.notes.append("review items are sampled from high-severity and low-confidence strata: "
                     "these figures describe the hard cases, not the whole stream")
    return rep


def read_review_labels(path, program, store: Store, *, reviewer: str | None = None) -> tuple[pd.DataFrame, int]:
    """Read and check a reviewer's labels CSV before anything is stored.

    Columns: ``feedback_id`` (or ``id``) and ``label`` required; ``task`` (default topic),
    ``reviewer``, ``model_version``, ``model_label`` optional; the export's other columns are
    ignored. Rows whose label is blank are skipped (items the reviewer did not get to).

    Parameters
    ----------
    path : str or Path
        The CSV file.
    program : Program
        Its taxonomy gives the valid topic labels (plus "other").
    store : Store
        Every feedback_id must be in its feedback table.
    reviewer : str, optional
        Who reviewed; needed when the file has no ``reviewer`` column.

    Returns
    -------
    (DataFrame, int)
        The labels, ready for :func:`record_review_labels`, and the number of blank rows skipped.

    Raises
    ------
    ReviewLabelsError
        Naming the file, the line (the header is line 1) and the field at fault: missing column,
        empty or unknown feedback id, a label not in the taxonomy, an unknown task, one item given
        two different labels, no reviewer.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise ReviewLabelsError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReviewLabelsError(f"{path}: not a readable UTF-8 CSV ({exc})") from None
    cols = [c.strip() for c in header if c is not None]
    id_col = "feedback_id" if "feedback_id" in cols else ("id" if "id" in cols else None)
    if id_col is None or "label" not in cols:
        missing = [c for c, ok in (("feedback_id", id_col), ("label", "label" in cols)) if not ok]
        raise ReviewLabelsError(f"{path}: line 1: missing column(s) {', '.join(missing)} (have: {', '.join(cols) or 'none'})")
    if reviewer is None and "reviewer" not in cols:
        raise ReviewLabelsError(f"{path}: no reviewer column; name the reviewer (--reviewer NAME)")
    return check_review_labels(((f"line {line}", r) for line, r in enumerate(rows, start=2)), program, store,
                               source=str(path), id_field=id_col, reviewer=reviewer)


def check_review_labels(rows, program, store: Store, *, source: str, id_field: str = "feedback_id",
                        reviewer: str | None = None) -> tuple[pd.DataFrame, int]:
    """Check reviewed items before anything is stored (the CSV file's and the dashboard form's rows).

    Parameters
    ----------
    rows : iterable of (str, dict)
        Each item's position as the error should name it (``"line 7"``, ``"item 3"``) and its
        fields: ``id_field`` and ``label``; ``task``, ``reviewer``, ``model_version`` and
        ``model_label`` optional. Items with a blank label are skipped and counted.
    program : Program
        Its taxonomy gives the valid topic labels (plus "other").
    store : Store
        Every feedback id must be in its feedback table.
    source : str
        What the rows came from, first in every error (the file's path, "review form").
    id_field : str
        The field holding the feedback id (``feedback_id`` or ``id``).
    reviewer : str, optional
        Who reviewed; overrides a ``reviewer`` field.

    Returns
    -------
    (DataFrame, int)
        The labels, ready for :func:`record_review_labels`, and the number of blank items skipped.

    Raises
    ------
    ReviewLabelsError
        Naming the source, position and field: empty or unknown feedback id, a label not in the
        taxonomy, an unknown task, one item given two different labels, no reviewer.
    """
    valid = {"topic": {t.topic for t in program.taxonomy} | {"other"},
             **{k: set(v) for k, v in TASK_LABELS.items()}}
    out, blank, seen = [], 0, {}
    for where, r in rows:
        r = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in r.items()}
        label = r.get("label") or ""
        if not label:
            blank += 1
            continue
        fid = r.get(id_field) or ""
        if not fid:
            raise ReviewLabelsError(f"{source}: {where}, field {id_field!r}: empty (label {label!r} given)")
        task = r.get("task") or "topic"
        if task not in valid:
            raise ReviewLabelsError(f"{source}: {where}, field 'task': {task!r} is not one of {', '.join(sorted(valid))}")
        if label not in valid[task]:
            raise ReviewLabelsError(f"{source}: {where}, field 'label': {label!r} is not a {task} label "
                                    f"(valid: {', '.join(sorted(valid[task]))})")
        who = reviewer or r.get("reviewer") or ""
        if not who:
            raise ReviewLabelsError(f"{source}: {where}, field 'reviewer': empty; name the reviewer (--reviewer NAME)")
        key = (fid, task, who)
        if key in seen and seen[key][1] != label:
            raise ReviewLabelsError(f"{source}: {where}, field 'label': {fid} was labelled {seen[key][1]!r} on "
                                    f"{seen[key][0]} and {label!r} here")
        seen[key] = (where, label)
        out.append({"feedback_id": fid, "task": task, "label": label, "reviewer": who, "position": where,
                    "model_version": r.get("model_version") or None, "model_label": r.get("model_label") or None})
    df = pd.DataFrame(out, columns=["feedback_id", "task", "label", "reviewer", "position", "model_version", "model_label"])
    if not df.empty:
        fb = store.table("feedback")
        known = set(fb.filter(fb.id.isin(sorted(set(df.feedback_id)))).select("id").execute()["id"])
        bad = df[~df.feedback_id.isin(known)]
        if not bad.empty:
            r = bad.iloc[0]
            raise ReviewLabelsError(f"{source}: {r['position']}, field {id_field!r}: {r.feedback_id!r} is not in the "
                                    f"store's feedback ({len(bad)} unknown id(s))")
    return df.drop(columns="position").drop_duplicates(["feedback_id", "task", "reviewer"]), blank

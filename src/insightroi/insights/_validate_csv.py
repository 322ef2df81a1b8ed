"""``validate-model``: classify a user's labelled CSV and validate against its labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from insightroi.errors import DataError, check_option
from insightroi.insights._classify import build_models
from insightroi.insights._validate import ValidationReport, validate_model

__all__ = ["validate_csv"]

_TIME_COLUMNS = ("time", "event_time", "date", "created_at", "timestamp")


def validate_csv(path, program, *, task: str = "auto", method: str = "lexicon") -> ValidationReport:
    """Validate the model on a CSV with columns ``text`` and ``label`` (optional time column).

    ``task="auto"`` picks sentiment when every label is negative/neutral/positive, else topic.
    Labels may be any taxonomy topic or "other". Per-time-slice figures (monthly) are added when
    the file has a ``time``/``event_time``/``date`` column.
    """
    check_option("task", task, ("auto", "topic", "sentiment"))
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    missing = {"text", "label"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; need text and label")
    df = df.dropna(subset=["label"])
    labels = df["label"].astype(str).str.strip()
    if task == "auto":
        task = "sentiment" if set(labels.str.lower()) <= {"negative", "neutral", "positive"} else "topic"
    models = build_models(program, method)
    model = models.sentiment if task == "sentiment" else models.topic
    pred = model.classify(df["text"].tolist())
    tcol = next((c for c in _TIME_COLUMNS if c in df.columns), None)
    times = pd.to_datetime(df[tcol], errors="coerce", utc=True) if tcol else None
    if times is not None and times.isna().any():
        times = None
    rep = validate_model(pred, labels.str.lower() if task == "sentiment" else labels, times=times)
    rep.notes.append(f"task={task}; model_version={pred['model_version'].iloc[0] if len(pred) else None}; file={path.name}")
    return rep

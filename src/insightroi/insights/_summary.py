"""The ``insights`` section of the report bundle (see CONTRACTS.md)."""

from __future__ import annotations

import json

import numpy as np

from insightroi.insights._review import validate_from_reviews
from insightroi.insights._spikes import current_topic_version
from insightroi.insights._themes import discover_themes
from insightroi.store import Store

__all__ = ["insights_summary"]


def insights_summary(
    store: Store,
    program,
    *,
    model_version: str | None = None,
    alerts=None,
    themes=None,
    validation=None,
    discover: bool = True,
    max_alerts: int = 500,
) -> dict:
    """Summarise the insight layer for the report bundle.

    Returns ``{"model_version", "topics": [{topic, count, share, owner}], "alerts": [{alert_id,
    topic, sku_family, day, observed, expected, p_value, owner}], "new_themes": [{terms, examples,
    size}], "validation": {"macro_f1", ...}}``.

    ``alerts`` default: the ``alert_delivered`` chain events written by :func:`write_alerts`.
    ``themes`` default: :func:`discover_themes` (TF-IDF) when ``discover``. ``validation`` may be
    a ValidationReport or dict; default: validation against stored human review labels, if any.
    """
    version = model_version or current_topic_version(store)
    owners = {t.topic: t.owner for t in program.taxonomy}
    topics = []
    if version is not None:
        ins = store.table("insights")
        t = ins.filter((ins.task == "topic") & (ins.model_version == version))
        df = t.group_by("label").aggregate(n=t.id.count()).execute()
        total = int(df.n.sum()) if not df.empty else 0
        for r in df.sort_values("n", ascending=False).itertuples():
            topics.append({"topic": str(r.label), "count": int(r.n), "share": (int(r.n) / total) if total else 0.0,
                           "owner": owners.get(str(r.label))})
    if alerts is None:
        ce = store.table("chain_events")
        adf = ce.filter(ce.event_type == "alert_delivered").order_by("event_time").limit(max_alerts).execute()
        alert_rows = []
        for r in adf.itertuples():
            try:
                p = json.loads(r.payload) if r.payload else {}
            except json.JSONDecodeError:
                p = {}
            alert_rows.append({
                "alert_id": r.alert_id or r.id, "topic": r.topic, "sku_family": r.sku_family,
                "day": p.get("day") or (r.event_time.date().isoformat() if r.event_time is not None else None),
                "observed": p.get("observed"), "expected": p.get("expected"), "p_value": p.get("p_value"),
                "owner": r.team,
            })
    else:
        alert_rows = []
        for a in list(alerts)[:max_alerts]:
            d = a.to_dict() if hasattr(a, "to_dict") else dict(a)
            alert_rows.append({k: d.get(k) for k in
                               ("alert_id", "topic", "sku_family", "day", "observed", "expected", "p_value", "owner")})
    if themes is None and discover and version is not None:
        try:
            themes = discover_themes(store, program, model_version=version, rng=np.random.default_rng(0))
        except Exception as exc:  # a summary must not fail the report; say why it is empty
            themes = []
            topics_note = f"theme discovery failed: {exc}"
        else:
            topics_note = None
    else:
        topics_note = None
    new_themes = [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in (themes or [])]
    if validation is None:
        rep = validate_from_reviews(store, model_version=version) if version else None
        validation = rep.to_dict() if rep is not None else {}
        if rep is not None:
            validation["source"] = "human review labels"
    elif hasattr(validation, "to_dict"):
        validation = validation.to_dict()
    out = {"model_version": version, "topics": topics, "alerts": alert_rows, "new_themes": new_themes,
           "validation": validation}
    if topics_note:
        out["notes"] = [topics_note]
    return out

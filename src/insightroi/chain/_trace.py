"""The chain of custody of one insight, alert, feedback item or chain event."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import ibis
import pandas as pd

from insightroi.chain._kpis import _records
from insightroi.chain._links import (
    CONTROLLED, EPISODE_UPDATE, UNCONTROLLED, alert_chains, control_complaints_around, control_families,
    episode_facts, insight_events, linked_events, topic_feedback,
)
from insightroi.store import Store

__all__ = ["Trace", "trace"]

TraceKind = Literal["alert", "insight", "feedback", "event"]


@dataclass(frozen=True)
class Trace:
    """Everything known about one id, from the customer's words to what moved after the fix.

    Attributes
    ----------
    id : str
        The id traced.
    kind : {"alert", "insight", "feedback", "event"}
        What the id turned out to be.
    feedback : list of dict
        The raw feedback items behind the insight (source, text, rating, SKU, family, time) with
        any human review labels.
    insights : list of dict
        Model outputs on those items: task, label, confidence, evidence, method, model version.
    insight_events : list of dict
        ``insight`` chain events (e.g. a detected spike) with their parsed payload.
    alerts : list of dict
        Each alert: who was alerted (team, recipient), when, how it was linked (``id`` or
        ``inferred``), ``events`` (acknowledged, action taken, fix deployed, outcome, ignored,
        overridden: actor, time, link, payload) and ``outcome`` (the topic's complaints in the
        alert's SKU family in the weeks before and after the fix, or after delivery when no fix).
    notes : list of str
        How the trace was assembled where it was not by ids.
    """

    id: str
    kind: TraceKind
    feedback: list[dict[str, Any]] = field(default_factory=list)
    insights: list[dict[str, Any]] = field(default_factory=list)
    insight_events: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def timeline(self) -> list[dict[str, Any]]:
        """Every dated step, oldest first: ``{"time", "stage", "what"}``."""
        steps: list[dict[str, Any]] = []
        for f in self.feedback:
            steps.append({"time": f.get("event_time"), "stage": "feedback",
                          "what": f"{f.get('source')} on {f.get('sku') or f.get('sku_family')}: {_short(f.get('text'))}"})
        for i in self.insights:
            steps.append({"time": i.get("created_at"), "stage": "insight",
                          "what": f"{i.get('task')} = {i.get('label')} (confidence {_fmt(i.get('confidence'))}, "
                                  f"{i.get('method')}, model {i.get('model_version')})"})
        for e in self.insight_events:
            steps.append({"time": e.get("event_time"), "stage": "insight",
                          "what": f"insight {e.get('iid')} on {e.get('topic')} / {e.get('sku_family')}"})
        for a in self.alerts:
            steps.append({"time": a.get("delivered_at"), "stage": "alert_delivered",
                          "what": f"alert {a['alert_id']} to {a.get('team')}"
                                  + (f" ({a['recipient']})" if a.get("recipient") else "")
                                  + (" [inferred link]" if a.get("link") == "inferred" else "")})
            for e in a.get("events", []):
                p = e.get("payload") if isinstance(e.get("payload"), dict) else {}
                if e.get("event_type") == EPISODE_UPDATE:
                    steps.append({"time": e.get("event_time"), "stage": EPISODE_UPDATE,
                                  "what": f"episode went on: last seen {p.get('last_seen')}, {p.get('periods')} spike "
                                          f"days, peak {p.get('peak_observed')} mentions (no new alert, no new message)"})
                    continue
                steps.append({"time": e.get("event_time"), "stage": e.get("event_type"),
                              "what": f"{e.get('actor') or e.get('team') or '?'}"
                                      + (f": {_short(_payload_text(e.get('payload')))}" if e.get("payload") else "")
                                      + (f" [{e['link']} link]" if e.get("link") not in (None, "id") else "")})
        return sorted(steps, key=lambda s: (s["time"] is None, str(s["time"])))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (timestamps as ISO strings)."""
        return _json({"id": self.id, "kind": self.kind, "feedback": self.feedback, "insights": self.insights,
                      "insight_events": self.insight_events, "alerts": self.alerts, "notes": self.notes,
                      "timeline": self.timeline()})


def _json(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json(v) for v in obj]
    if isinstance(obj, (datetime, pd.Timestamp)):
        return obj.isoformat()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _short(text: Any, n: int = 90) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.2f}"


def _payload_text(p: Any) -> str:
    if isinstance(p, dict):
        return ", ".join(f"{k}={v}" for k, v in p.items())
    return str(p)


def _parse_payload(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        p = r.get("payload")
        if isinstance(p, str) and p:
            try:
                r["payload"] = json.loads(p)
            except ValueError:
                pass  # free text stays as it was written
    return rows


def _exists(t: ibis.Table) -> bool:
    return int(t.count().execute()) > 0


def _payload_feedback_ids(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return []
    ids = payload.get("feedback_ids") or []
    if payload.get("feedback_id"):
        ids = [payload["feedback_id"], *ids]
    return [str(i) for i in ids]


def trace(store: Store, id: str, *, infer_window_days: int = 30, outcome_window_days: int = 28) -> Trace:
    """The full chain of custody of one insight, alert, feedback item or chain event id.

    Parameters
    ----------
    store : Store
        Any backend.
    id : str
        An ``insights.id`` (or an ``insight_id`` in chain events), an ``alert_id``, a
        ``feedback.id``, or a ``chain_events.id``.
    infer_window_days : int
        Window of the SKU / family + topic + time links used where ids are missing.
    outcome_window_days : int
        Width of the before / after windows around the fix for the complaint counts (default
        four weeks), also reported week by week.

    Returns
    -------
    Trace

    Raises
    ------
    KeyError
        When no table knows the id.
    """
    ev = store.table("chain_events")
    ins = store.table("insights")
    fb = store.table("feedback")
    # One row per alert, small: fetched once and filtered here, because compiling the chain
    # expression dominates the cost of a trace (each compile is ~0.5 s of Ibis rewriting).
    chains = alert_chains(store, infer_window_days=infer_window_days).execute()
    chains["delivered_at"] = pd.to_datetime(chains["delivered_at"])
    notes: list[str] = []
    alert_ids: dict[str, str] = {}  # alert id -> how it was reached
    insight_ids: set[str] = set()
    feedback_ids: set[str] = set()

    if (chains.alert_id == id).any():
        kind: TraceKind = "alert"
        alert_ids[id] = "id"
    elif _exists(ins.filter(ins.id == id)) or _exists(ev.filter(ev.insight_id == id)):
        kind = "insight"
        insight_ids.add(id)
    elif _exists(fb.filter(fb.id == id)):
        kind = "feedback"
        feedback_ids.add(id)
    elif _exists(ev.filter(ev.id == id)):
        kind = "event"
        row = ev.filter(ev.id == id).execute().iloc[0]
        if row.event_type == "insight":
            insight_ids.add(str(row.insight_id) if pd.notna(row.insight_id) else id)
        else:
            le = linked_events(store, infer_window_days=infer_window_days)
            hit = le.filter(le.id == id).execute()
            if not hit.empty and hit.link.iloc[0] in ("id", "insight_id", "inferred"):
                alert_ids[str(hit.resolved_alert_id.iloc[0])] = str(hit.link.iloc[0])
                if hit.link.iloc[0] == "inferred":
                    notes.append(f"event {id} carries no ids; linked to its alert by SKU family, topic and time")
            else:
                notes.append(f"event {id} could not be linked to any alert")
    else:
        raise KeyError(f"no insight, alert, feedback item or chain event has id {id!r}")

    # Alerts -> their insights, and the feedback rows the detector recorded as the alert's evidence.
    if alert_ids:
        insight_ids.update(str(x) for x in chains[chains.alert_id.isin(list(alert_ids))].insight_id.dropna())
        delivered = ev.filter((ev.event_type == "alert_delivered") & ev.alert_id.isin(sorted(alert_ids)))
        for r in _parse_payload(_records(delivered.select("payload").execute())):
            feedback_ids.update(_payload_feedback_ids(r.get("payload")))

    # Insights -> feedback and (when we started below the alert) the alerts they raised.
    insight_rows: list[dict] = []
    ie_rows: list[dict] = []
    if insight_ids:
        insight_rows = _records(ins.filter(ins.id.isin(sorted(insight_ids))).order_by("created_at").execute())
        ie = insight_events(store)
        ie_rows = _parse_payload(_records(
            ie.filter(ie.iid.isin(sorted(insight_ids))).order_by("event_time").execute()
        ))
        feedback_ids.update(str(r["feedback_id"]) for r in insight_rows if r.get("feedback_id"))
        for r in ie_rows:
            feedback_ids.update(_payload_feedback_ids(r.get("payload")))
    if kind == "feedback":
        more = ins.filter(ins.feedback_id == id).order_by("created_at").execute()
        insight_rows.extend(_records(more))
        insight_ids.update(str(x) for x in more.id)
    if kind in ("insight", "feedback") and insight_ids:
        for a in chains[chains.insight_id.isin(list(insight_ids))].alert_id:
            alert_ids.setdefault(str(a), "id")
    if kind == "feedback" and not alert_ids:
        # No id path: an alert on this item's topic and family delivered soon after it.
        f = fb.filter(fb.id == id).execute().iloc[0]
        topics = [r["label"] for r in insight_rows if r.get("task") == "topic"]
        if topics and pd.notna(f.sku_family):
            t0 = pd.Timestamp(f.event_time)
            hits = chains[(chains.sku_family == f.sku_family) & chains.topic.isin(topics)
                          & (chains.delivered_at >= t0)
                          & (chains.delivered_at <= t0 + pd.Timedelta(days=infer_window_days))]
            for a in hits.alert_id:
                alert_ids.setdefault(str(a), "inferred")
            if len(hits):
                notes.append(f"feedback {id} linked to {len(hits)} alert(s) by SKU family, topic and time (no ids)")

    feedback_rows: list[dict] = []
    if feedback_ids:
        feedback_rows = _records(fb.filter(fb.id.isin(sorted(feedback_ids))).order_by("event_time").execute())
        rl = store.table("review_labels")
        reviews = _records(rl.filter(rl.feedback_id.isin(sorted(feedback_ids))).execute())
        for f in feedback_rows:
            f.pop("ingested_at", None)
            f.pop("batch_id", None)
            f["reviews"] = [
                {k: r.get(k) for k in ("task", "label", "model_label", "reviewer", "reviewed_at")}
                for r in reviews if r.get("feedback_id") == f["id"]
            ]

    alerts_out = []
    if alert_ids:
        le = linked_events(store, infer_window_days=infer_window_days)
        evs = _parse_payload(_records(
            le.filter(le.resolved_alert_id.isin(list(alert_ids))).order_by("event_time", "id").execute()
        ))
        arows = _records(chains[chains.alert_id.isin(list(alert_ids))].sort_values(["delivered_at", "alert_id"]))
        controls = control_families(store)
        episodes = {r["alert_id"]: r for r in _records(episode_facts(store))}
        # The detector's updates of a growing episode are the alert's own events (ids only).
        upd = _parse_payload(_records(ev.filter((ev.event_type == EPISODE_UPDATE) & ev.alert_id.isin(list(alert_ids)))
                                      .order_by("event_time", "id").execute()))
        for a in arows:
            a["link"] = alert_ids[a["alert_id"]]
            a["episode"] = episodes.get(a["alert_id"])
            mine = [e for e in evs if e.get("resolved_alert_id") == a["alert_id"]]
            mine += [{**e, "link": "id"} for e in upd if e.get("alert_id") == a["alert_id"]]
            mine.sort(key=lambda e: (pd.Timestamp(e.get("event_time")), str(e.get("id"))))
            a["events"] = [{k: e.get(k) for k in ("id", "event_type", "event_time", "actor", "team", "link", "payload")}
                           for e in mine]
            a["outcome"] = _outcome(store, a, outcome_window_days, controls)
            alerts_out.append(a)
        if any(a["insight_link"] == "inferred" for a in arows):
            notes.append("an alert carried no insight id; its insight was inferred by topic, family and time")

    return Trace(id=id, kind=kind, feedback=feedback_rows, insights=insight_rows, insight_events=ie_rows,
                 alerts=alerts_out, notes=notes)


def _outcome(store: Store, alert: dict[str, Any], days: int,
             controls: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Topic complaints of the alert's SKU family in the weeks before / after the fix (or delivery).

    ``comparison`` says what the counts can show: with a control arm for the family, the same
    windows in its control families (``control_*``, and ``net_change``, the treated ratio over
    the control ratio, minus 1); without one, an uncontrolled before/after, which
    ``validate-claim`` rejects as evidence of an effect (seasonality and regression to the mean
    move it too).
    """
    fixed = alert.get("fixed_at")
    anchor = fixed if fixed is not None else alert.get("delivered_at")
    if anchor is None or not alert.get("sku_family") or not alert.get("topic"):
        return {"anchor": None, "note": "no SKU family or topic on the alert: nothing to count"}
    anchor = pd.Timestamp(anchor).to_pydatetime()
    tf = topic_feedback(store)
    lo = ibis.timestamp(anchor) - ibis.interval(days=days)
    hi = ibis.timestamp(anchor) + ibis.interval(days=days)
    rows = tf.filter(tf.sku_family == alert["sku_family"], tf.label == alert["topic"],
                     tf.event_time >= lo, tf.event_time < hi).select("fid", "event_time").distinct().execute()
    offs = (pd.to_datetime(rows.event_time) - pd.Timestamp(anchor)) / pd.Timedelta(days=7)
    weeks = int(math.ceil(days / 7))
    weekly = [{"week": w, "complaints": int(((offs >= w) & (offs < w + 1)).sum())} for w in range(-weeks, weeks)]
    before, after = int((offs < 0).sum()), int((offs >= 0).sum())
    change = (after / before - 1.0) if before else None
    ctrl = control_complaints_around(
        store, pd.DataFrame([{"anchor_id": "x", "sku_family": alert["sku_family"], "topic": alert["topic"],
                              "anchor_time": anchor}]), controls or {}, days=days)
    if ctrl.empty:
        comparison = {"comparison": UNCONTROLLED,
                      "note": "uncontrolled before/after: validate-claim rejects this comparison as evidence"}
    else:
        cb, ca = int(ctrl.control_before.iloc[0]), int(ctrl.control_after.iloc[0])
        c_change = (ca / cb - 1.0) if cb else None
        comparison = {"comparison": CONTROLLED, "control_families": int(ctrl.control_families.iloc[0]),
                      "control_before": cb, "control_after": ca, "control_change": c_change,
                      "net_change": ((after / before) / (ca / cb) - 1.0) if before and cb and ca else None}
    return {
        "anchor": "fix_deployed" if fixed is not None else "alert_delivered",
        "anchor_time": anchor,
        "window_days": days,
        "topic": alert["topic"],
        "sku_family": alert["sku_family"],
        "complaints_before": before,
        "complaints_after": after,
        "change": change,
        "weekly": weekly,
        **comparison,
    }

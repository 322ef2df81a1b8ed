"""Joining the decision chain: insight -> alert -> acknowledged -> action -> fix -> outcome.

Everything here is an Ibis expression over the store's tables, written with only equi-joins,
filters, unions, grouped aggregates with ``where=`` and one ``row_number`` window, so the same
expression runs on DuckDB, Spark and Databricks unchanged.

Linking rules
-------------
An *alert* is an ``alert_delivered`` event; its id is ``alert_id`` (the event id when that is
null). Every later event (acknowledged, action_taken, fix_deployed, outcome, ignored, overridden)
is attached to an alert by, in order of preference:

1. ``id``: its own ``alert_id``;
2. ``insight_id``: no ``alert_id``, but its ``insight_id`` is the insight of an alert;
3. ``inferred``: neither id; an alert on the same topic and the same ``sku_family`` (or ``sku``)
   delivered at most ``infer_window_days`` before the event (the latest such alert wins).

Events that match no alert are ``unlinked``; events naming an ``alert_id`` that was never
delivered are ``dangling``. An alert without an ``insight_id`` is linked to the latest
``insight`` event on the same topic and family (or SKU) in the window before it (``inferred``).
"""

from __future__ import annotations

import json
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
from ibis import _

from insightroi.program import PRAISE_OWNER
from insightroi.store import Store

__all__ = [
    "FOLLOW_UP_TYPES", "alerts", "linked_events", "alert_chains", "insight_events", "topic_feedback",
    "complaints_around", "unalerted_fixes", "control_families", "control_complaints_around",
    "UNCONTROLLED", "CONTROLLED", "EPISODE_UPDATE", "episode_facts", "is_praise", "praise_event",
]

# The two comparisons a before/after complaint count can carry; the label travels with the figure.
CONTROLLED = "treated vs control"
UNCONTROLLED = "uncontrolled before/after"

FOLLOW_UP_TYPES = ("acknowledged", "action_taken", "fix_deployed", "outcome", "ignored", "overridden")
_STAGE_COLUMNS = {
    "acknowledged": "acknowledged_at",
    "action_taken": "acted_at",
    "fix_deployed": "fixed_at",
    "outcome": "outcome_at",
    "ignored": "ignored_at",
    "overridden": "overridden_at",
}


def _events(store: Store) -> ibis.Table:
    return store.table("chain_events")


def alerts(store: Store) -> ibis.Table:
    """One row per alert: id, its insight (as recorded), team, topic, SKU, family, delivery time.

    ``raised_at`` is when the alert was written (the detector's ``alert_delivered`` event);
    ``delivered_at`` is the first ``delivery_sent`` event for it when ``insightroi deliver`` sent
    it, else ``raised_at``. Time to acknowledge and to fix then start when the owner could first
    have read it, not when a batch job dated it.
    """
    ev = _events(store)
    a = ev.filter(ev.event_type.isin(["alert_delivered", "delivery_sent"])).mutate(
        aid=ibis.coalesce(ev.alert_id, ev.id), is_alert=ev.event_type == "alert_delivered"
    )
    # One grouped aggregate rather than a join: a joined projection here breaks the chained
    # joins of alert_chains in Ibis, and the aggregate runs the same on every backend.
    per = a.group_by("aid").aggregate(
        raised_at=a.event_time.min(where=a.is_alert),
        sent_at=a.event_time.min(where=~a.is_alert),
        insight_id=a.insight_id.max(where=a.is_alert),
        team=a.team.max(where=a.is_alert),
        topic=a.topic.max(where=a.is_alert),
        sku=a.sku.max(where=a.is_alert),
        sku_family=a.sku_family.max(where=a.is_alert),
        region=a.region.max(where=a.is_alert),
        recipient=a.actor.max(where=a.is_alert),
    )
    per = per.filter(per.raised_at.notnull())
    return per.select(
        "aid", delivered_at=ibis.coalesce(per.sent_at, per.raised_at), raised_at=per.raised_at,
        insight_id=per.insight_id, team=per.team, topic=per.topic, sku=per.sku, sku_family=per.sku_family,
        region=per.region, recipient=per.recipient,
    )


def insight_events(store: Store) -> ibis.Table:
    """``insight`` chain events with their insight id (the event id when ``insight_id`` is null)."""
    ev = _events(store)
    ins = ev.filter(ev.event_type == "insight")
    return ins.mutate(iid=ibis.coalesce(ins.insight_id, ins.id))


def _within(t_event, t_anchor, days: int):
    return (t_anchor <= t_event) & (t_event <= t_anchor + ibis.interval(days=days))


def linked_events(store: Store, *, infer_window_days: int = 30) -> ibis.Table:
    """Every follow-up event with the alert it belongs to.

    Columns: the event's own (``id, event_type, event_time, actor, team, topic, sku, sku_family,
    payload``) plus ``resolved_alert_id`` (null when unlinked) and ``link`` in
    ``id | insight_id | inferred | dangling | unlinked``.
    """
    ev = _events(store)
    fu = ev.filter(ev.event_type.isin(FOLLOW_UP_TYPES)).select(
        "id", "event_type", "alert_id", "insight_id", "event_time", "actor", "team", "topic", "sku",
        "sku_family", "payload",
    )
    al = alerts(store).select(
        a_id=_.aid, a_insight=_.insight_id, a_topic=_.topic, a_sku=_.sku, a_family=_.sku_family,
        a_time=_.delivered_at,
    )
    known = al.select(k_id=_.a_id)

    with_id = fu.filter(fu.alert_id.notnull())
    with_id = with_id.left_join(known, with_id.alert_id == known.k_id)
    with_id = with_id.mutate(
        resolved_alert_id=with_id.alert_id,
        link=ibis.ifelse(with_id.k_id.isnull(), "dangling", "id"),
    ).drop("k_id")

    orphan = fu.filter(fu.alert_id.isnull())
    keep = orphan.columns
    by_insight = orphan.join(al, orphan.insight_id == al.a_insight).select(
        *keep, cand=al.a_id, cand_time=al.a_time, prio=ibis.literal(0)
    )
    by_family = orphan.join(
        al,
        [orphan.topic == al.a_topic, orphan.sku_family == al.a_family,
         _within(orphan.event_time, al.a_time, infer_window_days)],
    ).select(*keep, cand=al.a_id, cand_time=al.a_time, prio=ibis.literal(1))
    by_sku = orphan.join(
        al,
        [orphan.topic == al.a_topic, orphan.sku == al.a_sku, _within(orphan.event_time, al.a_time, infer_window_days)],
    ).select(*keep, cand=al.a_id, cand_time=al.a_time, prio=ibis.literal(1))
    cands = ibis.union(by_insight, by_family, by_sku, distinct=False)
    rank = ibis.row_number().over(group_by=cands.id, order_by=[cands.prio, ibis.desc(cands.cand_time), cands.cand])
    best = cands.mutate(rk=rank).filter(_.rk == 0)
    resolved = best.mutate(
        resolved_alert_id=best.cand, link=ibis.ifelse(best.prio == 0, "insight_id", "inferred")
    ).select(*keep, "resolved_alert_id", "link")

    matched_ids = resolved.select(m_id=_.id)
    unlinked = orphan.left_join(matched_ids, orphan.id == matched_ids.m_id)
    unlinked = unlinked.filter(unlinked.m_id.isnull()).drop("m_id").mutate(
        resolved_alert_id=ibis.null("string"), link=ibis.literal("unlinked")
    )
    cols = [*keep, "resolved_alert_id", "link"]
    return ibis.union(with_id.select(cols), resolved.select(cols), unlinked.select(cols), distinct=False)


def alert_chains(store: Store, *, infer_window_days: int = 30) -> ibis.Table:
    """One row per alert with the time each stage of the chain was first reached.

    Columns: ``alert_id, insight_id, insight_link (id | inferred | null), team, topic, sku,
    sku_family, region, recipient, delivered_at, raised_at, acknowledged_at, acted_at, fixed_at, outcome_at,
    ignored_at, overridden_at, n_events, n_inferred``.
    """
    al = alerts(store)
    le = linked_events(store, infer_window_days=infer_window_days)
    le = le.filter(le.link.isin(["id", "insight_id", "inferred"]))
    stage = {
        col: le.event_time.min(where=le.event_type == etype) for etype, col in _STAGE_COLUMNS.items()
    }
    per = le.group_by(rid=le.resolved_alert_id).aggregate(
        **stage,
        n_events=le.count(),
        n_inferred=le.count(where=le.link == "inferred"),
    )
    # Alerts without a recorded insight: the latest insight event on the same topic and family or SKU.
    ie = insight_events(store).select(i_id=_.iid, i_topic=_.topic, i_family=_.sku_family, i_sku=_.sku,
                                      i_time=_.event_time)
    bare = al.filter(al.insight_id.isnull()).select(b_id=_.aid, b_topic=_.topic, b_family=_.sku_family,
                                                   b_sku=_.sku, b_time=_.delivered_at)
    fam = bare.join(ie, [bare.b_topic == ie.i_topic, bare.b_family == ie.i_family,
                         _within(bare.b_time, ie.i_time, infer_window_days)])
    sku = bare.join(ie, [bare.b_topic == ie.i_topic, bare.b_sku == ie.i_sku,
                         _within(bare.b_time, ie.i_time, infer_window_days)])
    cand = ibis.union(fam.select("b_id", "i_id", "i_time"), sku.select("b_id", "i_id", "i_time"), distinct=False)
    rank = ibis.row_number().over(group_by=cand.b_id, order_by=[ibis.desc(cand.i_time), cand.i_id])
    inferred_insight = cand.mutate(rk=rank).filter(_.rk == 0).select(x_id=_.b_id, x_insight=_.i_id)

    j = al.left_join(per, al.aid == per.rid).left_join(inferred_insight, al.aid == inferred_insight.x_id)
    return j.select(
        alert_id=j.aid,
        insight_id=ibis.coalesce(j.insight_id, j.x_insight),
        insight_link=ibis.ifelse(
            j.insight_id.notnull(), "id", ibis.ifelse(j.x_insight.notnull(), "inferred", ibis.null("string"))
        ),
        team=j.team, topic=j.topic, sku=j.sku, sku_family=j.sku_family, region=j.region, recipient=j.recipient,
        delivered_at=j.delivered_at, raised_at=j.raised_at,
        **{col: j[col] for col in _STAGE_COLUMNS.values()},
        n_events=j.n_events.fill_null(0),
        n_inferred=j.n_inferred.fill_null(0),
    )


def topic_feedback(store: Store) -> ibis.Table:
    """Feedback items with their model topic (``insights.task = 'topic'``), one row per item and label."""
    fb = store.table("feedback")
    ins = store.table("insights")
    lab = ins.filter(ins.task == "topic").select(f_id=_.feedback_id, label=_.label).distinct()
    j = fb.join(lab, fb.id == lab.f_id)
    return j.select(fid=j.id, sku_family=j.sku_family, sku=j.sku, event_time=j.event_time, label=j.label)


def complaints_around(store: Store, anchors: ibis.Table, *, days: int = 28) -> ibis.Table:
    """Topic complaints of the anchor's SKU family in the ``days`` before and after its time.

    ``anchors`` must have columns ``anchor_id, sku_family, topic, anchor_time``. Returns
    ``anchor_id, complaints_before, complaints_after`` (anchors with no complaints at all are absent).
    """
    tf = topic_feedback(store)
    an = anchors.select(x_id=_.anchor_id, x_family=_.sku_family, x_topic=_.topic, x_time=_.anchor_time)
    j = an.join(
        tf,
        [an.x_family == tf.sku_family, an.x_topic == tf.label,
         tf.event_time >= an.x_time - ibis.interval(days=days), tf.event_time < an.x_time + ibis.interval(days=days)],
    )
    return j.group_by(anchor_id=j.x_id).aggregate(
        complaints_before=j.count(where=j.event_time < j.x_time),
        complaints_after=j.count(where=j.event_time >= j.x_time),
    )


def unalerted_fixes(store: Store, *, infer_window_days: int = 30, fix_window_days: int = 180) -> ibis.Table:
    """Fixes deployed without any alert (e.g. the manual process in the holdout), with their insight.

    Each ``fix_deployed`` event that no alert claims is linked, where possible, to the latest
    ``insight`` event on the same topic and SKU family in the ``fix_window_days`` before it
    (an inferred link). Columns: ``id, event_time, team, topic, sku_family, insight_id,
    insight_time`` (the last two null when no insight matches).
    """
    le = linked_events(store, infer_window_days=infer_window_days)
    fx = le.filter((le.event_type == "fix_deployed") & (le.link == "unlinked")).select(
        "id", "event_time", "team", "topic", "sku_family"
    )
    ie = insight_events(store).select(i_id=_.iid, i_topic=_.topic, i_family=_.sku_family, i_time=_.event_time)
    j = fx.join(ie, [fx.topic == ie.i_topic, fx.sku_family == ie.i_family,
                     _within(fx.event_time, ie.i_time, fix_window_days)])
    rank = ibis.row_number().over(group_by=j.id, order_by=[ibis.desc(j.i_time), j.i_id])
    best = j.mutate(rk=rank).filter(_.rk == 0).select(b_id=_.id, insight_id=_.i_id, insight_time=_.i_time)
    out = fx.left_join(best, fx.id == best.b_id)
    return out.select("id", "event_time", "team", "topic", "sku_family", "insight_id", "insight_time")


def control_families(store: Store) -> dict[str, list[str]]:
    """Per treated SKU family, the control families of its experiment (empty: no control arm).

    Alerts are raised per SKU family, so a design that randomizes families gives each alerted
    family a comparison group over the same weeks: its experiment's ``control`` arm in the
    ``assignments`` table.
    """
    a = store.table("assignments")
    df = a.filter(a.unit_type == "sku_family").select("experiment", "unit_id", "arm").execute()
    out: dict[str, list[str]] = {}
    for _exp, g in df.groupby("experiment"):
        ctrl = sorted(g.loc[g.arm == "control", "unit_id"].astype(str).unique())
        if not ctrl:
            continue
        for fam in g.loc[g.arm != "control", "unit_id"].astype(str).unique():
            out[fam] = sorted(set(out.get(fam, [])) | set(ctrl))
    return out


def control_complaints_around(store: Store, anchors, controls: dict[str, list[str]], *, days: int = 28):
    """The anchor's topic complaints in its control families over the same before / after windows.

    Parameters
    ----------
    store : Store
        Any backend.
    anchors : pandas.DataFrame
        Columns ``anchor_id, sku_family, topic, anchor_time``.
    controls : dict
        From :func:`control_families`.
    days : int
        Width of each window.

    Returns
    -------
    pandas.DataFrame
        ``anchor_id, control_before, control_after, control_families`` for anchors whose family
        has a control group (summed over its control families).
    """
    import pandas as pd

    rows = [{"anchor_id": f"{r.anchor_id}\x1f{c}", "sku_family": c, "topic": r.topic,
             "anchor_time": pd.Timestamp(r.anchor_time).to_pydatetime(), "a_id": r.anchor_id}
            for r in anchors.itertuples() for c in controls.get(str(r.sku_family), [])]
    cols = ["anchor_id", "control_before", "control_after", "control_families"]
    if not rows:
        return pd.DataFrame(columns=cols)
    ex = pd.DataFrame(rows)
    mt = ibis.memtable(ex[["anchor_id", "sku_family", "topic", "anchor_time"]])
    got = complaints_around(store, mt, days=days).execute()
    ex = ex.merge(got, on="anchor_id", how="left").fillna({"complaints_before": 0, "complaints_after": 0})
    out = ex.groupby("a_id").agg(control_before=("complaints_before", "sum"),
                                 control_after=("complaints_after", "sum"),
                                 control_families=("sku_family", "nunique")).reset_index()
    return out.rename(columns={"a_id": "anchor_id"})[cols]


# The detector writes json.dumps's '"kind": "praise"'; other writers may leave the space out.
_PRAISE_KIND = r'"kind"\s*:\s*"praise"'


def is_praise(kind: Any, team: Any) -> Any:
    """Whether an alert is praise: its kind says so, or it went to the praise stream.

    The one rule every consumer applies (workflow KPIs, cadence counts, the dashboard inbox), so
    an older detector's praise alert routed to a topic owner, or an API client's alert to the
    praise stream that names no kind, is praise everywhere or nowhere.

    Parameters
    ----------
    kind : str, pandas.Series or None
        The alert's kind (``episode_facts``'s ``kind``: the payload's, else from the team).
    team : str, pandas.Series or None
        The team the alert was delivered to.

    Returns
    -------
    bool or pandas.Series of bool
        Scalars give a bool, Series an element-wise mask.
    """
    out = (kind == "praise") | (team == PRAISE_OWNER)
    return out.astype(bool) if isinstance(out, pd.Series) else bool(out)


def praise_event(t: ir.Table) -> ir.BooleanValue:
    """:func:`is_praise` as an Ibis predicate over ``chain_events`` rows (never null).

    Per row, so it can sit in a grouped aggregate's ``where=`` on every backend: a row routed to
    the praise stream, or whose JSON payload says ``"kind": "praise"`` (only the alert's own
    ``alert_delivered`` row carries its kind). A follow-up event of a praise alert that was routed
    to a topic owner carries neither and is not caught here; joining each event to its alert would
    catch it, at the price of a join per measure.

    Parameters
    ----------
    t : ibis.expr.types.Table
        ``chain_events`` or a table with its ``team`` and ``payload`` columns.

    Returns
    -------
    ibis.expr.types.BooleanValue
    """
    routed = (t.team == PRAISE_OWNER).fill_null(False)
    return routed | t.payload.re_search(_PRAISE_KIND).fill_null(False)


#: The detector's record that an episode went on after its alert was written (see write_alerts).
EPISODE_UPDATE = "alert_updated"
_EPISODE_FIELDS = ("last_seen", "periods", "peak_observed", "peak_score")


def episode_facts(store: Store) -> pd.DataFrame:
    """Each alert's episode as last known: the alert's own figures, overridden by its latest update.

    Chain events are append-only, so an episode that keeps going after its alert was written
    gets ``alert_updated`` events (insightroi.insights.write_alerts) rather than a changed row.

    Returns
    -------
    pandas.DataFrame
        One row per alert: ``alert_id, kind`` ("problem" or "praise"), ``day`` (onset),
        ``last_seen, periods, peak_observed, peak_score`` (latest), ``episode_updates`` (how
        many updates) and ``episode_updated_at`` (the latest update's time, NaT without one).
    """
    ev = _events(store)
    rows = ev.filter(ev.event_type.isin(["alert_delivered", EPISODE_UPDATE])).select(
        aid=ibis.coalesce(ev.alert_id, ev.id), event_type=ev.event_type, event_time=ev.event_time, id=ev.id,
        team=ev.team, payload=ev.payload,
    ).execute()
    cols = ["alert_id", "kind", "day", *_EPISODE_FIELDS, "episode_updates", "episode_updated_at"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = rows.sort_values(["aid", "event_type", "event_time", "id"])  # alert_delivered sorts before alert_updated
    out: dict[str, dict] = {}
    for r in rows.itertuples(index=False):
        try:
            p = json.loads(r.payload) if isinstance(r.payload, str) and r.payload else {}
        except ValueError:
            p = {}
        if not isinstance(p, dict):
            p = {}
        cur = out.setdefault(r.aid, {"alert_id": r.aid, "kind": None, "day": None, **dict.fromkeys(_EPISODE_FIELDS),
                                     "episode_updates": 0, "episode_updated_at": pd.NaT})
        if r.event_type == "alert_delivered":
            if cur["kind"] is None:
                # An older detector (or an API client) names no kind: the praise stream's team says it.
                cur["kind"] = p.get("kind") or ("praise" if r.team == PRAISE_OWNER else "problem")
                cur["day"] = p.get("day")
                cur.update({k: p.get(k) for k in _EPISODE_FIELDS if cur.get(k) is None})
        else:
            cur.update({k: p[k] for k in _EPISODE_FIELDS if p.get(k) is not None})
            cur["episode_updates"] += 1
            cur["episode_updated_at"] = r.event_time
    df = pd.DataFrame(list(out.values()), columns=cols)
    df["kind"] = df["kind"].fillna("problem")
    df["episode_updated_at"] = pd.to_datetime(df["episode_updated_at"]).astype("datetime64[us]")
    return df

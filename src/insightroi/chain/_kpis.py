"""Workflow KPIs of the decision chain per team and topic, and the bundle's ``chain`` section.

The heavy lifting (joins, per-alert aggregation, complaint counts around fixes) is Ibis and runs
on the store's backend; what comes back is one row per alert, small enough for pandas, which
computes the medians (portable exact medians are not available on every backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import ibis
import numpy as np
import pandas as pd
from ibis import _

from insightroi.chain._links import (
    CONTROLLED, UNCONTROLLED, alert_chains, complaints_around, control_complaints_around, control_families,
    episode_facts, insight_events, is_praise, linked_events, unalerted_fixes,
)
from insightroi.program import PRAISE_OWNER
from insightroi.store import Store

__all__ = ["alert_table", "workflow_kpis", "reviewer_disagreement", "chain_summary", "praise_summary",
           "waiting_on_owner"]

LEADING = ("adoption_rate", "ack_rate", "median_hours_to_ack", "median_days_to_fix", "override_rate", "backlog")
LAGGING = ("outcomes", "complaints_before", "complaints_after", "complaint_change")


def _window(t: ibis.Table, col: str, start: datetime | str | None, end: datetime | str | None) -> ibis.Table:
    if start is not None:
        t = t.filter(t[col] >= ibis.timestamp(pd.Timestamp(start).to_pydatetime()))
    if end is not None:
        t = t.filter(t[col] < ibis.timestamp(pd.Timestamp(end).to_pydatetime()))
    return t


def waiting_on_owner(acted, fixed, ignored, overridden):
    """The backlog rule: a delivered alert waits on its owner until one of them holds.

    Ignoring and overriding an alert are recorded decisions, and a fix (linked by id or inferred)
    settles it even when no action event was recorded, so none of those alerts waits on anyone.
    One rule for ``insightroi chain``, the report and the dashboard's inbox.

    Parameters
    ----------
    acted, fixed, ignored, overridden : bool or pandas.Series of bool
        Whether the alert reached each stage (elementwise for Series).

    Returns
    -------
    bool or pandas.Series of bool
    """
    return ~(acted | fixed | ignored | overridden) if isinstance(acted, pd.Series) else not (
        acted or fixed or ignored or overridden)


def alert_table(
    store: Store,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    infer_window_days: int = 30,
    outcome_window_days: int = 28,
) -> pd.DataFrame:
    """One row per alert delivered in ``[start, end)``: chain timestamps, durations, outcome counts.

    Adds to :func:`~insightroi.chain._links.alert_chains`'s columns: ``acted, acknowledged, fixed,
    ignored, overridden, in_backlog`` (bool), ``hours_to_ack``, ``days_to_action``, ``days_to_fix``,
    and ``complaints_before`` / ``complaints_after``: the alert's topic complaints in its SKU
    family in the ``outcome_window_days`` before and after the fix (NaN for alerts not fixed);
    the episode as last known (``last_seen, periods, peak_observed, peak_score,
    episode_updates, episode_updated_at``: :func:`~insightroi.chain._links.episode_facts`);
    ``kind`` ("problem" / "praise") and ``praise`` (bool: praise, or routed to the praise stream).
    """
    ch = _window(alert_chains(store, infer_window_days=infer_window_days), "delivered_at", start, end)
    fixed = ch.filter(ch.fixed_at.notnull()).select(
        anchor_id=_.alert_id, sku_family=_.sku_family, topic=_.topic, anchor_time=_.fixed_at
    )
    comp = complaints_around(store, fixed, days=outcome_window_days)
    j = ch.left_join(comp, ch.alert_id == comp.anchor_id)
    df = j.drop("anchor_id").order_by("delivered_at", "alert_id").execute()
    # The episode as last known (its alert_updated events) and whether the alert is praise.
    ep = episode_facts(store).drop(columns=["day"])
    if df.empty:
        # No alert in the window: nothing to attach, and an empty frame's key may carry another dtype.
        ep = ep.iloc[0:0].astype({"alert_id": df["alert_id"].dtype})
    df = df.merge(ep, on="alert_id", how="left")
    df["kind"] = df["kind"].where(df["kind"].notna(), np.where(df.team == PRAISE_OWNER, "praise", "problem"))
    df["praise"] = is_praise(df.kind, df.team)
    df["episode_updates"] = df["episode_updates"].fillna(0).astype("int64")
    for col in ("delivered_at", "raised_at", "acknowledged_at", "acted_at", "fixed_at", "outcome_at", "ignored_at", "overridden_at"):
        # Backends return different resolutions (DuckDB us, Spark ns); one unit for every caller.
        df[col] = pd.to_datetime(df[col]).astype("datetime64[us]")
    fixed_mask = df.fixed_at.notna()
    for col in ("complaints_before", "complaints_after"):
        df[col] = df[col].astype("float64")
        df.loc[fixed_mask, col] = df.loc[fixed_mask, col].fillna(0.0)
    df["acknowledged"] = df.acknowledged_at.notna()
    df["acted"] = df.acted_at.notna()
    df["fixed"] = fixed_mask
    df["ignored"] = df.ignored_at.notna()
    df["overridden"] = df.overridden_at.notna()
    df["in_backlog"] = waiting_on_owner(df.acted, df.fixed, df.ignored, df.overridden)
    hour = pd.Timedelta(hours=1)
    df["hours_to_ack"] = (df.acknowledged_at - df.delivered_at) / hour
    df["days_to_action"] = (df.acted_at - df.delivered_at) / (24 * hour)
    df["days_to_fix"] = (df.fixed_at - df.delivered_at) / (24 * hour)
    return df


def _group_kpis(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame(columns=[*by, "alerts", *LEADING, *LAGGING])
    g = df.groupby(list(by), dropna=False, sort=True)
    out = g.agg(
        alerts=("alert_id", "size"),
        acknowledged=("acknowledged", "sum"),
        acted=("acted", "sum"),
        fixed=("fixed", "sum"),
        ignored=("ignored", "sum"),
        overridden=("overridden", "sum"),
        backlog=("in_backlog", "sum"),
        median_hours_to_ack=("hours_to_ack", "median"),
        median_days_to_action=("days_to_action", "median"),
        median_days_to_fix=("days_to_fix", "median"),
        outcomes=("outcome_at", "count"),
        inferred_events=("n_inferred", "sum"),
        complaints_before=("complaints_before", "sum"),
        complaints_after=("complaints_after", "sum"),
        **({"control_before": ("control_before", "sum"), "control_after": ("control_after", "sum")}
           if "control_before" in df.columns else {}),
    ).reset_index()
    out["adoption_rate"] = out.acted / out.alerts
    out["ack_rate"] = out.acknowledged / out.alerts
    out["fix_rate"] = out.fixed / out.alerts
    out["override_rate"] = out.overridden / out.alerts
    has_before = out.complaints_before > 0
    out["complaint_change"] = float("nan")
    out.loc[has_before, "complaint_change"] = out.complaints_after[has_before] / out.complaints_before[has_before] - 1.0
    if "control_before" in out.columns:
        # Spark hands the counts back as Python objects, whose 0 divides with an exception rather
        # than to inf: divide as floats, then .where() masks the empty windows.
        before, after = out.control_before.astype(float), out.control_after.astype(float)
        ok = has_before & (before > 0) & (after > 0)
        out["control_change"] = (after / before - 1.0).where(before > 0)
        out["net_complaint_change"] = float("nan")
        out.loc[ok, "net_complaint_change"] = (out.complaints_after[ok].astype(float) / out.complaints_before[ok]) / (
            after[ok] / before[ok]) - 1.0
    for c in ("acknowledged", "acted", "fixed", "ignored", "overridden", "backlog", "outcomes", "inferred_events"):
        out[c] = out[c].astype("int64")
    return out


def reviewer_disagreement(store: Store, *, task: str = "topic") -> pd.DataFrame:
    """Share of human review labels that differ from the model's label, per model label.

    The model label is ``review_labels.model_label``; where that is null, the ``insights`` label
    for the same feedback, task and model version; where the review names no version either, the
    label of the model in force when the review was made (the latest insight for that feedback and
    task created at or before ``reviewed_at``). Returns ``model_label, reviewed, disagreements,
    disagreement_rate``.
    """
    rl = store.table("review_labels")
    rl = rl.filter(rl.task == task)
    ins = store.table("insights")
    ins = ins.filter(ins.task == task).select(
        i_fid=_.feedback_id, i_ver=_.model_version, i_label=_.label, i_at=_.created_at
    )
    # Reviews exported from a labelling tool often carry no model version: without the as-of
    # label every one of them dropped out and the disagreement read "-".
    cand = rl.select(r_id=rl.id, r_fid=rl.feedback_id, r_at=rl.reviewed_at)
    cand = cand.join(ins, [cand.r_fid == ins.i_fid, ins.i_at <= cand.r_at])
    asof = cand.group_by(a_id=cand.r_id).aggregate(a_label=cand.i_label.argmax(cand.i_at))
    j = rl.left_join(ins, [rl.feedback_id == ins.i_fid, rl.model_version == ins.i_ver])
    j = j.left_join(asof, j.id == asof.a_id)
    j = j.mutate(ml=ibis.coalesce(j.model_label, j.i_label, j.a_label)).filter(_.ml.notnull())
    agg = j.group_by(model_label=j.ml).aggregate(
        reviewed=j.count(), disagreements=j.count(where=j.label != j.ml)
    )
    df = agg.order_by("model_label").execute()
    df["disagreement_rate"] = df.disagreements / df.reviewed
    return df


def workflow_kpis(
    store: Store,
    *,
    by: Sequence[str] = ("team", "topic"),
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    infer_window_days: int = 30,
    outcome_window_days: int = 28,
    include_praise: bool = False,
) -> pd.DataFrame:
    """Workflow KPIs per group of alerts (default per team and topic).

    Leading indicators: ``adoption_rate`` (alerts acted upon / alerts), ``ack_rate``,
    ``median_hours_to_ack``, ``median_days_to_fix`` (time to remediation), ``override_rate``,
    ``backlog`` (alerts neither acted upon, fixed, ignored nor overridden: :func:`waiting_on_owner`).
    Lagging, next to them: ``outcomes`` (alerts with an outcome event) and the topic complaints of
    the fixed families in the ``outcome_window_days`` before / after each fix (``complaint_change`` =
    after / before - 1).

    Praise alerts (``alert_table``'s ``praise``) are left out unless ``include_praise``: they are
    good news, not defects, so nobody is expected to act on them and they must neither lower
    adoption nor fill an owner's backlog (:func:`praise_summary` reports them).
    """
    df = alert_table(store, start=start, end=end, infer_window_days=infer_window_days,
                     outcome_window_days=outcome_window_days)
    return _group_kpis(df if include_praise else df[~df.praise], by)


def praise_summary(df: pd.DataFrame) -> dict[str, Any]:
    """Praise alerts on their own: how many, and how many someone acknowledged / acted on / dismissed.

    Parameters
    ----------
    df : pandas.DataFrame
        :func:`alert_table`'s rows (any; the praise rows are picked here).

    Returns
    -------
    dict
        ``alerts, acknowledged, ack_rate, acted, ignored, median_hours_to_ack`` (rates and the
        median None without praise alerts, or without acknowledgements for the median).
    """
    p = df[df.praise] if not df.empty else df
    n = int(len(p))
    acked = int(p.acknowledged.sum()) if n else 0
    hours = p.hours_to_ack.dropna() if n else pd.Series(dtype=float)
    return {"alerts": n, "acknowledged": acked, "ack_rate": acked / n if n else None,
            "acted": int(p.acted.sum()) if n else 0, "ignored": int(p.ignored.sum()) if n else 0,
            "median_hours_to_ack": float(hours.median()) if len(hours) else None}


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in df.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and v != v:
                v = None
            elif v is pd.NaT or (v is not None and not isinstance(v, (str, bool, int, float)) and pd.isna(v)):
                v = None
            clean[k] = v
        out.append(clean)
    return out


def chain_summary(
    store: Store,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    owners: Mapping[str, str] | None = None,
    infer_window_days: int = 30,
    outcome_window_days: int = 28,
) -> dict[str, Any]:
    """The report bundle's ``chain`` section (CONTRACTS.md), plus per-topic detail.

    Parameters
    ----------
    store : Store
        Any backend; chain_events, insights, feedback and review_labels are read.
    start, end : datetime or ISO string, optional
        Only alerts delivered in ``[start, end)``.
    owners : dict topic -> team, optional
        Which team owns each topic (e.g. ``{t.topic: t.owner for t in program.taxonomy}``), used
        to attribute reviewer disagreement to teams; default: the team most of the topic's alerts
        went to.
    infer_window_days : int
        How far after an alert an event without ids may be and still be linked to it.
    outcome_window_days : int
        Width of the before / after windows around each fix for the complaint counts.

    Returns
    -------
    dict
        ``funnel`` {insights, alerts, acknowledged, acted, fixed}, ``by_team`` [{team, alerts,
        adoption_rate, median_hours_to_ack, median_days_to_fix, override_rate, backlog, ...}],
        ``inferred_links`` (links made by SKU/family + topic + time rather than ids: follow-up
        events to alerts, alerts to insights, alert-less fixes to insights), plus
        ``by_team_topic``, ``links`` (counts per link kind), ``fixes_without_alert`` (fixes no
        alert claims, e.g. the holdout's manual process, with the median days from the insight
        to the fix next to the alerted median: a lagging comparison of the two policies),
        ``disagreement`` (per topic), ``indicators`` (which columns lead and which lag) and
        ``complaints_comparison``: ``"treated vs control"`` when the design has a control arm of
        SKU families (``by_team`` then has ``control_before / control_after / control_change /
        net_complaint_change`` over the same windows), else ``"uncontrolled before/after"``.
        Praise alerts are not in ``funnel``, ``by_team`` or ``by_team_topic`` (they are not
        defects: they must not lower adoption or fill a backlog); ``praise`` reports them
        (:func:`praise_summary`).
    """
    df = alert_table(store, start=start, end=end, infer_window_days=infer_window_days,
                     outcome_window_days=outcome_window_days)
    # Praise is reported on its own: it is not a defect waiting on an owner (see workflow_kpis).
    praise = praise_summary(df)
    df = df[~df.praise].reset_index(drop=True) if not df.empty else df
    le = _window(linked_events(store, infer_window_days=infer_window_days), "event_time", start, end)
    links = le.group_by("link").aggregate(n=le.count()).execute()
    link_counts = {str(r.link): int(r.n) for r in links.itertuples()}
    for k in ("id", "insight_id", "inferred", "dangling", "unlinked"):
        link_counts.setdefault(k, 0)
    inferred_insight_links = int((df.insight_link == "inferred").sum()) if not df.empty else 0

    ie = _window(insight_events(store), "event_time", start, end)
    n_insights = int(ie.iid.nunique().execute() or 0)
    if n_insights == 0 and not df.empty:
        n_insights = int(df.insight_id.dropna().nunique())

    # Fixes no alert claims (the manual process), linked to the insight that preceded them.
    ux = _window(unalerted_fixes(store, infer_window_days=infer_window_days), "event_time", start, end).execute()
    ux_linked = ux[ux.insight_id.notna()]
    days_manual = (pd.to_datetime(ux_linked.event_time) - pd.to_datetime(ux_linked.insight_time)) / pd.Timedelta(days=1)
    fixes_without_alert = {
        "fixes": int(len(ux)),
        "linked_to_insight": int(len(ux_linked)),
        "median_days_insight_to_fix": float(days_manual.median()) if len(days_manual) else None,
        "median_days_alert_to_fix": (float(df.days_to_fix.median()) if not df.empty and df.fixed.any() else None),
    }

    funnel = {
        "insights": n_insights,
        "alerts": int(len(df)),
        "acknowledged": int(df.acknowledged.sum()) if not df.empty else 0,
        "acted": int(df.acted.sum()) if not df.empty else 0,
        "fixed": int(df.fixed.sum()) if not df.empty else 0,
    }

    # The complaint counts around fixes carry their comparison: the same windows in the control
    # families when the design has them, else they are labelled uncontrolled (validate-claim
    # rejects that comparison as evidence of an effect).
    controls = control_families(store)
    if controls and not df.empty:
        fixed_rows = df.loc[df.fixed, ["alert_id", "sku_family", "topic", "fixed_at"]].rename(
            columns={"alert_id": "anchor_id", "fixed_at": "anchor_time"})
        ctrl = control_complaints_around(store, fixed_rows, controls, days=outcome_window_days)
        df = df.merge(ctrl.drop(columns="control_families").rename(columns={"anchor_id": "alert_id"}),
                      on="alert_id", how="left")
    comparison = CONTROLLED if controls else UNCONTROLLED

    dis = reviewer_disagreement(store)
    if owners is None and not df.empty:
        owners = df.groupby("topic")["team"].agg(lambda s: s.value_counts().index[0]).to_dict()
    owners = dict(owners or {})
    dis["team"] = dis.model_label.map(owners)

    by_team = _group_kpis(df, ["team"])
    by_team_topic = _group_kpis(df, ["team", "topic"])
    team_dis = dis.dropna(subset=["team"]).groupby("team")[["reviewed", "disagreements"]].sum()
    if not by_team.empty:
        by_team["reviewed"] = by_team.team.map(team_dis.reviewed).fillna(0).astype("int64")
        d = by_team.team.map(team_dis.disagreements).fillna(0)
        by_team["reviewer_disagreement"] = (d / by_team.reviewed).where(by_team.reviewed > 0)
        topic_dis = dis.set_index("model_label").disagreement_rate
        by_team_topic["reviewer_disagreement"] = by_team_topic.topic.map(topic_dis)

    return {
        "funnel": funnel,
        "by_team": _records(by_team),
        "by_team_topic": _records(by_team_topic),
        "inferred_links": int(link_counts["inferred"] + inferred_insight_links + len(ux_linked)),
        "links": {**link_counts, "inferred_alert_insight": inferred_insight_links,
                  "inferred_fix_insight": int(len(ux_linked))},
        "fixes_without_alert": fixes_without_alert,
        "disagreement": _records(dis),
        "indicators": {"leading": list(LEADING), "lagging": list(LAGGING)},
        "windows": {"infer_days": infer_window_days, "outcome_days": outcome_window_days},
        "complaints_comparison": comparison,
        "praise": praise,
    }

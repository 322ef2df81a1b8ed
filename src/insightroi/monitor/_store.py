"""Monitoring a store: group counts per window are computed in the database (Ibis); only small
tables (counts, token frequencies, review labels, per-unit period totals) come back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import numpy as np

from insightroi.errors import DataError, ProgramError
from insightroi.metrics import MeasureSpec, measure_specs
from insightroi.monitor._decay import decay_rows, outcome_decay
from insightroi.monitor._decision import MonitorDecision, decide, decide_total, decision_kpi, hard_valued_kpis
from insightroi.monitor._quality import quality_by_slice
from insightroi.monitor._scan import (
    categorical_drift,
    drift_by_week_counts,
    drift_family,
    taxonomy_drift,
    text_drift_row,
)
from insightroi.program import Program
from insightroi.stats import Result
from insightroi.stats import jsonable
from insightroi.store import Store

__all__ = ["MonitorReport", "monitor_store", "store_period_effects"]

# Measures that are a plain row count or a column sum of one table, keyed by event time.
_MEASURES: dict[str, tuple[str, str, str | None, Any]] = {
    # name: (table, time column, summed column or None for a count, filter)
    "orders": ("orders", "order_time", None, None),
    "revenue": ("orders", "order_time", "revenue", None),
    "margin": ("orders", "order_time", "margin", None),
    "feedback": ("feedback", "event_time", None, None),
    "reviews": ("feedback", "event_time", None, lambda t: t.source == "review"),
    "negative_reviews": ("feedback", "event_time", None, lambda t: (t.source == "review") & (t.rating <= 2)),
    "tickets": ("tickets", "opened_at", None, None),
    "handle_minutes": ("tickets", "opened_at", "handle_minutes", None),
    "deflected_tickets": ("tickets", "opened_at", None, lambda t: t.deflected),
    "refunds": ("refunds", "event_time", None, None),
    "refund_amount": ("refunds", "event_time", "amount", None),
}


@dataclass(frozen=True)
class MonitorReport:
    """Everything the monitor found, and the decision.

    ``to_dict()`` is the report bundle's "monitor" section: ``decision, reasons, drift, decay,
    policy`` plus ``evidence, figures, windows, quality, weekly`` and ``decay_kpi``, the KPI whose
    effect by period the ``decay`` rows give (absolute, in the KPI's own units).
    """

    decision: MonitorDecision
    drift: list[dict[str, Any]] = field(default_factory=list)
    decay: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    weekly: list[dict[str, Any]] = field(default_factory=list)
    windows: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decay_kpi: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The bundle's "monitor" section (plain JSON)."""
        return jsonable(
            {
                "decision": self.decision.decision,
                "reasons": list(self.decision.reasons) + list(self.notes),
                "drift": self.drift,
                "decay": self.decay,
                "decay_kpi": self.decay_kpi,
                "policy": self.decision.policy,
                "evidence": self.decision.evidence,
                "figures": self.decision.figures,
                "kpi": self.decision.kpi,
                "windows": self.windows,
                "quality": [{k: v for k, v in q.items() if k != "confusion"} for q in self.quality],
                "weekly": [
                    {k: w[k] for k in ("week", "n", "status", "flagged", "onset", "onset_features")}
                    for w in self.weekly
                ],
            }
        )


def _day(x: Any) -> datetime:
    if isinstance(x, datetime):
        return x.replace(tzinfo=None)
    if isinstance(x, date):
        return datetime(x.year, x.month, x.day)
    return datetime.fromisoformat(str(x)).replace(tzinfo=None)


def _window_expr(ts, reference: tuple[datetime, datetime], current: tuple[datetime, datetime]):
    return ibis.cases(
        ((ts >= reference[0]) & (ts < reference[1]), "reference"),
        ((ts >= current[0]) & (ts < current[1]), "current"),
        else_=ibis.null("string"),
    )


def _counts_by(expr, key: str, col) -> dict[str, dict[str, float]]:
    """{key value: {category: count}} computed in the database."""
    return _counts_by_many(expr, key, {"_": col})["_"]


def _counts_by_many(expr, key: str, cols: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """{name: {key value: {category: count}}} for several columns in one query.

    One stacked query instead of one per column: each query costs ~25 ms of Ibis compilation
    before DuckDB sees it, more than the counting itself on the demo's 68k rows.
    """
    e = expr.filter(expr[key].notnull())
    parts = [e.select(_k=e[key], _f=ibis.literal(name), _cat=col.cast("string")) for name, col in cols.items()]
    stacked = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    df = stacked.group_by(["_k", "_f", "_cat"]).agg(n=stacked.count()).execute()
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in cols}
    for k, f, cat, n in zip(df["_k"], df["_f"], df["_cat"], df["n"]):
        if cat is None or cat != cat:
            continue
        out[str(f)].setdefault(str(k), {})[str(cat)] = float(n)
    return out


def _token_counts_by(expr, key: str) -> dict[str, Counter]:
    toks = expr.select(key, tok=expr.text.lower().re_split(r"[^a-z']+").unnest())
    toks = toks.filter((toks.tok.length() >= 2) & toks.tok.re_search(r"^[a-z]") & toks[key].notnull())
    df = toks.group_by([key, "tok"]).agg(n=toks.count()).execute()
    out: dict[str, Counter] = {}
    for k, tok, n in zip(df[key], df["tok"], df["n"]):
        out.setdefault(str(k), Counter())[tok] = int(n)
    return out


def _latest_insights(store: Store):
    """Insights of the latest model version of each task (sentiment, topic, ... are versioned
    separately); returns (table, {task: version}) or None when there are none."""
    ins = store.table("insights")
    versions = ins.group_by(["task", "model_version"]).agg(last=ins.created_at.max()).execute()
    if versions.empty:
        return None
    versions = versions.sort_values("last").groupby("task").tail(1)
    latest = {str(t): str(v) for t, v in zip(versions["task"], versions["model_version"])}
    cond = None
    for task, version in latest.items():
        c = (ins.task == task) & (ins.model_version == version)
        cond = c if cond is None else cond | c
    return ins.filter(cond), latest


def store_period_effects(
    store: Store, program: Program, kpi: str, *, end: datetime | None = None, alpha: float | None = None
) -> list[Result]:
    """Per-period effects of ``kpi`` against the persistent holdout, from the store.

    Periods are ``retraining.period_days`` long from ``experiment.start``; per-unit numerator and
    denominator totals are summed in the database per (period, unit), units without events count
    as zeros, and each period goes through :func:`insightroi.monitor.ratio_difference`. Only KPIs
    on ``sku_family`` units whose measures are plain counts or sums of one table are supported:
    the built-ins of ``_MEASURES`` and the program's ``[[measures]]`` (a mean through its
    ``_count``; a distinct count per period and unit). Others raise :class:`DataError` (the
    metrics stage computes them).
    """
    k = program.kpi(kpi)
    try:
        specs = measure_specs(program)
    except ProgramError as exc:
        raise DataError(f"KPI {kpi!r}: {exc}") from None
    sources = {}
    for m in (k.numerator, k.denominator):
        spec = specs.get(m)
        if spec is not None and spec.quantile is not None:
            raise DataError(f"KPI {kpi!r}: {m!r} is a quantile measure; per-period effects from the store are "
                            "differences of per-unit totals, which a quantile is not")
        if m not in _MEASURES and (spec is None or spec.measure is None):
            raise DataError(f"KPI {kpi!r}: per-period effects from the store need sku_family units and count/sum "
                            f"measures; {m!r} is neither a plain built-in count/sum nor a [[measures]] entry")
        sources[m] = _MEASURES.get(m) or spec
    if k.unit != "sku_family":
        raise DataError(f"KPI {kpi!r}: per-period effects from the store need sku_family units, not {k.unit!r}")
    a = store.table("assignments")
    a = a.filter(a.experiment == program.experiment.name).select("unit_id", "arm").distinct()
    arms = a.execute()
    if arms.empty:
        raise DataError(f"no assignments for experiment {program.experiment.name!r}")
    start = _day(program.experiment.start)
    pdays = program.retraining.period_days
    totals: dict[str, dict[tuple[int, str], float]] = {}
    last_period = 0
    for role, measure in (("num", k.numerator), ("den", k.denominator)):
        source = sources[measure]
        if isinstance(source, MeasureSpec):
            table, tcol, ucol = source.table, source.time, source.unit_column_for("sku_family")
            try:
                t = store.table(table)
            except KeyError:
                raise DataError(f"KPI {kpi!r}: measure {measure!r} reads {table!r}, which the store does not hold") from None
            if ucol not in t.columns:
                raise DataError(f"KPI {kpi!r}: measure {measure!r} has no sku_family column in {table!r}; "
                                "set its unit_column")
            t = t.filter(source.condition(t))
        else:
            table, tcol, vcol, filt = source
            ucol = "sku_family"
            t = store.table(table)
            if filt is not None:
                t = t.filter(filt(t))
        # A date event-time column is compared with dates, a timestamp one with datetimes.
        day = (lambda d: d.date()) if t[tcol].type().is_date() else (lambda d: d)
        t = t.filter(t[tcol] >= day(start))
        if end is not None:
            t = t.filter(t[tcol] < day(end))
        if program.experiment.end is not None:
            t = t.filter(t[tcol] < day(_day(program.experiment.end) + timedelta(days=1)))
        t = t.mutate(_p=t[tcol].cast("date").delta(ibis.date(start.date()), unit="day") // pdays,
                     _u=t[ucol].cast("string"))
        if isinstance(source, MeasureSpec):
            v = source.value_expr(t)
            value = t.count() if source.value is None else (v.nunique() if source.distinct else v.sum())
        else:
            value = t[vcol].sum() if vcol else t.count()
        df = t.group_by(["_p", "_u"]).agg(v=value).execute()
        totals[role] = {(int(p), str(u)): float(v or 0.0) for p, u, v in zip(df["_p"], df["_u"], df["v"])}
        if len(df):
            last_period = max(last_period, int(df["_p"].max()))
    units = arms.unit_id.astype(str).to_numpy()
    is_t = (arms.arm != "control").to_numpy()  # every arm but control (A/B/n included)
    periods: dict[str, tuple] = {}
    for p in range(last_period + 1):
        num = np.array([totals["num"].get((p, u), 0.0) for u in units])
        den = np.array([totals["den"].get((p, u), 0.0) for u in units])
        if den.sum() == 0:
            continue
        label = (start + timedelta(days=p * pdays)).date().isoformat()
        periods[label] = (num[is_t], den[is_t], num[~is_t], den[~is_t])
    return outcome_decay(periods, scale=k.scale, alpha=alpha or program.experiment.alpha, metric=kpi)


def monitor_store(
    store: Store,
    program: Program,
    *,
    reference: tuple[Any, Any] | None = None,
    current: tuple[Any, Any] | None = None,
    effects: Sequence[Result | dict] | None = None,
    kpi: str | None = None,
    volume_per_period: float | None = None,
    weekly: bool = True,
) -> MonitorReport:
    """Drift, quality drift, outcome decay and the retrain / retire / keep decision for a store.

    Parameters
    ----------
    store : insightroi.store.Store
    program : Program
        Thresholds come from ``program.monitoring`` (:class:`insightroi.program.MonitoringThresholds`:
        psi_warn 0.1, psi_alert 0.25, ece_alert 0.05, other_share_alert 0.15, low_confidence 0.5,
        low_confidence_share_alert 0.25, oov_alert 0.05, js_alert 0.1, reference_days 28,
        current_days 7) and the decision from ``program.retraining``
        (retrain_cost 5000, horizon_days 90, retire_after_periods 3, period_days 28).
    reference, current : (start, end), optional
        Half-open windows. Default: the last ``current_days`` days of feedback (up to the day
        after the latest feedback) and the ``reference_days`` days before them.
    effects : sequence of Result or dict, optional
        Per-period effects if the caller already estimated them; default: computed from the
        store with :func:`store_period_effects` for :func:`decision_kpi` (skipped with a note
        when that is not possible).
    kpi : str, optional
        The KPI the decision values.
    volume_per_period : float, optional
        Treated denominator volume per period, passed to :func:`decide` (needed when ``effects``
        come from elsewhere and carry no ``treatment_denominator``).
    weekly : bool
        Also run the weekly scan (:func:`drift_by_week_counts`) over the whole feedback history.

    Returns
    -------
    MonitorReport
    """
    th = program.monitoring
    notes: list[str] = []
    fb = store.table("feedback")
    bounds = fb.aggregate(lo=fb.event_time.min(), hi=fb.event_time.max()).execute()
    hi = bounds.hi.iloc[0]
    if hi is None or hi != hi:
        decision = decide([], program, kpi=kpi)
        return MonitorReport(decision, notes=["the store has no feedback: nothing to monitor"])
    if current is None:
        end = _day(hi).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        current = (end - timedelta(days=th.current_days), end)
    current = (_day(current[0]), _day(current[1]))
    if reference is None:
        reference = (current[0] - timedelta(days=th.reference_days), current[0])
    reference = (_day(reference[0]), _day(reference[1]))
    windows = {"reference": [reference[0].isoformat(), reference[1].isoformat()],
               "current": [current[0].isoformat(), current[1].isoformat()]}

    drift: list[dict[str, Any]] = []
    w = fb.mutate(_w=_window_expr(fb.event_time, reference, current))
    w = w.filter(w._w.notnull())
    features = {f: w[f] for f in ("source", "locale", "sku_family", "channel")}
    features["rating"] = w.rating.round().cast("int64")
    for feature, c in _counts_by_many(w, "_w", features).items():
        drift.append(categorical_drift(feature, c.get("reference", {}), c.get("current", {}), th))
    toks = _token_counts_by(w, "_w")
    drift.append(text_drift_row("text", toks.get("reference", Counter()), toks.get("current", Counter()), th))

    latest = _latest_insights(store)
    ins_joined = None
    if latest is None:
        notes.append("no insights in the store yet: topic, sentiment and taxonomy drift skipped")
    else:
        ins, version = latest
        windows["model_version"] = version
        times = fb.select(fid=fb.id, event_time=fb.event_time)
        ins_joined = ins.join(times, ins.feedback_id == times.fid)
        iw = ins_joined.mutate(_w=_window_expr(ins_joined.event_time, reference, current))
        iw = iw.filter(iw._w.notnull())
        # Labels and low-confidence counts of every task in one query (see _counts_by_many).
        by_label = iw.group_by(["_w", "task", "label"]).agg(
            low=(iw.confidence < th.low_confidence).cast("int64").sum(), n=iw.count()
        ).execute()
        tasks = sorted({str(t) for t in by_label.task})
        low_by: dict[tuple[str, str], float] = {}
        labels: dict[str, dict[str, dict[str, float]]] = {t: {} for t in tasks}
        for w_, t_, lab, low_n, n_ in zip(by_label["_w"], by_label["task"], by_label["label"], by_label["low"],
                                         by_label["n"]):
            low_by[(w_, t_)] = low_by.get((w_, t_), 0.0) + float(low_n or 0)
            if lab is not None and lab == lab:
                labels[str(t_)].setdefault(str(w_), {})[str(lab)] = float(n_)
        for task in tasks:
            c = labels[task]
            drift.append(categorical_drift(f"insight:{task}", c.get("reference", {}), c.get("current", {}), th))
            if task == "topic":
                drift.extend(
                    taxonomy_drift(
                        c.get("reference", {}), c.get("current", {}),
                        current_low_confidence=low_by.get(("current", task)),
                        reference_low_confidence=low_by.get(("reference", task)),
                        thresholds=th,
                    )
                )

    # One run tests several features: Holm over them keeps the run's false-alarm rate at
    # drift_alpha however many categorical features and model outputs are checked.
    drift = drift_family(drift, th)
    quality = _quality(store, program, latest)

    decay: list[dict[str, Any]] = []
    # Without a KPI named, the decision weighs every hard-priced KPI's value (decide_total): one
    # KPI against the whole running cost would retire a model that pays through the others.
    by_kpi: dict[str, list] = {}
    decay_kpi = kpi or decision_kpi(program)  # the KPI the decay rows are about, named wherever they are shown
    if effects is None:
        names = [kpi] if kpi else (hard_valued_kpis(program) or [decision_kpi(program)])
        for name in names:
            try:
                by_kpi[name] = store_period_effects(store, program, name)
            except (DataError, KeyError) as exc:
                notes.append(f"outcome decay of {name} not computed from the store: {exc}")
        if decay_kpi not in by_kpi and by_kpi:
            decay_kpi = next(iter(by_kpi))
        effects = by_kpi.get(decay_kpi, [])
    decay = decay_rows(effects)
    feedback_last = 0.0
    if decay:
        pd_days = program.retraining.period_days
        recent = fb.filter(fb.event_time >= _day(hi) - timedelta(days=pd_days))
        feedback_last = float(recent.count().execute())
    if kpi is None and len(by_kpi) > 1:
        decision = decide_total(by_kpi, program, drift=drift, feedback_per_period=feedback_last)
    else:
        decision = decide(effects, program, kpi=kpi, drift=drift, feedback_per_period=feedback_last,
                          volume_per_period=volume_per_period)

    weekly_rows: list[dict[str, Any]] = []
    if weekly:
        wk = fb.mutate(_wk=fb.event_time.truncate("W").cast("date").cast("string"))
        counts = {"source": _counts_by(wk, "_wk", wk.source)}
        if ins_joined is not None:
            sub = ins_joined.filter(ins_joined.task == "topic")
            sub = sub.mutate(_wk=sub.event_time.truncate("W").cast("date").cast("string"))
            counts["insight:topic"] = _counts_by(sub, "_wk", sub.label)
        weekly_rows = drift_by_week_counts(
            counts, tokens=_token_counts_by(wk, "_wk"), reference_weeks=max(1, th.reference_days // 7),
            thresholds=th,
        )
    return MonitorReport(decision, drift, decay, quality, weekly_rows, windows, notes,
                         decay_kpi=decay_kpi if decay else None)


def _quality(store: Store, program: Program, latest) -> list[dict[str, Any]]:
    rl = store.table("review_labels")
    if int(rl.count().execute()) == 0:
        return []
    cols = ["feedback_id", "task", "label", "reviewed_at", "model_label", "model_version"]
    labels = rl.select(*cols)
    if latest is not None:
        ins, _ = latest
        conf = ins.select(fid=ins.feedback_id, t=ins.task, conf=ins.confidence, mlabel=ins.label)
        labels = labels.left_join(conf, (labels.feedback_id == conf.fid) & (labels.task == conf.t))
    df = labels.execute()
    df = df[df.task == "topic"] if (df.task == "topic").any() else df
    if "mlabel" in df:
        df["model_label"] = df["model_label"].where(df["model_label"].notna(), df["mlabel"])
    df = df[df.model_label.notna()]
    if df.empty:
        return []
    t0 = df.reviewed_at.min()
    pdays = program.retraining.period_days
    slices = ((df.reviewed_at - t0).dt.days // pdays).map(
        lambda p: (t0 + timedelta(days=int(p) * pdays)).date().isoformat()
    )
    confidence = df["conf"].to_numpy(dtype=float) if "conf" in df and df["conf"].notna().any() else None
    return quality_by_slice(
        slices.to_numpy(), df.label.to_numpy(), df.model_label.to_numpy(), confidence=confidence,
        ece_alert=program.monitoring.ece_alert,
    )

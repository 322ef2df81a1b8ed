"""Spike detection per topic x SKU family x day, and delivery of alerts as chain events.

Baseline (for day d, series s = topic x family):

* rate: the topic's share of the family's feedback over the trailing ``trailing_weeks`` weeks
  (days d-7w .. d-1), skipping days inside annotated windows (outage, promotion, stockout...),
  shrunk toward the topic's all-family share with ``prior_strength`` pseudo-items (empirical
  Bayes; sparse families do not alarm on two mentions);
* volume: today's total feedback of the family, so a promotion or a seasonal surge in volume
  does not alarm by itself (the day-of-week pattern of volume is carried here too);
* day of week: the topic's share on the same weekday vs all days in the trailing window, pooled
  over families and shrunk toward 1;
* same period last year: when the store has it, the factor by which the topic's share moved from
  its trailing window to the same week one year (364 days) earlier, shrunk toward 1.

expected = rate x volume x dow x last_year. The tail probability P(X >= observed) uses a negative
binomial whose dispersion is estimated per topic by moments from the baseline days (Poisson when
there is no over-dispersion) — the standard count-surveillance approach (Farrington et al. 1996,
JRSS A; Noufaily et al. 2013, Stat Med). Each day is tested over several windows ending on it
(1, 3, 7 and 14 days by default: a sudden burst shows in one day, a defect that adds a mention or
two a day only in two weeks), each at alpha / number of windows (Bonferroni). An alert needs
p below that, observed >= min_count, observed >= min_ratio x expected, and at least
``min_history_days`` baseline days since the family's first feedback (days without feedback count:
a sparse family is tested against the shrunk rate, not left out).

Episodes: spike days of one series (topic x family) less than ``cooldown_days`` apart are one
episode and one alert, dated at the onset (its id does not change as the episode grows); the
alert carries ``last_seen``, the number of spike days (``periods``) and the peak. A cooldown that
restarted only at each alert re-alerted a defect that kept spiking for weeks, so one defect
reached its owner as several alerts and the duplicates showed as unanswered backlog.

Direction: the topic model says what a spike is about, not whether customers are complaining.
"Shipping was quick" is a ``shipping_delay`` mention. When the items of an episode's onset window
are clearly positive (star ratings first, the sentiment model for unrated text), the alert is
``kind = "praise"`` and goes to the positive-theme stream (owner :data:`PRAISE_OWNER`), never to the
topic's owner as a problem.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta

import ibis
import numpy as np
import pandas as pd

from insightroi.insights._base import UNCLASSIFIABLE
from insightroi.program import PRAISE_OWNER
from insightroi.stats import count_dispersion, count_tail_pvalue
from insightroi.store import Store

__all__ = ["Alert", "detect_spikes", "write_alerts", "current_topic_version", "PRAISE_OWNER"]

EXCLUDE_KINDS = ("outage", "promotion", "stockout")
# The stream praise spikes go to: marketing / CX read it as good news, no owner is paged for it.


@dataclass(frozen=True)
class Alert:
    """One detected spike."""

    alert_id: str
    topic: str
    sku_family: str
    day: date
    observed: int
    expected: float
    p_value: float
    score: float  # observed / expected
    owner: str
    model_version: str
    window_days: int = 1  # length of the tested window that ends on ``day`` (observed / expected are its sums)
    kind: str = "problem"  # "problem" (to the topic owner) or "praise" (to PRAISE_OWNER)
    positive_share: float | None = None  # positive / (positive + negative) items in the onset window
    last_seen: date | None = None  # last spike day of the episode (``day`` is its onset)
    periods: int = 1  # spike days in the episode
    peak_observed: int | None = None
    peak_score: float | None = None

    def __post_init__(self) -> None:
        # Alerts rebuilt from a saved section carry ISO strings.
        for name in ("day", "last_seen"):
            v = getattr(self, name)
            if isinstance(v, str):
                object.__setattr__(self, name, date.fromisoformat(v))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["day"] = self.day.isoformat()
        if self.last_seen is not None:
            d["last_seen"] = self.last_seen.isoformat()
        return d


def current_topic_version(store: Store) -> str | None:
    """The topic model version of the latest ``classify_store`` run (else the most used one)."""
    saved = store.load_result("insights_model:latest")
    if saved and saved.get("versions", {}).get("topic"):
        return saved["versions"]["topic"]
    ins = store.table("insights")
    df = ins.filter(ins.task == "topic").group_by("model_version").aggregate(n=ins.id.count()).execute()
    return None if df.empty else str(df.sort_values("n").model_version.iloc[-1])


def _annotation_mask(store: Store, days: pd.DatetimeIndex, families: list[str], kinds) -> np.ndarray:
    """(D, F) True where the day is inside an annotated window that applies to the family."""
    mask = np.zeros((len(days), len(families)), dtype=bool)
    ann = store.table("annotations")
    df = ann.filter(ann.kind.isin(list(kinds))).execute()
    if df.empty:
        return mask
    fam_index = {f: i for i, f in enumerate(families)}
    for r in df.itertuples():
        start = pd.Timestamp(r.start_time).normalize()
        end = pd.Timestamp(r.end_time if pd.notna(r.end_time) else r.start_time).normalize()
        rows = (days >= start) & (days <= end)
        scope = (r.scope or "").strip()
        if scope.lower() in ("", "all", "*", "global"):
            mask[rows, :] = True
            continue
        hit = False
        for part in scope.replace(";", ",").split(","):
            part = part.strip()
            key = part.split(":", 1)[1].strip() if ":" in part else part
            if key in fam_index:
                mask[rows, fam_index[key]] = True
                hit = True
        if not hit and ":" in scope and scope.split(":", 1)[0].strip() not in ("sku_family", "family"):
            # A scope on another dimension (region, channel) still distorts every family's mix.
            mask[rows, :] = True
    return mask


def _rolling(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over the previous ``window`` rows (excluding the current one), along axis 0."""
    cs = np.vstack([np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)])
    idx = np.arange(a.shape[0])
    lo = np.maximum(idx - window, 0)
    return cs[idx] - cs[lo]


def detect_spikes(
    store: Store,
    program,
    *,
    model_version: str | None = None,
    start: date | None = None,
    end: date | None = None,
    alpha: float = 1e-3,
    min_count: int = 3,
    min_ratio: float = 1.5,
    trailing_weeks: int = 4,
    min_history_days: int = 14,
    cooldown_days: int = 14,
    prior_strength: float = 30.0,
    exclude_kinds=EXCLUDE_KINDS,
    include_other: bool = False,
    window_days: int | tuple[int, ...] = (1, 3, 7, 14),
    praise_share: float = 0.5,
) -> list:
    """Find topic spikes per topic x SKU family x day (see the module docstring for the model).

    Parameters
    ----------
    store, program
        The store (with ``insights`` written by :func:`classify_store`) and the program (owners).
    model_version : str, optional
        Topic model version to use; default the latest classification run.
    start, end : date, optional
        Days on which alerts may fire (the baseline always uses earlier history).
    alpha : float
        False-alarm threshold per series-day, split evenly over the windows. Thousands of
        series-days are tested, so it is small.
    window_days : int or tuple of int
        Window lengths: each tests the sum of the last ``w`` days (ending on the alert day) against
        the sum of their expectations, with a baseline that ends before the window. The alert
        reports the window with the smallest p. On the demo world's defect episodes (seeds 0 and
        1), the default (1, 3, 7, 14) found 26% and 32% of them with 40% and 54% of alerts true,
        against 14% / 17% recall and 27% / 33% precision for a single 3-day window; 14 days alone
        found as many at lower precision and later.
    cooldown_days : int
        Spike days of one series at most this far apart belong to one episode (one alert).
    praise_share : float
        An episode is praise (``kind = "praise"``, owner :data:`PRAISE_OWNER`) when, among the
        positive and negative items of its onset window, the positive share's one-sided 95%
        lower bound exceeds this. An item's polarity is its star rating (4-5 positive, 1-2
        negative, 3 neutral) where it has one, negative for a return, else the sentiment model's.

    Returns
    -------
    list of Alert, one per episode, ordered by onset day.
    """
    version = model_version or current_topic_version(store)
    if version is None:
        return []
    windows = sorted({int(w) for w in ([window_days] if np.isscalar(window_days) else window_days)})
    if not windows or windows[0] < 1:
        raise ValueError(f"window_days must be positive day counts, got {window_days!r}")
    owners = {tp.topic: tp.owner for tp in program.taxonomy}
    skip = {UNCLASSIFIABLE} | (set() if include_other else {"other"})
    series = _family_series(store, version, skip)
    if series is None:
        return []
    days, families, topics, C, V, Pos, Neg = series
    excl = _annotation_mask(store, days, families, exclude_kinds)  # (D, F)
    p, obs, mu, w = _scan(C, V, excl, windows, trailing_weeks=trailing_weeks, prior_strength=prior_strength,
                          min_history_days=min_history_days, min_count=min_count, min_ratio=min_ratio)
    if start is not None:
        p[days < pd.Timestamp(start)] = 1.0
    if end is not None:
        p[days > pd.Timestamp(end)] = 1.0
    # Bonferroni over the windows: scanning several lengths keeps the false-alarm rate per
    # series-day at that of one test at alpha.
    hits = np.argwhere(p < alpha / len(windows))
    episodes: dict[tuple[int, int], list[list[int]]] = {}
    for d, k, f in sorted(map(tuple, hits)):
        runs = episodes.setdefault((k, f), [])
        # The gap is measured from the last spike day, not from the alert: the episode lasts
        # while the spike does.
        if runs and d - runs[-1][-1] <= cooldown_days:
            runs[-1].append(d)
        else:
            runs.append([d])
    alerts: list[Alert] = []
    for (k, f), runs in episodes.items():
        topic, fam = topics[k], families[f]
        for run in runs:
            d0 = run[0]
            w0 = int(w[d0, k, f])
            lo = max(d0 - w0 + 1, 0)
            pos, neg = float(Pos[lo:d0 + 1, k, f].sum()), float(Neg[lo:d0 + 1, k, f].sum())
            share = pos / (pos + neg) if pos + neg > 0 else None
            # A complaint sent to the praise stream is a defect nobody hears of, so praise needs
            # the share's lower 95% bound (Wilson, one-sided) above the cut, not just the share.
            praise = share is not None and _wilson_lower(pos, pos + neg) > praise_share
            peak = max(run, key=lambda d: obs[d, k, f] / max(mu[d, k, f], 1e-9))
            day = days[d0].date()
            alerts.append(
                Alert(
                    alert_id=f"alert:{topic}:{fam}:{day.isoformat()}",
                    topic=topic, sku_family=fam, day=day, observed=int(obs[d0, k, f]),
                    expected=float(round(mu[d0, k, f], 4)), p_value=float(p[d0, k, f]),
                    score=float(round(obs[d0, k, f] / max(mu[d0, k, f], 1e-9), 3)),
                    owner=PRAISE_OWNER if praise else owners.get(topic, "unassigned"), model_version=version,
                    window_days=w0, kind="praise" if praise else "problem",
                    positive_share=None if share is None else round(share, 3),
                    last_seen=days[run[-1]].date(), periods=len(run), peak_observed=int(obs[peak, k, f]),
                    peak_score=float(round(obs[peak, k, f] / max(mu[peak, k, f], 1e-9), 3)),
                )
            )
    alerts = _keep_episode_ids(store, alerts, cooldown_days)
    alerts.sort(key=lambda a: (a.day, a.alert_id))
    return alerts


def _keep_episode_ids(store: Store, alerts: list[Alert], cooldown_days: int) -> list[Alert]:
    """Give an episode already alerted on its recorded alert's id and onset.

    A run on a longer window re-estimates the dispersion with the new days, so the first day
    that crosses the threshold can move by a day or two; the episode is the same (same topic and
    family, within ``cooldown_days`` of what was recorded) and must not become a second alert.
    """
    if not alerts:
        return alerts
    ce = store.table("chain_events")
    topics = sorted({a.topic for a in alerts})
    # Only the detector's own alerts: one an owner or an API client recorded is not its episode.
    rec = ce.filter((ce.event_type.isin(["alert_delivered", "alert_updated"])) & ce.topic.isin(topics)
                    & ce.sku_family.notnull() & (ce.batch_id == "detect")).select(
        aid=ibis.coalesce(ce.alert_id, ce.id), event_type=ce.event_type, topic=ce.topic, sku_family=ce.sku_family,
        payload=ce.payload).execute()
    if rec.empty:
        return alerts
    known: dict[str, dict] = {}
    for r in rec.sort_values("event_type").itertuples(index=False):  # alert_delivered first, then updates
        try:
            p = json.loads(r.payload) if isinstance(r.payload, str) and r.payload else {}
        except ValueError:
            p = {}
        p = p if isinstance(p, dict) else {}
        k = known.setdefault(r.aid, {"topic": r.topic, "sku_family": r.sku_family, "day": None, "last": None})
        if r.event_type == "alert_delivered" and p.get("day"):
            k["day"] = date.fromisoformat(str(p["day"])[:10])
        last = p.get("last_seen") or (p.get("day") if r.event_type == "alert_delivered" else None)
        if last:
            last = date.fromisoformat(str(last)[:10])
            k["last"] = max(k["last"], last) if k["last"] else last
    ids = {a.alert_id for a in alerts}
    gap = timedelta(days=cooldown_days)
    out = []
    for a in alerts:
        if a.alert_id not in known:
            end = a.last_seen or a.day
            same = [(aid, k) for aid, k in known.items()
                    if aid not in ids and k["topic"] == a.topic and k["sku_family"] == a.sku_family and k["day"]
                    and a.day <= (k["last"] or k["day"]) + gap and end >= k["day"] - gap]
            if same:
                aid, k = min(same, key=lambda x: abs((x[1]["day"] - a.day).days))
                a = replace(a, alert_id=aid, day=k["day"])
                ids.add(aid)
        out.append(a)
    return out


def _family_series(store: Store, version: str, skip: set):
    """Daily topic counts and feedback volume per SKU family as dense arrays.

    Returns ``(days, families, topics, C (D, T, F), V (D, F), Pos (D, T, F), Neg (D, T, F))``, the
    last two the topic items whose sentiment is positive / negative (zeros without sentiment rows),
    or None without classified feedback.
    """
    ins = store.table("insights")
    fb = store.table("feedback")
    t = ins.filter((ins.task == "topic") & (ins.model_version == version)).select("feedback_id", "label")
    j = t.join(fb, t.feedback_id == fb.id).select(
        topic=t.label, sku_family=fb.sku_family.fill_null("(none)"), day=fb.event_time.date()
    )
    counts = j.group_by(["topic", "sku_family", "day"]).aggregate(n=j.topic.count()).execute()
    fbd = fb.select(sku_family=fb.sku_family.fill_null("(none)"), day=fb.event_time.date())
    totals = fbd.group_by(["sku_family", "day"]).aggregate(N=fbd.day.count()).execute()
    counts = counts[~counts.topic.isin(skip)]
    if counts.empty:
        return None
    counts["day"] = pd.to_datetime(counts["day"])
    totals["day"] = pd.to_datetime(totals["day"])
    days = pd.date_range(totals.day.min(), totals.day.max(), freq="D")
    families = sorted(totals.sku_family.unique())
    topics = sorted(counts.topic.unique())
    V = totals.pivot_table(index="day", columns="sku_family", values="N", aggfunc="sum").reindex(
        index=days, columns=families, fill_value=0
    ).fillna(0).to_numpy(float)
    C = np.zeros((len(days), len(topics), len(families)))
    np.add.at(C, (days.get_indexer(counts.day), pd.Index(topics).get_indexer(counts.topic),
                  pd.Index(families).get_indexer(counts.sku_family)), counts.n.to_numpy(float))
    Pos = np.zeros_like(C)
    Neg = np.zeros_like(C)
    sv = _sentiment_version(store)
    s = ins.filter((ins.task == "sentiment") & (ins.model_version == (sv or ""))).select(
        s_id=ins.feedback_id, sentiment=ins.label)
    tj = t.join(fb, t.feedback_id == fb.id).left_join(s, t.feedback_id == s.s_id)
    # A star rating is the customer's own verdict and beats a text model that reads "Thanks." or
    # "to be fair" as praise; a return is never praise. The model decides only the rest.
    pol = ibis.ifelse(
        tj.rating.notnull(),
        ibis.ifelse(tj.rating >= 4, "positive", ibis.ifelse(tj.rating <= 2, "negative", "neutral")),
        ibis.ifelse(tj.source == "return", "negative", tj.sentiment.fill_null("neutral")),
    )
    js = tj.select(topic=tj.label, sku_family=tj.sku_family.fill_null("(none)"), day=tj.event_time.date(),
                   polarity=pol)
    js = js.filter(js.polarity.isin(["positive", "negative"]))
    sc = js.group_by(["topic", "sku_family", "day", "polarity"]).aggregate(n=js.topic.count()).execute()
    sc = sc[sc.topic.isin(topics) & sc.sku_family.isin(families)]
    if not sc.empty:
        sc["day"] = pd.to_datetime(sc["day"])
        for lab, arr in (("positive", Pos), ("negative", Neg)):
            x = sc[sc.polarity == lab]
            np.add.at(arr, (days.get_indexer(x.day), pd.Index(topics).get_indexer(x.topic),
                            pd.Index(families).get_indexer(x.sku_family)), x.n.to_numpy(float))
    return days, families, topics, C, V, Pos, Neg


def _wilson_lower(k: float, n: float, z: float = 1.645) -> float:
    """One-sided lower confidence bound of a proportion k / n (Wilson score interval)."""
    if n <= 0:
        return 0.0
    ph = k / n
    return (ph + z * z / (2 * n) - z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def _sentiment_version(store: Store) -> str | None:
    """The sentiment model version of the latest ``classify_store`` run (else the most used one)."""
    saved = store.load_result("insights_model:latest")
    if saved and saved.get("versions", {}).get("sentiment"):
        return saved["versions"]["sentiment"]
    ins = store.table("insights")
    df = ins.filter(ins.task == "sentiment").group_by("model_version").aggregate(n=ins.id.count()).execute()
    return None if df.empty else str(df.sort_values("n").model_version.iloc[-1])


def _scan(C, V, excl, windows, *, trailing_weeks: int, prior_strength: float, min_history_days: int,
          min_count: int, min_ratio: float):
    """Baseline (rate x volume x weekday x last year) and the smallest window p per day x topic x group.

    Returns ``(p, observed, expected, window)`` arrays of shape (D, T, G) for the window with the
    smallest p on each cell.
    """
    D, T, F = C.shape
    keep = (~excl).astype(float)
    W = 7 * trailing_weeks
    Ck = C * keep[:, None, :]
    Vk = V * keep
    num = _rolling(Ck, W)  # (D, T, F)
    den = _rolling(Vk, W)[:, None, :]  # (D, 1, F)
    # History: baseline days since the family's first feedback, quiet days included. Counting only
    # days with feedback left a family with under one item a day untestable whatever it spiked to
    # (0.4 a day fills ~9 of 28 days); a sparse family's rate is shrunk to the topic's instead.
    hist_days = _rolling(keep * (np.maximum.accumulate(V > 0, axis=0)), W)  # (D, F)
    topic_num = num.sum(axis=2, keepdims=True)
    topic_den = den.sum(axis=2, keepdims=True)
    topic_rate = np.where(topic_den > 0, topic_num / np.maximum(topic_den, 1e-12), 0.0)
    rate = (num + prior_strength * topic_rate) / (den + prior_strength)

    # Day-of-week factor, topic level: same-weekday share in the window vs overall share.
    dow_num = np.zeros((D, T))
    dow_den = np.zeros(D)
    Ct = Ck.sum(axis=2)
    Vt = Vk.sum(axis=1)
    for lag in range(7, W + 1, 7):
        dow_num[lag:] += Ct[:-lag]
        dow_den[lag:] += Vt[:-lag]
    share_all = topic_num[:, :, 0] / np.maximum(topic_den[:, :, 0], 1e-12)
    k_dow = 200.0  # pseudo-items: the factor needs a few hundred same-weekday items to move
    dow = (dow_num + k_dow * share_all) / (dow_den[:, None] + k_dow) / np.maximum(share_all, 1e-12)
    dow = np.where(share_all > 0, np.clip(dow, 0.5, 2.0), 1.0)

    # Same period last year (364 days keeps the weekday).
    ly = np.ones((D, T))
    if D > 364 + W:
        win = 7
        cnum = np.vstack([np.zeros((1, T)), np.cumsum(Ct, axis=0)])
        cden = np.concatenate([[0.0], np.cumsum(Vt)])
        for d in range(364 + W, D):
            a = d - 364 - win // 2
            b = d - 364 + win // 2 + 1
            s_now = (cnum[b] - cnum[a]) / max(cden[b] - cden[a], 1e-12)
            s_base = (cnum[a] - cnum[a - W]) / max(cden[a] - cden[a - W], 1e-12)
            n_now = cden[b] - cden[a]
            f = (s_now * n_now + 100 * s_base) / np.maximum(s_base * (n_now + 100), 1e-12)
            ly[d] = np.where(s_base > 0, np.clip(f, 0.5, 2.0), 1.0)

    best_p = np.ones((D, T, F))
    best_obs = np.zeros((D, T, F))
    best_mu = np.zeros((D, T, F))
    best_w = np.zeros((D, T, F), dtype=int)
    for w in windows:
        obs, mu, p = _window_test(C, V, excl, keep, rate, hist_days, dow, ly, w, min_history_days=min_history_days,
                                  min_count=min_count, min_ratio=min_ratio)
        better = p < best_p
        best_p = np.where(better, p, best_p)
        best_obs = np.where(better, obs, best_obs)
        best_mu = np.where(better, mu, best_mu)
        best_w = np.where(better, w, best_w)
    return best_p, best_obs, best_mu, best_w


def _window_test(C, V, excl, keep, rate, hist_days, dow, ly, window_days: int, *, min_history_days: int,
                 min_count: int, min_ratio: float):
    """Observed sum, expected sum and tail p of the last ``window_days`` days, per day x topic x group.

    The baseline of day d ends before the tested window d - window_days + 1 .. d, so a spike
    does not raise its own expectation. Days that fail the candidate rules keep p = 1.
    """
    D, T, F = C.shape
    if window_days > 1:
        sh = window_days - 1
        rate = np.concatenate([np.repeat(rate[:1], sh, axis=0), rate[:-sh]]) if D > sh else rate
        hist_days = np.concatenate([np.zeros((sh, F)), hist_days[:-sh]]) if D > sh else hist_days * 0
    mu = rate * V[:, None, :] * dow[:, :, None] * ly[:, :, None]  # (D, T, F)
    # Dispersion per topic by moments over baseline-eligible days (spikes winsorised).
    phi = np.zeros(T)
    ok_hist = (hist_days >= min_history_days)[:, None, :] & (keep[:, None, :] > 0) & (mu > 0)
    for k in range(T):
        m = mu[:, k, :][ok_hist[:, k, :]]
        c = C[:, k, :][ok_hist[:, k, :]]
        if m.size > 30:
            phi[k] = count_dispersion(c, m)
    obs = C
    if window_days > 1:
        obs = _rolling(np.concatenate([C, C[:1] * 0]), window_days)[1:]  # sum of days d-w+1 .. d
        mu = _rolling(np.concatenate([mu, mu[:1] * 0]), window_days)[1:]
        excl_w = _rolling(np.concatenate([excl.astype(float), excl[:1] * 0.0]), window_days)[1:] > 0
    else:
        excl_w = excl
    # p = P(X >= obs); with NB dispersion phi per day, a w-day sum has dispersion phi / w (iid days)
    phi = phi / window_days
    p = np.ones_like(mu)
    cand = (obs >= min_count) & (mu > 0) & (obs >= min_ratio * mu)
    cand &= (hist_days >= min_history_days)[:, None, :] & (~excl_w)[:, None, :]
    idx = np.nonzero(cand)
    if idx[0].size:
        m = mu[idx]
        o = obs[idx]
        ph = phi[idx[1]]
        p[idx] = count_tail_pvalue(o, m, ph)
    return obs, mu, p


def write_alerts(store: Store, alerts, *, actor: str = "insightroi-detect",
                 evidence: dict[str, list[str]] | None = None) -> int:
    """Write alerts as ``chain_events`` of type ``alert_delivered`` (idempotent by alert id).

    Row: id = alert_id, alert_id, event_type "alert_delivered", event_time = the morning after the
    episode's onset (00:00 UTC of day + 1, when a daily job would deliver it), team = topic owner
    (:data:`PRAISE_OWNER` for praise), topic, sku_family, actor, payload = JSON {observed,
    expected, p_value, score, model_version, kind, positive_share, last_seen, periods, peak_observed,
    peak_score, feedback_ids}; ``evidence`` maps alert id -> ids of the feedback rows that triggered
    it. An episode keeps its onset-dated id, so a later run that sees it continue writes no new
    alert (and the deliverer sends nothing again). Chain events are append-only: when the episode
    has grown since it was last recorded (a later last spike day, more spike days, a higher peak),
    an ``alert_updated`` event records its new ``last_seen``, ``periods`` and peak, dated the
    morning after the new last spike day; :func:`insightroi.chain.alert_table` and the trace show
    the latest figures.

    No message goes out for an update: an alert's severity is its topic's (the taxonomy), which an
    episode's growth does not change, so there is no escalation to announce; the owner already has
    the alert, and its trace shows how long the episode has lasted.

    Returns the number of new alert rows (updates are not counted).
    """
    if not alerts:
        return 0
    ids = [a.alert_id for a in alerts]
    ce = store.table("chain_events")
    known = ce.filter(ce.alert_id.isin(ids) & ce.event_type.isin(["alert_delivered", "alert_updated"])).select(
        "id", "alert_id", "event_type", "event_time", "payload").execute()
    existing = set(known.loc[known.event_type == "alert_delivered", "alert_id"]) | set(
        ce.filter(ce.id.isin(ids)).select("id").execute()["id"])
    latest = _latest_episode(known)
    known_ids = set(known["id"])

    def episode(a) -> dict:
        return {"last_seen": a.last_seen.isoformat() if a.last_seen else None, "periods": a.periods,
                "peak_observed": a.peak_observed, "peak_score": a.peak_score}

    rows = [
        {
            "id": a.alert_id, "event_type": "alert_delivered", "alert_id": a.alert_id,
            "event_time": datetime.combine(a.day + timedelta(days=1), datetime.min.time()),
            "actor": actor, "team": a.owner, "topic": a.topic, "sku_family": a.sku_family,
            "payload": json.dumps(
                {"observed": a.observed, "expected": a.expected, "p_value": a.p_value, "score": a.score,
                 "day": a.day.isoformat(), "window_days": a.window_days, "model_version": a.model_version,
                 "kind": a.kind, "positive_share": a.positive_share, **episode(a),
                 "feedback_ids": (evidence or {}).get(a.alert_id, [])}
            ),
            "batch_id": "detect",
        }
        for a in alerts
        if a.alert_id not in existing
    ]
    new_alerts = len(rows)
    for a in alerts:
        if a.alert_id not in existing or a.last_seen is None:
            continue
        before = latest.get(a.alert_id) or {}
        if not _grew(before, a):
            continue
        uid = f"{a.alert_id}:updated:{a.last_seen.isoformat()}:{a.periods}:{a.peak_observed}"
        if uid in known_ids:
            continue
        rows.append({
            "id": uid, "event_type": "alert_updated", "alert_id": a.alert_id,
            "event_time": datetime.combine(a.last_seen + timedelta(days=1), datetime.min.time()),
            "actor": actor, "team": a.owner, "topic": a.topic, "sku_family": a.sku_family,
            "payload": json.dumps({**episode(a), "model_version": a.model_version,
                                   "previous": {k: before.get(k) for k in ("last_seen", "periods", "peak_observed")}}),
            "batch_id": "detect",
        })
    if not rows:
        return 0
    with store.transaction():
        store.append("chain_events", pd.DataFrame(rows))
    return new_alerts


def _latest_episode(known: pd.DataFrame) -> dict[str, dict]:
    """Alert id -> the episode figures last recorded (the alert's, then each update in time order)."""
    out: dict[str, dict] = {}
    for r in known.sort_values(["event_type", "event_time", "id"]).itertuples(index=False):
        try:
            p = json.loads(r.payload) if isinstance(r.payload, str) and r.payload else {}
        except ValueError:
            continue
        if isinstance(p, dict):
            out.setdefault(r.alert_id, {}).update({k: p[k] for k in ("last_seen", "periods", "peak_observed")
                                                   if p.get(k) is not None})
    return out


def _grew(before: dict, a) -> bool:
    """Whether the episode ``a`` reaches past what was recorded (a rerun on a shorter window never shrinks it)."""
    last = before.get("last_seen")
    if last is None:
        return False  # written by a detector that recorded no episode: nothing to compare with
    return (a.last_seen.isoformat() > str(last) or (a.periods or 0) > int(before.get("periods") or 0)
            or (a.peak_observed or 0) > int(before.get("peak_observed") or 0))

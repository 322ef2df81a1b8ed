"""A user's own data, written as CSV files the way an export would be: real human-written text.

The texts are the human-labelled sentences of ``shared/reference/sentiment`` (Amazon / Yelp / IMDb
sentences, tweets, movie-review snippets); everything around them (families, orders, tickets,
refunds, traffic, the randomized assignment) is synthetic with effects planted where we choose:

- a randomized cluster experiment on SKU families: in treated families after ``START`` negative
  reviews fall by ``NEG_EFFECT`` (relative), tickets and refunds by ``TICKET_EFFECT`` /
  ``REFUND_EFFECT``; families have persistent levels, so CUPED has something to remove;
- a complaint spike: defect complaints in one treated and one control family for five days;
- a geo rollout (``write_geo_world``): a few treated regions among many, for synthetic control.

Nothing here comes from the project's demo generator: this is data the project did not make.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.paths import REFERENCE_DIR

START = date(2026, 3, 2)  # a Monday
PRE_DAYS = 91
POST_DAYS = 84
END = START + timedelta(days=POST_DAYS - 1)
EXPERIMENT = "alerts-pilot-2026"
NEG_EFFECT = -0.25
TICKET_EFFECT = -0.15
REFUND_EFFECT = -0.15
SPIKE_DAYS = (START + timedelta(days=30), START + timedelta(days=34))
DEFECT_WORDS = ("broke", "stopped working", "defective", "broken")


@dataclass
class UserWorld:
    folder: Path
    files: dict[str, Path]
    treated: list[str]
    control: list[str]
    spike_families: dict[str, str]  # arm -> family
    planted: dict[str, float] = field(default_factory=dict)  # KPI -> planted absolute effect (expected)
    n_rows: dict[str, int] = field(default_factory=dict)


def real_texts() -> dict[str, list[str]]:
    """Real customer text by human label: negative, positive, and defect complaints."""
    ref = REFERENCE_DIR / "sentiment"
    uci = pd.read_csv(ref / "uci_sentences" / "uci_sentiment_sentences_amazon_yelp.csv")
    tw = pd.read_csv(ref / "tweets_GroundTruth.txt", sep="\t", header=None, names=["id", "score", "text"],
                     quoting=csv.QUOTE_NONE)
    mv = pd.read_csv(ref / "movieReviewSnippets_GroundTruth.txt", sep="\t", header=None,
                     names=["id", "score", "text"], quoting=csv.QUOTE_NONE)
    neg = list(uci.text[uci.label == 0]) + list(tw.text[tw.score <= -1.5]) + list(mv.text[mv.score <= -1.5])
    pos = list(uci.text[uci.label == 1]) + list(tw.text[tw.score >= 1.5]) + list(mv.text[mv.score >= 1.5])
    pattern = "|".join(DEFECT_WORDS)
    defect = list(uci.text[(uci.label == 0) & uci.text.str.lower().str.contains(pattern)])
    return {"negative": [str(t) for t in neg], "positive": [str(t) for t in pos], "defect": defect}


def _iso(ts: np.ndarray) -> list[str]:
    return [pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ") for t in ts]


def write_user_world(folder: Path, *, n_families: int = 40, orders_per_day: tuple[float, float] = (30, 55),
                     seed: int = 2026) -> UserWorld:
    """Write orders, feedback, tickets, refunds, traffic and assignments CSV files into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = real_texts()
    fams = [f"F{i:02d}" for i in range(n_families)]
    perm = rng.permutation(n_families)
    treated = sorted(fams[i] for i in perm[: n_families // 2])
    control = sorted(set(fams) - set(treated))
    is_t = np.array([f in treated for f in fams])
    level = rng.uniform(*orders_per_day, n_families)
    risk = rng.lognormal(0, 0.3, n_families)  # persistent family quality: the pre-period predicts the post
    days = [START - timedelta(days=PRE_DAYS) + timedelta(days=d) for d in range(PRE_DAYS + POST_DAYS)]
    n_days = len(days)
    post = np.array([d >= START for d in days])
    regions = [f"r{i % 5}" for i in range(n_families)]

    counts = rng.poisson(level[:, None] * np.ones(n_days)[None, :])  # family x day
    fam_idx = np.repeat(np.arange(n_families), counts.sum(axis=1))
    day_idx = np.concatenate([np.repeat(np.arange(n_days), counts[f]) for f in range(n_families)])
    n = fam_idx.size
    day0 = np.datetime64(days[0])
    order_time = day0 + day_idx.astype("timedelta64[D]") + rng.integers(0, 86400, n).astype("timedelta64[s]")
    treated_post = is_t[fam_idx] & post[day_idx]
    order_ids = np.char.add("o-", np.arange(n).astype(str))
    customers = np.char.add("c-", rng.integers(0, 60000, n).astype(str))
    revenue = np.round(rng.uniform(20, 120, n), 2)
    orders = pd.DataFrame({
        "id": order_ids, "customer_id": customers, "sku": [f"{fams[f]}-{s}" for f, s in zip(fam_idx, rng.integers(0, 3, n))],
        "sku_family": np.array(fams)[fam_idx], "region": np.array(regions)[fam_idx], "order_time": _iso(order_time),
        "quantity": 1, "revenue": revenue, "margin": np.round(revenue * 0.3, 2),
    })

    def events(base: float, effect: float) -> np.ndarray:
        p = base * risk[fam_idx] * np.where(treated_post, 1 + effect, 1.0)
        return rng.random(n) < p

    neg = events(0.02, NEG_EFFECT)
    pos = rng.random(n) < 0.03
    fb_rows = []
    lag = rng.integers(1, 5 * 86400, n).astype("timedelta64[s]")
    for kind, mask, pool, ratings in (("negative", neg, texts["negative"], (1, 2)),
                                      ("positive", pos & ~neg, texts["positive"], (4, 5))):
        idx = np.flatnonzero(mask)
        picks = rng.integers(0, len(pool), idx.size)
        for j, i in enumerate(idx):
            fb_rows.append((f"fb-{kind[0]}{i}", "review", "web", fams[fam_idx[i]], customers[i],
                            order_time[i] + lag[i], float(rng.integers(ratings[0], ratings[1] + 1)), pool[picks[j]]))
    spike_families = {"treatment": treated[0], "control": control[0]}
    k = 0
    for arm, fam in spike_families.items():
        d = SPIKE_DAYS[0]
        while d <= SPIKE_DAYS[1]:
            for _ in range(12):
                t = np.datetime64(d) + np.timedelta64(int(rng.integers(8 * 3600, 20 * 3600)), "s")
                fb_rows.append((f"fb-spike{k}", "review", "app", fam, f"c-s{k}", t, 1.0,
                                texts["defect"][k % len(texts["defect"])]))
                k += 1
            d += timedelta(days=1)
    fb = pd.DataFrame(fb_rows, columns=["id", "source", "channel", "sku_family", "customer_id", "event_time",
                                        "rating", "text"])
    fb["event_time"] = _iso(fb["event_time"].to_numpy())

    tick = events(0.03, TICKET_EFFECT)
    ti = np.flatnonzero(tick)
    tickets = pd.DataFrame({
        "id": np.char.add("t-", ti.astype(str)), "customer_id": customers[ti], "order_id": order_ids[ti],
        "sku_family": np.array(fams)[fam_idx[ti]], "channel": "email",
        "opened_at": _iso(order_time[ti] + lag[ti]), "handle_minutes": np.round(rng.uniform(3, 30, ti.size), 1),
        "deflected": False, "team": "support",
    })
    ref = events(0.02, REFUND_EFFECT)
    ri = np.flatnonzero(ref)
    refunds = pd.DataFrame({
        "id": np.char.add("r-", ri.astype(str)), "order_id": order_ids[ri], "customer_id": customers[ri],
        "sku_family": np.array(fams)[fam_idx[ri]], "kind": "refund", "event_time": _iso(order_time[ri] + lag[ri]),
        "amount": np.round(revenue[ri] * 0.8, 2), "reason": "not as described",
    })
    sessions = rng.poisson(counts * 25)
    traffic = pd.DataFrame({
        "id": [f"{fams[f]}:{days[d]}" for f in range(n_families) for d in range(n_days)],
        "date": [str(days[d]) for f in range(n_families) for d in range(n_days)],
        "sku_family": [fams[f] for f in range(n_families) for d in range(n_days)],
        "sessions": sessions.ravel(), "conversions": counts.ravel(),
    })
    assignments = pd.DataFrame({
        "id": [f"{EXPERIMENT}:{f}" for f in fams], "experiment": EXPERIMENT, "unit_type": "sku_family",
        "unit_id": fams, "arm": ["treatment" if f in treated else "control" for f in fams],
        "assigned_at": f"{START}T00:00:00Z",
    })
    files = {}
    for name, df in (("orders", orders), ("feedback", fb), ("tickets", tickets), ("refunds", refunds),
                     ("traffic", traffic), ("assignments", assignments)):
        files[name] = folder / f"{name}.csv"
        df.to_csv(files[name], index=False)
    # The planted average effect per KPI (x 1,000 orders): the finite-population ATE of the ratio of
    # sums over every family in the window, from the planted relative change and expected rates.
    wp = post[day_idx]
    expected = risk[fam_idx][wp].sum() / wp.sum()
    planted = {
        "negative_reviews_per_1000_orders": NEG_EFFECT * 1000 * 0.02 * expected,
        "tickets_per_1000_orders": TICKET_EFFECT * 1000 * 0.03 * expected,
        "refunds_per_1000_orders": REFUND_EFFECT * 1000 * 0.02 * expected,
    }
    return UserWorld(folder=folder, files=files, treated=treated, control=control, spike_families=spike_families,
                     planted=planted, n_rows={"orders": len(orders), "feedback": len(fb), "tickets": len(tickets), "refunds": len(refunds),
                             "traffic": len(traffic), "assignments": len(assignments)})


def user_program(starter: str) -> str:
    """The starter program file as this user edits it: their experiment's name, dates and time zone."""
    text = starter
    replacements = {
        'name = "theme-alerts-2025"': f'name = "{EXPERIMENT}"',
        'salt = "theme-alerts-2025"': f'salt = "{EXPERIMENT}"',
        "start = 2025-07-01": f"start = {START}",
        "end = 2026-03-31": f"end = {END}",
    }
    for old, new in replacements.items():
        assert old in text, f"starter program changed: {old!r} not found"
        text = text.replace(old, new, 1)
    return text


GEO_EXPERIMENT = "geo-rollout-2026"
GEO_TREATED = ("west", "north", "metro")
GEO_EFFECT = -0.30


def write_geo_world(folder: Path, *, n_regions: int = 20, pre_days: int = 182, seed: int = 11) -> UserWorld:
    """A geo rollout: the program goes live in three regions; the rest are the donor pool.

    Regions share a seasonal factor and drift, so a plain before/after would mislead and a
    synthetic control built from the donors has something to match. Negative reviews, tickets and
    refunds fall by ``GEO_EFFECT`` / 15% / 15% in the treated regions from ``START``.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = real_texts()
    names = list(GEO_TREATED) + [f"region{i:02d}" for i in range(n_regions - len(GEO_TREATED))]
    is_t = np.array([r in GEO_TREATED for r in names])
    days = [START - timedelta(days=pre_days) + timedelta(days=d) for d in range(pre_days + POST_DAYS)]
    n_days = len(days)
    post = np.array([d >= START for d in days])
    t = np.arange(n_days)
    season = 1 + 0.25 * np.sin(2 * np.pi * t / 91) + 0.1 * np.sin(2 * np.pi * t / 30)
    level = rng.uniform(25, 45, n_regions)
    loading = rng.uniform(0.6, 1.4, n_regions)  # how strongly each region follows the common season
    risk = rng.lognormal(0, 0.2, n_regions)
    lam = level[:, None] * (1 + loading[:, None] * (season[None, :] - 1))
    counts = rng.poisson(lam)
    reg_idx = np.repeat(np.arange(n_regions), counts.sum(axis=1))
    day_idx = np.concatenate([np.repeat(np.arange(n_days), counts[r]) for r in range(n_regions)])
    n = reg_idx.size
    order_time = (np.datetime64(days[0]) + day_idx.astype("timedelta64[D]")
                  + rng.integers(0, 86400, n).astype("timedelta64[s]"))
    treated_post = is_t[reg_idx] & post[day_idx]
    order_ids = np.char.add("g-", np.arange(n).astype(str))
    revenue = np.round(rng.uniform(20, 120, n), 2)
    region = np.array(names)[reg_idx]
    orders = pd.DataFrame({"id": order_ids, "customer_id": np.char.add("gc-", rng.integers(0, 40000, n).astype(str)),
                           "sku_family": "all", "region": region, "order_time": _iso(order_time), "quantity": 1,
                           "revenue": revenue, "margin": np.round(revenue * 0.3, 2)})
    # Complaints follow the season more than orders do (busy weeks go wrong more often).
    seasonal_risk = risk[reg_idx] * season[day_idx] ** 2

    def events(base: float, effect: float) -> np.ndarray:
        return rng.random(n) < base * seasonal_risk * np.where(treated_post, 1 + effect, 1.0)

    neg = events(0.04, GEO_EFFECT)
    lag = rng.integers(0, 86400, n).astype("timedelta64[s]")
    idx = np.flatnonzero(neg)
    picks = rng.integers(0, len(texts["negative"]), idx.size)
    fb = pd.DataFrame({"id": np.char.add("gf-", idx.astype(str)), "source": "review", "region": region[idx],
                       "sku_family": "all", "event_time": _iso(order_time[idx] + lag[idx]),
                       "rating": rng.integers(1, 3, idx.size).astype(float),
                       "text": [texts["negative"][p] for p in picks]})
    tick = np.flatnonzero(events(0.03, -0.15))
    tickets = pd.DataFrame({"id": np.char.add("gt-", tick.astype(str)), "order_id": order_ids[tick],
                            "region": region[tick], "sku_family": "all", "opened_at": _iso(order_time[tick] + lag[tick]),
                            "handle_minutes": 10.0, "deflected": False, "team": "support", "channel": "chat"})
    ref = np.flatnonzero(events(0.02, -0.15))
    refunds = pd.DataFrame({"id": np.char.add("gr-", ref.astype(str)), "order_id": order_ids[ref],
                            "region": region[ref], "sku_family": "all", "kind": "refund",
                            "event_time": _iso(order_time[ref] + lag[ref]), "amount": np.round(revenue[ref] * 0.8, 2)})
    assignments = pd.DataFrame({"id": [f"{GEO_EXPERIMENT}:{r}" for r in names], "experiment": GEO_EXPERIMENT,
                                "unit_type": "region", "unit_id": names,
                                "arm": ["treatment" if r in GEO_TREATED else "control" for r in names],
                                "assigned_at": f"{START}T00:00:00Z"})
    files = {}
    for name, df in (("orders", orders), ("feedback", fb), ("tickets", tickets), ("refunds", refunds),
                     ("assignments", assignments)):
        files[name] = folder / f"{name}.csv"
        df.to_csv(files[name], index=False)
    # The planted effect on the treated regions (ATT, ratio of sums, expected rates).
    tp = treated_post
    base = {"negative_reviews_per_1000_orders": (0.04, GEO_EFFECT), "tickets_per_1000_orders": (0.03, -0.15),
            "refunds_per_1000_orders": (0.02, -0.15)}
    planted = {k: eff * 1000 * b * seasonal_risk[tp].sum() / tp.sum() for k, (b, eff) in base.items()}
    return UserWorld(folder=folder, files=files, treated=list(GEO_TREATED),
                     control=[r for r in names if r not in GEO_TREATED], spike_families={}, planted=planted,
                     n_rows={"orders": len(orders), "feedback": len(fb), "tickets": len(tickets),
                             "refunds": len(refunds), "assignments": len(assignments)})


def geo_program(starter: str) -> str:
    """The starter program as a geo-rollout user edits it: synthetic control on regions."""
    text = user_program(starter).replace(f'name = "{EXPERIMENT}"', f'name = "{GEO_EXPERIMENT}"', 1)
    text = text.replace('design = "cluster"', 'design = "synthetic_control"', 1)
    text = text.replace("pre_period_days = 90", "pre_period_days = 182", 1)
    return text.replace('unit = "sku_family"', 'unit = "region"')

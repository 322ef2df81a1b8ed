"""A small simulated cluster experiment written into a store (test helper).

Not the demo world (``insightroi.demo``): just enough fact rows, with a known effect, to run the
metrics layer and :func:`analyze_experiment` end to end.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from insightroi.experiments import assign
from insightroi.program import Program

__all__ = ["simulate_experiment_tables", "write_tables"]

REGIONS = ("north", "south", "east", "west")
SEGMENTS = ("new", "returning", "vip")


def simulate_experiment_tables(
    program: Program,
    *,
    n_units: int = 60,
    orders_per_unit_day: float = 3.0,
    negative_review_rate: float = 0.03,
    effect: float = -0.3,
    srm_shift: float = 0.0,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Fact tables for a SKU-family cluster experiment with a known relative effect.

    Each family has its own order volume and negative-review propensity (gamma heterogeneity);
    in the experiment window treated families' review, ticket and refund propensities are
    multiplied by ``1 + effect``. ``srm_shift`` > 0 drops that share of control families from
    the assignments (a broken assignment the SRM check must catch).
    """
    rng = np.random.default_rng(seed)
    e = program.experiment
    start = datetime(e.start.year, e.start.month, e.start.day) - timedelta(days=e.pre_period_days)
    end = datetime(e.end.year, e.end.month, e.end.day) + timedelta(days=1)
    launch = datetime(e.start.year, e.start.month, e.start.day)
    days = (end - start).days
    fams = [f"F{i:03d}" for i in range(n_units)]
    arms = assign(fams, e.salt, e.treatment_share)
    vol = rng.gamma(4.0, orders_per_unit_day / 4.0, n_units)
    prop = rng.gamma(6.0, negative_review_rate / 6.0, n_units)
    n_orders = rng.poisson(vol[:, None] * np.ones(days))  # units x days
    unit_idx = np.repeat(np.repeat(np.arange(n_units), days), n_orders.ravel())
    day_idx = np.repeat(np.tile(np.arange(days), n_units), n_orders.ravel())
    n = unit_idx.size
    times = np.array(start, dtype="datetime64[us]") + (day_idx * 86400 + rng.integers(0, 86400, n)).astype("timedelta64[s]")
    post = times >= np.datetime64(launch)
    treated = arms[unit_idx] == "treatment"
    mult = np.where(treated & post, 1 + effect, 1.0)
    fam = np.array(fams)[unit_idx]
    region = np.array(REGIONS)[rng.integers(0, len(REGIONS), n)]
    orders = pd.DataFrame({
        "id": [f"o{i}" for i in range(n)], "customer_id": [f"c{i}" for i in rng.integers(0, n // 3 + 1, n)],
        "sku": [f"{f}-1" for f in fam], "sku_family": fam, "segment": np.array(SEGMENTS)[rng.integers(0, 3, n)],
        "region": region, "order_time": times, "quantity": np.ones(n, dtype=np.int64),
        "revenue": np.round(rng.gamma(2.0, 20.0, n), 2), "margin": np.round(rng.gamma(2.0, 5.0, n), 2),
    })
    neg = rng.random(n) < prop[unit_idx] * mult
    pos = (~neg) & (rng.random(n) < 0.1)
    rev = neg | pos
    k = int(rev.sum())
    feedback = pd.DataFrame({
        "id": [f"f{i}" for i in range(k)], "source": "review", "channel": "web", "locale": "en",
        "product_id": None, "sku": orders.sku[rev].to_numpy(), "sku_family": fam[rev], "customer_id": None,
        "segment": orders.segment[rev].to_numpy(), "region": region[rev],
        "event_time": times[rev] + np.timedelta64(2, "D"),
        "rating": np.where(neg[rev], rng.integers(1, 3, k), rng.integers(4, 6, k)).astype(float),
        "text": np.where(neg[rev], "it broke", "great"),
    })
    tick = rng.random(n) < 0.05 * mult
    m = int(tick.sum())
    tickets = pd.DataFrame({
        "id": [f"t{i}" for i in range(m)], "order_id": orders.id[tick].to_numpy(), "sku_family": fam[tick],
        "segment": orders.segment[tick].to_numpy(), "region": region[tick],
        "opened_at": times[tick] + np.timedelta64(1, "D"), "handle_minutes": rng.gamma(2.0, 6.0, m),
        "deflected": rng.random(m) < 0.2, "team": "support",
    })
    ref = rng.random(n) < 0.02 * mult
    r = int(ref.sum())
    refunds = pd.DataFrame({
        "id": [f"r{i}" for i in range(r)], "order_id": orders.id[ref].to_numpy(), "sku_family": fam[ref],
        "segment": orders.segment[ref].to_numpy(), "region": region[ref], "kind": "refund",
        "event_time": times[ref] + np.timedelta64(3, "D"), "amount": np.round(rng.gamma(2.0, 15.0, r), 2),
    })
    keep = np.ones(n_units, dtype=bool)
    if srm_shift > 0:
        ctrl = np.flatnonzero(arms == "control")
        keep[ctrl[: int(round(srm_shift * ctrl.size))]] = False
    assignments = pd.DataFrame({
        "id": [f"a{i}" for i in range(n_units)], "experiment": e.name, "unit_type": e.unit, "unit_id": fams,
        "arm": arms, "assigned_at": launch,
    })[keep]
    # Alerts are delivered only for treated families, in the window.
    tr_fams = [f for f, a in zip(fams, arms) if a == "treatment"]
    ev = []
    for i, f in enumerate(tr_fams):
        for j in range(3):
            t0 = launch + timedelta(days=int(rng.integers(0, max((end - launch).days, 1))))
            ev.append({"id": f"e{i}-{j}-a", "event_type": "alert_delivered", "event_time": t0, "sku_family": f, "team": "qa"})
            if rng.random() < 0.6:
                ev.append({"id": f"e{i}-{j}-b", "event_type": "action_taken", "event_time": t0 + timedelta(hours=30),
                           "sku_family": f, "team": "qa"})
    chain = pd.DataFrame(ev)
    sess = rng.poisson(vol[:, None] * 20 * np.ones(days))
    conv = rng.binomial(sess, 0.05)
    traffic = pd.DataFrame({
        "id": [f"d{i}" for i in range(n_units * days)], "date": np.repeat(np.array(
            [(start + timedelta(days=d)).date() for d in range(days)])[None, :], n_units, 0).ravel(),
        "sku": np.repeat([f"{f}-1" for f in fams], days), "sku_family": np.repeat(fams, days),
        "region": "north", "sessions": sess.ravel(), "conversions": conv.ravel(),
    })
    return {"orders": orders, "feedback": feedback, "tickets": tickets, "refunds": refunds,
            "assignments": assignments, "chain_events": chain, "traffic": traffic}


def write_tables(store, tables: dict[str, pd.DataFrame]) -> None:
    """Append simulated tables to ``store`` in one transaction."""
    with store.transaction():
        for name, df in tables.items():
            store.append(name, df)

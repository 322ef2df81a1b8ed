"""Small synthetic feedback streams with known topics and injected spikes (tests and benchmarks).

Not the demo world (:func:`generate_world`): this is a minimal generator for checking the detector's
false-alarm rate and recall under controlled conditions.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["SYNTHETIC_PHRASES", "synthetic_feedback"]

SYNTHETIC_PHRASES: dict[str, list[str]] = {
    "shipping_delay": ["my order arrived two weeks late", "still waiting for the package", "delivery was delayed again",
                       "tracking has not moved in days", "the parcel never arrived"],
    "damaged_packaging": ["the box was crushed", "package arrived torn open", "item came dented in damaged packaging",
                          "the bottle was leaking in the box"],
    "sizing": ["runs a full size small", "the fit is too tight", "way too big, sizing is off", "runs large"],
    "product_defect": ["it stopped working after two days", "the hinge cracked", "defective unit, the button broke",
                       "faulty switch, would not start"],
    "battery_power": ["battery drains in an hour", "it will not charge anymore", "charging takes forever and it overheats"],
    "customer_service": ["support never answered my emails", "the agent was rude", "on hold for an hour with customer service"],
    "price_value": ["way too expensive for what you get", "not worth the price", "overpriced compared to others"],
    "praise": ["absolutely love it", "great quality, would recommend", "perfect, very happy with it"],
    "other": ["bought this for my dad", "it is blue", "second order from this shop", "arrived with the receipt"],
}
_MIX = {"shipping_delay": 0.18, "damaged_packaging": 0.08, "sizing": 0.1, "product_defect": 0.08, "battery_power": 0.05,
        "customer_service": 0.08, "price_value": 0.08, "praise": 0.25, "other": 0.10}


def synthetic_feedback(
    rng: np.random.Generator,
    *,
    start: date = date(2025, 1, 1),
    days: int = 120,
    families: int = 10,
    volume: float = 20.0,
    spikes: list[dict] | None = None,
) -> pd.DataFrame:
    """Feedback rows (store ``feedback`` columns) plus a ``true_topic`` column.

    Volume per family-day is Poisson(volume x weekday factor x family factor); topics follow a
    fixed mix. ``spikes``: dicts with sku_family, topic, start (date), days, extra (mean extra
    items per day) — injected on top of the base stream.
    """
    fams = [f"fam{i:02d}" for i in range(families)]
    topics = list(_MIX)
    probs = np.array([_MIX[t] for t in topics])
    probs = probs / probs.sum()
    dow = np.array([1.1, 1.0, 1.0, 1.0, 0.9, 0.7, 0.8])
    fam_f = rng.lognormal(0, 0.3, families)
    recs = []
    for d in range(days):
        day = start + timedelta(days=d)
        for fi, fam in enumerate(fams):
            n = rng.poisson(volume * dow[day.weekday()] * fam_f[fi])
            ts = rng.choice(len(topics), n, p=probs)
            for t in ts:
                recs.append((fam, day, topics[t]))
    for sp in spikes or []:
        for d in range(sp["days"]):
            day = sp["start"] + timedelta(days=d)
            for _ in range(rng.poisson(sp["extra"])):
                recs.append((sp["sku_family"], day, sp["topic"]))
    rows = []
    for i, (fam, day, topic) in enumerate(recs):
        bank = SYNTHETIC_PHRASES[topic]
        text = bank[rng.integers(len(bank))]
        rating = float(rng.integers(4, 6)) if topic == "praise" else float(rng.integers(1, 4))
        t = datetime.combine(day, datetime.min.time()) + timedelta(seconds=int(rng.integers(0, 86400)))
        rows.append({"id": f"fb{i:07d}", "source": "review", "sku_family": fam, "sku": f"{fam}-a", "event_time": t,
                     "rating": rating, "text": text, "true_topic": topic})
    return pd.DataFrame(rows)

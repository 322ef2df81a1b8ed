"""Shared helpers of the server tests: a seeded store, the token, the sample chain."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from helpers.live_server import LiveServer, free_port  # noqa: F401 (the server tests import them from here)
from helpers.report_sample import sample_bundle
from insightroi.store import open_store

TOKEN = "test-token-5f1c9a7e-0123456789abcdef"  # >= 32 characters (the server's minimum)

# alert id -> stages reached (the sample bundle's alerts; alr-0007 is raised but not yet delivered)
CHAIN = {
    "alr-0001": ["alert_delivered"],
    "alr-0002": ["alert_delivered", "acknowledged"],
    "alr-0003": ["alert_delivered", "acknowledged", "action_taken"],
    "alr-0004": ["alert_delivered", "acknowledged", "action_taken", "fix_deployed"],
    "alr-0005": ["alert_delivered"],
    "alr-0006": ["alert_delivered"],
}


def seed_store(url: str, *, bundle: bool = True) -> dict:
    """Write the sample bundle, feedback, insights and chain events the pages show."""
    b = sample_bundle()
    alerts = {a["alert_id"]: a for a in b["insights"]["alerts"]}
    t0 = datetime(2026, 3, 1, 9, 0)
    with open_store(url) as st:
        if bundle:
            st.save_result("bundle", "latest", b)
        fb, ins, ev = [], [], []
        for i, (aid, a) in enumerate(sorted(alerts.items())):
            fid = f"fb-{i:03d}"
            fb.append({"id": fid, "source": "review", "event_time": t0 + timedelta(days=i), "sku_family": a["sku_family"],
                       "text": f"Complaint about {a['topic'].replace('_', ' ')} on {a['sku_family']}", "rating": 1.0})
            ins.append({"id": f"ins-{i:03d}", "feedback_id": fid, "task": "topic", "label": a["topic"], "score": 0.9,
                        "confidence": 0.9 - i / 100, "evidence": f"...{a['topic'].replace('_', ' ')} mentioned...",
                        "method": "lexicon", "model_version": "topics-0.9", "created_at": t0 + timedelta(days=i)})
            for j, stage in enumerate(CHAIN.get(aid, [])):
                ev.append({"id": f"seed-{aid}-{j}", "event_type": stage, "alert_id": aid, "insight_id": f"ins-{i:03d}",
                           "event_time": t0 + timedelta(days=i, hours=6 * j + 1), "actor": "seed", "team": a["owner"],
                           "topic": a["topic"], "sku_family": a["sku_family"], "batch_id": "seed"})
        with st.transaction():
            st.append("feedback", pa.Table.from_pylist(fb))
            st.append("insights", pa.Table.from_pylist(ins))
            st.append("chain_events", pa.Table.from_pylist(ev))
    return b


def wait_released(backend, timeout_s: float = 30.0) -> bool:
    """Wait until the server's store thread has let the file go (idle past its linger); whether it did."""
    import time

    deadline = time.monotonic() + timeout_s
    while backend.store._attached and time.monotonic() < deadline:
        time.sleep(0.02)
    return not backend.store._attached

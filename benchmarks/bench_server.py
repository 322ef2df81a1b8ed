#!/usr/bin/env python
"""Load test of the event API (issue 9): sustained events/s, p50/p99 latency, zero lost events.

A real uvicorn server (``insightroi.server.create_app`` over a DuckDB file) runs in its own
process on 127.0.0.1; N concurrent HTTP/1.1 clients (httpx, asyncio) POST chain events with a
unique Idempotency-Key each for a fixed duration. Afterwards the server is stopped and the store
is opened: every event the server acknowledged with a 2xx must be in the store exactly once
(lost = acknowledged - stored; extra = stored - acknowledged, both must be 0). There is no peer:
the figure of merit is throughput and tail latency of one durable insert per request.

Usage: ``python benchmarks/bench_server.py [quick|full] [seconds] [clients]``
(quick: 20 s x 8 clients; full: 60 s x 32 clients).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SIZES = {"quick": (20.0, 8), "full": (60.0, 32)}
TOKEN = "bench-token-" + uuid.uuid4().hex[:12]

_SERVER = """
import sys, uvicorn
from insightroi.server import create_app
uvicorn.run(create_app(sys.argv[1], token=sys.argv[2]), host="127.0.0.1", port=int(sys.argv[3]),
            log_level="warning", access_log=False)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(base: str, seconds: float, clients: int):
    import httpx

    latencies: list[float] = []
    acked: list[str] = []
    errors: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def one_client(i: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
            n = 0
            while time.perf_counter() < stop:
                n += 1
                body = {"event_type": ("acknowledged", "action_taken", "fix_deployed")[n % 3],
                        "alert_id": f"load-{i}-{n // 3}", "actor": f"client-{i}", "team": "support",
                        "payload": {"note": "load test", "n": n}}
                t0 = time.perf_counter()
                r = await c.post("/api/v1/chain-events", json=body,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": f"k-{i}-{n}"})
                latencies.append(time.perf_counter() - t0)
                if 200 <= r.status_code < 300:
                    acked.append(r.json()["id"])
                else:
                    errors[r.status_code] = errors.get(r.status_code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(i) for i in range(clients)))
    return latencies, acked, errors, time.perf_counter() - t0


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))] if xs else float("nan")


def run(scale: str = "quick", seconds: float | None = None, clients: int | None = None) -> list[dict]:
    """Run the load test; returns rows in the benchmarks' common format (peer None)."""
    import httpx

    from insightroi.store import open_store

    dur, n_clients = SIZES[scale]
    dur, n_clients = seconds or dur, clients or n_clients
    work = Path(tempfile.mkdtemp(prefix="insightroi-bench-server-"))
    url = f"duckdb:///{work}/load.duckdb"
    open_store(url).close()  # create the tables before the clock starts
    port = _port()
    env = {**os.environ, "INSIGHTROI_API_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, url, TOKEN, str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        latencies, acked, errors, elapsed = asyncio.run(_load(base, dur, n_clients))
    finally:
        proc.terminate()  # uvicorn shuts down gracefully: in-flight requests finish, store closes
        proc.wait(timeout=60)
    with open_store(url) as st:
        stored = st.sql("SELECT count(*) AS n FROM chain_events WHERE batch_id LIKE 'api:%'").to_pylist()[0]["n"]
        found = st.sql("SELECT count(DISTINCT id) AS n FROM chain_events WHERE id IN (SELECT unnest(?))",
                       [acked]).to_pylist()[0]["n"]
    lost, extra = len(set(acked)) - found, stored - len(set(acked))
    rate = len(acked) / elapsed
    p50, p99 = _quantile(latencies, 0.50), _quantile(latencies, 0.99)
    note = (f"{n_clients} clients x {elapsed:.0f} s on loopback: {len(acked):,} events acknowledged, "
            f"{stored:,} in store, lost {lost}, extra {extra}, non-2xx {sum(errors.values())} {errors or ''}; "
            f"{rate:,.0f} events/s, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    rows = [
        {"benchmark": f"api_post_chain_event_p50_latency[{scale}]", "ours_s": p50, "peer": None, "peer_s": None,
         "ratio": None, "note": note},
        {"benchmark": f"api_post_chain_event_p99_latency[{scale}]", "ours_s": p99, "peer": None, "peer_s": None,
         "ratio": None, "note": f"p99 over {len(latencies):,} requests"},
        {"benchmark": f"api_sustained_seconds_per_event[{scale}]", "ours_s": 1.0 / rate if rate else None,
         "peer": None, "peer_s": None, "ratio": None,
         "note": f"{rate:,.0f} events/s sustained; zero lost: {lost == 0 and extra == 0}"},
    ]
    if lost or extra:
        raise AssertionError(note)
    return rows


if __name__ == "__main__":
    scale = sys.argv[1] if len(sys.argv) > 1 else "quick"
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else None
    n = int(sys.argv[3]) if len(sys.argv) > 3 else None
    for row in run(scale, secs, n):
        print(row)

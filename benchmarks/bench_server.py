#!/usr/bin/env python
"""Load test of the event API: sustained events/s, p50/p99 latency, zero lost events, against a floor.

A real uvicorn server (``insightroi.server.create_app`` over a DuckDB file) runs in its own
process on 127.0.0.1; N concurrent HTTP/1.1 keep-alive clients POST chain events for a fixed
duration, each with a unique Idempotency-Key. Every client walks its own alerts through the chain
(alert_delivered -> acknowledged -> action_taken -> fix_deployed), so every event passes the
server's chain checks against the store. Afterwards the server is stopped and the store opened:
every event acknowledged with a 2xx must be in the store exactly once (lost = acknowledged -
stored, extra = stored - acknowledged; both must be 0).

The floor, in the same run with the same clients and duration: a minimal FastAPI app on the same
uvicorn whose endpoint only inserts the posted event into DuckDB (one long-lived connection, one
autocommitted INSERT per request under a lock, no auth, no validation, no idempotency). The ratio
is ours / floor in events/s: what the server's checks and guarantees cost over the least any
FastAPI + DuckDB endpoint does.

The load generator speaks HTTP/1.1 over raw asyncio streams (one keep-alive connection per
client, a pre-encoded request per event): an httpx client costs more CPU per request than the
server on a 2-core machine and would measure itself.

Usage: ``python benchmarks/bench_server.py [quick|full] [seconds] [clients]``
(quick: 10 s x 32 clients; full: 60 s x 32 clients). The server runs as ``insightroi serve`` does
by default (it releases the file for 60 ms every 2 s under load, so CLI commands can use the
store); ``BENCH_SERVER_HOLD=1`` measures ``--hold-store`` instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SIZES = {"quick": (10.0, 32), "full": (60.0, 32)}
TOKEN = "bench-token-" + uuid.uuid4().hex  # 44 characters: over the server's 32-character minimum
_MODES = {"share": "store shared with CLI commands (default)", "hold": "store held (--hold-store)"}
STEPS = ("alert_delivered", "acknowledged", "action_taken", "fix_deployed")

_SERVER = """
import sys, uvicorn
from insightroi.server import create_app
app = create_app(sys.argv[1], token=sys.argv[2], share_store=sys.argv[4] == "share")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning", access_log=False)
"""

# The floor: the least a FastAPI endpoint storing an event in DuckDB does.
_FLOOR = """
import sys, threading, duckdb, uvicorn
from fastapi import FastAPI
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS ev (id VARCHAR, body VARCHAR)")
lock = threading.Lock()
app = FastAPI()

@app.get("/api/v1/health")
def health():
    return {"status": "ok"}

@app.post("/api/v1/chain-events", status_code=201)
def post(event: dict):
    import json, uuid
    eid = uuid.uuid4().hex
    with lock:
        con.execute("INSERT INTO ev VALUES (?, ?)", [eid, json.dumps(event)])
    return {"id": eid}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, body: dict, key: str) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (f"POST /api/v1/chain-events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nIdempotency-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def _load(port: int, seconds: float, clients: int, prefix: str = "load"):
    latencies: list[float] = []
    acked: list[str] = []
    errors: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def one_client(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        try:
            while time.perf_counter() < stop:
                body = {"event_type": STEPS[n % 4], "alert_id": f"{prefix}-{i}-{n // 4}", "actor": f"client-{i}",
                        "team": "support", "payload": {"note": "load test", "n": n}}
                req = _request(port, body, f"{prefix}-{i}-{n}")
                n += 1
                t0 = time.perf_counter()
                writer.write(req)
                status, data = await _response(reader)
                latencies.append(time.perf_counter() - t0)
                if 200 <= status < 300:
                    acked.append(json.loads(data)["id"])
                else:
                    errors[status] = errors.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(i) for i in range(clients)))
    return latencies, acked, errors, time.perf_counter() - t0


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))] if xs else float("nan")


def _serve(args: list[str], port: int, seconds: float, clients: int):
    import httpx

    env = {**os.environ, "INSIGHTROI_API_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-c", *args], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        # Untimed warm-up: the first requests import and compile what later ones reuse.
        asyncio.run(_load(port, 2.0, clients, prefix="warm"))
        return asyncio.run(_load(port, seconds, clients))
    finally:
        proc.terminate()  # uvicorn shuts down gracefully: in-flight requests finish, store closes
        proc.wait(timeout=60)


def run(scale: str = "quick", seconds: float | None = None, clients: int | None = None) -> list[dict]:
    """Run the load test and the floor; returns rows in the benchmarks' common format."""
    import duckdb

    from insightroi.store import open_store

    dur, n_clients = SIZES[scale]
    dur, n_clients = seconds or dur, clients or n_clients
    work = Path(tempfile.mkdtemp(prefix="insightroi-bench-server-"))
    url = f"duckdb:///{work}/load.duckdb"
    open_store(url).close()  # create the tables before the clock starts
    port = _port()
    mode = "hold" if os.environ.get("BENCH_SERVER_HOLD") == "1" else "share"
    latencies, acked, errors, elapsed = _serve([_SERVER, url, TOKEN, str(port), mode], port, dur, n_clients)
    with open_store(url) as st:
        stored = st.sql("SELECT count(*) AS n FROM chain_events WHERE batch_id LIKE 'api:%' "
                        "AND alert_id LIKE 'load-%'").to_pylist()[0]["n"]
        found = st.sql("SELECT count(DISTINCT id) AS n FROM chain_events WHERE id IN (SELECT unnest(?))",
                       [acked]).to_pylist()[0]["n"]
    lost, extra = len(set(acked)) - found, stored - len(set(acked))
    rate = len(acked) / elapsed
    p50, p99 = _quantile(latencies, 0.50), _quantile(latencies, 0.99)

    floor_db = work / "floor.duckdb"
    fport = _port()
    f_lat, f_acked, f_errors, f_elapsed = _serve([_FLOOR, str(floor_db), str(fport)], fport, dur, n_clients)
    with duckdb.connect(str(floor_db)) as con:
        f_found = con.execute("SELECT count(DISTINCT id) FROM ev WHERE id IN (SELECT unnest(?))",
                              [f_acked]).fetchone()[0]
    f_lost = len(set(f_acked)) - f_found
    f_rate = len(f_acked) / f_elapsed
    f_p50, f_p99 = _quantile(f_lat, 0.50), _quantile(f_lat, 0.99)
    ratio = rate / f_rate if f_rate else None

    note = (f"{n_clients} clients x {elapsed:.0f} s on loopback, {_MODES[mode]}: {len(acked):,} events acknowledged, "
            f"{stored:,} in store, lost {lost}, extra {extra}, non-2xx {sum(errors.values())} {errors or ''}; "
            f"{rate:,.0f} events/s, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    floor_note = (f"floor (FastAPI endpoint that only INSERTs into DuckDB, same clients, same run): "
                  f"{f_rate:,.0f} events/s, p50 {f_p50 * 1000:.1f} ms, p99 {f_p99 * 1000:.1f} ms, lost {f_lost}, "
                  f"non-2xx {sum(f_errors.values())}; ours/floor = {ratio:.2f}")
    rows = [
        {"benchmark": f"api_post_chain_event_p50_latency[{scale}]", "ours_s": p50, "peer": "floor", "peer_s": f_p50,
         "ratio": p50 / f_p50 if f_p50 else None, "note": note},
        {"benchmark": f"api_post_chain_event_p99_latency[{scale}]", "ours_s": p99, "peer": "floor", "peer_s": f_p99,
         "ratio": p99 / f_p99 if f_p99 else None, "note": f"p99 over {len(latencies):,} requests"},
        {"benchmark": f"api_sustained_seconds_per_event[{scale}]", "ours_s": 1.0 / rate if rate else None,
         "peer": "floor", "peer_s": 1.0 / f_rate if f_rate else None,
         "ratio": f_rate / rate if rate else None,
         "note": f"{rate:,.0f} events/s sustained; zero lost: {lost == 0 and extra == 0}; {floor_note}"},
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

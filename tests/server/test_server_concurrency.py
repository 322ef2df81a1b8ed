"""CLI commands next to a running ``insightroi serve`` on one DuckDB file (issue 15, item 7).

A real server process on a loopback port and real CLI processes: the server attaches the file
only per request, so ``insightroi status`` and ``insightroi ingest`` run while it serves, and its
next read sees what they wrote. A process that keeps the file open makes a CLI command fail with
one line naming it (never a traceback), and the server answer 503 until the file is free.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from _srv_helpers import TOKEN, free_port, seed_store
from helpers.live_server import wait_until_serving

from insightroi.store import open_store

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SERVER_BUSY_TIMEOUT = "2"  # seconds the server waits for a file another process holds
# Keeps the store open (hold=True, the CLI's way) until its stdin closes.
HOLDER = """
import sys
from insightroi.store import open_store
st = open_store(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
st.close()
"""


def _cli(*args: str, timeout_s: float | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("INSIGHTROI_STORE", None)
    if timeout_s is not None:
        env["INSIGHTROI_BUSY_TIMEOUT"] = str(timeout_s)
    return subprocess.run([sys.executable, "-m", "insightroi", *args], env=env, capture_output=True, text=True,
                          timeout=600)


class _Holder:
    """A second Python process that holds ``url`` open until the ``with`` block ends."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> "_Holder":
        line = self.proc.stdout.readline()
        assert line.strip() == "held", self.proc.stderr.read()
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency")
    url = f"duckdb:///{root}/shared.duckdb"
    seed_store(url, bundle=False)
    port = free_port()
    env = {**os.environ, "INSIGHTROI_API_TOKEN": TOKEN, "INSIGHTROI_BUSY_TIMEOUT": SERVER_BUSY_TIMEOUT}
    proc = subprocess.Popen([sys.executable, "-m", "insightroi", "serve", "--store", url, "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, base)
        yield SimpleNamespace(url=url, base=base, root=root)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_cli_commands_run_while_the_server_serves(served):
    # Traffic on the server all along: every answer is a success or the designed 503 (busy).
    stop, answers, posted = threading.Event(), [], []

    def traffic():
        with httpx.Client(base_url=served.base, timeout=60) as c:
            i = 0
            while not stop.is_set():
                r = c.post("/api/v1/chain-events", headers={**AUTH, "Idempotency-Key": f"traffic-{i}"},
                           json={"event_type": "acknowledged", "alert_id": "alr-0001"})
                answers.append(r.status_code)
                posted.append(r.status_code)
                answers.append(c.get("/api/v1/insights", params={"limit": 5}, headers=AUTH).status_code)
                i += 1

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        status = _cli("status", "--store", served.url)
        csv = served.root / "events.csv"
        csv.write_text("id,event_type,event_time,alert_id,team,topic\n"
                       "cli-ev-1,alert_delivered,2026-03-20T09:00:00Z,alr-cli-1,quality,hinge\n"
                       "cli-ev-2,acknowledged,2026-03-20T10:00:00Z,alr-cli-1,quality,hinge\n")
        ingest = _cli("ingest", "chain_events", str(csv), "--store", served.url)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert status.returncode == 0, status.stderr
    assert "chain_events" in status.stdout and "Traceback" not in status.stderr
    assert ingest.returncode == 0, ingest.stderr
    assert answers and set(answers) <= {200, 201, 503}, sorted(set(answers))
    assert answers.count(200) + answers.count(201) > 0

    # The server's next read sees the rows the CLI ingested meanwhile.
    alerts = httpx.get(f"{served.base}/api/v1/alerts", headers=AUTH, timeout=60).json()["items"]
    mine = next(a for a in alerts if a["alert_id"] == "alr-cli-1")
    assert mine["status"] == "acknowledged" and mine["n_events"] == 2
    # ... and every event the API accepted during the CLI runs is in the file, once.
    with open_store(served.url) as st:
        n = st.sql("SELECT count(*) AS n FROM chain_events WHERE alert_id = 'alr-0001' AND batch_id LIKE 'api:%'")
    assert n.to_pylist()[0]["n"] == posted.count(201)


def test_a_held_store_is_one_line_naming_the_holder(tmp_path):
    url = f"duckdb:///{tmp_path}/held.duckdb"
    with _Holder(url) as holder:
        t0 = time.monotonic()
        got = _cli("status", "--store", url, timeout_s=1)
        waited = time.monotonic() - t0
    assert got.returncode == 2  # the CLI's exit code for a busy store (1 is any other error)
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    line = lines[0]
    assert line.startswith("error: store ") and "busy" in line
    assert f"process {holder.proc.pid} (" in line and "held.duckdb" in line
    assert "Traceback" not in got.stderr and waited > 1


def test_the_server_answers_503_while_another_process_holds_the_file_then_recovers(served):
    with _Holder(served.url), httpx.Client(base_url=served.base, timeout=60) as c:
        r = c.get("/api/v1/insights", headers=AUTH)
        w = c.post("/api/v1/chain-events", headers={**AUTH, "Idempotency-Key": "while-held"},
                   json={"event_type": "acknowledged", "alert_id": "alr-0002"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "busy" in r.json()["detail"] and "shared.duckdb" in r.json()["detail"]
    assert w.status_code == 503  # refused whole: a retry with the same key stores it once
    with httpx.Client(base_url=served.base, timeout=60) as c:
        assert c.get("/api/v1/insights", headers=AUTH).status_code == 200
        again = c.post("/api/v1/chain-events", headers={**AUTH, "Idempotency-Key": "while-held"},
                       json={"event_type": "acknowledged", "alert_id": "alr-0002"})
        assert again.status_code == 201 and "idempotent-replayed" not in again.headers

"""The server lets the store file go when a CLI command waits for it, and only then (issue 16).

Releasing the file is a DuckDB checkpoint, which rewrites the ``chain_events`` indexes (hundreds
of ms at 200k events). The server used to release every 2 s under traffic whether anyone waited
or not, and that pause was the event API's p99. Now a waiting opener announces itself
(``insightroi.store.lock_wanted``) and the server releases for it between group commits.
A real DuckDB file, the server's own store thread, and a second process that opens the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

from _srv_helpers import wait_released
from insightroi.server._data import Backend
from insightroi.store import lock_wanted, open_store

# Opens the store the CLI's way (hold=True) and waits its busy timeout for the server to let go.
OPENER = """
import sys
from insightroi.store import open_store
with open_store(sys.argv[1]) as st:
    n = st.sql("SELECT count(*) AS n FROM chain_events").to_pylist()[0]["n"]
print(n, flush=True)
"""


def _event(i: int) -> dict:
    return {"id": f"ev-{uuid.uuid4().hex}", "event_type": "alert_delivered", "alert_id": f"alr-share-{i}",
            "event_time": None, "actor": "tester", "team": "support"}


class _Traffic:
    """Writes chain events back to back on the backend until stopped; counts them."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.stored, self.stop = backend, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            row = _event(i)
            row["event_time"] = datetime.now(timezone.utc).replace(tzinfo=None)
            self.backend.write("chain_events", row, f"fp-{i}", by_key=False)
            self.stored += 1
            i += 1

    def __enter__(self) -> "_Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _count_detaches(backend: Backend) -> list[float]:
    detaches: list[float] = []
    original = backend.store._detach

    def counted() -> None:
        if backend.store._attached:
            detaches.append(time.monotonic())
        original()

    backend.store._detach = counted
    return detaches


def test_under_traffic_the_server_keeps_the_file_until_a_cli_command_waits(tmp_path):
    url = f"duckdb:///{tmp_path}/shared.duckdb"
    open_store(url).close()
    backend = Backend(url, linger_s=10.0)  # no release for a pause in the traffic: only for a waiter
    detaches = _count_detaches(backend)
    try:
        with _Traffic(backend) as traffic:
            # 3 s of back-to-back writes: past the 2 s after which the server used to let go.
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                time.sleep(0.05)
            alone = (len(detaches), traffic.stored)
            env = {**os.environ, "INSIGHTROI_BUSY_TIMEOUT": "30"}
            opener = subprocess.run([sys.executable, "-c", OPENER, url], env=env, capture_output=True,
                                    text=True, timeout=120)
            after_opener = traffic.stored
            time.sleep(0.5)  # the server takes the file back and keeps writing
        final = traffic.stored
    finally:
        backend.close()
    assert alone[0] == 0, f"released {alone[0]} times with nobody waiting"
    assert alone[1] > 50  # the traffic was real: the writes kept landing
    assert opener.returncode == 0, opener.stderr
    assert len(detaches) >= 1  # ... and it let the waiting process in
    assert int(opener.stdout.strip()) > 0  # which read what the server had committed
    assert final > after_opener  # and writes went on after it
    assert not (tmp_path / "shared.duckdb.waiting").exists()  # the waiter cleaned up its marker
    with open_store(url) as st:
        assert st.sql("SELECT count(*) AS n FROM chain_events").to_pylist()[0]["n"] == final


def test_a_thread_of_the_server_process_waiting_on_the_store_gets_in_under_traffic(tmp_path):
    # serve's deliverer shares the server's store object from its own thread: the store thread,
    # which keeps the lease across group commits, must let it in while requests keep coming.
    url = f"duckdb:///{tmp_path}/shared.duckdb"
    open_store(url).close()
    backend = Backend(url, linger_s=10.0)
    got: list[int] = []

    def deliverer() -> None:
        with backend.store.attached():
            got.append(backend.store.sql("SELECT count(*) AS n FROM chain_events").to_pylist()[0]["n"])

    try:
        with _Traffic(backend) as traffic:
            while traffic.stored < 20:  # the store thread holds the lease by now
                time.sleep(0.01)
            other = threading.Thread(target=deliverer, daemon=True)
            other.start()
            other.join(timeout=60)
            blocked = other.is_alive()
            before = traffic.stored
            time.sleep(0.3)
            after = traffic.stored
    finally:
        backend.close()
    assert not blocked, "the deliverer thread waited for the traffic to stop"
    assert got and got[0] >= 20
    assert after > before  # and the traffic went on


def test_lock_wanted_counts_live_waiters_of_other_processes_only(tmp_path):
    store = tmp_path / "x.duckdb"
    folder = tmp_path / "x.duckdb.waiting"
    assert not lock_wanted(store) and not lock_wanted(None)
    folder.mkdir()
    (folder / f"{os.getpid()}-1").touch()  # this process's own thread: not someone else waiting
    assert not lock_wanted(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / f"{dead.pid}-1").touch()  # killed before it could clean up
    assert not lock_wanted(store)
    assert not (folder / f"{dead.pid}-1").exists()  # and its marker is gone
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / f"{live.pid}-7").touch()
        assert lock_wanted(store)
    finally:
        live.kill()
        live.wait()


# In its own process: freezing the collector is process-wide and must not leak into the test run.
FREEZE_CHECK = """
import gc, sys
from fastapi.testclient import TestClient
from insightroi.server import create_app
from insightroi.server._data import FREEZE_GC_AFTER_UNITS
from insightroi.store import open_store
url, token, freeze = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
open_store(url).close()
app = create_app(url, token=token, freeze_gc=freeze)
before = gc.get_freeze_count()
with TestClient(app, base_url="http://127.0.0.1") as client:
    at_start = gc.get_freeze_count()
    head = {"Authorization": f"Bearer {token}"}
    for i in range(FREEZE_GC_AFTER_UNITS // 2 + 5):  # two units of store work each
        r = client.post("/api/v1/chain-events", headers={**head, "Idempotency-Key": f"k-{i}"},
                        json={"event_type": "alert_delivered", "alert_id": f"alr-gc-{i}"})
        assert r.status_code == 201, r.text
        assert client.get("/api/v1/health").status_code == 200
    after_warm_up = gc.get_freeze_count()
print(before, at_start, after_warm_up)
"""


def test_serve_freezes_the_collector_at_startup_and_once_after_warm_up(tmp_path):
    token = "t" * 40
    runs = {}
    for freeze in ("1", "0"):
        url = f"duckdb:///{tmp_path}/gc{freeze}.duckdb"
        out = subprocess.run([sys.executable, "-c", FREEZE_CHECK, url, token, freeze], capture_output=True,
                             text=True, timeout=300, env={**os.environ, "INSIGHTROI_API_TOKEN": ""})
        assert out.returncode == 0, out.stderr
        runs[freeze] = [int(x) for x in out.stdout.split()]
    before, at_start, after = runs["1"]
    assert before == 0 and at_start > 100_000  # the imported libraries' objects, frozen before serving
    assert after > at_start  # and what the first requests created, once they had run
    assert runs["0"] == [0, 0, 0]  # an app built inside another program leaves its collector alone


def test_the_server_checkpoints_when_it_lets_the_file_go_not_inside_a_commit(tmp_path):
    # DuckDB's default checkpoints inside the commit that takes the WAL past 16 MiB, and that
    # commit's requests wait for the chain_events indexes to be rewritten (~0.7 s at 400k events).
    url = f"duckdb:///{tmp_path}/w.duckdb"
    open_store(url).close()
    backend = Backend(url, linger_s=0.05)
    try:
        setting = backend.store.sql("SELECT current_setting('wal_autocheckpoint') AS w").to_pylist()[0]["w"]
        row = _event(0)
        row["event_time"] = datetime.now(timezone.utc).replace(tzinfo=None)
        backend.write("chain_events", row, "fp-0", by_key=False)
        released = wait_released(backend)  # idle: released, checkpointed
    finally:
        backend.close()
    assert setting == "1.0 GiB" and released
    wal = tmp_path / "w.duckdb.wal"
    assert not wal.exists() or wal.stat().st_size == 0  # the release wrote the event into the file

"""While the server holds the store file it checks chain events against what it knows, not the file (issue 16).

At 2,000 events/s the lookup of each group commit's ids and alerts was ~45% of its CPU. While
the server holds the file nobody else can write to it, so after one read of the stored ids it
answers new events from memory; the file is asked only about ids it already knows (a replay) and
alerts whose events it has not read yet. These tests pin both halves: the lookup is gone, and
what others wrote while the server had let go is seen.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from _srv_helpers import wait_released
from insightroi.server import _data
from insightroi.server._data import Backend, Conflict
from insightroi.store import open_store

# Another process writes a delivery for alert argv[2] with id argv[3] while the server has let go.
WRITER = """
import sys
from insightroi.store import open_store
with open_store(sys.argv[1]) as st:
    st.sql("INSERT INTO chain_events (id, event_type, alert_id, event_time, actor, batch_id) "
           "VALUES (?, 'alert_delivered', ?, now()::TIMESTAMP - INTERVAL 1 HOUR, 'cli', 'cli-batch')",
           [sys.argv[3], sys.argv[2]])
"""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _row(event_type: str, alert_id: str, *, event_id: str | None = None, ago_s: float = 0.0) -> dict:
    return {"id": event_id or f"ev-{uuid.uuid4().hex}", "event_type": event_type, "alert_id": alert_id,
            "event_time": _now() - timedelta(seconds=ago_s), "actor": "tester", "team": "support"}


def _statements(backend: Backend) -> list[str]:
    seen: list[str] = []
    original = backend.store.sql

    def counted(query, params=None, **kw):
        seen.append(query.split()[0].upper())
        return original(query, params, **kw)

    backend.store.sql = counted
    return seen


@pytest.fixture()
def url(tmp_path):
    url = f"duckdb:///{tmp_path}/cache.duckdb"
    open_store(url).close()
    return url


def test_new_events_are_checked_without_asking_the_file(url):
    backend = Backend(url, linger_s=10.0)
    try:
        first = _row("alert_delivered", "alr-a", ago_s=60)
        backend.write("chain_events", first, "fp-first", by_key=False)  # reads the stored ids once
        seen = _statements(backend)
        ack = _row("acknowledged", "alr-a", ago_s=30)
        _, replayed = backend.write("chain_events", ack, "fp-ack", by_key=False)
        assert seen == ["INSERT"] and not replayed  # the chain of alr-a came from memory
        with pytest.raises(Conflict) as early:  # and is checked as strictly as from the file
            backend.write("chain_events", _row("action_taken", "alr-a", ago_s=45), "fp-early", by_key=False)
        assert early.value.status == 422 and ack["id"] in str(early.value)  # named: the ack it precedes
        seen.clear()
        _, replayed = backend.write("chain_events", first, "fp-first", by_key=False)
        assert replayed and seen[0] == "SELECT"  # a known id is looked up: its stored body decides
        with pytest.raises(Conflict) as reused:
            backend.write("chain_events", {**first, "actor": "someone else"}, "fp-other", by_key=False)
        assert reused.value.status == 409
    finally:
        backend.close()
    with open_store(url) as st:
        assert st.sql("SELECT count(*) AS n FROM chain_events").to_pylist()[0]["n"] == 2


def test_what_another_process_wrote_while_the_server_let_go_is_seen(url):
    backend = Backend(url, linger_s=0.05)
    try:
        backend.write("chain_events", _row("alert_delivered", "alr-mine", ago_s=60), "fp-1", by_key=False)
        assert wait_released(backend)
        theirs = f"ev-{uuid.uuid4().hex}"
        out = subprocess.run([sys.executable, "-c", WRITER, url, "alr-theirs", theirs], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        # A follow-up of their delivery is accepted: the server read the file again, not its memory.
        backend.write("chain_events", _row("acknowledged", "alr-theirs"), "fp-2", by_key=False)
        with pytest.raises(Conflict) as reused:
            backend.write("chain_events", _row("alert_delivered", "alr-x", event_id=theirs), "fp-3", by_key=False)
        assert reused.value.status == 409
    finally:
        backend.close()


def test_a_batch_that_failed_to_land_leaves_nothing_behind_in_memory(url):
    backend = Backend(url, linger_s=10.0)
    original = backend._insert
    try:
        backend.write("chain_events", _row("alert_delivered", "alr-seed", ago_s=60), "fp-0", by_key=False)

        def broken(table, rows):
            raise RuntimeError("disk full")

        backend._insert = broken
        with pytest.raises(RuntimeError):
            backend.write("chain_events", _row("alert_delivered", "alr-lost", ago_s=30), "fp-1", by_key=False)
        backend._insert = original
        with pytest.raises(Conflict) as orphan:  # the delivery never landed, so this has none
            backend.write("chain_events", _row("acknowledged", "alr-lost"), "fp-2", by_key=False)
        assert orphan.value.status == 422
    finally:
        backend.close()


def test_over_the_memory_bound_the_commit_asks_the_file(url, monkeypatch):
    monkeypatch.setattr(_data, "CHAIN_CACHE_MAX_EVENTS", 1)
    backend = Backend(url, linger_s=10.0)
    try:
        for i in range(2):
            backend.write("chain_events", _row("alert_delivered", f"alr-{i}", ago_s=60), f"fp-{i}", by_key=False)
        seen = _statements(backend)
        backend.write("chain_events", _row("acknowledged", "alr-0"), "fp-ack", by_key=False)
        assert seen == ["SELECT", "INSERT"]  # 2 events stored: over the bound, looked up
        with pytest.raises(Conflict) as orphan:
            backend.write("chain_events", _row("acknowledged", "alr-never"), "fp-x", by_key=False)
        assert orphan.value.status == 422
    finally:
        backend.close()


def test_the_cache_gives_the_garbage_collector_nothing_to_walk():
    # Python's full collections walk every tracked container; as a set of ids and lists of step
    # dicts the cache cost 60 ms a collection at 500k events (every request waiting: the paced
    # p99). Its containers must be ones CPython untracks: dicts of atoms, tuples of atoms.
    cache = _data._ChainCache([f"stored-{i}" for i in range(1000)], ["alr-stored"])
    events = [_row(step, f"alr-{i}") for i in range(500) for step in ("alert_delivered", "acknowledged")]
    cache.add(events)
    # Stored events read from the file in this hold join the cache the same way.
    cache.remember({"alr-stored": [{**_row("alert_delivered", "alr-stored"), "batch_id": None}]})
    # A tuple is untracked when a collection finds all its items untracked; one whose step tuple
    # sat in an older generation is reached first and needs the next collection.
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(cache.ids) and not gc.is_tracked(cache.alerts)
    tracked = [a for a, chain in cache.chains.items() if gc.is_tracked(chain)]
    assert len(cache.chains) == 501 and tracked == []
    # What the checks get is a copy of step dicts, in order; changing it leaves the cache alone.
    chain = cache.chain("alr-7")
    assert [e["event_type"] for e in chain] == ["alert_delivered", "acknowledged"]
    assert set(chain[0]) == {"id", "event_type", "event_time", "alert_id"}
    chain.append({"event_type": "fix_deployed"})
    assert len(cache.chain("alr-7")) == 2 and cache.chain("alr-unknown") == []
    assert "stored-999" in cache.ids and events[-1]["id"] in cache.ids and "alr-499" in cache.alerts

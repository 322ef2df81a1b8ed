"""The server's access to the store: one store thread, idempotent group-committed writes, and reads.

Every unit of store work runs on one thread (``insightroi-store``): an embedded DuckDB connection
must not be used by two threads at once, and a single writer makes the check-then-insert of an
idempotent write atomic without a lock around each request. Request threads (and the event loop,
for the async write path) queue their work and wait for it.

The file is attached while there is work and for ``linger_s`` after it, so a burst of requests
pays one ATTACH (the catalog read) and one DETACH (a checkpoint) instead of one per request:
measured 8-45 ms per attach + detach, against 3-10 ms for the group commit of 32 events. Because the server should
still let CLI commands use the store while it serves, it lets the file go when a CLI command
waits for it: a waiting opener announces itself (:func:`insightroi.store.lock_wanted`, checked
before each unit of work), and the server detaches for ``share_s`` (longer than the opener's
50 ms poll) and attaches again. It used to release the file every 2 s whether anyone waited or
not: each release is a checkpoint, which rewrites the ``chain_events`` indexes (~350 ms at 200k
events), and that pause every 2 s was the event API's p99. ``max_hold_s`` still bounds a hold
for openers that cannot announce themselves (infinite by default). A file held by another
process for longer than the store's busy timeout raises ``StoreBusyError`` (HTTP 503) for the
work queued meanwhile.

Writes queued while the thread is busy are committed together (group commit): one transaction and
one WAL flush for many events; every caller returns only after the transaction holding its row has
committed, or with the error that stopped it. Chain events are checked against the alert's stored
events and those earlier in the same batch (:func:`insightroi.chain.check_chain_event`); while the
server holds the file it knows what ``chain_events`` holds without asking (:class:`_ChainCache`):
the paced benchmark's p99 at 2,000 events/s went from 121 ms to 21-77 ms (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import gc
import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import pyarrow as pa

from insightroi.bundle import assemble_bundle, migrate_bundle
from insightroi.chain import ChainEventError, check_chain_event
from insightroi.chain import trace as chain_trace
from insightroi.chain._kpis import waiting_on_owner
from insightroi.chain._links import alert_chains, episode_facts, is_praise
from insightroi.privacy import erase_customer
from insightroi.store import TABLES, lock_wanted, open_store

__all__ = ["Backend", "Conflict", "jsonable", "fingerprint", "id_from_key"]

_STAGES = ("new", "delivered", "acknowledged", "acted", "fixed")
# Store column types (Ibis names) -> DuckDB SQL types, for the server's direct inserts.
_SQL_TYPES = {"string": "VARCHAR", "timestamp": "TIMESTAMP", "float64": "DOUBLE", "int64": "BIGINT",
              "boolean": "BOOLEAN"}


class Conflict(Exception):
    """An id or idempotency key was reused with a different request, or the event contradicts the chain."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def jsonable(v: Any) -> Any:
    """Plain JSON values (timestamps as ISO strings, NaN/NaT as None)."""
    if v is None:
        return None
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (datetime, date)):
        return None if v != v else v.isoformat()  # pandas' NaT is a datetime, and NaT != NaT
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "isoformat"):  # pandas Timestamp
        try:
            return None if v != v else v.isoformat()  # NaT != NaT
        except (TypeError, ValueError):
            return v.isoformat()
    if hasattr(v, "item"):
        return jsonable(v.item())
    if hasattr(v, "to_dict"):
        return jsonable(v.to_dict())
    if hasattr(v, "to_pylist"):
        return jsonable(v.to_pylist())
    return v


def _records(df) -> list[dict[str, Any]]:
    return [jsonable(r) for r in df.to_dict(orient="records")]


class _Pending:
    """One row waiting for a group commit; ``future`` is shared by the rows of one request.

    ``public`` False: the caller needs only whether the row landed (a batch answers ids and
    statuses), so the stored row is not turned back into JSON for it.
    """

    __slots__ = ("table", "row", "batch", "by_key", "future", "public", "result", "error")

    def __init__(self, table: str, row: dict[str, Any], batch: str, by_key: bool,
                 future: concurrent.futures.Future | None = None, public: bool = True) -> None:
        self.table, self.row, self.batch, self.by_key, self.public = table, row, batch, by_key, public
        self.future: concurrent.futures.Future = future if future is not None else concurrent.futures.Future()
        self.result, self.error = None, None


def _on_store_thread(fn: Callable) -> Callable:
    """Run the method on the backend's store thread (directly when already on it)."""

    @functools.wraps(fn)
    def wrapper(self: "Backend", *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is self._thread:
            return fn(self, *args, **kwargs)
        job = concurrent.futures.Future()
        self._submit(reads=[(job, functools.partial(fn, self, *args, **kwargs))])
        return job.result()

    return wrapper


# Units of store work after which a server that froze the collector at startup freezes it once
# more: by then the requests have imported and cached what they use (~35k objects whose full
# collections still took 15-30 ms). Once only: a frozen object that later becomes cyclic garbage
# is never freed.
FREEZE_GC_AFTER_UNITS = 200

# Values per IN list of a lookup. DuckDB (1.5) answers a literal IN list from an ART index up to
# its index_scan_max_count (2,048); one list beats several shorter ones in a UNION (300 ids from
# 400k events: 5.9 ms in one list, 7.7 ms in lists of 64, 10 ms through `IN (SELECT unnest(?))`).
_INDEX_PROBES = 1024

# Chain events the server keeps in memory while it holds the file (see _ChainCache): ids of
# every stored event and alert, ~100 bytes per event. Above this many events the commit asks the
# file instead, as it does for feedback.
CHAIN_CACHE_MAX_EVENTS = 1_000_000


_STEP_KEYS = ("id", "event_type", "event_time", "alert_id")


def _chain_step(row: dict[str, Any]) -> dict[str, Any]:
    """What the chain checks read of a chain event (:func:`insightroi.chain.check_chain_event`)."""
    return {k: row.get(k) for k in _STEP_KEYS}


def _step_tuple(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in _STEP_KEYS)


class _ChainCache:
    """What ``chain_events`` holds, known without asking the file while the server holds it.

    While the server holds the file no other process can write to it, and every write of this
    process to ``chain_events`` goes through the group commit (threads that use the store
    directly wait on its lease, and the server releases the file for them, dropping the cache).
    So after one read of the ids at the first commit of a hold, a commit needs no lookup for
    new events: at 2,000 events/s the lookup was ~45% of a group commit's CPU (~4.5 ms of ~10),
    most of it binding the literal IN lists the indexes answer.

    ``chains`` holds the events of alerts the server looked up or wrote during this hold; an
    alert that is not in ``alerts`` has no stored events, so its chain starts empty without a
    lookup.

    The cache is shaped for Python's collector, which walks every container it tracks in each
    full collection (a few a minute under load): as a set of 500k ids and 40k lists of step dicts
    it cost 60 ms a collection, every request waiting (the paced benchmark's p99). Dicts of
    strings, tuples of atoms and tuples of such tuples are untracked, so ``ids`` and ``alerts``
    are dicts with None values and each chain is a tuple of ``_STEP_KEYS`` tuples (~1 ms).
    """

    __slots__ = ("ids", "alerts", "chains")

    def __init__(self, ids: Iterable[str], alerts: Iterable[str]) -> None:
        self.ids: dict[str, None] = dict.fromkeys(ids)
        self.alerts: dict[str, None] = dict.fromkeys(alerts)
        self.chains: dict[str, tuple[tuple, ...]] = {}

    def chain(self, alert_id: str) -> list[dict[str, Any]]:
        """A copy of the alert's cached events as step dicts (empty when none are cached)."""
        return [dict(zip(_STEP_KEYS, step)) for step in self.chains.get(alert_id, ())]

    def remember(self, chains: dict[str, list[dict[str, Any]]]) -> None:
        """Cache the stored events of alerts just read from the file."""
        for alert_id, events in chains.items():
            self.chains[alert_id] = tuple(_step_tuple(e) for e in events)

    def add(self, events: list[dict[str, Any]]) -> None:
        """Record committed events (rows with at least ``id``, ``event_type``, ``event_time``, ``alert_id``)."""
        for e in events:
            self.ids[e["id"]] = None
            alert_id = e.get("alert_id")
            if not alert_id:
                continue
            chain = self.chains.get(alert_id)
            if chain is None:
                if alert_id in self.alerts:
                    continue  # stored events not read in this hold: looked up when next needed
                chain = ()
            self.alerts[alert_id] = None
            self.chains[alert_id] = (*chain, _step_tuple(e))


class Backend:
    """Store access for one app: idempotent appends and the reads the API and pages need.

    Parameters
    ----------
    store_url : str
        The store (opened with ``hold=False``: the file is attached only while there is work).
    linger_s : float
        Keep the file attached this long after the last unit of work.
    share_on_request : bool
        Release the file for ``share_s`` when another process announces it waits for it
        (False: hold it while requests keep coming, ``insightroi serve --hold-store``). A thread
        of this process waiting on the store's lease (serve's deliverer) is let in either way.
    max_hold_s, share_s : float
        After holding the file this long in a row, release it for ``share_s`` whether anyone
        waits or not (``inf``: never on time alone).
    max_future : timedelta
        Chain events dated further than this past the server's clock are refused.
    commit_delay_s, group_rows : float, int
        A group commit waits up to ``commit_delay_s`` for more rows unless ``group_rows`` are
        already queued (0: commit at once).
    freeze_gc_after : int, optional
        After this many units of work, call :func:`gc.freeze` once (see ``create_app(freeze_gc=)``).
    """

    def __init__(self, store_url: str, *, linger_s: float = 0.25, share_on_request: bool = True,
                 max_hold_s: float = float("inf"), share_s: float = 0.06,
                 max_future: timedelta = timedelta(minutes=5), commit_delay_s: float = 0.004,
                 group_rows: int = 256, freeze_gc_after: int | None = None) -> None:
        self.store = open_store(store_url, hold=False)
        self.share_on_request = share_on_request and self.store.path is not None
        # Entering it attaches the store's file (outermost entry of a thread); leaving detaches.
        self.lock = self.store.attached()
        self.linger_s, self.max_hold_s, self.share_s, self.max_future = linger_s, max_hold_s, share_s, max_future
        self.commit_delay_s, self.group_rows = commit_delay_s, group_rows
        self._freeze_gc_after = freeze_gc_after
        self._units = 0
        self.program = None
        self._cv = threading.Condition()
        self._reads: deque = deque()
        self._writes: list[_Pending] = []
        self._closed = False
        self._indexed = False
        # None: not read in this hold of the file; False: too many events to keep in memory.
        self._chain_cache: _ChainCache | None | bool = None
        # DuckDB's worker threads (the store URL's setting): reads use them, group commits use one.
        self._read_threads: int | None = None
        if self.store.kind == "duckdb":
            self._read_threads = int(self.store.sql("SELECT current_setting('threads') AS n").to_pylist()[0]["n"])
            # DuckDB checkpoints inside the commit that takes the WAL past 16 MiB (~115k events),
            # and a checkpoint rewrites the chain_events indexes: ~0.7 s at 400k events, every
            # request waiting (the 60 s paced benchmark's p99). Held while traffic lasts, the file
            # is checkpointed when it is released (a waiting command, 0.25 s without requests,
            # shutdown) instead; 1 GiB bounds the WAL when traffic never stops.
            self.store.sql("SET wal_autocheckpoint = '1GiB'")
        self._current_threads = self._read_threads
        self._thread = threading.Thread(target=self._serve, name="insightroi-store", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()
        self.store.close()

    # ---- the store thread ---------------------------------------------------------------------
    def _submit(self, *, reads: list | None = None, writes: list[_Pending] | None = None) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("the server's store is closed")
            self._reads.extend(reads or ())
            self._writes.extend(writes or ())
            self._cv.notify()

    def _serve(self) -> None:
        held_since: float | None = None
        last_work = 0.0
        while True:
            with self._cv:
                while not (self._reads or self._writes or self._closed):
                    if held_since is None:
                        self._cv.wait()
                        continue
                    left = last_work + self.linger_s - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                # Group commit with a short delay (PostgreSQL's commit_delay): a DuckDB commit costs
                # ~5 ms of CPU whatever its size, so when requests arrive spread out, waiting a few
                # ms for more rows cuts the commits per second (and the CPU they take) severalfold.
                deadline = time.monotonic() + self.commit_delay_s
                while self._writes and not (self._reads or self._closed) and len(self._writes) < self.group_rows:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                reads, self._reads = self._reads, deque()
                writes, self._writes = self._writes, []
                closing = self._closed
            if not reads and not writes:
                if held_since is not None:
                    self._release()
                    held_since = None
                if closing:
                    return
                continue
            self._units += 1
            if self._units == self._freeze_gc_after:
                gc.freeze()
            try:
                held_since = self._work(reads, writes, held_since)
            except BaseException as exc:  # the thread must outlive any failure, or requests hang
                for job, _ in reads:
                    if not job.done():
                        job.set_exception(exc)
                for p in writes:
                    if not p.future.done():
                        p.future.set_exception(exc)
            last_work = time.monotonic()

    def _work(self, reads: deque, writes: list[_Pending], held_since: float | None) -> float | None:
        """Run the jobs taken from the queue with the file attached; returns when it was attached."""
        # Another thread of this process (serve's deliverer) waits on the lease, or another
        # process announced it waits for the file: let go between units of work.
        if held_since is not None and (time.monotonic() - held_since > self.max_hold_s or self.lock.waiting
                                       or (self.share_on_request and lock_wanted(self.store.path))):
            self._release()
            held_since = None
            time.sleep(self.share_s)  # a waiting process polls every 50 ms at most
        if held_since is None:
            self.lock.__enter__()  # StoreBusyError: every job taken fails with it
            held_since = time.monotonic()
            if not self._indexed:
                self._index_lookups()
        if reads:
            self._threads(self._read_threads)
        for job, fn in reads:
            try:
                job.set_result(fn())
            except BaseException as exc:
                job.set_exception(exc)
        if writes:
            # A group commit is a few small statements: DuckDB's worker threads add hand-offs,
            # not speed (on 2 busy cores, 1 thread doubled the events/s); reads get them back.
            self._threads(1)
            self._commit(writes)
        return held_since

    def _index_lookups(self) -> None:
        """Index what every group commit looks up in ``chain_events`` (ids, and the alerts' chains).

        Without it each commit scans the table (~30 ms at 200k events, growing with it); with DuckDB
        ART indexes the same lookup takes ~6 ms at any size. Only ``chain_events``: a
        ``feedback`` index would slow its bulk ingestion, and events posted through the API are
        a small share of it. The indexes live in the file, so this runs once per store.
        """
        self._indexed = True
        if self.store.kind != "duckdb":
            return
        for column in ("id", "alert_id"):
            self.store.sql(f'CREATE INDEX IF NOT EXISTS chain_events_{column}_lookup ON chain_events ("{column}")')

    def _threads(self, n: int | None) -> None:
        if n is None or n == self._current_threads:
            return
        self.store.sql(f"SET threads = {int(n)}")
        self._current_threads = n

    def _release(self) -> None:
        self._chain_cache = None  # another process or thread may write while the file is away
        try:
            self.lock.__exit__(None, None, None)
        except Exception:  # a failed DETACH leaves nothing to undo; the next attach reports the state
            pass

    # ---- writes -------------------------------------------------------------------------------
    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: jsonable(v) for k, v in row.items() if k not in ("ingested_at", "batch_id")}
        if isinstance(out.get("payload"), str):
            try:
                out["payload"] = json.loads(out["payload"])
            except ValueError:
                pass
        return out

    def _enqueue(self, table: str, row: dict[str, Any], fingerprint: str, by_key: bool) -> _Pending:
        item = _Pending(table, row, f"api:{fingerprint}", by_key)
        self._submit(writes=[item])
        return item

    def write(self, table: str, row: dict[str, Any], fingerprint: str, *, by_key: bool) -> tuple[dict, bool]:
        """Store ``row`` once; a replay of the same request returns the stored event.

        ``fingerprint`` (a hash of the request body) goes into ``batch_id`` so a replay can be told
        from a different request reusing the same id or key. Returns ``(public_row, replayed)``
        once the transaction holding the row has committed.

        Raises
        ------
        Conflict
            The id or key was used with a different body (409 / 422), or a chain event
            contradicts its alert's chain (422, naming both events).
        """
        return self._enqueue(table, row, fingerprint, by_key).future.result()

    async def write_async(self, table: str, row: dict[str, Any], fingerprint: str, *, by_key: bool) -> tuple[dict, bool]:
        """:meth:`write` for the event loop: waits for the commit without tying up a worker thread."""
        return await asyncio.wrap_future(self._enqueue(table, row, fingerprint, by_key).future)

    async def write_many_async(self, table: str, items: list[tuple[dict[str, Any], str, bool]]) -> list[tuple[dict, bool] | Conflict]:
        """Store several rows in one group commit: per row ``(public_row, replayed)`` or the :class:`Conflict`.

        ``items`` are ``(row, fingerprint, by_key)`` as for :meth:`write`. The rows are queued
        together, so they land in the same transaction (with whatever other requests joined it);
        each is checked on its own (a conflict refuses that row, not the batch), and later rows of
        the batch are checked against earlier ones (a chain's delivery then its acknowledgement).
        Any other failure (the store busy or broken) raises: then nothing of the batch landed.
        """
        # One future for the request: a future per row costs more than its row's checks.
        done: concurrent.futures.Future = concurrent.futures.Future()
        pending = [_Pending(table, row, f"api:{fp}", by_key, done, public=False) for row, fp, by_key in items]
        self._submit(writes=pending)
        await asyncio.wrap_future(done)
        return [p.error if p.error is not None else p.result for p in pending]

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self._commit_attached(batch)
        except Exception as exc:  # nothing of the batch landed: every caller sees the failure
            for p in batch:
                p.result, p.error = None, p.error or exc
        shared: dict[int, tuple[concurrent.futures.Future, BaseException | None]] = {}
        for p in batch:
            if not p.public:  # a batch: its rows carry their own result or Conflict; the request fails
                # only when the commit did (then every row of it carries that error)
                failure = p.error if p.error is not None and not isinstance(p.error, Conflict) else None
                _, seen = shared.get(id(p.future), (p.future, None))
                shared[id(p.future)] = (p.future, seen or failure)
            elif p.error is not None:
                p.future.set_exception(p.error)
            else:
                p.future.set_result(p.result)
        for future, failure in shared.values():
            future.set_exception(failure) if failure is not None else future.set_result(None)

    def _lookup(self, table: str, batch: list[_Pending]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
        """Stored rows of ``table`` with the batch's ids, and (chain events) the stored events of its alerts.

        Chain events on DuckDB are answered from the hold's :class:`_ChainCache` where it can:
        only ids it knows (a replay or a reused id) and alerts whose events it has not read yet
        are looked up in the file. The chains returned are copies: the commit appends the
        batch's events to them before it knows the batch landed.
        """
        ids = [p.row["id"] for p in batch if p.table == table]
        alerts = sorted({p.row["alert_id"] for p in batch if p.table == table and p.row.get("alert_id")}) \
            if table == "chain_events" else []
        cache = self._chain_cache_for(table)
        if not cache:
            return self._lookup_stored(table, ids, alerts)
        rows, fetched = self._lookup_stored(table, [i for i in ids if i in cache.ids],
                                            [a for a in alerts if a in cache.alerts and a not in cache.chains])
        cache.remember(fetched)
        return rows, {a: cache.chain(a) for a in alerts}

    def _chain_cache_for(self, table: str) -> _ChainCache | None:
        if table != "chain_events" or self.store.kind != "duckdb" or self._chain_cache is False:
            return None
        if self._chain_cache is None:
            n = self.store.sql('SELECT count(*) AS n FROM "chain_events"').column("n")[0].as_py()
            if n > CHAIN_CACHE_MAX_EVENTS:
                self._chain_cache = False
                return None
            # ~0.6 s at 1M events, once per hold (a release for a waiting command cost a
            # checkpoint of similar size before the cache existed)
            ids = self.store.sql('SELECT id FROM "chain_events"').column("id").to_pylist()
            alerts = self.store.sql('SELECT DISTINCT alert_id FROM "chain_events" WHERE alert_id IS NOT NULL')
            self._chain_cache = _ChainCache(ids, alerts.column("alert_id").to_pylist())
        return self._chain_cache

    def _lookup_stored(self, table: str, ids: list[str], alerts: list[str]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
        """:meth:`_lookup` asking the file: the rows with ``ids`` and the events of ``alerts``.

        Every id of a batch may have to be looked up, so the lookup reads as few columns as it
        can: on DuckDB one statement for both lookups, reading ``id`` and ``batch_id`` for the ids
        and four columns for the alerts; the whole row only of an id found (a replay, rare).
        """
        if not ids and not alerts:
            return {}, {}
        if self.store.kind == "duckdb":
            # Literal IN lists: DuckDB answers those from the ART indexes, while
            # `IN (SELECT unnest(?))` scans the table (growing with it).
            parts, params = [], []
            for select, column, values in (
                    ("id, batch_id, NULL AS event_type, NULL::TIMESTAMP AS event_time, NULL AS alert_id", "id", ids),
                    ("id, NULL, event_type, event_time, alert_id", "alert_id", alerts)):
                for i in range(0, len(values), _INDEX_PROBES):
                    chunk = values[i:i + _INDEX_PROBES]
                    parts.append(f'SELECT {select} FROM "{table}" WHERE "{column}" IN ({", ".join("?" * len(chunk))})')
                    params += chunk
            hits = self.store.sql(" UNION ALL ".join(parts), params).to_pylist() if parts else []
            # An id hit has no alert_id here; an alert hit always has one.
            found = sorted({h["id"] for h in hits if h["alert_id"] is None})
            rows = self.store.rows_by_id(table, found) if found else []
            events = [h for h in hits if h["alert_id"] is not None]
        else:
            with self.store.attached():
                t = self.store.table(table)
                cond = t.id.isin(ids) | t.alert_id.isin(alerts) if alerts else t.id.isin(ids)
                rows = t.filter(cond).execute().to_dict(orient="records")
            events = [r for r in rows if r.get("alert_id") in set(alerts)]
            rows = [r for r in rows if r["id"] in set(ids)]
        chains: dict[str, list[dict[str, Any]]] = {a: [] for a in alerts}
        for r in {r["id"]: r for r in events}.values():
            chains[r["alert_id"]].append(r)
        return {r["id"]: r for r in rows}, chains

    def _stage_alert_ids(self) -> set[str]:
        """Alerts the insight stage raised (the bundle's), delivered or not."""
        alerts = ((self.bundle() or {}).get("insights") or {}).get("alerts") or []
        return {a["alert_id"] for a in alerts if a.get("alert_id")}

    def _commit_attached(self, batch: list[_Pending]) -> None:
        existing: dict[tuple[str, str], dict[str, Any]] = {}
        chains: dict[str, list[dict[str, Any]]] = {}
        for table in {p.table for p in batch}:
            by_id, found_chains = self._lookup(table, batch)
            existing.update({(table, i): r for i, r in by_id.items()})
            chains.update(found_chains)
        stage_alerts: set[str] | None = None
        new: dict[str, list[dict[str, Any]]] = {}
        now = _utcnow()
        for p in batch:
            found = existing.get((p.table, p.row["id"]))
            if found is not None:
                if found.get("batch_id") == p.batch:
                    p.result = (self._public(found) if p.public else None, True)
                elif p.by_key:
                    p.error = Conflict("this Idempotency-Key was already used with a different request body", 422)
                else:
                    p.error = Conflict(f"{p.table} id {p.row['id']!r} already exists with different content", 409)
                continue
            if p.table == "chain_events":
                alert_id = p.row.get("alert_id")
                events = chains.get(alert_id, []) if alert_id else []
                known = False
                if alert_id and p.row["event_type"] != "alert_delivered" and \
                        not any(e["event_type"] == "alert_delivered" for e in events):
                    if stage_alerts is None:
                        stage_alerts = self._stage_alert_ids()
                    known = alert_id in stage_alerts
                try:
                    check_chain_event(p.row, events, known_alert=known, now=now, max_future=self.max_future)
                except ChainEventError as exc:
                    p.error = Conflict(str(exc), 422)
                    continue
                if alert_id:  # later events of the batch are checked against this one too
                    events.append(_chain_step(p.row))
            full = {c: None for c in TABLES[p.table].columns}
            full.update(p.row)
            full["ingested_at"] = now
            full["batch_id"] = p.batch
            existing[(p.table, p.row["id"])] = full  # a duplicate later in the same batch is a replay
            new.setdefault(p.table, []).append(full)
            p.result = (self._public(full) if p.public else None, False)
        if len(new) == 1:  # one INSERT is atomic on its own: no BEGIN / COMMIT round trips
            for table, rows in new.items():
                self._insert(table, rows)
        elif new:
            with self.store.transaction():
                for table, rows in new.items():
                    self._insert(table, rows)
        if new.get("chain_events") and isinstance(self._chain_cache, _ChainCache):
            self._chain_cache.add(new["chain_events"])
            if len(self._chain_cache.ids) > CHAIN_CACHE_MAX_EVENTS:  # a long hold grows it: bounded too
                self._chain_cache = False

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (every column of ``table``) inside the caller's transaction.

        On DuckDB one ``INSERT ... SELECT unnest(?)`` per column list: ~3 ms for 32 events, where
        building, casting and registering an Arrow table (``Store.append``) takes 6-15 ms.
        """
        cols = list(TABLES[table].columns)
        types = [_SQL_TYPES.get(str(TABLES[table].columns[c])) for c in cols]
        if self.store.kind != "duckdb" or None in types:
            self.store.append(table, pa.Table.from_pylist(rows))
            return
        names = ", ".join(f'"{c}"' for c in cols)
        select, params = [], []
        for c, t in zip(cols, types):
            values = [r[c] for r in rows]
            # A column no row fills (most of chain_events' optional ones) goes in as one NULL:
            # converting a list of Nones costs as much as a list of values.
            if any(v is not None for v in values):
                select.append(f"unnest(?::{t}[])")
                params.append(values)
            else:
                select.append(f"NULL::{t}")
        self.store.sql(f'INSERT INTO "{table}" ({names}) SELECT {", ".join(select)}', params, fetch=False)

    @_on_store_thread
    def erase(self, customer: str, reason: str | None) -> dict[str, Any]:
        """Erase one customer (:func:`insightroi.privacy.erase_customer`); its report as JSON."""
        self._chain_cache = None  # it may rewrite chain events
        with self.lock:
            return erase_customer(self.store, self.program, customer, reason=reason).to_dict()

    @_on_store_thread
    def record_reviews(self, items: list[tuple[str, dict[str, Any]]], reviewer: str) -> dict[str, int]:
        """Check and store the review page's labels (the rules ``insightroi review --labels`` applies).

        Parameters
        ----------
        items : list of (str, dict)
            Each item's position on the page (``"item 3"``) and its ``feedback_id`` and ``label``.
        reviewer : str
            Who reviewed.

        Returns
        -------
        dict
            ``rows``, ``recorded``, ``already_recorded`` and ``blank_skipped`` counts.

        Raises
        ------
        insightroi.insights.ReviewLabelsError
            An unknown label or feedback id, naming the item and field; nothing is stored then.
        """
        from insightroi.insights import check_review_labels
        from insightroi.insights._review import store_checked_labels

        self._chain_cache = None  # a write outside the group commit: the cache's rule is none
        with self.lock:
            df, blank = check_review_labels(items, self.program, self.store, source="review form", reviewer=reviewer)
            return store_checked_labels(self.store, df, blank)

    # ---- reads --------------------------------------------------------------------------------
    @_on_store_thread
    def bundle(self) -> dict[str, Any] | None:
        """The report bundle the pages and ``/api/bundle`` show (``Bundle.to_report()``), or None.

        With a program file (``self.program``, which :func:`create_app` sets) it is the stages'
        saved sections joined by :func:`insightroi.bundle.assemble_bundle`, the object the
        ``report`` command writes to report.json; without one, the legacy saved ``bundle:latest``
        upgraded by :func:`insightroi.bundle.migrate_bundle`; None when neither exists.
        """
        program = self.program
        with self.lock:
            # Assembling reads every stage's section (about ten queries) and a page asks for the
            # bundle more than once, so keep it until the results table changes: a saved
            # section replaces its row, which moves the newest created_at.
            t = self.store.table("results")
            state = t.aggregate(n=t.count(), last=t.created_at.max()).execute().iloc[0]
            key = (id(program), int(state["n"]), str(state["last"]))
            cached = self.__dict__.get("_bundle_cache")
            if cached is None or cached[0] != key:
                if program is not None:
                    out = assemble_bundle(self.store, program).to_report()
                else:
                    legacy = self.store.load_result("bundle:latest")
                    out = None if legacy is None else migrate_bundle(legacy).to_report()
                cached = self.__dict__["_bundle_cache"] = (key, out)
        # Callers get their own copy: the cached one must not change under the next request.
        return copy.deepcopy(cached[1])

    @_on_store_thread
    def count(self, table: str) -> int:
        with self.lock:
            return self.store.count(table)

    @_on_store_thread
    def schema_version(self) -> int:
        with self.lock:
            return self.store.schema_version()

    @_on_store_thread
    def insights(self, *, task: str | None, label: str | None, limit: int, offset: int) -> dict[str, Any]:
        with self.lock:
            t = self.store.table("insights")
            if task:
                t = t.filter(t.task == task)
            if label:
                t = t.filter(t.label == label)
            total = int(t.count().execute())
            df = t.order_by([t.created_at.desc(), t.id]).limit(limit, offset=offset).execute()
        return {"items": _records(df), "total": total, "limit": limit, "offset": offset}

    @_on_store_thread
    def review(self, n: int = 20, seed: int = 0) -> dict[str, Any]:
        """The review page: the queue ``insightroi review`` exports, the labels so far and what they say.

        Parameters
        ----------
        n : int
            Items in the queue (half high-severity, half low-confidence; reviewed ones are skipped).
        seed : int
            The queue's sampling seed, as ``insightroi review --seed``.

        Returns
        -------
        dict
            ``items`` (feedback_id, text cut to 400 characters, model_label, confidence, stratum,
            inclusion_prob, model_version), ``labels`` a reviewer may give, ``recorded`` topic
            labels so far and ``validation`` (n, accuracy, macro-F1 of the current topic model on
            the reviewed items) or None.
        """
        import numpy as np

        from insightroi.insights import review_queue, validate_from_reviews

        program = self.program
        with self.lock:
            queue = review_queue(self.store, program, n, np.random.default_rng(seed))
            rl = self.store.table("review_labels")
            recorded = int(rl.filter(rl.task == "topic").count().execute())
            rep = validate_from_reviews(self.store) if recorded else None
        items = []
        for r in queue.itertuples():
            text = " ".join(str(r.text or "").split())
            items.append({"feedback_id": r.feedback_id, "text": text if len(text) <= 400 else text[:399] + "…",
                          "model_label": r.model_label, "confidence": float(r.confidence), "stratum": r.stratum,
                          "inclusion_prob": float(r.inclusion_prob), "model_version": r.model_version})
        return {"items": items, "labels": sorted(t.topic for t in program.taxonomy) + ["other"],
                "recorded": recorded,
                "validation": None if rep is None else {"n": rep.n, "accuracy": rep.accuracy, "macro_f1": rep.macro_f1}}

    @_on_store_thread
    def evidence(self, topic: str, n: int = 4) -> list[dict[str, Any]]:
        """Up to ``n`` readable snippets of the feedback the topic model put in ``topic``, most confident first.

        Each is ``{"segments": [[text, is_match], ...], "matched": [...]}``: about 160 characters
        around the keywords that matched (from the insight's evidence), which the themes page
        shows in ``<mark>`` (escaped by the template, never as raw HTML).
        """
        import ibis

        from insightroi.insights._themes_evidence import snippet

        with self.lock:
            ins = self.store.table("insights")
            fb = self.store.table("feedback")
            t = ins.filter((ins.task == "topic") & (ins.label == topic))
            j = t.join(fb, t.feedback_id == fb.id).select(text=fb.text, evidence=t.evidence, confidence=t.confidence)
            df = j.order_by([ibis.desc("confidence"), "text"]).limit(n * 4).execute()
        out, seen = [], set()
        for r in df.itertuples():
            key = " ".join(str(r.text or "").split()).lower()
            if not key or key in seen:
                continue
            seen.add(key)
            try:
                ev = json.loads(r.evidence) if r.evidence else {}
            except (TypeError, ValueError):
                # a model that wrote its evidence as prose (an imported model's snippet): show that
                out.append(snippet(str(r.evidence)).to_dict())
            else:
                kws = (ev.get("keywords") or {}).get(topic) if isinstance(ev, dict) else None
                out.append(snippet(str(r.text), kws if isinstance(kws, list) else ()).to_dict())
            if len(out) == n:
                break
        return out

    @_on_store_thread
    def alert_evidence(self, alert_ids: list[str], n: int = 3) -> dict[str, list[dict[str, Any]]]:
        """Readable snippets of the feedback that triggered each alert (the ``feedback_ids`` of its
        ``alert_delivered`` event), with the words that matched its topic marked.

        Returns ``{alert_id: [{"segments": [[text, is_match], ...], "matched": [...]}, ...]}``
        with up to ``n`` snippets each; alerts without recorded feedback ids are left out.
        """
        from insightroi.insights._themes_evidence import snippets

        ids = [a for a in dict.fromkeys(alert_ids) if a]
        if not ids:
            return {}
        with self.lock:
            ce = self.store.table("chain_events")
            ev = ce.filter(ce.alert_id.isin(ids) & (ce.event_type == "alert_delivered")).select(
                "alert_id", "topic", "payload").execute()
            wanted: dict[str, tuple[str, list[str]]] = {}
            for r in ev.itertuples():
                try:
                    fids = (json.loads(r.payload) or {}).get("feedback_ids") or []
                except (TypeError, ValueError, AttributeError):
                    fids = []
                if fids:
                    wanted[r.alert_id] = (r.topic, [str(f) for f in fids[: n * 4]])
            every = sorted({f for _, fs in wanted.values() for f in fs})
            if not every:
                return {}
            fb = self.store.table("feedback")
            texts = dict(fb.filter(fb.id.isin(every)).select("id", "text").execute().itertuples(index=False))
            ins = self.store.table("insights")
            kw = ins.filter((ins.task == "topic") & ins.feedback_id.isin(every)).select(
                "feedback_id", "evidence").execute()
        matched: dict[str, dict[str, set[str]]] = {}
        for r in kw.itertuples():
            try:
                k = (json.loads(r.evidence) or {}).get("keywords") or {}
            except (TypeError, ValueError, AttributeError):
                continue
            for topic, words in k.items() if isinstance(k, dict) else ():
                matched.setdefault(r.feedback_id, {}).setdefault(topic, set()).update(map(str, words))
        out = {}
        for aid, (topic, fids) in wanted.items():
            phrases = sorted({w for f in fids for w in matched.get(f, {}).get(topic, ())})
            got = snippets([texts[f] for f in fids if texts.get(f)], phrases, n=n)
            if got:
                out[aid] = [s.to_dict() for s in got]
        return out

    @_on_store_thread
    def results(self, kind: str | None) -> list[dict[str, Any]]:
        with self.lock:
            t = self.store.table("results")
            if kind:
                t = t.filter(t.kind == kind)
            df = t.select("id", "kind", "name", "created_at").order_by("created_at").execute()
        return _records(df)

    @_on_store_thread
    def result(self, result_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.store.load_result(result_id)

    @_on_store_thread
    def alerts(self, *, team: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Alerts with their current stage: from chain events, enriched with the bundle's evidence.

        An alert the insight stage raised (bundle) but nobody has delivered yet has stage ``new``.
        Each alert carries its episode as last known (``last_seen, periods, peak_observed,
        peak_score, episode_updates``: the detector's ``alert_updated`` events override the
        figures the alert was written with, :func:`insightroi.chain._links.episode_facts`),
        ``kind`` and ``praise`` (:func:`insightroi.chain._links.is_praise`), and ``in_backlog``:
        delivered, not praise and waiting on its owner by the chain's backlog rule
        (:func:`insightroi.chain._kpis.waiting_on_owner`). Stages come from the chain's linked
        events (:func:`insightroi.chain.alert_chains`: an id-less action or fix inferred from the
        alert's topic and family counts), so the inbox's counts equal ``insightroi chain``'s.

        Parameters
        ----------
        team : str, optional
            Only the alerts of this team.
        status : str, optional
            ``open`` (not fixed, not ignored) or one stage (``new``, ``delivered``, ...).

        Returns
        -------
        list of dict
            Newest onset first.
        """
        with self.lock:  # one attach of the file for the bundle and the events
            bundle = self.bundle() or {}
            evidence = {a["alert_id"]: a for a in (bundle.get("insights") or {}).get("alerts") or []
                        if a.get("alert_id")}
            t = self.store.table("chain_events")
            a = t.filter(t.alert_id.notnull())
            agg = a.group_by("alert_id").aggregate(
                team=a.team.max(), topic=a.topic.max(), sku_family=a.sku_family.max(),
                first_event=a.event_time.min(), last_event=a.event_time.max(), n_events=a.count(),
                delivered=(a.event_type == "alert_delivered").any(),
                acknowledged=(a.event_type == "acknowledged").any(),
                acted=(a.event_type == "action_taken").any(),
                fixed=(a.event_type == "fix_deployed").any(),
                ignored=a.event_type.isin(["ignored", "overridden"]).any(),
            ).execute()
            # The chain's own stages (events linked by id, by insight id or inferred, as
            # `insightroi chain` reads them), so the inbox's stages and backlog match its counts.
            chains = {r["alert_id"]: r for r in _records(alert_chains(self.store).select(
                "alert_id", "acknowledged_at", "acted_at", "fixed_at", "ignored_at", "overridden_at").execute())}
            # The bundle was assembled when the report ran; an episode that went on since then
            # has alert_updated events, and the inbox must show where it stands now.
            episodes = {e["alert_id"]: e for e in _records(episode_facts(self.store))}
        out: dict[str, dict[str, Any]] = {}
        for r in _records(agg):
            ch = chains.get(r["alert_id"])
            if ch is not None:
                r = {**r, "delivered": True, "acknowledged": ch["acknowledged_at"] is not None,
                     "acted": ch["acted_at"] is not None, "fixed": ch["fixed_at"] is not None,
                     "ignored": ch["ignored_at"] is not None, "overridden": ch["overridden_at"] is not None}
            stage = ("fixed" if r["fixed"] else "acted" if r["acted"] else "acknowledged" if r["acknowledged"]
                     else "delivered")
            ev = evidence.get(r["alert_id"], {})
            owner = r["team"] or ev.get("owner")
            ep = episodes.get(r["alert_id"], {})
            kind = ep.get("kind") or ev.get("kind") or "problem"
            praise = is_praise(kind, owner)
            out[r["alert_id"]] = {
                "alert_id": r["alert_id"], "team": owner, "topic": r["topic"] or ev.get("topic"),
                "sku_family": r["sku_family"] or ev.get("sku_family"), "status": stage,
                "ignored": bool(r["ignored"] or r.get("overridden")),
                "first_event": r["first_event"], "last_event": r["last_event"], "n_events": r["n_events"],
                "day": ev.get("day") or ep.get("day"), "observed": ev.get("observed"), "expected": ev.get("expected"),
                "p_value": ev.get("p_value"), **self._episode(ep, ev), "kind": kind, "praise": praise,
                "in_backlog": bool(r["delivered"]) and not praise and waiting_on_owner(
                    bool(r["acted"]), bool(r["fixed"]), bool(r["ignored"]), bool(r.get("overridden"))),
            }
        for aid, ev in evidence.items():
            if aid not in out:
                kind = ev.get("kind") or "problem"
                out[aid] = {
                    "alert_id": aid, "team": ev.get("owner"), "topic": ev.get("topic"),
                    "sku_family": ev.get("sku_family"), "status": "new", "ignored": False, "first_event": None,
                    "last_event": None, "n_events": 0, "day": ev.get("day"), "observed": ev.get("observed"),
                    "expected": ev.get("expected"), "p_value": ev.get("p_value"), **self._episode({}, ev),
                    "kind": kind, "praise": is_praise(kind, ev.get("owner")), "in_backlog": False,
                }
        rows = list(out.values())
        if team:
            rows = [r for r in rows if r["team"] == team]
        if status == "open":
            rows = [r for r in rows if r["status"] != "fixed" and not r["ignored"]]
        elif status:
            rows = [r for r in rows if r["status"] == status]
        rows.sort(key=lambda r: (str(r.get("day") or r.get("first_event") or ""), r["alert_id"]), reverse=True)
        return rows

    @staticmethod
    def _episode(ep: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
        # The chain's figures (latest update first), else the bundle's, else unknown.
        out = {k: ep.get(k) if ep.get(k) is not None else ev.get(k)
               for k in ("last_seen", "periods", "peak_observed", "peak_score")}
        for k in ("periods", "peak_observed"):
            # Counts; a column with a missing value came back from pandas as floats.
            if isinstance(out[k], float):
                out[k] = int(out[k])
        updated = ep.get("episode_updated_at")
        return {**out, "episode_updates": int(ep.get("episode_updates") or 0),
                "episode_updated_at": updated if isinstance(updated, str) and updated != "NaT" else None}

    @_on_store_thread
    def alert(self, alert_id: str) -> dict[str, Any] | None:
        return next((a for a in self.alerts() if a["alert_id"] == alert_id), None)

    @_on_store_thread
    def trace(self, item_id: str) -> dict[str, Any] | None:
        """The decision chain around an alert, insight, feedback or event id.

        Uses :func:`insightroi.chain.trace` (links by ids and, where ids are missing, by SKU
        family, topic and time); the answer carries ``events``: every chain event in time order.
        """
        with self.lock:  # one attach of the file for the check and the trace
            if not self._known(item_id):  # cheap refusal before the full chain join
                return None
            try:
                got = chain_trace(self.store, item_id)
            except KeyError:
                return None
        d = jsonable(got.to_dict() if hasattr(got, "to_dict") else got)
        events: list[dict[str, Any]] = []
        for e in d.get("insight_events") or []:
            events.append({**e, "event_type": e.get("event_type", "insight")})
        for a in d.get("alerts") or []:
            base = {"alert_id": a.get("alert_id"), "team": a.get("team"), "topic": a.get("topic"),
                    "sku_family": a.get("sku_family")}
            if a.get("delivered_at"):
                events.append({**base, "event_type": "alert_delivered", "event_time": a["delivered_at"],
                               "actor": a.get("recipient"), "link": a.get("link")})
            for e in a.get("events") or []:
                events.append({**base, **{k: v for k, v in e.items() if v is not None or k not in base}})
        events.sort(key=lambda e: (e.get("event_time") is None, str(e.get("event_time"))))
        d["events"] = events
        d["stages"] = [e.get("event_type") for e in events]
        d["source"] = "insightroi.chain.trace"
        return d

    def _known(self, item_id: str) -> bool:
        with self.lock:
            ev = self.store.table("chain_events")
            hit = ev.filter((ev.id == item_id) | (ev.alert_id == item_id) | (ev.insight_id == item_id)).count()
            if int(hit.execute()):
                return True
            for name in ("insights", "feedback"):
                t = self.store.table(name)
                if int(t.filter(t.id == item_id).count().execute()):
                    return True
        return False


def fingerprint(kind: str, body: dict[str, Any]) -> str:
    """Stable hash of a request body (key order does not matter)."""
    blob = json.dumps({"kind": kind, "body": jsonable(body)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def id_from_key(kind: str, key: str) -> str:
    """The event id an Idempotency-Key maps to (so the key survives restarts: it is the stored id)."""
    return f"{'fb' if kind == 'feedback' else 'ce'}-{hashlib.sha256(f'{kind}:{key}'.encode()).hexdigest()[:32]}"

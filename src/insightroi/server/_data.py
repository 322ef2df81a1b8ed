"""The server's access to the store: idempotent event writes and the reads the pages need.

The app never holds a DuckDB file between requests, so CLI commands can use the same store
while it serves: the store is opened with ``hold=False`` and every unit of work (one read, one
group commit of queued events) attaches the file for its duration. ``Backend.lock`` is that unit
of work: reentrant, one thread at a time (an embedded DuckDB connection must not be used by two
threads at once, and the check-then-insert of an idempotent write must be atomic). A file held
by another process for longer than the store's busy timeout raises ``StoreBusyError`` (HTTP 503).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from datetime import date, datetime, timezone
from typing import Any

import pyarrow as pa

from insightroi.bundle import assemble_bundle, migrate_bundle
from insightroi.chain import trace as chain_trace
from insightroi.ingest import redact_pii
from insightroi.store import TABLES, open_store

__all__ = ["Backend", "redact_text", "Conflict"]

_STAGES = ("new", "delivered", "acknowledged", "acted", "fixed")

def redact_text(text: str | None) -> str | None:
    """Redact e-mail addresses, phone numbers and card numbers (the ingest stage's rules)."""
    return redact_pii(text)


class Conflict(Exception):
    """An id or idempotency key was reused with a different request."""

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
        return v.isoformat()
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
    __slots__ = ("table", "row", "batch", "by_key", "done", "result", "error")

    def __init__(self, table: str, row: dict[str, Any], batch: str, by_key: bool) -> None:
        self.table, self.row, self.batch, self.by_key = table, row, batch, by_key
        self.done, self.result, self.error = False, None, None


class Backend:
    """Store access for one app: idempotent appends and the reads the API and pages need."""

    def __init__(self, store_url: str) -> None:
        self.store = open_store(store_url, hold=False)
        # Entering it attaches the store's file (outermost entry of a thread); leaving detaches.
        self.lock = self.store.attached()
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

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

    def write(self, table: str, row: dict[str, Any], fingerprint: str, *, by_key: bool) -> tuple[dict, bool]:
        """Store ``row`` once; a replay of the same request returns the stored event.

        ``fingerprint`` (a hash of the request body) goes into ``batch_id`` so a replay can be told
        from a different request reusing the same id or key. Returns ``(public_row, replayed)``.

        Group commit: concurrent writers queue their rows and whichever thread holds the commit
        lock commits everything queued in one transaction, under one attach of the store's file
        (one open and one WAL flush for many events); every caller returns only after the
        transaction holding its row has committed, or with the error that stopped it.
        """
        item = _Pending(table, row, f"api:{fingerprint}", by_key)
        with self._queue_lock:
            self._queue.append(item)
        # Not self.lock: attaching the file may fail (busy), and then every row of the batch
        # taken below must fail with it rather than stay queued for a later commit.
        with self._commit_lock:
            if not item.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if item.error is not None:
            raise item.error
        return item.result

    def _commit(self, batch: list["_Pending"]) -> None:
        try:
            with self.lock:  # one attach of the file for the whole batch
                self._commit_attached(batch)
        except Exception as exc:  # nothing of the batch landed: every caller sees the failure
            for p in batch:
                if p.error is None:
                    p.result, p.error = None, exc
        finally:
            for p in batch:
                p.done = True

    def _commit_attached(self, batch: list["_Pending"]) -> None:
        existing: dict[tuple[str, str], dict[str, Any]] = {}
        for table in {p.table for p in batch}:
            ids = [p.row["id"] for p in batch if p.table == table]
            rows = self.store.rows_by_id(table, ids)
            existing.update({(table, r["id"]): r for r in rows})
        new: dict[str, list[dict[str, Any]]] = {}
        now = _utcnow()
        for p in batch:
            found = existing.get((p.table, p.row["id"]))
            if found is not None:
                if found.get("batch_id") == p.batch:
                    p.result = (self._public(found), True)
                elif p.by_key:
                    p.error = Conflict("this Idempotency-Key was already used with a different request body", 422)
                else:
                    p.error = Conflict(f"{p.table} id {p.row['id']!r} already exists with different content", 409)
                continue
            full = {c: None for c in TABLES[p.table].columns}
            full.update(p.row)
            full["ingested_at"] = now
            full["batch_id"] = p.batch
            existing[(p.table, p.row["id"])] = full  # a duplicate later in the same batch is a replay
            new.setdefault(p.table, []).append(full)
            p.result = (self._public(full), False)
        if new:
            with self.store.transaction():
                for table, rows in new.items():
                    self.store.append(table, pa.Table.from_pylist(rows))

    # ---- reads --------------------------------------------------------------------------------
    def bundle(self) -> dict[str, Any] | None:
        """The report bundle the pages and ``/api/bundle`` show (``Bundle.to_report()``), or None.

        With a program file (``self.program``, which :func:`create_app` sets) it is the stages'
        saved sections joined by :func:`insightroi.bundle.assemble_bundle`, the object the
        ``report`` command writes to report.json; without one, the legacy saved ``bundle:latest``
        upgraded by :func:`insightroi.bundle.migrate_bundle`; None when neither exists.
        """
        import copy

        program = getattr(self, "program", None)
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

    def count(self, table: str) -> int:
        with self.lock:
            return self.store.count(table)

    def schema_version(self) -> int:
        with self.lock:
            return self.store.schema_version()

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

    def evidence(self, topic: str, n: int = 3) -> list[str]:
        """A few evidence snippets the topic model gave for ``topic`` (most confident first)."""
        with self.lock:
            t = self.store.table("insights")
            t = t.filter((t.label == topic) & t.evidence.notnull())
            df = t.order_by(t.confidence.desc()).select("evidence").limit(n).execute()
        return [str(x) for x in df.evidence.tolist()]

    def results(self, kind: str | None) -> list[dict[str, Any]]:
        with self.lock:
            t = self.store.table("results")
            if kind:
                t = t.filter(t.kind == kind)
            df = t.select("id", "kind", "name", "created_at").order_by("created_at").execute()
        return _records(df)

    def result(self, result_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.store.load_result(result_id)

    def alerts(self, *, team: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Alerts with their current stage: from chain events, enriched with the bundle's evidence.

        An alert the insight stage raised (bundle) but nobody has delivered yet has stage ``new``.
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
        out: dict[str, dict[str, Any]] = {}
        for r in _records(agg):
            stage = ("fixed" if r["fixed"] else "acted" if r["acted"] else "acknowledged" if r["acknowledged"]
                     else "delivered")
            ev = evidence.get(r["alert_id"], {})
            out[r["alert_id"]] = {
                "alert_id": r["alert_id"], "team": r["team"] or ev.get("owner"), "topic": r["topic"] or ev.get("topic"),
                "sku_family": r["sku_family"] or ev.get("sku_family"), "status": stage, "ignored": bool(r["ignored"]),
                "first_event": r["first_event"], "last_event": r["last_event"], "n_events": r["n_events"],
                "day": ev.get("day"), "observed": ev.get("observed"), "expected": ev.get("expected"),
                "p_value": ev.get("p_value"),
            }
        for aid, ev in evidence.items():
            if aid not in out:
                out[aid] = {
                    "alert_id": aid, "team": ev.get("owner"), "topic": ev.get("topic"),
                    "sku_family": ev.get("sku_family"), "status": "new", "ignored": False, "first_event": None,
                    "last_event": None, "n_events": 0, "day": ev.get("day"), "observed": ev.get("observed"),
                    "expected": ev.get("expected"), "p_value": ev.get("p_value"),
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

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        return next((a for a in self.alerts() if a["alert_id"] == alert_id), None)

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

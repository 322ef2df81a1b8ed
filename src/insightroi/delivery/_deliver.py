"""The deliverer: send what is due, retry with exponential backoff, dead-letter what cannot go."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from insightroi.delivery import _outbox as ob
from insightroi.delivery._message import LinkSigner, build_digest, build_message
from insightroi.delivery._send import SendOutcome, check_secrets, send
from insightroi.program import Channel, Program
from insightroi.store import Store

__all__ = ["DeliveryPolicy", "DeliveryRun", "deliver", "deliver_due"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard the deliverer tries.

    Attributes
    ----------
    max_attempts : int
        Attempts per delivery before it is dead-lettered (a permanent refusal ends it at once).
    backoff_s, max_backoff_s : float
        Attempt ``n`` failing transiently waits ``backoff_s * 2**(n-1)`` seconds, at most
        ``max_backoff_s``, or the receiver's Retry-After when longer. No jitter: one deliverer
        per store sends one row at a time, so there is no herd of clients to spread out.
    timeout_s : float
        Seconds per connection attempt.
    claim_timeout_s : float
        A row left ``sending`` longer than this belongs to a run that stopped (see the outbox).
    batch : int
        Rows read per pass.
    """

    max_attempts: int = 6
    backoff_s: float = 30.0
    max_backoff_s: float = 3600.0
    timeout_s: float = 10.0
    claim_timeout_s: float = 300.0
    batch: int = 100

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempts`` (1-based)."""
        wait = min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempts - 1))
        return max(wait, min(retry_after or 0.0, self.max_backoff_s))


@dataclass
class DeliveryRun:
    """What one :func:`deliver` call did (counts of this run; the store keeps the totals).

    Attributes
    ----------
    enqueued, deliveries_created : int
        Alerts written to the outbox and their delivery rows.
    unrouted : dict
        Owner -> alerts with no channel.
    sent : int
        Deliveries that succeeded (one per alert and channel).
    messages : int
        Messages that went out for them (a digest carries several deliveries).
    retried : int
        Deliveries rescheduled with backoff after a transient failure (a digest's count each).
    dead : int
        Deliveries moved to the dead letters (refused, out of attempts, or lost in a crash).
    resent_after_crash : int
        Webhook rows a stopped run left ``sending``, sent again with the same key.
    pending : int
        Rows still waiting (a later run sends them).
    errors : list of str
        One line per failed attempt: ``channel alert_id attempt n: why``.
    seconds : float
    """

    enqueued: int = 0
    deliveries_created: int = 0
    unrouted: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    messages: int = 0
    retried: int = 0
    dead: int = 0
    resent_after_crash: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON values (``deliver --json``)."""
        return dict(self.__dict__)


def deliver_due(store: Store, program: Program, *, signer: LinkSigner | None = None,
                policy: DeliveryPolicy = DeliveryPolicy(), clock: Callable[[], datetime] = _utcnow,
                run: DeliveryRun | None = None) -> DeliveryRun:
    """One pass: reclaim rows a stopped run left, then send every row due now, once each.

    Parameters
    ----------
    store : Store
        An embedded DuckDB store; opened with ``hold=False`` the file is taken only for each
        state change, never while a message is in flight.
    program : Program
        The channels (looked up by name at send time: a channel removed from the file
        dead-letters its rows).
    signer : LinkSigner, optional
        Signs the acknowledge / taking-action / not-useful links; without it messages carry none.
    policy : DeliveryPolicy
    clock : callable
        Naive-UTC now (the chain events' times).
    run : DeliveryRun, optional
        Counts are added to it.

    Returns
    -------
    DeliveryRun
    """
    store.require_duckdb("the delivery outbox")
    check_secrets(program.channels)
    run = run or DeliveryRun()
    channels = {c.name: c for c in program.channels}
    with store.attached():
        resent, dead = ob.reclaim_stale(store, clock(), timedelta(seconds=policy.claim_timeout_s))
        rows = ob.due_rows(store, clock(), policy.batch)
    run.resent_after_crash += resent
    run.dead += dead
    units = _units(rows, channels, full=len(rows) >= policy.batch)

    def claim_next(i: int) -> tuple[int, tuple | None]:
        # The first unit from i on that this run gets (another deliverer may take one first).
        while i < len(units):
            unit = units[i]
            if len(unit) == 1:
                got = ob.claim(store, unit[0]["id"], clock())
                if got is not None:
                    return i, (unit, {unit[0]["id"]: got}, unit[0]["idempotency_key"])
            else:
                mine, attempts, key = ob.claim_group(store, unit, clock())
                if mine:
                    return i, (mine, attempts, key)
            i += 1
        return i, None

    with store.attached():
        i, claimed = claim_next(0)
    while claimed is not None:
        got_rows, attempts_by_id, key = claimed
        row, now = got_rows[0], clock()
        attempts = max(attempts_by_id.values())
        channel = channels.get(row["channel"])
        if channel is None:
            outcome = SendOutcome(False, True, f"channel {row['channel']!r} is no longer in the program file")
        else:
            try:
                if len(got_rows) == 1:
                    message, did = build_message(row["payload"], channel=channel.name, now=now, signer=signer), row["id"]
                else:
                    message = build_digest(got_rows, channel=channel.name, key=key,
                                           due=min(r["next_attempt_at"] for r in got_rows), now=now, signer=signer)
                    did = key.removeprefix("insightroi-")
                outcome = send(channel, message, delivery_id=did, idempotency_key=key, now_ts=time.time(),
                               timeout=policy.timeout_s)
            except Exception as exc:  # a claimed row must be marked, or a later run reads it as a crash
                outcome = SendOutcome(False, False, f"{type(exc).__name__}: {exc}")
        done = clock()
        what = row["alert_id"] if len(got_rows) == 1 else f"digest of {len(got_rows)} alerts ({key})"
        # Marking this unit and claiming the next share one unit of work: on a store the server
        # shares (hold=False) each unit attaches the file, which costs more than the statements.
        with store.attached():
            if outcome.ok:
                ob.mark_delivered_group(store, got_rows, attempts_by_id, done, key)
                run.sent += len(got_rows)
                run.messages += 1
            else:
                run.errors.append(f"{row['channel']} {what} attempt {attempts}: {outcome.error}")
                if outcome.permanent or attempts >= policy.max_attempts:
                    why = outcome.error if outcome.permanent else f"{outcome.error} (gave up after {attempts} attempts)"
                    for r in got_rows:
                        ob.mark_dead(store, r, attempts_by_id[r["id"]], why or "failed", done)
                    run.dead += len(got_rows)
                else:
                    # The whole digest waits for the same time, so it goes again as one message.
                    due = done + timedelta(seconds=policy.backoff(attempts, outcome.retry_after))
                    for r in got_rows:
                        ob.mark_retry(store, r["id"], outcome.error or "failed", due)
                    run.retried += len(got_rows)
            i, claimed = claim_next(i + 1)
    return run


def _units(rows: list[dict], channels: dict[str, Channel], *, full: bool) -> list[list[dict]]:
    """Due rows as units of sending: one row each, or every row of one digest together.

    A digest is the rows a digest channel holds for one due time (or, after a stopped run, the
    rows that carry one digest key). When the batch was full, the digest it may have cut short
    waits for the next pass, so it still goes out whole.
    """
    units: list[list[dict]] = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if not ob.is_digest_row(r, channels.get(r["channel"])):
            units.append([r])
            continue
        k = r["idempotency_key"]
        gk = (r["channel"], k if k.startswith(ob.DIGEST_KEY_PREFIX) else r["next_attempt_at"])
        if gk not in groups:
            groups[gk] = []
            units.append(groups[gk])
        groups[gk].append(r)
    if full and len(units) > 1 and rows:
        last = rows[-1]
        cut = (last["channel"], last["next_attempt_at"])
        units = [u for u in units if len(u) == 1 and not ob.is_digest_row(u[0], channels.get(u[0]["channel"]))
                 or (u[0]["channel"], u[0]["next_attempt_at"]) != cut] or units
    return units


def deliver(store: Store, program: Program, *, since: datetime | None = None, signer: LinkSigner | None = None,
            policy: DeliveryPolicy = DeliveryPolicy(), wait_s: float = 0.0, stop: threading.Event | None = None,
            clock: Callable[[], datetime] = _utcnow) -> DeliveryRun:
    """Enqueue the detector's new alerts, then send what is due, retrying for up to ``wait_s``.

    Parameters
    ----------
    store, program, signer, policy, clock
        As for :func:`deliver_due`.
    since : datetime, optional
        Enqueue only alerts dated at or after it (naive UTC); None: all.
    wait_s : float
        Keep going while rows are pending, sleeping until the next is due, for at most this many
        seconds (0: one pass; retries wait for the next run).
    stop : threading.Event, optional
        Set it to end the waiting early (``insightroi serve`` on shutdown).

    Returns
    -------
    DeliveryRun
    """
    t0 = time.monotonic()
    run = DeliveryRun()
    check_secrets(program.channels)
    with store.attached():
        got = ob.enqueue_alerts(store, program, now=clock(), since=since)
    run.enqueued, run.deliveries_created, run.unrouted = got.alerts, got.deliveries, got.unrouted
    deadline = t0 + wait_s
    while True:
        deliver_due(store, program, signer=signer, policy=policy, clock=clock, run=run)
        with store.attached():
            nxt = ob.next_due(store)
        left = deadline - time.monotonic()
        if nxt is None or left <= 0 or (stop is not None and stop.is_set()):
            break
        pause = min(left, max(0.0, (nxt - clock()).total_seconds()))
        if pause > 0 and (stop.wait(pause) if stop is not None else time.sleep(pause)):
            break
    with store.attached():
        run.pending = ob.outbox_counts(store)["pending"]
    run.seconds = round(time.monotonic() - t0, 3)
    return run

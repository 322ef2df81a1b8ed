"""Erasure: remove every row tied to one customer, scrub their ids and texts from what remains,
and leave a record of the erasure that holds none of their data."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from insightroi.ingest import REDACT_COLUMNS, pseudonymize
from insightroi.program import Program
from insightroi.privacy._retention import KEPT_KINDS
from insightroi.store import Store

__all__ = ["ERASED", "MIN_ID_CHARS", "MIN_TEXT_CHARS", "ErasureReport", "erase_customer", "results_before_erasure",
           "subject_hash"]

#: What an erased id or text is replaced with where the row holding it stays.
ERASED = "[ERASED]"
#: An id shorter than this (``c1``, ``42``) is matched only as a whole value or field
#: (a JSON string, a CSV cell), never inside running text, where it would hit unrelated words.
MIN_ID_CHARS = 6
#: A text shorter than this ("great") is matched only as a whole value or field: a short text is
#: written by many customers, and erasing it inside other text would damage their data.
MIN_TEXT_CHARS = 20

# Tables whose rows belong to the customer through ``customer_id``.
_CUSTOMER_TABLES = ("feedback", "orders", "tickets", "refunds")
# The customer's own words in those tables (also collected to find them elsewhere).
_OWN_TEXT = {"feedback": "text", "refunds": "reason"}


@dataclass(frozen=True)
class ErasureReport:
    """What :func:`erase_customer` removed.

    Attributes
    ----------
    record_id : str
        The saved result (kind ``"erasure"``) recording the erasure.
    subject : str
        A keyed hash of the customer id (``erased_`` + 32 hex digits): the same person erased
        twice gets the same value, and it cannot be reversed without the PII key.
    erased_at : datetime
        When (naive UTC).
    reason : str or None
        Why, as given (with any id of the customer in it erased).
    deleted : dict of str to int
        Rows deleted per table (every table searched, 0 where none matched).
    scrubbed : dict of str to int
        Rows kept but rewritten per table: another row's text or an alert's evidence naming the
        customer or their records, a saved result quoting them (ids and texts -> ``[ERASED]``).
    predating : list of str
        Ids of the saved results computed before the erasure (they were scrubbed, but their
        figures still count the erased rows until the stages run again).
    """

    record_id: str
    subject: str
    erased_at: datetime
    reason: str | None
    deleted: dict[str, int]
    scrubbed: dict[str, int]
    predating: list[str] = field(default_factory=list)

    @property
    def total_deleted(self) -> int:
        """Rows deleted over every table."""
        return sum(self.deleted.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the record saved in the store has the same keys)."""
        return {
            "record_id": self.record_id, "subject": self.subject, "erased_at": self.erased_at.isoformat(),
            "reason": self.reason, "deleted": dict(self.deleted), "scrubbed": dict(self.scrubbed),
            "total_deleted": self.total_deleted, "predating": list(self.predating),
        }


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def subject_hash(customer: str) -> str:
    """The keyed hash an erasure record names its customer by.

    Derived from the customer's pseudonym (so it needs the PII key, and the e-mail or phone
    spellings that share a pseudonym share it), but not equal to it: the record never holds the
    value the store used for the customer's rows.
    """
    digest = hashlib.sha256(("insightroi-erasure\x1f" + pseudonymize(customer.strip())).encode()).hexdigest()
    return "erased_" + digest[:32]


def _id_forms(customer: str) -> list[str]:
    """Every form the customer's id may be stored in: as given, lower-cased, pseudonymised."""
    c = customer.strip()
    forms = {c, c.lower(), pseudonymize(c)}
    return sorted(f for f in forms if f)


def _variants(text: str) -> set[str]:
    # A text is stored as written, inside a CSV line with its quotes doubled, or inside JSON.
    return {text, text.replace('"', '""'), json.dumps(text, ensure_ascii=False)[1:-1],
            json.dumps(text)[1:-1]}


def _alt(values: Iterable[str]) -> str:
    # Longest first, so a text that contains another is replaced whole.
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


class _Scrubber:
    """Finds and replaces the customer's ids and texts in a string.

    Long ids match anywhere not glued to a longer word; long texts match as substrings; short
    ones (see :data:`MIN_ID_CHARS`, :data:`MIN_TEXT_CHARS`) only as a whole field, i.e. between
    the start or end of the string, a quote, a comma or a tab.
    """

    def __init__(self, ids: Iterable[str], texts: Iterable[str] = ()) -> None:
        ids = {i for i in ids if i}
        self.texts = sorted({t.strip() for t in texts if t and t.strip()}, key=len, reverse=True)
        strong = sorted({i for i in ids if len(i) >= MIN_ID_CHARS}, key=len, reverse=True)
        weak = {i for i in ids if len(i) < MIN_ID_CHARS}
        long_texts, short_texts = set(), set()
        for t in self.texts:
            (long_texts if len(t) >= MIN_TEXT_CHARS else short_texts).update(_variants(t))
        weak |= short_texts
        self._strong = re.compile(rf"(?<![\w.+\-])(?:{_alt(strong)})(?![\w\-]|\.\w)", re.I) if strong else None
        self._weak = re.compile(rf'(?:^|(?<=[",\t]))\s*(?:{_alt(weak)})\s*(?=$|[",\t])', re.I) if weak else None
        self._long = re.compile(_alt(long_texts)) if long_texts else None
        # Lower-cased needles for a cheap SQL prefilter (DuckDB's `contains`).
        self.probes = sorted({v.lower() for v in (ids | long_texts | short_texts)})

    def __bool__(self) -> bool:
        return bool(self.probes)

    def sub(self, s: str) -> str:
        """``s`` with every match replaced by :data:`ERASED`."""
        if self._long is not None:
            s = self._long.sub(ERASED, s)
        if self.texts:
            # A snippet: the start or a slice of one of the texts, perhaps cut with an ellipsis.
            core = s.strip().rstrip(".\u2026").strip()
            if len(core) >= MIN_TEXT_CHARS and any(core in t for t in self.texts):
                return ERASED
        if self._strong is not None:
            s = self._strong.sub(ERASED, s)
        if self._weak is not None:
            s = self._weak.sub(ERASED, s)
        return s

    def hits(self, s: str | None) -> bool:
        """Whether ``s`` names the customer or quotes their text."""
        return s is not None and self.sub(s) != s

    def sub_json(self, value: Any) -> Any:
        """A parsed JSON value with :meth:`sub` applied to every string, keys included."""
        if isinstance(value, str):
            return self.sub(value)
        if isinstance(value, list):
            return [self.sub_json(v) for v in value]
        if isinstance(value, dict):
            return {self.sub(k): self.sub_json(v) for k, v in value.items()}
        return value


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(raw) -> dict[str, dict[str, str]]:
    rows = raw.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall()
    out: dict[str, dict[str, str]] = {}
    for t, c, ty in rows:
        out.setdefault(t, {})[c] = ty
    return out


def _rows(raw, sql: str, params: list) -> list[tuple]:
    return raw.execute(sql, params).fetchall()


def _in_ids(column: str) -> str:
    # Ids compare case-insensitively: an e-mail stored unredacted may be spelled in any case.
    return f"lower(CAST({_q(column)} AS VARCHAR)) IN (SELECT unnest(?))"


def _candidates(raw, table: str, columns: list[str], probes: list[str], extra: str = "") -> list[tuple]:
    """``rowid`` and ``columns`` of the rows where some column contains some probe (lower-cased)."""
    if not probes or not columns:
        return []
    tests = " OR ".join(f"contains(lower({_q(c)}), ?)" for c in columns for _ in probes)
    params = [p for _ in columns for p in probes]
    cols = ", ".join(_q(c) for c in columns)
    return _rows(raw, f"SELECT rowid, {cols} FROM {_q(table)} WHERE ({tests}){extra}", params)


def erase_customer(store: Store, program: Program | None, customer: str, *, reason: str | None = None) -> ErasureReport:
    """Erase one customer: every row tied to them, and their ids and texts wherever else they appear.

    Deleted: their ``feedback``, ``orders``, ``tickets`` and ``refunds`` (by ``customer_id``;
    tickets and refunds also by an order of theirs), the ``insights`` and ``review_labels`` of
    their feedback, ``chain_events`` whose actor is them or whose payload names them (or whose
    insight is one of theirs), ``assignments`` of them as a unit, ``quarantine`` rows whose raw
    text names them, one of their records, or quotes their text, and the rows of each user
    table (``user_<name>``) whose ``id_columns`` hold them (in a ``user_`` table the program does
    not declare, any text column). Scrubbed (ids and texts replaced by ``[ERASED]``, the row
    kept): alerts' evidence lists and other free text naming them or their records, and every
    saved result (JSON) quoting them. A record (saved result, kind ``"erasure"``) keeps when,
    why, the counts and a keyed hash of the id, never the id. All of it is one transaction.

    Parameters
    ----------
    store : Store
        An embedded DuckDB store (other engines cannot delete or rewrite rows in place).
    program : Program or None
        The program file (its ``[[tables]]`` say which user-table columns hold a person's id);
        None: every ``user_`` table is searched on all its text columns.
    customer : str
        The customer's id as the source systems know it: a plain id, an e-mail or a phone
        number. The store holds an e-mail or phone used as id pseudonymised
        (:func:`insightroi.ingest.pseudonymize`); both forms are searched, as is the pseudonym
        itself if that is what is given.
    reason : str, optional
        Why (a ticket number, "GDPR art. 17 request"); stored in the record.

    Returns
    -------
    ErasureReport
        Counts per table, the record's id, and the saved results that predate the erasure.

    Raises
    ------
    ValueError
        ``customer`` is empty.
    StoreError
        The store is not the embedded DuckDB store.

    Notes
    -----
    Matching is case-insensitive. An id shorter than :data:`MIN_ID_CHARS` or a text shorter
    than :data:`MIN_TEXT_CHARS` is matched only as a whole value or field. Another customer's
    own text (their review) that repeats this customer's text word for word is theirs and is
    kept; only ids are scrubbed from it. A quarantined row whose only link to the customer was
    an e-mail that ingestion redacted to ``[EMAIL]`` cannot be found.
    """
    if not customer or not customer.strip():
        raise ValueError("customer: give the customer's id, e-mail or phone number; got an empty value")
    store.require_duckdb("erasing a customer (deleting rows)")
    ids = _id_forms(customer)
    lowered = sorted({i.lower() for i in ids})
    subject = subject_hash(customer)
    erased_at = _utcnow()
    person = _Scrubber(ids)
    deleted: dict[str, int] = {}
    scrubbed: dict[str, int] = {}
    with store.transaction():
        raw = store.con.con
        cols = _columns(raw)
        doomed: dict[str, set[int]] = {}
        record_ids: set[str] = set()
        texts: list[str] = []

        def take(table: str, rows: list[tuple]) -> None:
            doomed.setdefault(table, set()).update(r[0] for r in rows)

        def have(table: str) -> bool:
            return table in cols

        # 1. The customer's own rows.
        keyed: dict[str, list[str]] = {}
        for t in _CUSTOMER_TABLES:
            if not have(t):
                continue
            text = _OWN_TEXT.get(t)
            rows = _rows(raw, f"SELECT rowid, id{', ' + _q(text) if text else ''} FROM {_q(t)} WHERE {_in_ids('customer_id')}",
                         [lowered])
            take(t, rows)
            keyed[t] = [r[1] for r in rows if r[1] is not None]
            texts += [r[2] for r in rows if text and r[2]]
        orders = keyed.get("orders", [])
        for t in ("tickets", "refunds"):
            if have(t) and orders:
                rows = _rows(raw, f"SELECT rowid, id{', reason' if t == 'refunds' else ''} FROM {_q(t)} "
                                  "WHERE order_id IN (SELECT unnest(?))", [orders])
                take(t, rows)
                keyed[t] = sorted(set(keyed.get(t, [])) | {r[1] for r in rows if r[1] is not None})
                texts += [r[2] for r in rows if t == "refunds" and r[2]]
        for v in keyed.values():
            record_ids.update(v)
        feedback_ids = keyed.get("feedback", [])

        # 2. What was derived from their rows or names them.
        insight_ids: list[str] = []
        if have("insights") and feedback_ids:
            rows = _rows(raw, "SELECT rowid, id FROM insights WHERE feedback_id IN (SELECT unnest(?))", [feedback_ids])
            take("insights", rows)
            insight_ids = [r[1] for r in rows]
        if have("review_labels"):
            take("review_labels", _rows(
                raw, f"SELECT rowid FROM review_labels WHERE feedback_id IN (SELECT unnest(?)) OR {_in_ids('reviewer')}",
                [feedback_ids, lowered]))
        if have("assignments"):
            take("assignments", _rows(raw, f"SELECT rowid FROM assignments WHERE {_in_ids('unit_id')}", [lowered]))
        if have("chain_events"):
            take("chain_events", _rows(
                raw, f"SELECT rowid FROM chain_events WHERE {_in_ids('actor')} OR insight_id IN (SELECT unnest(?))",
                [lowered, insight_ids + feedback_ids]))
            take("chain_events", [r for r in _candidates(raw, "chain_events", ["payload"], person.probes)
                                  if person.hits(r[1])])

        # 3. User tables: declared ones by their id columns; any other user_ table by every text column.
        declared = {f"user_{t.name}": t for t in program.tables} if program is not None else {}
        for name in sorted(n for n in cols if n.startswith("user_")):
            spec = declared.get(name)
            if spec is not None and spec.source:
                continue  # a view over the user's warehouse: its rows are erased there, not here
            id_cols = [c for c in (spec.id_columns if spec else
                                   [c for c, ty in cols[name].items() if ty == "VARCHAR"]) if c in cols[name]]
            text_cols = [c for c in (spec.text_columns if spec else []) if c in cols[name]]
            if not id_cols:
                deleted.setdefault(name, 0)
                continue
            picked = ", ".join(_q(c) for c in text_cols)
            rows = _rows(raw, f"SELECT rowid{', ' + picked if picked else ''} FROM {_q(name)} WHERE "
                              + " OR ".join(f"({_in_ids(c)})" for c in id_cols), [lowered] * len(id_cols))
            take(name, rows)
            texts += [v for r in rows for v in r[1:] if isinstance(v, str) and v]
            if {"id", "row_table"} <= set(cols[name]):
                # A preset's attributes table (ingest --preset): its rows are the unknown columns
                # of a row in row_table with the same id, and go with that row (a ticket's tags
                # and status, an order line's notes) though they seldom name the customer.
                for t, row_ids in keyed.items():
                    if row_ids:
                        take(name, _rows(raw, f"SELECT rowid FROM {_q(name)} WHERE row_table = ? AND id IN "
                                              "(SELECT unnest(?))", [t, row_ids]))

        everything = _Scrubber(ids + sorted(record_ids), texts)
        ids_only = _Scrubber(ids + sorted(record_ids))

        # 4. Quarantined rows that name them, one of their records, or quote their text.
        if have("quarantine"):
            take("quarantine", [r for r in _candidates(raw, "quarantine", ["raw", "file"], everything.probes)
                                if everything.hits(r[1]) or everything.hits(r[2])])

        for t, rowids in doomed.items():
            if rowids:
                raw.execute(f"DELETE FROM {_q(t)} WHERE rowid IN (SELECT unnest(?))", [sorted(rowids)])
        searched = set(_CUSTOMER_TABLES) | {"insights", "review_labels", "assignments", "chain_events", "quarantine"}
        searched |= {n for n in cols if n.startswith("user_")}
        deleted.update({t: len(doomed.get(t, ())) for t in searched if have(t)})

        # 5. Free text of the rows that stay: another customer's words keep their text, lose the ids.
        free: list[tuple[str, str, _Scrubber]] = []
        for t, columns in REDACT_COLUMNS.items():
            for c in columns:
                free.append((t, c, ids_only if _OWN_TEXT.get(t) == c else everything))
        free += [("insights", "evidence", everything), ("quarantine", "raw", everything),
                 ("quarantine", "file", everything), ("ingest_batches", "file", everything)]
        for name, spec in declared.items():
            free += [(name, c, ids_only) for c in spec.text_columns]
        for t, c, scrub in free:
            if not have(t) or c not in cols[t]:
                continue
            changed = [(rid, scrub.sub(v)) for rid, v in _candidates(raw, t, [c], scrub.probes) if scrub.hits(v)]
            for rid, v in changed:
                raw.execute(f"UPDATE {_q(t)} SET {_q(c)} = ? WHERE rowid = ?", [v, rid])
            if changed:
                scrubbed[t] = scrubbed.get(t, 0) + len(changed)

        # 6. Saved results: JSON walked value by value, so what stays is still valid JSON.
        predating: list[str] = []
        if have("results"):
            n = 0
            for rid, res_id, kind, created, payload in _rows(
                    raw, "SELECT rowid, id, kind, created_at, payload FROM results ORDER BY created_at, id", []):
                if kind in KEPT_KINDS:
                    continue
                if created is not None and created < erased_at and res_id not in predating:
                    predating.append(res_id)
                if payload is None or not any(p in payload.lower() for p in everything.probes):
                    continue
                before = json.loads(payload)
                after = everything.sub_json(before)
                if after != before:
                    raw.execute("UPDATE results SET payload = ? WHERE rowid = ?", [json.dumps(after, allow_nan=False), rid])
                    n += 1
            if n:
                scrubbed["results"] = n

        reason = everything.sub(reason) if reason else reason
        record_id = f"erasure:{erased_at.strftime('%Y%m%dT%H%M%S%f')}:{subject[len('erased_'):][:8]}"
        report = ErasureReport(record_id=record_id, subject=subject, erased_at=erased_at, reason=reason,
                               deleted=dict(sorted(deleted.items())), scrubbed=dict(sorted(scrubbed.items())),
                               predating=predating)
        record = report.to_dict()
        record.pop("record_id")
        # Appended here rather than through save_result (its own transaction): the record lands
        # with the deletes or not at all.
        store.append("results", pa.table({
            "id": [record_id], "kind": ["erasure"], "name": [record_id.split(":", 1)[1]],
            "created_at": pa.array([erased_at], pa.timestamp("us")), "payload": [json.dumps(record, allow_nan=False)],
        }))
    return report


def results_before_erasure(store: Store) -> dict[str, Any] | None:
    """The saved results still computed before the latest erasure (to mark them, or re-run their stages).

    Parameters
    ----------
    store : Store
        Any store (reads only).

    Returns
    -------
    dict or None
        ``{"record_id", "erased_at", "results"}`` (``results``: ids of saved results created
        before that erasure, other than erasure and retention records, oldest first), or None
        when no erasure was recorded. After ``insightroi run`` only results no stage recomputes
        remain listed.
    """
    records = store.load_results("erasure")
    if not records:
        return None
    last = max(records, key=lambda r: (r["created_at"], r["id"]))
    older = [r for r in store.load_results() if r["kind"] not in KEPT_KINDS and r["created_at"] < last["created_at"]]
    return {"record_id": last["id"], "erased_at": last["created_at"].isoformat(),
            "results": [r["id"] for r in sorted(older, key=lambda r: (r["created_at"], r["id"]))]}

"""Retention: delete rows older than the program's ``[retention]`` days, by each table's time column."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from insightroi.errors import ProgramError
from insightroi.program import Program
from insightroi.store import TABLES, Store

__all__ = ["KEPT_KINDS", "RetentionReport", "RetentionRule", "apply_retention", "resolve_retention"]

#: Saved results retention never deletes: the records of erasures and retention runs are the
#: audit trail that shows a request was honoured, and hold no row data.
KEPT_KINDS = ("erasure", "retention")


@dataclass(frozen=True)
class RetentionRule:
    """One ``[retention]`` entry resolved against the store.

    Attributes
    ----------
    table : str
        The table as stored (``user_<name>`` for a table the program declares).
    days : int
        Days rows are kept.
    time_column : str
        The column whose value dates a row.
    cutoff : datetime.date
        Rows dated before this day (00:00 UTC) are deleted; a row dated on it, i.e. exactly
        ``days`` days before ``today``, is kept.
    """

    table: str
    days: int
    time_column: str
    cutoff: date


@dataclass(frozen=True)
class RetentionReport:
    """What :func:`apply_retention` deleted (or, in a dry run, would delete).

    Attributes
    ----------
    today : datetime.date
        The day the cutoffs were counted from.
    dry_run : bool
        True when nothing was deleted.
    rules : list of RetentionRule
        The program's rules, resolved.
    deleted : dict of str to int
        Rows deleted per table, including the insights of deleted feedback and the quarantine
        rows of a retained table; every table named by a rule or a cascade appears, with 0 when
        nothing was old enough.
    missing : list of str
        Tables a rule names that the program declares but the store does not hold yet.
    record_id : str or None
        The saved result (kind ``"retention"``) recording the run; None in a dry run.
    """

    today: date
    dry_run: bool
    rules: list[RetentionRule]
    deleted: dict[str, int]
    missing: list[str] = field(default_factory=list)
    record_id: str | None = None

    @property
    def total(self) -> int:
        """Rows deleted over every table."""
        return sum(self.deleted.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO strings)."""
        return {
            "today": self.today.isoformat(), "dry_run": self.dry_run,
            "rules": [{**asdict(r), "cutoff": r.cutoff.isoformat()} for r in self.rules],
            "deleted": dict(self.deleted), "total": self.total, "missing": list(self.missing),
            "record_id": self.record_id,
        }


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _store_tables(store: Store) -> set[str]:
    return set(store.con.list_tables())


def resolve_retention(program: Program, *, today: date | None = None) -> list[RetentionRule]:
    """The program's ``[retention]`` entries as rules with their time column and cutoff day.

    A key may name one of the store's tables (``feedback``), a table the program declares
    (``surveys``) or its stored name (``user_surveys``).

    Parameters
    ----------
    program : Program
        The program file.
    today : datetime.date, optional
        The day ages are counted from; default today in UTC.

    Returns
    -------
    list of RetentionRule
        In the program's order.

    Raises
    ------
    ProgramError
        A key names no known table, or a table without a time column (so its rows have no age);
        the message names the key and the tables that can be retained.
    """
    today = today or _utcnow().date()
    declared = {t.name: t for t in program.tables}
    rules = []
    for key, days in program.retention.items():
        user = declared.get(key) or declared.get(key[len("user_"):] if key.startswith("user_") else "")
        if key in TABLES:
            table, column = key, TABLES[key].time_column
        elif user is not None and user.source:
            raise ProgramError(f"retention.{key}: table {key!r} is read in place from {user.source!r}; its "
                               "retention is the warehouse's, not insightroi's")
        elif user is not None:
            table, column = f"user_{user.name}", user.time_column
        else:
            timed = sorted([n for n, s in TABLES.items() if s.time_column]
                           + [t.name for t in program.tables if t.time_column])
            raise ProgramError(f"retention.{key}: no table {key!r}; tables with a time column: {', '.join(timed)}")
        if column is None:
            raise ProgramError(f"retention.{key}: table {table!r} has no time column, so its rows have no age; "
                               "remove it from [retention]" + (" or give it a time_column" if user is not None else ""))
        rules.append(RetentionRule(table, days, column, today - timedelta(days=days)))
    return rules


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _conditions(rules: list[RetentionRule], present: set[str]) -> dict[str, tuple[str, list[Any]]]:
    """Table -> (SQL condition selecting the rows to delete, its parameters)."""
    parts: dict[str, list[tuple[str, list[Any]]]] = {}

    def add(table: str, cond: str, params: list[Any]) -> None:
        parts.setdefault(table, []).append((cond, params))

    for r in rules:
        if r.table not in present:
            continue
        own = f"{_quoted(r.time_column)} < ?"
        if r.table == "results":
            own += f" AND kind NOT IN ({', '.join('?' for _ in KEPT_KINDS)})"
            add("results", own, [r.cutoff, *KEPT_KINDS])
        else:
            add(r.table, own, [r.cutoff])
        if r.table == "feedback":
            # An insight is derived from its feedback text (its evidence quotes it): it goes with it.
            add("insights", f"feedback_id IN (SELECT id FROM feedback WHERE {own})", [r.cutoff])
        if r.table != "quarantine":
            # Bad rows meant for the table are as old as their quarantine time says; a user
            # table's rows may be filed under either of its names.
            names = [r.table] + ([r.table[len("user_"):]] if r.table.startswith("user_") else [])
            add("quarantine", f"target_table IN ({', '.join('?' for _ in names)}) AND quarantined_at < ?",
                [*names, r.cutoff])
    return {t: (" OR ".join(f"({c})" for c, _ in conds), [p for _, ps in conds for p in ps])
            for t, conds in parts.items()}


def apply_retention(store: Store, program: Program, *, today: date | None = None,
                    dry_run: bool = False) -> RetentionReport:
    """Delete rows older than the program's ``[retention]`` days, table by table.

    A row is dated by its table's time column (``insightroi.store.TABLES[name].time_column``, or
    a declared user table's ``time_column``). With ``days = N`` a row dated on the day ``today - N``
    (any time of it, UTC) is kept and one dated before that day is deleted; a row with no date
    is kept. Deleting feedback also deletes its insights; a retained table's quarantine rows
    older than the same cutoff (by ``quarantined_at``) go too. Saved erasure and retention
    records are never deleted. All deletes are one transaction.

    Parameters
    ----------
    store : Store
        An embedded DuckDB store (other engines cannot delete rows in place).
    program : Program
        The program file, whose ``retention`` maps table -> days.
    today : datetime.date, optional
        The day ages are counted from; default today in UTC.
    dry_run : bool
        Count what would be deleted, delete nothing and save no record.

    Returns
    -------
    RetentionReport
        Rows deleted per table; unless ``dry_run``, the id of the saved record (kind
        ``"retention"``: the rules, cutoffs and counts, no row data).

    Raises
    ------
    ProgramError
        A retention key names an unknown table or one without a time column.
    StoreError
        The store is not the embedded DuckDB store.
    """
    today = today or _utcnow().date()
    rules = resolve_retention(program, today=today)
    store.require_duckdb("retention (deleting rows)")
    with store.transaction():
        raw = store.con.con
        present = _store_tables(store)
        missing = sorted({r.table for r in rules if r.table not in present})
        conds = _conditions(rules, present)
        # Counted before any delete, so a cascade (insights of old feedback) sees its parent rows.
        deleted = {t: int(raw.execute(f"SELECT count(*) FROM {_quoted(t)} WHERE {c}", p).fetchone()[0])
                   for t, (c, p) in conds.items()}
        if not dry_run:
            # Children first: their conditions read the parent rows about to go.
            for t in sorted(conds, key=lambda t: (t not in ("insights", "quarantine"), t)):
                c, p = conds[t]
                raw.execute(f"DELETE FROM {_quoted(t)} WHERE {c}", p)
    report = RetentionReport(today=today, dry_run=dry_run, rules=rules, deleted=dict(sorted(deleted.items())),
                             missing=missing)
    if dry_run:
        return report
    stamp = _utcnow()
    payload = {**report.to_dict(), "applied_at": stamp.isoformat()}
    payload.pop("record_id")
    record_id = store.save_result("retention", stamp.strftime("%Y-%m-%dT%H:%M:%S.%f"), payload)
    return RetentionReport(today=today, dry_run=False, rules=rules, deleted=report.deleted, missing=missing,
                           record_id=record_id)

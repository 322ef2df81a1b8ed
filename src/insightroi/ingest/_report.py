"""What an ingest did, per file: rows read, landed, duplicates, quarantined, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from insightroi.errors import IngestError

__all__ = ["FileReport", "IngestReport", "TableRetry", "RetryReport"]


@dataclass(frozen=True)
class FileReport:
    """One file (or frame) ingested as one batch.

    Every row read is accounted for: ``landed + duplicates + quarantined == rows_read``.

    Attributes
    ----------
    file : str
        The file's path as given (or the frame's ``source``).
    kind : str
        The target table.
    rows_read : int
        Data rows in the file (header and blank JSONL lines excluded).
    landed : int
        New rows written to the table.
    duplicates : int
        Rows whose key was already in the store or earlier in the same file (the first wins), or
        every row of a file whose identical bytes were ingested before (``skipped``).
    quarantined : int
        Rows that failed validation, and conflicts; they are in the ``quarantine`` table with their reason.
    batch_id : str or None
        The batch written (None when skipped or failed).
    errors : tuple of str
        The first few quarantine messages, e.g. ``feedback.csv row 7, field 'event_time': ...``.
    skipped : bool
        The same bytes were already ingested into this table (batch ``skipped_batch``).
    error : str or None
        A whole-file error (wrong columns, empty, unreadable): nothing of this file landed.
    seconds : float
        Wall time for this file.
    conflicts : int
        Rows of this file (counted in ``quarantined``) whose key was kept with different values
        elsewhere (``[ingest] on_conflict``).
    replaced : int
        Stored rows this file replaced under ``on_conflict = "last-wins"`` (moved to the quarantine
        under their own file; not rows of this file).
    """

    file: str
    kind: str
    rows_read: int = 0
    landed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    batch_id: str | None = None
    errors: tuple[str, ...] = ()
    skipped: bool = False
    skipped_batch: str | None = None
    error: str | None = None
    seconds: float = 0.0
    conflicts: int = 0
    replaced: int = 0

    @property
    def ok(self) -> bool:
        """False when the whole file failed."""
        return self.error is None


@dataclass
class IngestReport:
    """The result of :func:`insightroi.ingest.ingest_path` or :func:`~insightroi.ingest.ingest_frame`.

    Totals are sums over :attr:`files`. Print it with Rich (``rich.print(report)``) for the summary
    table, or call :meth:`to_dict` for JSON.
    """

    kind: str
    files: list[FileReport] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def landed(self) -> int:
        return sum(f.landed for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def ok(self) -> bool:
        """True when no file failed as a whole (quarantined rows do not count as failure)."""
        return all(f.ok for f in self.files)

    @property
    def file_errors(self) -> list[str]:
        """Whole-file error messages."""
        return [f.error for f in self.files if f.error]

    @property
    def errors(self) -> list[str]:
        """Sample of row-level quarantine messages across files."""
        return [e for f in self.files for e in f.errors]

    def raise_for_errors(self) -> "IngestReport":
        """Raise :class:`~insightroi.errors.IngestError` listing whole-file errors, if any; else return self."""
        if not self.ok:
            raise IngestError("\n".join(self.file_errors))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "rows_read": self.rows_read, "landed": self.landed,
            "duplicates": self.duplicates, "quarantined": self.quarantined, "ok": self.ok,
            "files": [asdict(f) | {"errors": list(f.errors)} for f in self.files],
        }

    def summary_table(self, title: str | None = None):
        """A ``rich.table.Table``: file, read, landed, duplicate, quarantined, note."""
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title or f"Ingested into {self.kind}")
        table.add_column("file", overflow="fold")
        for col in ("read", "landed", "duplicate", "quarantined"):
            table.add_column(col, justify="right")
        table.add_column("note", overflow="fold")
        for f in self.files:
            if f.error:
                note = "[red]not ingested (error below)[/]"
            elif f.skipped:
                note = escape(f"identical file already ingested (batch {f.skipped_batch})")
            else:
                note = ""
            note += f"{', ' if note else ''}{f.conflicts:,} conflict(s)" if f.conflicts else ""
            note += f"{', ' if note else ''}replaced {f.replaced:,} stored row(s)" if f.replaced else ""
            table.add_row(
                # File names are the user's: Text is never read as markup ('[/i]' in a path).
                Text(f.file), f"{f.rows_read:,}", f"{f.landed:,}", f"{f.duplicates:,}",
                f"[yellow]{f.quarantined:,}[/]" if f.quarantined else "0", note,
            )
        if len(self.files) > 1:
            table.add_row(
                "[bold]total[/]", f"{self.rows_read:,}", f"{self.landed:,}", f"{self.duplicates:,}",
                f"{self.quarantined:,}", "",
            )
        return table

    def __rich__(self):
        return self.summary_table()

    def __str__(self) -> str:
        lines = [f"{f.file}: read {f.rows_read}, landed {f.landed}, duplicates {f.duplicates}, "
                 f"quarantined {f.quarantined}" + (f" (error: {f.error})" if f.error else "")
                 for f in self.files]
        return "\n".join(lines)


@dataclass(frozen=True)
class TableRetry:
    """One table's quarantined rows validated again, in one transaction.

    Every quarantined row is accounted for: ``landed + duplicates + still_quarantined == retried``.

    Attributes
    ----------
    kind : str
        The target table.
    retried : int
        Rows of this table that were in quarantine before the retry.
    landed : int
        Rows that now pass: written to the table and removed from quarantine.
    duplicates : int
        Rows that now pass but whose key was already in the table (or in an earlier quarantined
        row): removed from quarantine, not written again.
    still_quarantined : int
        Rows that still fail; they stay in quarantine with their current field and reason.
    reasons_changed : int
        Of those, rows whose field or reason changed (e.g. a time zone is now set but the value
        is out of range).
    not_rereadable : int
        Of those, rows whose stored raw text is not a row of this table (CSV lines the reader
        rejected, lines that are not JSON objects) or was redacted outside the free-text columns:
        only fixing the file and ingesting it again helps; they are left as they were.
    batch_id : str or None
        The batch that landed the rows (None when none passed).
    errors : tuple of str
        The first few reasons of rows still quarantined, e.g. ``fb.csv row 7, field 'rating': ...``.
    seconds : float
        Wall time for this table.
    """

    kind: str
    retried: int = 0
    landed: int = 0
    duplicates: int = 0
    still_quarantined: int = 0
    reasons_changed: int = 0
    not_rereadable: int = 0
    batch_id: str | None = None
    errors: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass
class RetryReport:
    """The result of :func:`insightroi.ingest.retry_quarantine`: one :class:`TableRetry` per table.

    Print it with Rich for the summary table, or call :meth:`to_dict` for JSON.
    """

    tables: list[TableRetry] = field(default_factory=list)

    @property
    def retried(self) -> int:
        return sum(t.retried for t in self.tables)

    @property
    def landed(self) -> int:
        return sum(t.landed for t in self.tables)

    @property
    def duplicates(self) -> int:
        return sum(t.duplicates for t in self.tables)

    @property
    def still_quarantined(self) -> int:
        return sum(t.still_quarantined for t in self.tables)

    @property
    def errors(self) -> list[str]:
        """Sample of reasons for rows still quarantined, across tables."""
        return [e for t in self.tables for e in t.errors]

    def to_dict(self) -> dict[str, Any]:
        return {
            "retried": self.retried, "landed": self.landed, "duplicates": self.duplicates,
            "still_quarantined": self.still_quarantined,
            "tables": [asdict(t) | {"errors": list(t.errors)} for t in self.tables],
        }

    def summary_table(self, title: str | None = None):
        """A ``rich.table.Table``: table, retried, landed, duplicate, still quarantined, reason changed."""
        from rich.table import Table

        table = Table(title=title or "Quarantine retried")
        table.add_column("table")
        for col in ("retried", "landed", "duplicate", "still quarantined", "reason changed"):
            table.add_column(col, justify="right")
        for t in self.tables:
            table.add_row(
                t.kind, f"{t.retried:,}", f"[green]{t.landed:,}[/]" if t.landed else "0", f"{t.duplicates:,}",
                f"[yellow]{t.still_quarantined:,}[/]" if t.still_quarantined else "0", f"{t.reasons_changed:,}",
            )
        if len(self.tables) > 1:
            table.add_row(
                "[bold]total[/]", f"{self.retried:,}", f"{self.landed:,}", f"{self.duplicates:,}",
                f"{self.still_quarantined:,}", f"{sum(t.reasons_changed for t in self.tables):,}",
            )
        return table

    def __rich__(self):
        return self.summary_table()

    def __str__(self) -> str:
        return "\n".join(
            f"{t.kind}: retried {t.retried}, landed {t.landed}, duplicates {t.duplicates}, "
            f"still quarantined {t.still_quarantined}" for t in self.tables
        )

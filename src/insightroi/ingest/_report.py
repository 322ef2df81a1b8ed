"""What an ingest did, per file: rows read, landed, duplicates, quarantined, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from insightroi.errors import IngestError

__all__ = ["FileReport", "IngestReport"]


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
        Rows that failed validation; they are in the ``quarantine`` table with their reason.
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
        from rich.table import Table

        table = Table(title=title or f"Ingested into {self.kind}")
        table.add_column("file", overflow="fold")
        for col in ("read", "landed", "duplicate", "quarantined"):
            table.add_column(col, justify="right")
        table.add_column("note", overflow="fold")
        for f in self.files:
            if f.error:
                note = "[red]not ingested (error below)[/]"
            elif f.skipped:
                note = f"identical file already ingested (batch {f.skipped_batch})"
            else:
                note = ""
            table.add_row(
                f.file, f"{f.rows_read:,}", f"{f.landed:,}", f"{f.duplicates:,}",
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

"""Ingestion: CSV, JSONL and Parquet files (or in-memory frames) into the store, validated row by
row, with PII redaction, dedupe on the table key, and bad rows quarantined with their reason.

Typical use::

    from insightroi.store import open_store
    from insightroi.ingest import ingest_path

    with open_store("duckdb:///insightroi.duckdb") as store:
        report = ingest_path(store, "feedback", "exports/feedback/")
        print(report.landed, report.quarantined)
"""

from insightroi.ingest._engine import INGESTIBLE, ingest_frame, ingest_path
from insightroi.ingest._redact import redact_pii
from insightroi.ingest._report import FileReport, IngestReport
from insightroi.ingest._validate import MAX_TEXT_BYTES, REDACT_COLUMNS

__all__ = [
    "INGESTIBLE",
    "MAX_TEXT_BYTES",
    "REDACT_COLUMNS",
    "FileReport",
    "IngestReport",
    "ingest_frame",
    "ingest_path",
    "redact_pii",
]

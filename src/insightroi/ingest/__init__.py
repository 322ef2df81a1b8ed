"""Ingestion: CSV, JSONL and Parquet files (or in-memory frames) into the store, validated row by
row, with PII redaction, dedupe on the table key, and bad rows quarantined with their reason.

Typical use::

    from insightroi.store import open_store
    from insightroi.ingest import ingest_path

    with open_store("duckdb:///insightroi.duckdb") as store:
        report = ingest_path(store, "feedback", "exports/feedback/")
        print(report.landed, report.quarantined)
        # after setting program.timezone (or fixing another rule), land what now passes:
        retry_quarantine(store, program="insightroi.toml")

The columns, types and rules each table accepts (the data contract) come from
:func:`data_contract`; ``docs/data-contract.md`` is :func:`data_contract_markdown`'s output.
"""

from insightroi.ingest._contract import data_contract, data_contract_markdown
from insightroi.ingest._engine import INGESTIBLE, ingest_frame, ingest_path, retry_quarantine
from insightroi.ingest._redact import redact_pii
from insightroi.ingest._report import FileReport, IngestReport, RetryReport, TableRetry
from insightroi.ingest._validate import MAX_TEXT_BYTES, REDACT_COLUMNS

__all__ = [
    "INGESTIBLE",
    "MAX_TEXT_BYTES",
    "REDACT_COLUMNS",
    "FileReport",
    "IngestReport",
    "RetryReport",
    "TableRetry",
    "data_contract",
    "data_contract_markdown",
    "ingest_frame",
    "ingest_path",
    "redact_pii",
    "retry_quarantine",
]

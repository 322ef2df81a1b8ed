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

CSV files are read with one explicit dialect (:class:`CsvDialect`: comma, double quote,
doubled-quote escape, a header line; the program file's ``[ingest]`` keys change it), never
guessed per file; a stray quote quarantines its own line and nothing else. Text holding a NUL
byte is quarantined (:func:`check_text` applies the same rule to one value, for the server).

User tables (a program file's ``[[tables]]``: surveys, CRM exports) land in ``user_<name>``
through the same engine: pass the :class:`~insightroi.program.UserTable` (or ``"user_<name>"``
with the program) as the kind; :func:`load_user_table` reads one from a ``[table]`` TOML file.

Vendor exports (Zendesk, Intercom, App Store, Google Play, Trustpilot, Shopify) land as written
with :func:`ingest_preset` (``insightroi ingest --preset NAME FILE``; :data:`PRESETS`,
``docs/presets.md``).

The columns, types and rules each table accepts (the data contract) come from
:func:`data_contract`; ``docs/data-contract.md`` is :func:`data_contract_markdown`'s output.
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.ingest._contract": ("data_contract", "data_contract_markdown"),
    "insightroi.ingest._engine": (
        "INGESTIBLE", "ingest_frame", "ingest_path", "load_user_table", "retry_quarantine", "table_spec",
    ),
    "insightroi.ingest._presets": ("PRESETS", "PresetReport", "ingest_preset", "preset_names"),
    "insightroi.ingest._redact": (
        "ADDRESS_TOKEN", "CARD_TOKEN", "EMAIL_TOKEN", "IBAN_TOKEN", "PHONE_TOKEN", "PREFILTER", "REDACTION_TOKENS",
        "SECRET_TOKEN", "pseudonymize", "redact_pii", "redact_row", "redact_table",
    ),
    "insightroi.ingest._report": ("FileReport", "IngestReport", "RetryReport", "TableRetry"),
    "insightroi.ingest._sources": ("CsvDialect",),
    "insightroi.ingest._validate": (
        "EARLIEST", "LATEST", "MAX_TEXT_BYTES", "NUL_REASON", "REDACT_COLUMNS", "check_text",
    ),
})

__all__ = [
    "EARLIEST",
    "LATEST",
    "NUL_REASON",
    "CsvDialect",
    "check_text",
    "ADDRESS_TOKEN",
    "CARD_TOKEN",
    "EMAIL_TOKEN",
    "IBAN_TOKEN",
    "INGESTIBLE",
    "PRESETS",
    "PresetReport",
    "MAX_TEXT_BYTES",
    "PHONE_TOKEN",
    "PREFILTER",
    "REDACTION_TOKENS",
    "REDACT_COLUMNS",
    "SECRET_TOKEN",
    "FileReport",
    "IngestReport",
    "RetryReport",
    "TableRetry",
    "data_contract",
    "data_contract_markdown",
    "ingest_frame",
    "ingest_path",
    "ingest_preset",
    "load_user_table",
    "preset_names",
    "pseudonymize",
    "redact_pii",
    "redact_row",
    "redact_table",
    "retry_quarantine",
    "table_spec",
]

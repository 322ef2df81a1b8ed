"""Where the data lives: a store opened from a URL (DuckDB file by default), through Ibis."""

from insightroi.store._schema import (
    ANNOTATION_KINDS,
    CHAIN_EVENT_TYPES,
    FEEDBACK_SOURCES,
    SCHEMA_VERSION,
    TABLES,
    TableSpec,
)
from insightroi.store._store import (
    DEFAULT_URL,
    Store,
    UnboundStore,
    copy_store,
    duckdb_file,
    open_store,
    register_opener,
)

__all__ = [
    "ANNOTATION_KINDS",
    "CHAIN_EVENT_TYPES",
    "DEFAULT_URL",
    "FEEDBACK_SOURCES",
    "SCHEMA_VERSION",
    "TABLES",
    "Store",
    "TableSpec",
    "UnboundStore",
    "copy_store",
    "duckdb_file",
    "open_store",
    "register_opener",
]

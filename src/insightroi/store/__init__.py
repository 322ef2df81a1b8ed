"""Where the data lives: a store opened from a URL (DuckDB file by default), through Ibis."""

from insightroi.store._schema import (
    ANNOTATION_KINDS,
    CHAIN_EVENT_TYPES,
    FEEDBACK_SOURCES,
    RESERVED_COLUMNS,
    SCHEMA_VERSION,
    TABLES,
    USER_TABLE_PREFIX,
    TableSpec,
    is_user_table,
    user_table_spec,
)
from insightroi.store._store import (
    DEFAULT_URL,
    Store,
    UnboundStore,
    copy_store,
    duckdb_file,
    lock_wanted,
    open_store,
    register_opener,
)

__all__ = [
    "ANNOTATION_KINDS",
    "CHAIN_EVENT_TYPES",
    "DEFAULT_URL",
    "FEEDBACK_SOURCES",
    "RESERVED_COLUMNS",
    "SCHEMA_VERSION",
    "TABLES",
    "USER_TABLE_PREFIX",
    "Store",
    "TableSpec",
    "UnboundStore",
    "copy_store",
    "duckdb_file",
    "is_user_table",
    "lock_wanted",
    "open_store",
    "register_opener",
    "user_table_spec",
]

"""Where the data lives: a store opened from a URL (DuckDB file by default), through Ibis."""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI's help lists the store's tables (insightroi._lazy says why), and
# importing _store means Ibis and pandas.
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.store._tables": (
        "ANNOTATION_KINDS", "CHAIN_EVENT_TYPES", "FEEDBACK_SOURCES", "TABLES", "USER_TABLE_PREFIX", "TableSpec",
    ),
    "insightroi.store._schema": ("RESERVED_COLUMNS", "SCHEMA_VERSION", "is_user_table", "user_table_spec"),
    "insightroi.store._store": (
        "DEFAULT_URL", "Store", "UnboundStore", "copy_store", "duckdb_file", "lock_wanted", "open_store",
        "register_opener",
    ),
})

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

"""Typed table schemas of the store and their migrations.

Timestamps are stored as naive ``timestamp`` values in UTC: ingestion converts every offset to UTC
(and rejects naive input unless the program file names a zone). Naive-UTC keeps DuckDB, Spark
(session zone pinned to UTC) and Databricks in agreement on day boundaries.
"""

from __future__ import annotations

from insightroi.store._tables import (
    _SHARED,
    ANNOTATION_KINDS,
    CHAIN_EVENT_TYPES,
    FEEDBACK_SOURCES,
    TABLES,
    USER_TABLE_PREFIX,
    ColumnInfo,
    TableSpec,
)
from insightroi.errors import StoreError
from insightroi.program import USER_RESERVED_COLUMNS, UserTable

__all__ = [
    "ColumnInfo",
    "TableSpec",
    "TABLES",
    "SCHEMA_VERSION",
    "FEEDBACK_SOURCES",
    "CHAIN_EVENT_TYPES",
    "ANNOTATION_KINDS",
    "USER_TABLE_PREFIX",
    "RESERVED_COLUMNS",
    "user_table_spec",
    "is_user_table",
]

# Bump when TABLES changes, and add the step that upgrades the previous version to
# ``insightroi.store._store._MIGRATIONS``. User tables (``user_<name>``) are not part of it: they
# are created on first ingest from the program file and never migrated.
SCHEMA_VERSION = 1

#: Column names a user table may not declare: ingestion's own columns, its row bookkeeping, and
#: DuckDB's row id (a real column of that name hides it, and ingestion settles keys by it).
RESERVED_COLUMNS = USER_RESERVED_COLUMNS

_TYPE_WORDS = {
    "string": "text", "int64": "integer", "float64": "number", "boolean": "boolean", "date": "date",
    "timestamp": "timestamp",
}


def is_user_table(name: str) -> bool:
    """Whether ``name`` is a user table's store name (``user_<name>``, not one of :data:`TABLES`)."""
    return name.startswith(USER_TABLE_PREFIX) and name not in TABLES


def user_table_spec(table: UserTable) -> TableSpec:
    """The store's :class:`TableSpec` of a user table declared in the program file (``[[tables]]``).

    The table is ``user_<name>`` with the declared columns, then ``ingested_at`` and ``batch_id``
    (set by ingestion, as on the store's own tables). The key is always required.

    Parameters
    ----------
    table : insightroi.program.UserTable
        The ``[[tables]]`` entry (or a ``--schema`` file's ``[table]``).

    Returns
    -------
    TableSpec
        Ingestible, with ``text_columns`` and ``id_columns`` copied from the declaration.

    Raises
    ------
    StoreError
        When a column uses a name ingestion reserves (:data:`RESERVED_COLUMNS`).
    """
    reserved = [c for c in table.columns if c in RESERVED_COLUMNS]
    if reserved:
        raise StoreError(
            f"table {table.name!r}: column name(s) {', '.join(map(repr, reserved))} are reserved "
            f"(ingestion sets or uses {', '.join(RESERVED_COLUMNS)}); rename them"
        )
    required = tuple(dict.fromkeys([table.key, *table.required]))
    columns = {**table.columns, "ingested_at": "timestamp", "batch_id": "string"}
    info: dict[str, ColumnInfo] = {}
    for col, typ in table.columns.items():
        if col == table.key:
            text = "The key: a value already stored is skipped (another row with it is a conflict)."
        elif col in table.text_columns:
            text = "Free text, kept as written apart from PII."
        elif col in table.id_columns:
            text = "A person's id (an e-mail or phone number here is replaced by a keyed pseudonym)."
        elif col == table.time_column:
            text = "The event time measures window on."
        else:
            text = f"{_TYPE_WORDS[typ].capitalize()} column of the user table {table.name!r}."
        info[col] = ColumnInfo(text)
    info["ingested_at"] = _SHARED["ingested_at"]
    info["batch_id"] = _SHARED["batch_id"]
    return TableSpec(
        name=USER_TABLE_PREFIX + table.name, columns=columns, key=table.key, required=required,
        time_column=table.time_column, ingestible=True,
        description=table.description or f"User table {table.name!r} (declared in the program file).",
        column_info=info, text_columns=tuple(table.text_columns), id_columns=tuple(table.id_columns),
    )

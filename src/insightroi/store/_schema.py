"""Typed table schemas of the store and their migrations.

Timestamps are stored as naive ``timestamp`` values in UTC: ingestion converts every offset to UTC
(and rejects naive input unless the program file names a zone). Naive-UTC keeps DuckDB, Spark
(session zone pinned to UTC) and Databricks in agreement on day boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TableSpec", "TABLES", "SCHEMA_VERSION", "FEEDBACK_SOURCES", "CHAIN_EVENT_TYPES", "ANNOTATION_KINDS"]

FEEDBACK_SOURCES = ("review", "ticket", "chat", "call", "social", "in_app", "return")
CHAIN_EVENT_TYPES = (
    "insight",
    "alert_delivered",
    "acknowledged",
    "action_taken",
    "fix_deployed",
    "outcome",
    "ignored",
    "overridden",
)
ANNOTATION_KINDS = ("promotion", "stockout", "outage", "policy_change", "price_change", "other")


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns (name -> Ibis type string), key, and which columns are required.

    ``key`` is the column that identifies a row; ingestion dedupes on it, so re-ingesting the same
    file adds nothing. ``required`` columns must be present and non-null in every input row.
    ``time_column`` is the event time used for date ranges in ``insightroi status``.
    """

    name: str
    columns: dict[str, str]
    key: str
    required: tuple[str, ...]
    time_column: str | None = None
    ingestible: bool = True
    description: str = ""


def _spec(name, columns, key, required, time_column=None, ingestible=True, description=""):
    return TableSpec(name, dict(columns), key, tuple(required), time_column, ingestible, description)


TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        _spec(
            "products",
            {
                "sku": "string", "product_id": "string", "sku_family": "string", "category": "string",
                "name": "string", "price": "float64", "unit_cost": "float64", "launched_at": "timestamp",
                "ingested_at": "timestamp", "batch_id": "string",
            },
            key="sku", required=("sku", "sku_family"),
            description="Catalog: one row per SKU, with its family (the usual cluster unit).",
        ),
        _spec(
            "feedback",
            {
                "id": "string", "source": "string", "channel": "string", "locale": "string",
                "product_id": "string", "sku": "string", "sku_family": "string", "customer_id": "string",
                "segment": "string", "region": "string", "event_time": "timestamp", "rating": "float64",
                "text": "string", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "source", "event_time", "text"), time_column="event_time",
            description="Reviews, tickets, chats, calls, social posts, in-app notes and return reasons, with text.",
        ),
        _spec(
            "orders",
            {
                "id": "string", "customer_id": "string", "sku": "string", "sku_family": "string",
                "segment": "string", "region": "string", "order_time": "timestamp", "quantity": "int64",
                "revenue": "float64", "margin": "float64", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "order_time", "revenue"), time_column="order_time",
        ),
        _spec(
            "tickets",
            {
                "id": "string", "customer_id": "string", "order_id": "string", "sku": "string",
                "sku_family": "string", "segment": "string", "region": "string", "channel": "string",
                "opened_at": "timestamp", "closed_at": "timestamp", "handle_minutes": "float64",
                "deflected": "boolean", "team": "string", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "opened_at"), time_column="opened_at",
        ),
        _spec(
            "refunds",
            {
                "id": "string", "order_id": "string", "customer_id": "string", "sku": "string",
                "sku_family": "string", "segment": "string", "region": "string", "kind": "string",
                "event_time": "timestamp", "amount": "float64", "reason": "string",
                "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "event_time", "amount"), time_column="event_time",
            description="Refunds and returns (kind = refund | return) with the customer's reason.",
        ),
        _spec(
            "traffic",
            {
                "id": "string", "date": "date", "sku": "string", "sku_family": "string", "region": "string",
                "sessions": "int64", "conversions": "int64", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "date", "sessions", "conversions"), time_column="date",
            description="Optional daily sessions and conversions per SKU (and region).",
        ),
        _spec(
            "insights",
            {
                "id": "string", "feedback_id": "string", "task": "string", "label": "string",
                "score": "float64", "confidence": "float64", "evidence": "string", "method": "string",
                "model_version": "string", "created_at": "timestamp",
            },
            key="id", required=("id", "feedback_id", "task", "label", "model_version"), time_column="created_at",
            ingestible=False,
            description="Model outputs, one row per feedback x task x model version (versions are kept).",
        ),
        _spec(
            "chain_events",
            {
                "id": "string", "event_type": "string", "alert_id": "string", "insight_id": "string",
                "event_time": "timestamp", "actor": "string", "team": "string", "topic": "string",
                "sku": "string", "sku_family": "string", "region": "string", "payload": "string",
                "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "event_type", "event_time"), time_column="event_time",
            description="Decision chain: insight -> alert delivered -> acknowledged -> action -> fix -> outcome.",
        ),
        _spec(
            "assignments",
            {
                "id": "string", "experiment": "string", "unit_type": "string", "unit_id": "string",
                "arm": "string", "assigned_at": "timestamp", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "experiment", "unit_type", "unit_id", "arm", "assigned_at"),
            time_column="assigned_at",
        ),
        _spec(
            "annotations",
            {
                "id": "string", "kind": "string", "start_time": "timestamp", "end_time": "timestamp",
                "scope": "string", "description": "string", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "kind", "start_time"), time_column="start_time",
            description="Known events (promotion, stockout, outage, policy or price change) with scope.",
        ),
        _spec(
            "review_labels",
            {
                "id": "string", "feedback_id": "string", "task": "string", "label": "string",
                "reviewer": "string", "reviewed_at": "timestamp", "model_version": "string",
                "model_label": "string", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "feedback_id", "task", "label", "reviewed_at"), time_column="reviewed_at",
            description="Human review labels; they feed model validation and quality drift.",
        ),
        _spec(
            "results",
            {
                "id": "string", "kind": "string", "name": "string", "created_at": "timestamp",
                "payload": "string",
            },
            key="id", required=("id", "kind", "name", "payload"), time_column="created_at", ingestible=False,
            description="Saved analysis results (JSON) for reports and the dashboard.",
        ),
        _spec(
            "quarantine",
            {
                "id": "string", "target_table": "string", "file": "string", "row_number": "int64",
                "field": "string", "reason": "string", "raw": "string", "batch_id": "string",
                "quarantined_at": "timestamp",
            },
            key="id", required=("id", "target_table", "reason"), time_column="quarantined_at", ingestible=False,
            description="Rows that failed validation, with file, row number, field and reason.",
        ),
        _spec(
            "ingest_batches",
            {
                "batch_id": "string", "target_table": "string", "file": "string", "sha256": "string",
                "rows_read": "int64", "landed": "int64", "duplicates": "int64", "quarantined": "int64",
                "started_at": "timestamp", "finished_at": "timestamp",
            },
            key="batch_id", required=("batch_id", "target_table"), time_column="started_at", ingestible=False,
        ),
    ]
}

# Bump when TABLES changes, and add the step that upgrades the previous version to
# ``insightroi.store._store._MIGRATIONS``.
SCHEMA_VERSION = 1

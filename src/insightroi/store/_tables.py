"""The store's own tables as plain data: columns, key, required columns and the data contract.

:mod:`insightroi.store` re-exports all of it. It is kept apart from `_schema.py` (which imports
the program models) and `_store.py` (Ibis), importing nothing heavy, because the
commands' help lists the tables a user may ingest (:data:`INGESTIBLE`) and every ``insightroi``
command, ``--help`` included, builds that help when it starts; the store package imports Ibis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ANNOTATION_KINDS",
    "CHAIN_EVENT_TYPES",
    "FEEDBACK_SOURCES",
    "INGESTIBLE",
    "TABLES",
    "USER_TABLE_PREFIX",
    "ColumnInfo",
    "TableSpec",
]

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
    # Written by the deliverer (insightroi.delivery): a message reached a channel, or a channel
    # refused it for good. Not "alert_delivered", which the detector writes once per alert and the
    # "alerts" measure counts: one row per channel would multiply every alert in the KPIs.
    "delivery_sent",
    "delivery_failed",
    # Written by the detector when an alerted episode keeps going (new last day, spike days, peak):
    # chain events are append-only, so the alert's row is never changed. A store exported and
    # ingested again must take these rows back, not quarantine them.
    "alert_updated",
)
ANNOTATION_KINDS = ("promotion", "stockout", "outage", "policy_change", "price_change", "other")


@dataclass(frozen=True)
class ColumnInfo:
    """What one column means and which values ingestion accepts: the data contract's row.

    Ingestion validates ``allowed`` (after trimming and lower-casing) and the inclusive range
    ``minimum``..``maximum``; ``insightroi schema`` and ``docs/data-contract.md`` print all of it,
    so the documented contract is the one enforced.

    Attributes
    ----------
    description : str
        What the value means and who uses it.
    example : str or None
        A valid value as it would appear in a CSV cell.
    allowed : tuple of str
        A closed set of values (empty: any value of the column's type).
    minimum, maximum : float or None
        Inclusive numeric bounds (None: unbounded).
    not_before : str or None
        Another time column of the same row this one may not precede (a ticket's ``closed_at``
        and its ``opened_at``); a row that breaks it is quarantined.
    """

    description: str
    example: str | None = None
    allowed: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    not_before: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns (name -> Ibis type string), key, and which columns are required.

    ``key`` is the column that identifies a row; ingestion dedupes on it, so re-ingesting the same
    file adds nothing. ``required`` columns must be present and non-null in every input row.
    ``time_column`` is the event time used for date ranges in ``insightroi status``.
    ``column_info`` documents each column and carries its allowed values and range, which
    ingestion enforces. ``text_columns`` and ``id_columns`` are set on user tables only (the
    store's own tables name theirs in ``insightroi.ingest.REDACT_COLUMNS`` and the redactor's
    id columns): free text redacted like ``feedback.text``, and person ids pseudonymised when
    they hold an e-mail or a phone number.
    """

    name: str
    columns: dict[str, str]
    key: str
    required: tuple[str, ...]
    time_column: str | None = None
    ingestible: bool = True
    description: str = ""
    column_info: dict[str, ColumnInfo] = field(default_factory=dict)
    text_columns: tuple[str, ...] = ()
    id_columns: tuple[str, ...] = ()


_C = ColumnInfo

# Columns that mean the same in every table they appear in.
_SHARED: dict[str, ColumnInfo] = {
    "customer_id": _C("The customer (any stable id; used to link feedback, orders, tickets and refunds).", "C-000123"),
    "product_id": _C("Your product id (one product may have several SKUs).", "P-SHO-3f2a1-004-01"),
    "sku": _C("Stock-keeping unit; joins to products.sku.", "SHO-3f2a1-004-01"),
    "sku_family": _C("Group of SKUs treated together (the usual unit of a cluster experiment).", "SHO-3f2a1-004"),
    "segment": _C("Customer segment (free text, e.g. new, returning, vip, business).", "returning"),
    "region": _C("Sales region (free text; used for breakdowns and regional experiments).", "us-east"),
    "order_id": _C("The order this row is about; joins to orders.id.", "o-00001234"),
    "team": _C("Owning team (matches the owners in the program file's taxonomy).", "logistics"),
    "ingested_at": _C("Set by ingestion (UTC time the row landed); ignored if the file carries it."),
    "batch_id": _C("Set by ingestion (the batch that landed the row; see ingest_batches); ignored if the file carries it."),
}


def _spec(name, columns, key, required, time_column=None, ingestible=True, description="", info=None):
    info = dict(info or {})
    if ingestible:
        info = {c: info.get(c) or _SHARED[c] for c in columns}
    return TableSpec(name, dict(columns), key, tuple(required), time_column, ingestible, description, info)


# Changing a table: bump SCHEMA_VERSION in insightroi.store._schema (its comment says where the
# migration goes).
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
            info={
                "sku": _C("Stock-keeping unit; the key: a SKU already stored is skipped.", "SHO-3f2a1-004-01"),
                "category": _C("Product category (free text; used for breakdowns and promotion scopes).", "shoes"),
                "name": _C("Product name as customers see it.", "Trail runner, blue"),
                "price": _C("List price per unit, in the program's currency.", "89.99"),
                "unit_cost": _C("Cost per unit, in the program's currency (for margin-based value pools).", "41.5"),
                "launched_at": _C("When the SKU went on sale.", "2024-09-01T00:00:00Z"),
            },
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
            info={
                "id": _C("Unique id of the feedback item; the key: an id already stored is skipped.", "fb-000001"),
                "source": _C("Where the feedback came from.", "review", allowed=FEEDBACK_SOURCES),
                "channel": _C("Channel or site it was left on (free text).", "web"),
                "locale": _C("Language / locale tag of the text (free text, e.g. BCP 47).", "en-US"),
                "event_time": _C("When the customer wrote it.", "2025-03-01T10:15:00+01:00"),
                "rating": _C("Star rating or score (1-5 stars or 0-10 NPS); empty when there is none.", "4",
                            minimum=0, maximum=10),
                "text": _C("The customer's words, kept exactly (e-mails, phones, cards, IBANs, addresses and secrets redacted by default).",
                          "Arrived two days late and the box was crushed."),
            },
        ),
        _spec(
            "orders",
            {
                "id": "string", "customer_id": "string", "sku": "string", "sku_family": "string",
                "segment": "string", "region": "string", "order_time": "timestamp", "quantity": "int64",
                "revenue": "float64", "margin": "float64", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "order_time", "revenue"), time_column="order_time",
            description="Orders: one row per order line, with revenue and margin (the business outcomes).",
            info={
                "id": _C("Unique id of the order (line); the key: an id already stored is skipped.", "o-00001234"),
                "order_time": _C("When the order was placed.", "2025-03-01T09:30:00Z"),
                "quantity": _C("Units ordered.", "2", minimum=0),
                "revenue": _C("Revenue of the order, in the program's currency.", "179.98"),
                "margin": _C("Gross margin of the order (an amount, not a ratio), in the program's currency.", "62.4"),
            },
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
            description="Support tickets: when they opened and closed, handling time and deflection.",
            info={
                "id": _C("Unique id of the ticket; the key: an id already stored is skipped.", "t-000042"),
                "channel": _C("Contact channel (free text, e.g. email, chat, phone).", "email"),
                "opened_at": _C("When the ticket was opened.", "2025-03-02T14:05:00Z"),
                "closed_at": _C("When it was closed (empty while open).", "2025-03-02T15:20:00Z",
                                not_before="opened_at"),
                "handle_minutes": _C("Agent handling time in minutes (the cost-to-serve KPI).", "12.5", minimum=0),
                "deflected": _C("Resolved without an agent (self-service, bot).", "false"),
                "team": _C("Support team that handled it.", "support"),
            },
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
            info={
                "id": _C("Unique id of the refund or return; the key: an id already stored is skipped.", "r-000777"),
                "kind": _C("Money back only, or goods sent back.", "return", allowed=("refund", "return")),
                "event_time": _C("When the refund or return was recorded.", "2025-03-05T11:00:00Z"),
                "amount": _C("Amount refunded, in the program's currency.", "89.99", minimum=0),
                "reason": _C("The customer's stated reason (free text; redacted like feedback text).",
                            "Sole came apart after a week"),
            },
        ),
        _spec(
            "traffic",
            {
                "id": "string", "date": "date", "sku": "string", "sku_family": "string", "region": "string",
                "sessions": "int64", "conversions": "int64", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "date", "sessions", "conversions"), time_column="date",
            description="Optional daily sessions and conversions per SKU (and region).",
            info={
                "id": _C("Unique id of the row (e.g. date + SKU + region); the key.", "2025-03-01/SHO-3f2a1-004-01/us-east"),
                "date": _C("The day (no time of day).", "2025-03-01"),
                "sessions": _C("Sessions that viewed the SKU that day.", "1250", minimum=0),
                "conversions": _C("Sessions that bought it.", "37", minimum=0),
            },
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
            info={
                "id": _C("Unique id of the event; the key: an id already stored is skipped.", "ce-000001"),
                "event_type": _C("Step of the decision chain.", "acknowledged", allowed=CHAIN_EVENT_TYPES),
                "alert_id": _C("The alert the event belongs to (empty for insights that raised none).", "alert-00017"),
                "insight_id": _C("The insight that started the chain.", "insight-00017"),
                "event_time": _C("When the step happened.", "2025-03-03T08:45:00Z"),
                "actor": _C("Who or what did it (a person, a bot, the alert router).", "logistics.ana"),
                "team": _C("Team responsible for the step.", "logistics"),
                "topic": _C("Complaint theme (a topic of the program file's taxonomy).", "shipping_delay"),
                "payload": _C("Extra details as JSON text (redacted like feedback text).", '{"channel": "slack"}'),
            },
        ),
        _spec(
            "assignments",
            {
                "id": "string", "experiment": "string", "unit_type": "string", "unit_id": "string",
                "arm": "string", "assigned_at": "timestamp", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "experiment", "unit_type", "unit_id", "arm", "assigned_at"),
            time_column="assigned_at",
            description="Experiment assignments: which unit got which arm, and when.",
            info={
                "id": _C("Unique id of the assignment; the key: an id already stored is skipped.", "asg-exp1-SHO-3f2a1-004"),
                "experiment": _C("Experiment name (program file's experiment.name).", "alerts-2025q1"),
                "unit_type": _C("Kind of unit randomised (program file's experiment.unit), e.g. sku_family.",
                               "sku_family"),
                "unit_id": _C("The unit's id (a SKU family, customer, region, or a time block's start).",
                             "SHO-3f2a1-004"),
                "arm": _C("Arm the unit is in, e.g. treatment or control.", "treatment"),
                "assigned_at": _C("When the assignment took effect.", "2025-02-01T00:00:00Z"),
            },
        ),
        _spec(
            "annotations",
            {
                "id": "string", "kind": "string", "start_time": "timestamp", "end_time": "timestamp",
                "scope": "string", "description": "string", "ingested_at": "timestamp", "batch_id": "string",
            },
            key="id", required=("id", "kind", "start_time"), time_column="start_time",
            description="Known events (promotion, stockout, outage, policy or price change) with scope.",
            info={
                "id": _C("Unique id of the annotation; the key: an id already stored is skipped.", "ann-001"),
                "kind": _C("What happened.", "promotion", allowed=ANNOTATION_KINDS),
                "start_time": _C("When it started.", "2025-03-10T00:00:00Z"),
                "end_time": _C("When it ended (empty while ongoing).", "2025-03-17T00:00:00Z"),
                "scope": _C("What it affected: all, or dimension:value (e.g. category:shoes, sku_family:...).",
                           "category:shoes"),
                "description": _C("Free-text note (redacted like feedback text).", "20% off sale"),
            },
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
            info={
                "id": _C("Unique id of the review; the key: an id already stored is skipped.", "rl-000001"),
                "feedback_id": _C("The feedback item reviewed; joins to feedback.id.", "fb-000001"),
                "task": _C("Which model output was reviewed (sentiment, topic or severity).", "topic"),
                "label": _C("The reviewer's label.", "shipping_delay"),
                "reviewer": _C("Who reviewed it.", "qa.chen"),
                "reviewed_at": _C("When it was reviewed.", "2025-03-04T16:00:00Z"),
                "model_version": _C("Model version whose output was shown to the reviewer.", "topic-lex-1"),
                "model_label": _C("The model's label at review time.", "packaging"),
            },
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
        # The delivery outbox (insightroi.delivery). Rows change state in place (claimed, sent,
        # retried), so it lives on the embedded DuckDB store only; see insightroi.delivery.
        _spec(
            "alert_outbox",
            {
                "id": "string", "team": "string", "topic": "string", "sku_family": "string",
                "severity": "string", "payload": "string", "enqueued_at": "timestamp",
            },
            key="id", required=("id", "payload"), time_column="enqueued_at", ingestible=False,
            description="Alerts handed to the deliverer, written once with their delivery rows (id = alert_id).",
        ),
        _spec(
            "deliveries",
            {
                "id": "string", "alert_id": "string", "channel": "string", "kind": "string",
                "idempotency_key": "string", "status": "string", "attempts": "int64",
                "next_attempt_at": "timestamp", "claimed_at": "timestamp", "last_error": "string",
                "created_at": "timestamp", "delivered_at": "timestamp",
            },
            key="id", required=("id", "alert_id", "channel", "idempotency_key", "status"),
            time_column="created_at", ingestible=False,
            description="One row per alert x channel: pending -> sending -> delivered | dead, with attempts.",
        ),
        _spec(
            "dead_letters",
            {
                "id": "string", "delivery_id": "string", "alert_id": "string", "channel": "string",
                "kind": "string", "attempts": "int64", "last_error": "string", "payload": "string",
                "dead_at": "timestamp",
            },
            key="id", required=("id", "delivery_id", "alert_id", "channel"), time_column="dead_at", ingestible=False,
            description="Deliveries that failed for good (refused, out of attempts, or lost in a crash).",
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

#: Tables a user may ingest into.
INGESTIBLE = tuple(name for name, spec in TABLES.items() if spec.ingestible)

#: A user table ``surveys`` is stored as ``user_surveys`` (never clashes with the store's own).
USER_TABLE_PREFIX = "user_"

"""Payload schemas of the event API (pydantic; unknown fields are refused, so typos surface)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from insightroi.ingest import EARLIEST as _INGEST_EARLIEST
from insightroi.ingest import LATEST as _INGEST_LATEST
from insightroi.ingest import check_text
from insightroi.store import FEEDBACK_SOURCES

__all__ = ["FeedbackIn", "ChainEventIn", "FeedbackBatchIn", "ChainEventBatchIn", "StoredEvent", "BatchItemResult",
           "BatchResult", "ErasureIn", "ApiError", "CHAIN_API_TYPES", "MAX_BATCH"]

# Event types a team (or its ticketing tool) reports; "insight" rows are written by the models.
CHAIN_API_TYPES = ("alert_delivered", "acknowledged", "action_taken", "fix_deployed", "outcome", "ignored",
                   "overridden")

_Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
_Short = Annotated[str, Field(min_length=1, max_length=200)]


# The range ingestion accepts for timestamps (inclusive dates); outside it a date is a typo or a sentinel.
EARLIEST = datetime.fromisoformat(_INGEST_EARLIEST).replace(tzinfo=timezone.utc)
LATEST = datetime.fromisoformat(_INGEST_LATEST).replace(tzinfo=timezone.utc) + timedelta(days=1)


def _naive_utc(v: datetime | None) -> datetime | None:
    return None if v is None else v.astimezone(timezone.utc).replace(tzinfo=None)


def _in_range(v: datetime | None) -> datetime | None:
    if v is None:
        return v
    try:
        utc = v.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"{v.isoformat()} is outside the representable range in UTC") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"{v.isoformat()} is outside {_INGEST_EARLIEST} to {_INGEST_LATEST} (ingestion's range)")
    return v


def _no_nul(v: Any, where: str = "") -> None:
    if isinstance(v, str):
        check_text(v, where or "a text field")  # ingestion's rule: a NUL byte is refused, never stripped
    elif isinstance(v, dict):
        for k, x in v.items():
            _no_nul(k, where)
            _no_nul(x, f"{where}.{k}" if where else str(k))
    elif isinstance(v, list):
        for x in v:
            _no_nul(x, where)


_PAYLOAD_CHARS = 10_000


def _json_length_bound(v: Any) -> int:
    """An upper bound on ``len(json.dumps(v, default=str))`` (6 characters per escaped character)."""
    if isinstance(v, str):
        return 2 + 6 * len(v)
    if isinstance(v, dict):
        return 2 + sum(4 + _json_length_bound(str(k)) + _json_length_bound(x) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return 2 + sum(2 + _json_length_bound(x) for x in v)
    if v is None or isinstance(v, (bool, int, float)):
        return len(repr(v)) + 5  # null, true, false, numbers (repr is at least as long as JSON's form)
    return 2 + 6 * len(str(v))


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        # Text with NUL bytes is refused, as ingestion quarantines it (DuckDB, CSV exports and
        # terminals each cut or mangle it differently).
        _no_nul(data)
        return data

    @field_validator("event_time", check_fields=False)
    @classmethod
    def _event_time_range(cls, v: datetime | None) -> datetime | None:
        return _in_range(v)


class FeedbackIn(_In):
    """One feedback item (review, ticket, chat, ...). Text is PII-redacted before storage."""

    id: _Id | None = Field(None, description="Your id for the item; derived from the Idempotency-Key when absent.")
    source: Literal[FEEDBACK_SOURCES]  # type: ignore[valid-type]
    text: Annotated[str, Field(min_length=1, max_length=20_000)]
    event_time: AwareDatetime = Field(description="When it was written, with a UTC offset (ISO 8601).")
    rating: Annotated[float, Field(ge=0, le=10)] | None = None
    channel: _Short | None = None
    locale: Annotated[str, Field(max_length=35)] | None = None
    product_id: _Short | None = None
    sku: _Short | None = None
    sku_family: _Short | None = None
    customer_id: _Short | None = None
    segment: _Short | None = None
    region: _Short | None = None

    def row(self) -> dict[str, Any]:
        d = self.model_dump()
        d["event_time"] = _naive_utc(self.event_time)
        return d


class ChainEventIn(_In):
    """One step of the decision chain for an alert: delivered, acknowledged, acted, fixed, outcome."""

    id: _Id | None = Field(None, description="Your id for the event; derived from the Idempotency-Key when absent.")
    event_type: Literal[CHAIN_API_TYPES]  # type: ignore[valid-type]
    alert_id: _Id | None = None
    insight_id: _Id | None = None
    event_time: AwareDatetime | None = Field(None, description="When it happened (ISO 8601 with offset); default now.")
    actor: _Short | None = None
    team: _Short | None = None
    topic: _Short | None = None
    sku: _Short | None = None
    sku_family: _Short | None = None
    region: _Short | None = None
    payload: dict[str, Any] | None = Field(None, description="Free-form JSON details (action taken, ticket link, ...).")

    @model_validator(mode="after")
    def _linked(self) -> "ChainEventIn":
        if self.alert_id is None and self.insight_id is None:
            raise ValueError("alert_id or insight_id is required: a chain event must say what it belongs to")
        return self

    @field_validator("payload")
    @classmethod
    def _small_payload(cls, v: dict | None) -> dict | None:
        # Serialising every payload to measure it cost more than the rest of an event's checks;
        # a bound on its JSON length decides nearly all of them, the exact length the rest.
        if v is not None and _json_length_bound(v) > _PAYLOAD_CHARS and len(json.dumps(v, default=str)) > _PAYLOAD_CHARS:
            raise ValueError("payload is larger than 10,000 characters of JSON")
        return v

    def row(self, now: datetime, payload: Any = None) -> dict[str, Any]:
        """The store row; ``payload`` (e.g. the redacted payload) replaces the event's own when given."""
        d = self.model_dump()
        d["event_time"] = _naive_utc(self.event_time) or now
        body = self.payload if payload is None else payload
        d["payload"] = None if body is None else json.dumps(body, sort_keys=True, default=str)
        return d


# Events per batch request: enough to amortise a request's cost (~1 ms of Python on 2 cores) over
# many events, small enough that one request never holds a group commit for long.
MAX_BATCH = 500


class FeedbackBatchIn(_In):
    """Several feedback items in one request (each validated and redacted as a single one is)."""

    items: Annotated[list[FeedbackIn], Field(min_length=1, max_length=MAX_BATCH)]


class ChainEventBatchIn(_In):
    """Several chain events in one request, applied in order (a delivery, then its acknowledgement)."""

    events: Annotated[list[ChainEventIn], Field(min_length=1, max_length=MAX_BATCH)]


class BatchItemResult(BaseModel):
    """One event of a batch: 201 stored, 200 replayed (same id or key, same body), 409/422 refused."""

    index: int
    status: int
    id: str
    detail: str | None = None


class BatchResult(BaseModel):
    """What a batch request answers: counts and one result per event, in request order."""

    stored: int
    replayed: int
    rejected: int
    results: list[BatchItemResult]


class ErasureIn(_In):
    """An erasure request: the customer as the source systems know them (id, e-mail or phone)."""

    customer: Annotated[str, Field(min_length=1, max_length=320)]
    reason: Annotated[str, Field(max_length=500)] | None = Field(
        None, description="Why (a ticket number, 'GDPR art. 17 request'); kept in the erasure record.")


class StoredEvent(BaseModel):
    """What the API answers for a stored event; a replay gets the same body (and ``Idempotent-Replayed: true``)."""

    id: str
    table: str
    event: dict[str, Any]


class ApiError(BaseModel):
    """Error body: a sentence, and for validation errors the offending fields."""

    detail: str
    fields: list[str] = []
    errors: list[dict[str, Any]] = []

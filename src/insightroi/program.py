"""The program file (``insightroi.toml``): what the insight program claims and how it is measured.

It is the single source of truth for every stage: the value hypothesis, the taxonomy the models
classify into, the KPIs with their denominators and decision rules, the experiment design, the
value pools that turn KPI effects into money, the cost stack, and the retraining policy.
"""

from __future__ import annotations

import re

import tomllib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlglot
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from insightroi.errors import ProgramError

__all__ = [
    "Program",
    "ProgramMeta",
    "Topic",
    "Kpi",
    "ExperimentDesign",
    "Range",
    "Amount",
    "ValuePool",
    "Cost",
    "RetrainingPolicy",
    "MonitoringThresholds",
    "IngestSettings",
    "UserTable",
    "Measure",
    "Channel",
    "QuietHours",
    "USER_COLUMN_TYPES",
    "USER_RESERVED_COLUMNS",
    "MEASURES",
    "MEASURE_AGGREGATIONS",
    "EXPRESSION_FUNCTIONS",
    "parse_expression",
    "expression_columns",
    "CURRENCIES",
    "load_program",
    "parse_program",
    "starter_program_text",
]

# Base measures the metrics layer knows how to compute from the store. A KPI is a ratio of two
# measures (numerator / denominator x scale): these or the program's own ([[measures]], see
# Measure); "units" counts analysis units, for plain per-unit means.
MEASURES: dict[str, str] = {
    "orders": "orders: one row per order",
    "revenue": "orders.revenue (sum)",
    "margin": "orders.margin (sum)",
    "feedback": "feedback: one row per item, every source",
    "reviews": "feedback with source = review",
    "negative_reviews": "feedback with source = review and rating <= 2",
    "negative_feedback": "feedback classified negative by the insight model",
    "defect_mentions": "feedback whose insight topic is product_defect",
    "tickets": "tickets: one row per ticket opened",
    "handle_minutes": "tickets.handle_minutes (sum)",
    "deflected_tickets": "tickets with deflected = true",
    "refunds": "refunds: one row per refund or return",
    "refund_amount": "refunds.amount (sum)",
    "alerts": "chain_events with event_type = alert_delivered, praise alerts left out",
    "alerts_acknowledged": "chain_events with event_type = acknowledged, praise alerts left out",
    "alerts_acted": "chain_events with event_type = action_taken, praise alerts left out",
    "fixes_deployed": "chain_events with event_type = fix_deployed, praise alerts left out",
    "sessions": "traffic.sessions (sum)",
    "conversions": "traffic.conversions (sum)",
    "units": "number of analysis units (for per-unit means)",
}

#: ISO 4217 currency codes (the active list, funds and precious-metal codes included).
CURRENCIES: frozenset[str] = frozenset("""
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD
XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
""".split())

# Numbers must be written as numbers (``scale = "1000"`` is refused, not converted) and be finite.
Num = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]

Layer = Literal["model", "workflow", "business"]
Severity = Literal["low", "medium", "high", "critical"]
Unit = Literal["customer", "order", "sku", "sku_family", "region", "team", "time_block"]
Design = Literal["ab", "cluster", "switchback", "holdout", "did", "synthetic_control", "its"]


#: The owner praise spikes are routed to (the positive-theme stream), never a topic's owner.
PRAISE_OWNER = "positive-themes"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgramMeta(_Strict):
    """Who runs the program and what it claims."""

    name: str
    value_hypothesis: Annotated[str, Field(min_length=10)]
    currency: str = "USD"
    timezone: str | None = None
    horizon_months: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=120)] = 12

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, v: str) -> str:
        if v not in CURRENCIES:
            hint = f"; did you mean {v.upper()!r}?" if v.upper() in CURRENCIES else ""
            raise ValueError(f"{v!r} is not an ISO 4217 currency code (e.g. 'USD', 'EUR', 'GBP'){hint}")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'Europe/Berlin')")
        return v


class Topic(_Strict):
    """One theme of the taxonomy and the team that owns it."""

    topic: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    keywords: list[str] = []
    examples: list[str] = []
    owner: str
    severity: Severity = "medium"
    description: str = ""


class Kpi(_Strict):
    """A KPI as numerator / denominator x scale, measured per unit of analysis.

    ``numerator`` and ``denominator`` name a built-in measure (:data:`MEASURES`) or one of the
    program's ``[[measures]]``; the program checks them. A KPI over a ``mean`` measure ``m``
    divides by ``m_count`` (its rows with a value), written for it when the denominator is left
    out. A KPI over a ``quantile`` measure is the quantile of its rows in each arm and takes no
    denominator.
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    layer: Layer
    numerator: str
    denominator: str = "units"
    scale: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)] = 1.0
    unit: Unit = "sku_family"
    owner: str
    instrumentation: str = ""
    decision_rule: str = ""
    direction: Literal["increase", "decrease"] = "decrease"


class ExperimentDesign(_Strict):
    """How the program's effect is identified."""

    name: str = "insight-program"
    design: Design = "cluster"
    unit: Unit = "sku_family"
    salt: str = "insightroi"
    treatment_share: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.5
    strata: list[str] = []
    start: date
    end: date | None = None
    pre_period_days: Annotated[int, Field(strict=True, ge=0)] = 90
    # The window each unit's covariate (CUPED, regression adjustment) is measured in:
    # "pre_period" (the pre_period_days before start) or "same_period_last_year" (the experiment
    # window 52 weeks earlier: same season, same weekdays), for KPIs whose seasonality makes the
    # weeks just before the start a poor predictor. Randomized unit designs only.
    baseline: Literal["pre_period", "same_period_last_year"] = "pre_period"
    block_hours: Annotated[int, Field(strict=True, gt=0)] = 24
    burn_in_hours: Annotated[int, Field(strict=True, ge=0)] = 0
    alpha: Annotated[float, Field(strict=True, gt=0, lt=0.5)] = 0.05
    power: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.8
    mde_relative: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)] = 0.15
    primary_kpi: str
    exclude_windows: list[tuple[date, date]] = []
    # What an annotated event (promotion, outage, ...) inside the analysis or a claim's window does:
    # "warn" names it, "fail" fails the check (a claim it confounds is at most "weak"), "ignore".
    annotation_rule: Literal["warn", "fail", "ignore"] = "warn"
    # Always-valid inference (a confidence sequence): results may be read at any time, as often
    # as wanted, without inflating the error rate; intervals are wider than fixed-horizon ones.
    sequential: bool = False
    # N* of the confidence sequence (gbstats' sequential_tuning_parameter, default 5000): set it
    # near the units expected at the end; the interval is tightest there. Fixed before looking.
    sequential_tuning: Annotated[float, Field(strict=False, allow_inf_nan=False, gt=0)] = 5000.0
    # Bayesian figures beside each KPI's frequentist result (gbstats' gaussian effect model on the
    # relative effect): chance to win and the expected loss ("risk") of shipping either arm.
    # Decision rules stay on the Holm-adjusted p-values.
    bayesian: bool = False
    # Normal prior on the relative effect; no prior_sd: flat (improper) prior, as gbstats' default.
    prior_mean: Annotated[float, Field(strict=False, allow_inf_nan=False)] = 0.0
    prior_sd: Annotated[float, Field(strict=False, allow_inf_nan=False, gt=0)] | None = None
    # Variance reduction beyond CUPED's one pre-period value: measures whose pre-period per-unit
    # values join the KPI's own as regressors (multi-covariate regression adjustment).
    covariates: list[str] = []
    # CUPAC: the covariates and the KPI's own pre-period feed a model fitted on pre-period data
    # only, and its prediction is the control variate (never fed treatment-period outcomes).
    cupac: bool = False
    # Per-KPI candidate covariates (KPI name -> measures), replacing ``covariates`` for that KPI.
    covariates_by_kpi: dict[str, list[str]] = {}
    # Choose each KPI's set among CUPED, the KPI's own pre-period value plus each subset of its
    # covariates, and CUPAC (with cupac = true) by how well each predicted the pre-period from
    # the period before it (leave-one-out within arms, one-standard-error rule): never from the
    # experiment's outcome. The choice and its reason are in the KPI's covariate_adjustment check.
    select_covariates: bool = False
    # Synthetic control variant for design = "synthetic_control": "plain" (Abadie's weights on the
    # levels), "demeaned" (on pre-period-demeaned series, GeoLift's default model) or "augmented"
    # (ridge-augmented, Ben-Michael et al. 2021). Unset: the analysis picks by pre-period fit.
    synth_variant: Literal["plain", "demeaned", "augmented"] | None = None
    # Synthetic control's permutation inference: "random" placebo groups of as many units, or
    # "matched_fit": those whose pre-period fit is closest to the treated group's, for a treated
    # set chosen for its fit (insightroi geo-design writes it), to which random groups of noisier
    # units are not comparable (their larger gaps make the p-value conservative).
    placebo_groups: Literal["random", "matched_fit"] = "random"

    @model_validator(mode="after")
    def _ordered(self) -> "ExperimentDesign":
        if self.select_covariates and not (self.covariates or self.covariates_by_kpi or self.cupac):
            raise ValueError("select_covariates = true needs candidates to choose from: covariates = [...], "
                             "[experiment.covariates_by_kpi] or cupac = true")
        if self.synth_variant is not None and self.design != "synthetic_control":
            raise ValueError(f"synth_variant applies to design = \"synthetic_control\", not {self.design!r}")
        if self.placebo_groups != "random" and self.design != "synthetic_control":
            raise ValueError(f"placebo_groups applies to design = \"synthetic_control\", not {self.design!r}")
        if self.sequential and self.design not in ("ab", "cluster", "holdout"):
            raise ValueError(f"sequential = true applies to randomized unit designs (ab, cluster, holdout), "
                             f"not {self.design!r}")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self.baseline == "same_period_last_year":
            if self.design not in ("ab", "cluster", "holdout"):
                raise ValueError(f"baseline = \"same_period_last_year\" applies to randomized unit designs (ab, "
                                 f"cluster, holdout), not {self.design!r}: its pre-period is part of the design")
            if self.end is not None and (self.end - self.start).days >= 364:
                raise ValueError(f"baseline = \"same_period_last_year\" needs a window shorter than 52 weeks "
                                 f"(its covariate must end before the start); {self.start} to {self.end} is not")
        for lo, hi in self.exclude_windows:
            if hi < lo:
                raise ValueError(f"exclude window ends ({hi}) before it starts ({lo})")
        return self


class Range(_Strict):
    """A quantity known only within a range: low / most likely / high (a triangular prior)."""

    low: Num
    mode: Num
    high: Num

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not (self.low <= self.mode <= self.high):
            raise ValueError(f"need low <= mode <= high, got {self.low}, {self.mode}, {self.high}")
        return self


class Amount(Range):
    """A money amount known within a range: finite and >= 0 (a cost or a value is never negative)."""

    low: NonNeg
    mode: NonNeg
    high: NonNeg


class ValuePool(_Strict):
    """Maps one KPI's effect to money for one business function.

    Two formulas. ``per_event`` (the default): each avoided (or gained) numerator event of the
    KPI is worth ``unit_value`` -- a ticket's handling cost, a refund's loss. ``share_of_value_at_risk``
    (revenue recovered, churn saved): the KPI's relative change, against the control arm's
    level, recovers that share of ``value_at_risk``, the money per month exposed to it -- a 5%
    lower churn rate on USD 70,000 a month of churning revenue saves USD 3,500 a month.
    """

    name: str
    function: str
    kpi: str
    formula: Literal["per_event", "share_of_value_at_risk"] = "per_event"
    unit_value: Amount | None = None
    value_at_risk: Amount | None = None
    hard: bool = True
    description: str = ""

    @model_validator(mode="after")
    def _one_value(self) -> "ValuePool":
        need, other = ("unit_value", "value_at_risk") if self.formula == "per_event" else ("value_at_risk", "unit_value")
        if getattr(self, need) is None:
            raise ValueError(f"value pool {self.name!r}: formula {self.formula!r} needs {need} = {{ low, mode, high }}")
        if getattr(self, other) is not None:
            raise ValueError(f"value pool {self.name!r}: {other} does not apply to formula {self.formula!r} "
                             f"(it takes {need})")
        return self

    @property
    def value(self) -> Amount:
        """The pool's money range: ``unit_value`` (per event) or ``value_at_risk`` (per month)."""
        return self.unit_value if self.formula == "per_event" else self.value_at_risk


class Cost(_Strict):
    """One line of the cost stack."""

    name: str
    category: Literal["platform", "labor", "change_management"]
    kind: Literal["one_off", "recurring"] = "recurring"
    amount: Amount
    per: Literal["total", "month", "1000_feedback"] = "month"
    description: str = ""


class RetrainingPolicy(_Strict):
    """When a model is retrained or retired, in money rather than calendar terms."""

    retrain_cost: NonNeg = 5000.0
    horizon_days: Annotated[int, Field(strict=True, gt=0)] = 90
    retire_after_periods: Annotated[int, Field(strict=True, gt=0)] = 3
    period_days: Annotated[int, Field(strict=True, gt=0)] = 28


class MonitoringThresholds(_Strict):
    """Drift thresholds: a tested false-alarm rate for distribution drift, PSI levels as its size."""

    # Family-wise false-alarm rate of one monitoring run's distribution tests (KS for numbers,
    # chi-square for categories, Holm across the features and chunks tested): a feature alerts
    # when its adjusted p-value is below it. PSI is reported beside it as the size of the shift.
    drift_alpha: Annotated[float, Field(strict=True, gt=0, lt=0.5)] = 0.01
    psi_warn: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)] = 0.1
    psi_alert: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)] = 0.25
    ece_alert: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.05
    other_share_alert: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.15
    low_confidence: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.5
    reference_days: Annotated[int, Field(strict=True, gt=0)] = 28
    current_days: Annotated[int, Field(strict=True, gt=0)] = 7
    # Added for insightroi.monitor (text and taxonomy drift); see its docstrings.
    oov_alert: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.05
    js_alert: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.1
    low_confidence_share_alert: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.25

    @model_validator(mode="after")
    def _ordered(self) -> "MonitoringThresholds":
        # A warning level at or above its alert level would never warn before alerting.
        if self.psi_warn >= self.psi_alert:
            raise ValueError(f"need psi_warn < psi_alert, got psi_warn = {self.psi_warn}, psi_alert = {self.psi_alert}")
        return self


class IngestSettings(_Strict):
    """How files are read and which rows are accepted (``[ingest]``; every key optional).

    The CSV dialect (``delimiter``, ``quote``, ``escape``, ``header``) is used for every file and
    never guessed. Dates and timestamps outside ``earliest`` .. ``latest`` (inclusive) are
    quarantined. Two rows with the same key and different values are a conflict: ``on_conflict``
    keeps the first ("first-wins": a stored row, else the file's first) or the last
    ("last-wins"); the other row goes to the quarantine. Identical rows are duplicates.
    """

    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    quote: Annotated[str, Field(min_length=1, max_length=1)] = '"'
    escape: Annotated[str, Field(min_length=1, max_length=1)] = '"'
    header: Annotated[bool, Field(strict=True)] = True
    earliest: date = date(1990, 1, 1)
    latest: date = date(2100, 12, 31)
    on_conflict: Literal["first-wins", "last-wins"] = "first-wins"

    @model_validator(mode="after")
    def _ordered(self) -> "IngestSettings":
        if self.latest <= self.earliest:
            raise ValueError(f"need earliest < latest, got {self.earliest} and {self.latest}")
        if self.delimiter in (self.quote, self.escape) or self.delimiter in "\r\n":
            raise ValueError(f"delimiter {self.delimiter!r} cannot be a line break or the quote or escape character")
        return self


# Column types a user table may declare (Ibis type names, as the store's own tables use).
USER_COLUMN_TYPES = ("string", "int64", "float64", "boolean", "date", "timestamp")
# Columns ingestion adds to every table or uses while validating: a user table cannot declare them.
USER_RESERVED_COLUMNS = ("ingested_at", "batch_id", "_rn", "_err", "_pre_err", "rowid")


class UserTable(_Strict):
    """A table of the user's own (``[[tables]]``): surveys, CRM exports, anything a measure reads.

    Ingested with ``insightroi ingest --table NAME FILE`` through the same validation, quarantine
    and PII rules as the store's own tables; stored as ``user_<name>``.

    Attributes
    ----------
    name : str
        Lower-case identifier; the table is ``user_<name>`` in the store.
    columns : dict of str to str
        Column name -> type (one of ``USER_COLUMN_TYPES``).
    key : str
        The column that identifies a row (dedupe and conflicts, as for the store's tables).
    time_column : str or None
        The event time measures window on (a ``date`` or ``timestamp`` column).
    required : list of str
        Columns that must be present and non-null (the key always is).
    text_columns : list of str
        Free-text columns: redacted like ``feedback.text``.
    id_columns : list of str
        Columns holding a person's id (``customer_id`` ...): an e-mail or phone there is
        pseudonymised, and ``insightroi erase`` searches them.
    source : str, optional
        Read the table in place instead of ingesting it: a table the store's engine already holds
        (``catalog.schema.table`` or ``db.table`` on Spark / Databricks, a table name on DuckDB) or,
        on DuckDB, a Parquet or CSV path or glob. ``user_<name>`` is then a view over it with the
        declared columns cast to their types; nothing is copied, validated or redacted (the
        warehouse's own rules apply), and ``insightroi ingest --table`` refuses it.
    description : str
        What the table holds.
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
    columns: Annotated[dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")],
                            Literal["string", "int64", "float64", "boolean", "date", "timestamp"]],
                       Field(min_length=1)]
    key: str
    time_column: str | None = None
    required: list[str] = []
    text_columns: list[str] = []
    id_columns: list[str] = []
    source: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./*\-:`]+$", max_length=500)] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _known_columns(self) -> "UserTable":
        for field_name in ("key", "time_column"):
            col = getattr(self, field_name)
            if col is not None and col not in self.columns:
                raise ValueError(f"{field_name} {col!r} is not a column of table {self.name!r}; columns: {list(self.columns)}")
        for field_name in ("required", "text_columns", "id_columns"):
            unknown = [c for c in getattr(self, field_name) if c not in self.columns]
            if unknown:
                raise ValueError(f"{field_name} {unknown} are not columns of table {self.name!r}; columns: {list(self.columns)}")
        if self.time_column is not None and self.columns[self.time_column] not in ("date", "timestamp"):
            raise ValueError(f"time_column {self.time_column!r} must be a date or timestamp column, "
                             f"not {self.columns[self.time_column]}")
        for col in self.text_columns:
            if self.columns[col] != "string":
                raise ValueError(f"text column {col!r} must be a string column, not {self.columns[col]}")
        for col in self.id_columns:
            if self.columns[col] != "string":
                # An e-mail or phone there is replaced by a pseudonym, which is text.
                raise ValueError(f"id column {col!r} must be a string column, not {self.columns[col]}")
        reserved = [c for c in self.columns if c in USER_RESERVED_COLUMNS]
        if reserved:
            raise ValueError(f"table {self.name!r} declares {reserved}, which ingestion sets or uses itself "
                             f"({', '.join(USER_RESERVED_COLUMNS)}); rename them")
        return self


# ---- user-defined measures: a restricted expression grammar --------------------------------------
#: Aggregations a ``[[measures]]`` entry may use, per analysis unit and period.
MEASURE_AGGREGATIONS = ("count", "sum", "mean", "count_distinct")

#: Functions an expression may call: name -> (minimum, maximum number of arguments, meaning).
EXPRESSION_FUNCTIONS: dict[str, tuple[int, int | None, str]] = {
    "coalesce": (1, None, "the first argument that is not null"),
    "abs": (1, 1, "absolute value"),
    "least": (2, None, "smallest argument"),
    "greatest": (2, None, "largest argument"),
    "round": (1, 2, "round(x) or round(x, digits)"),
    "lower": (1, 1, "lower-case text"),
    "upper": (1, 1, "upper-case text"),
    "hours_between": (2, 2, "hours_between(start, end): (end - start) in hours, whole seconds"),
    "minutes_between": (2, 2, "minutes_between(start, end): (end - start) in minutes, whole seconds"),
    "days_between": (2, 2, "days_between(start, end): (end - start) in days, whole seconds"),
}

# sqlglot parses the standard functions into their own node classes, the helpers as Anonymous.
_FUNCTION_NODES: dict[type, str] = {
    exp.Coalesce: "coalesce", exp.Abs: "abs", exp.Least: "least", exp.Greatest: "greatest",
    exp.Round: "round", exp.Lower: "lower", exp.Upper: "upper",
}
# Nodes the grammar is made of; anything else (a subquery, a cast, a window, a star ...) is refused.
_GRAMMAR_NODES: tuple[type, ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Neg,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.And, exp.Or, exp.Not, exp.Case, exp.If, exp.In, exp.Between, exp.Is, exp.Like, exp.ILike,
)
_GRAMMAR_TEXT = ("columns, literals, + - * / %, comparisons, and / or / not, CASE, IN (list), BETWEEN, "
                 "IS [NOT] NULL, [I]LIKE and the functions " + ", ".join(EXPRESSION_FUNCTIONS))


def _sql(node: exp.Expression) -> str:
    # Functions as the user writes them (sqlglot upper-cases them by default).
    return node.sql(normalize_functions="lower")


def _refusal(node: exp.Expression) -> str | None:
    """Why ``node`` is outside the grammar (None when it is inside)."""
    if isinstance(node, (exp.Subquery, exp.Select, exp.Exists, exp.Query)) or (
            isinstance(node, exp.In) and node.args.get("query") is not None):
        return f"a subquery ({_sql(node)!r}) is not allowed"
    if isinstance(node, exp.Column) and (node.table or not isinstance(node.this, exp.Identifier)):
        return f"column {_sql(node)!r} is not allowed: name a column of the measure's table, unqualified"
    if isinstance(node, exp.Is) and not isinstance(node.expression, exp.Null):
        return f"{_sql(node)!r} is not allowed: IS takes NULL only (write 'x = true')"
    if isinstance(node, exp.Anonymous) or (isinstance(node, exp.Func) and type(node) in _FUNCTION_NODES):
        name = node.name.lower() if isinstance(node, exp.Anonymous) else _FUNCTION_NODES[type(node)]
        if name not in EXPRESSION_FUNCTIONS:
            return f"function {name!r} is not allowed; allowed functions: {', '.join(EXPRESSION_FUNCTIONS)}"
        lo, hi, _ = EXPRESSION_FUNCTIONS[name]
        n = len([a for a in node.iter_expressions()])
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else (f"{lo} or more" if hi is None else f"{lo} to {hi}")
            return f"function {name!r} takes {want} arguments, got {n}"
        return None
    if isinstance(node, exp.If) and not isinstance(node.parent, exp.Case):
        return "function 'if' is not allowed; write CASE WHEN ... THEN ... ELSE ... END"
    if isinstance(node, exp.Func) and not isinstance(node, _GRAMMAR_NODES):
        return f"function {node.sql_name().lower()!r} is not allowed; allowed functions: {', '.join(EXPRESSION_FUNCTIONS)}"
    if not isinstance(node, _GRAMMAR_NODES):
        return f"{_sql(node)!r} ({node.key}) is not allowed; an expression may use {_GRAMMAR_TEXT}"
    return None


def parse_expression(text: str, columns: Iterable[str] | None = None, table: str | None = None) -> exp.Expression:
    """Parse a measure's ``value`` or ``filter`` into the restricted expression grammar.

    The grammar is columns, literals, arithmetic, comparisons, ``and`` / ``or`` / ``not``,
    ``CASE``, ``IN`` (a list), ``BETWEEN``, ``IS [NOT] NULL``, ``LIKE`` / ``ILIKE`` and the
    functions of :data:`EXPRESSION_FUNCTIONS`. Nothing is executed as SQL: the metrics layer
    compiles the tree to Ibis, so the same measure runs on DuckDB and Spark.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"source = 'review' and rating <= 2"``.
    columns : iterable of str, optional
        The table's columns; when given, every column the expression names must be one of them
        (unquoted names match case-insensitively).
    table : str, optional
        The table's name, for the unknown-column message.

    Returns
    -------
    sqlglot.exp.Expression
        The parsed tree (column names normalised to the table's spelling).

    Raises
    ------
    ValueError
        Naming the offending part: a ``;``, a subquery, a function outside the whitelist, an
        unknown column, or text that is not an expression.
    """
    if not text.strip():
        raise ValueError("the expression is empty")
    try:
        tokens = sqlglot.tokenize(text, read="duckdb")
        if any(t.token_type == TokenType.SEMICOLON for t in tokens):
            raise ValueError("';' is not allowed: one expression, not statements")
        trees = sqlglot.parse(text, read="duckdb")
    except SqlglotError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not a valid expression ({first})") from None
    if len(trees) != 1 or trees[0] is None:
        raise ValueError("not a single expression")
    tree = trees[0]
    known = None if columns is None else {c.lower(): c for c in columns}
    for node in tree.walk():
        why = _refusal(node)
        if why is not None:
            raise ValueError(why)
        if isinstance(node, exp.Column) and known is not None:
            ident = node.this
            if ident.quoted:
                actual = ident.name if ident.name in known.values() else None
            else:
                actual = known.get(ident.name.lower())
            if actual is None:
                where = f" in table {table}" if table else ""
                raise ValueError(f"unknown column {ident.name!r}{where}; columns: {', '.join(known.values())}")
            ident.set("this", actual)
    return tree


def expression_columns(tree: exp.Expression) -> list[str]:
    """The columns a parsed expression reads, in order of first use."""
    return list(dict.fromkeys(c.name for c in tree.find_all(exp.Column)))


#: ``[[measures]]`` ``per_unit``: a comparison with a number, e.g. ``">= 2"``.
PER_UNIT_PATTERN = r"^\s*(>=|<=|==|!=|>|<|=)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$"


class Measure(_Strict):
    """A measure of the user's own (``[[measures]]``), usable as a KPI numerator or denominator.

    Per analysis unit and period the metrics layer aggregates the rows of ``table`` that pass
    ``filter``: ``count`` counts them, ``sum`` adds ``value``, ``count_distinct`` counts distinct
    values of ``value``, and ``mean`` adds ``value`` *and* defines ``<name>_count`` (the rows with
    a non-null value): a KPI over a mean measure is ``<name> / <name>_count``, a ratio analysed
    with the delta method, so a unit with no rows weighs nothing rather than counting as zero.
    ``quantile`` is not a per-unit total: a KPI over it is the ``quantile``-quantile of the rows'
    values pooled over each arm's units (median resolution hours), analysed with the clustered
    quantile delta method; it takes no denominator and cannot be one. ``time_to_first`` is a
    survival-style measure: per unit, the days from the period's start to its first row that
    passes ``filter``, censored at the period's end (a unit with none counts the whole period);
    over the denominator ``units`` its KPI is the restricted mean time to the event (RMST), e.g.
    days to a customer's first repeat order or first complaint.

    Attributes
    ----------
    name : str
        Lower-case identifier, distinct from the built-in measures (:data:`MEASURES`).
    table : str
        A store table (``feedback``, ``tickets`` ...) or a ``[[tables]]`` entry of the program.
    aggregation : {"count", "sum", "mean", "count_distinct", "quantile", "time_to_first"}
    quantile : float, optional
        The level of a ``quantile`` measure, ``0 < quantile < 1`` (0.5: the median); required
        for that aggregation and refused for the others.
    cap : float, optional
        For ``sum`` and ``mean``: cap each row's value at this percentile (``0 < cap < 1``, e.g.
        0.99) of the values in the analysis window pooled over both arms, computed once per
        analysis (winsorizing a heavy upper tail). A fixed cap is written in ``value``:
        ``least(value, 100)``.
    value : str, optional
        Expression over the table's columns (:func:`parse_expression`); required except for
        ``count``. Booleans count as 0/1; nulls add nothing (and are not counted by a mean).
    filter : str, optional
        Boolean expression; rows where it is false or null are left out.
    time : str, optional
        The event-time column the analysis windows apply to; default the table's.
    unit_column : str or dict, optional
        The column holding the analysis unit's id, or ``{unit: column}`` per unit; default the
        table's usual column (``customer_id`` for customers, ``sku_family`` ...).
    per_unit : str, optional
        For ``count``, ``sum`` and ``count_distinct``: a condition on each unit's total in the
        period, ``"<op> <number>"`` with op one of ``>=``, ``>``, ``<=``, ``<``, ``=``, ``!=``.
        The measure becomes 1 for a unit whose total meets it and 0 otherwise, every assigned unit
        included (one with no rows has total 0): over the denominator ``units`` its KPI is a share
        of units. From order histories: ``per_unit = ">= 2"`` on a count of orders is a repeat
        buyer, ``per_unit = "< 1"`` a customer with no order in the window (churn over a window
        as long as the churn definition). Not broken down by week or segment.
    description : str
        What it measures.
    unit : str
        The unit of ``value`` (``"hours"``, ``"points"``), for display.
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    table: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    aggregation: Literal["count", "sum", "mean", "count_distinct", "quantile", "time_to_first"]
    quantile: Annotated[float, Field(strict=True, gt=0, lt=1)] | None = None
    cap: Annotated[float, Field(strict=True, gt=0, lt=1)] | None = None
    value: str | None = None
    filter: str | None = None
    time: str | None = None
    unit_column: str | dict[Unit, str] | None = None
    per_unit: Annotated[str, Field(pattern=PER_UNIT_PATTERN)] | None = None
    description: str = ""
    unit: str = ""

    @property
    def per_unit_condition(self) -> tuple[str, float] | None:
        """``per_unit`` as ``(operator, threshold)``, or None."""
        if self.per_unit is None:
            return None
        m = re.fullmatch(PER_UNIT_PATTERN, self.per_unit)
        op = "=" if m.group(1) == "==" else m.group(1)
        return op, float(m.group(2))

    @field_validator("name")
    @classmethod
    def _free_name(cls, v: str) -> str:
        if v in MEASURES:
            raise ValueError(f"{v!r} is a built-in measure; give the measure another name")
        if v.endswith(("_pre", "_burn")):
            raise ValueError(f"{v!r}: a measure name cannot end in '_pre' or '_burn' (the analysis uses those "
                             "suffixes for a measure's pre-period and burn-in totals)")
        return v

    @model_validator(mode="after")
    def _grammar(self) -> "Measure":
        if self.aggregation in ("count", "time_to_first") and self.value is not None:
            what = ("counts the rows that pass its filter" if self.aggregation == "count"
                    else "times each unit's first row that passes its filter")
            raise ValueError(f"measure {self.name!r}: a {self.aggregation} measure takes no value (it {what}); "
                             "use aggregation 'sum' or 'count_distinct' with a value")
        if self.aggregation not in ("count", "time_to_first") and self.value is None:
            raise ValueError(f"measure {self.name!r}: aggregation {self.aggregation!r} needs a value")
        if self.aggregation == "quantile" and self.quantile is None:
            raise ValueError(f"measure {self.name!r}: aggregation 'quantile' needs quantile (0 < quantile < 1; "
                             "0.5 for the median)")
        if self.aggregation != "quantile" and self.quantile is not None:
            raise ValueError(f"measure {self.name!r}: quantile applies only to aggregation 'quantile', not "
                             f"{self.aggregation!r}")
        if self.per_unit is not None and self.aggregation not in ("count", "sum", "count_distinct"):
            raise ValueError(f"measure {self.name!r}: per_unit applies to aggregation 'count', 'sum' or "
                             f"'count_distinct' (a condition on each unit's total), not {self.aggregation!r}")
        if self.cap is not None and self.aggregation not in ("sum", "mean"):
            raise ValueError(f"measure {self.name!r}: cap applies to aggregation 'sum' or 'mean' (it caps each "
                             f"row's value), not {self.aggregation!r}")
        for field_name in ("value", "filter"):
            text = getattr(self, field_name)
            if text is not None:
                try:
                    parse_expression(text)
                except ValueError as exc:
                    raise ValueError(f"measure {self.name!r}: {field_name} {text!r}: {exc}") from None
        return self

    @property
    def count_measure(self) -> str | None:
        """``<name>_count`` for a mean measure (its denominator), else None."""
        return f"{self.name}_count" if self.aggregation == "mean" else None

    def check_columns(self, columns: Iterable[str], time_column: str | None, table: str) -> None:
        """Raise ValueError naming this measure when an expression, ``time`` or ``unit_column``
        names a column ``table`` does not have, or no time column is known."""
        columns = list(columns)
        for field_name in ("value", "filter"):
            text = getattr(self, field_name)
            if text is not None:
                try:
                    parse_expression(text, columns, table)
                except ValueError as exc:
                    raise ValueError(f"measure {self.name!r}: {field_name} {text!r}: {exc}") from None
        time = self.time or time_column
        if time is None:
            raise ValueError(f"measure {self.name!r}: table {table} has no time column; set the measure's time")
        if time not in columns:
            raise ValueError(f"measure {self.name!r}: time column {time!r} is not a column of table {table}; "
                             f"columns: {', '.join(columns)}")
        ucols = self.unit_column.values() if isinstance(self.unit_column, dict) else [self.unit_column]
        for c in ucols:
            if c is not None and c not in columns:
                raise ValueError(f"measure {self.name!r}: unit_column {c!r} is not a column of table {table}; "
                                 f"columns: {', '.join(columns)}")


_ENV_REF = r"^env:[A-Za-z_][A-Za-z0-9_]*$"
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHours(_Strict):
    """Hours a channel receives nothing but critical alerts; held messages go out when they end.

    ``start`` and ``end`` are ``HH:MM`` wall-clock times in ``timezone`` (default: the program's
    timezone, else UTC); ``start`` after ``end`` spans midnight (22:00 to 07:00).
    """

    start: Annotated[str, Field(pattern=_HHMM)]
    end: Annotated[str, Field(pattern=_HHMM)]
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        return ProgramMeta._known_zone(v)

    @model_validator(mode="after")
    def _not_empty(self) -> "QuietHours":
        if self.start == self.end:
            raise ValueError(f"quiet_hours: start and end are both {self.start}; leave quiet_hours out for none")
        return self


class Channel(_Strict):
    """Where one owner's alerts are delivered (``[[channels]]``): a chat webhook, e-mail or a signed webhook.

    Secrets never appear in the file: ``secret``, ``smtp_password`` and (for Slack and Teams,
    whose webhook URL is itself the credential) ``url`` may be ``"env:NAME"``, read from the
    environment when the deliverer runs. A generic ``webhook`` is signed with HMAC-SHA256 over
    the timestamp and the body, so it needs ``secret``.
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
    kind: Literal["slack", "teams", "email", "webhook"]
    owners: Annotated[list[str], Field(min_length=1)]
    url: str | None = None
    secret: Annotated[str, Field(pattern=_ENV_REF)] | None = None
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 25
    smtp_user: str | None = None
    smtp_password: Annotated[str, Field(pattern=_ENV_REF)] | None = None
    smtp_starttls: bool = False
    from_address: str | None = Field(None, alias="from")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = []
    # immediate: each alert as it comes; daily / weekly: held to the next 00:00 UTC (Monday for
    # weekly). High and critical alerts always go at once.
    digest: Literal["immediate", "daily", "weekly"] = "immediate"
    quiet_hours: QuietHours | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("secret", "smtp_password", mode="before")
    @classmethod
    def _reference_only(cls, v, info):
        if isinstance(v, str) and not v.startswith("env:"):
            raise ValueError(f"{info.field_name} must name an environment variable (\"env:NAME\"), not hold the "
                             "secret itself: the program file is shared and versioned")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> "Channel":
        where = f"channel {self.name!r} ({self.kind})"
        if self.kind == "email":
            missing = [f for f, v in (("smtp_host", self.smtp_host), ("from", self.from_address), ("to", self.to))
                       if not v]
            if missing:
                raise ValueError(f"{where} needs {', '.join(missing)}")
            if not re.match(r"^[^@\s]+@[^@\s]+$", self.from_address):
                raise ValueError(f"{where}: from must be an e-mail address, not {self.from_address!r}")
            if self.url is not None:
                raise ValueError(f"{where} takes smtp_host, not url")
        else:
            if not self.url:
                raise ValueError(f"{where} needs url (the incoming-webhook address, or \"env:NAME\")")
            if not (re.match(_ENV_REF, self.url) or re.match(r"^https?://[^\s/]+", self.url)):
                raise ValueError(f"{where}: url must be an http(s) address or \"env:NAME\", not {self.url!r}")
            if self.smtp_host or self.to or self.from_address:
                raise ValueError(f"{where} takes url, not smtp_host / from / to")
        if self.kind == "webhook" and self.secret is None:
            raise ValueError(f"{where} needs secret (\"env:NAME\"): its requests are signed with HMAC-SHA256")
        return self


class Program(_Strict):
    """The whole program file. Build it with :func:`load_program` or :func:`parse_program`."""

    program: ProgramMeta
    taxonomy: Annotated[list[Topic], Field(min_length=1)]
    kpis: Annotated[list[Kpi], Field(min_length=1)]
    experiment: ExperimentDesign
    value_pools: list[ValuePool] = []
    costs: list[Cost] = []
    retraining: RetrainingPolicy = RetrainingPolicy()
    monitoring: MonitoringThresholds = MonitoringThresholds()
    ingest: IngestSettings = IngestSettings()
    # Report audience -> the owners (teams) whose KPIs, alerts and workflow figures its view shows,
    # e.g. support = ["support", "customer_service"]. Empty: the report's defaults.
    audiences: dict[Literal["support", "product", "finance", "executive"], list[str]] = {}
    # The user's own tables (surveys, CRM exports) that measures can read.
    tables: list[UserTable] = []
    # Table name -> days rows are kept (by the table's time column); ``insightroi retention``
    # deletes older rows. A table not named here is kept indefinitely.
    retention: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")],
                    Annotated[int, Field(strict=True, ge=1, le=36_500)]] = {}
    # Measures over the store's tables or the user's ([[measures]]); KPIs name them like built-ins.
    measures: list[Measure] = []
    # Where alerts are delivered ([[channels]]), per owner; insightroi.delivery reads them.
    channels: list[Channel] = []

    @model_validator(mode="before")
    @classmethod
    def _mean_denominators(cls, data):
        # A KPI over a mean measure m divides by m_count; written here when the KPI leaves its
        # denominator out, so every stage reads an ordinary numerator / denominator pair.
        if not isinstance(data, dict) or not isinstance(data.get("kpis"), list):
            return data
        means = set()
        for m in data.get("measures") or []:
            agg, name = (m.get("aggregation"), m.get("name")) if isinstance(m, dict) else (
                getattr(m, "aggregation", None), getattr(m, "name", None))
            if agg == "mean" and isinstance(name, str):
                means.add(name)
        if not means:
            return data
        kpis = []
        for k in data["kpis"]:
            if isinstance(k, dict) and k.get("numerator") in means and "denominator" not in k:
                k = {**k, "denominator": f"{k['numerator']}_count"}
            elif isinstance(k, Kpi) and k.numerator in means and "denominator" not in k.model_fields_set:
                k = k.model_copy(update={"denominator": f"{k.numerator}_count"})
            kpis.append(k)
        return {**data, "kpis": kpis}

    @model_validator(mode="after")
    def _cross_references(self) -> "Program":
        kpi_names = [k.name for k in self.kpis]
        dupes = {n for n in kpi_names if kpi_names.count(n) > 1}
        if dupes:
            raise ValueError(f"KPI names must be unique; repeated: {sorted(dupes)}")
        self._check_measures()
        known = self.measure_names()
        for i, k in enumerate(self.kpis):
            for field_name in ("numerator", "denominator"):
                v = getattr(k, field_name)
                if v not in known:
                    raise ValueError(f"kpis[{i}].{field_name}: unknown measure {v!r}; known measures: {', '.join(known)}")
            num = self.measure(k.numerator)
            den = self.measure(k.denominator)
            if isinstance(den, Measure) and den.aggregation == "mean":
                raise ValueError(f"kpis[{i}].denominator: {den.name!r} is a mean measure; a mean is a ratio "
                                 f"({den.name} / {den.count_measure}) and can only be a numerator")
            if isinstance(den, Measure) and den.aggregation == "quantile":
                raise ValueError(f"kpis[{i}].denominator: {den.name!r} is a quantile measure; a quantile of rows "
                                 "is a KPI of its own and can only be a numerator")
            if isinstance(num, Measure) and num.aggregation == "quantile" and "denominator" in k.model_fields_set:
                raise ValueError(f"kpis[{i}].denominator: a KPI over the quantile measure {num.name!r} is the "
                                 "quantile of its rows in each arm and takes no denominator; leave it out")
            if isinstance(num, Measure) and num.aggregation == "time_to_first" and k.denominator != "units":
                raise ValueError(f"kpis[{i}].denominator: a KPI over the time-to-event measure {num.name!r} is its "
                                 f"mean per unit: write denominator = \"units\", not {k.denominator!r}")
            if isinstance(den, Measure) and den.aggregation == "time_to_first":
                raise ValueError(f"kpis[{i}].denominator: {den.name!r} is a time-to-event measure; it can only be "
                                 "a numerator (over units)")
            if isinstance(num, Measure) and num.aggregation == "mean" and k.denominator != num.count_measure:
                raise ValueError(f"kpis[{i}].denominator: a KPI over the mean measure {num.name!r} divides by "
                                 f"{num.count_measure!r} (its rows with a value); leave the denominator out or "
                                 f"write {num.count_measure!r}, not {k.denominator!r}")
        topics = [t.topic for t in self.taxonomy]
        if len(set(topics)) != len(topics):
            raise ValueError("taxonomy topics must be unique")
        for i, name in enumerate(self.experiment.covariates):
            if name not in self.measure_names():
                raise ValueError(f"experiment.covariates[{i}]: unknown measure {name!r}; known measures: "
                                 f"{', '.join(self.measure_names())}")
        for kname, names in self.experiment.covariates_by_kpi.items():
            if kname not in kpi_names:
                raise ValueError(f"experiment.covariates_by_kpi.{kname}: {kname!r} is not a KPI; KPIs: {kpi_names}")
            for i, name in enumerate(names):
                if name not in self.measure_names():
                    raise ValueError(f"experiment.covariates_by_kpi.{kname}[{i}]: unknown measure {name!r}; known "
                                     f"measures: {', '.join(self.measure_names())}")
        if self.experiment.primary_kpi not in kpi_names:
            raise ValueError(
                f"experiment.primary_kpi {self.experiment.primary_kpi!r} is not a KPI; KPIs: {kpi_names}"
            )
        for i, pool in enumerate(self.value_pools):
            if pool.kpi not in kpi_names:
                raise ValueError(f"value_pools[{i}].kpi {pool.kpi!r} is not a KPI; KPIs: {kpi_names}")
            num = self.measure(self.kpi(pool.kpi).numerator)
            if isinstance(num, Measure) and num.aggregation == "quantile":
                # The ROI turns an effect into volumes (effect x denominator); a difference of
                # quantiles has no volume to multiply.
                raise ValueError(f"value_pools[{i}].kpi {pool.kpi!r} is a quantile KPI; a shift in a quantile is "
                                 "not a volume the ROI can value: value a sum or mean KPI of the same measure")
        table_names = [t.name for t in self.tables]
        dupes = {n for n in table_names if table_names.count(n) > 1}
        if dupes:
            raise ValueError(f"table names must be unique; repeated: {sorted(dupes)}")
        self._check_channels()
        return self

    def _check_channels(self) -> None:
        names = [c.name for c in self.channels]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"channel names must be unique; repeated: {sorted(dupes)}")
        # The positive-theme stream is an owner every program has: praise spikes go there.
        known = [*self.owners(), PRAISE_OWNER]
        for i, c in enumerate(self.channels):
            for owner in c.owners:
                if owner not in known:
                    raise ValueError(f"channels[{i}].owners: {owner!r} owns no topic or KPI; owners: {', '.join(known)}")

    def owners(self) -> list[str]:
        """Every owner the program names: the taxonomy's topic owners, then the KPIs' (sorted, unique)."""
        return sorted({t.owner for t in self.taxonomy} | {k.owner for k in self.kpis})

    def channels_for(self, owner: str) -> list[Channel]:
        """The ``[[channels]]`` that deliver ``owner``'s alerts (empty when none names it)."""
        return [c for c in self.channels if owner in c.owners]

    def _check_measures(self) -> None:
        names = [m.name for m in self.measures]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"measure names must be unique; repeated: {sorted(dupes)}")
        for m in self.measures:
            if m.count_measure is not None and (m.count_measure in names or m.count_measure in MEASURES):
                raise ValueError(f"measure {m.name!r} is a mean, which defines {m.count_measure!r}; another measure "
                                 "has that name")
            user = next((t for t in self.tables if t.name == m.table), None)
            # Columns of the store's own tables are known to the metrics layer, which checks them
            # at plan time (this module reads nothing of the store).
            if user is not None:
                m.check_columns(user.columns, user.time_column, user.name)

    def measure_names(self) -> list[str]:
        """Every measure a KPI may name: the built-ins, the program's measures and their ``_count``."""
        out = list(MEASURES)
        for m in self.measures:
            out += [m.name] + ([m.count_measure] if m.count_measure else [])
        return out

    def measure(self, name: str) -> Measure | str:
        """The ``[[measures]]`` entry called ``name``, or ``name`` itself for a built-in measure
        or a mean measure's ``_count`` (KeyError naming the known measures otherwise)."""
        for m in self.measures:
            if m.name == name:
                return m
        if name in self.measure_names():
            return name
        raise KeyError(f"no measure {name!r}; measures: {self.measure_names()}")

    def user_table(self, name: str) -> UserTable:
        """The ``[[tables]]`` entry called ``name`` (KeyError naming the declared ones otherwise)."""
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} in the program; declared: {[t.name for t in self.tables]}")

    def kpi(self, name: str) -> Kpi:
        """The KPI called ``name`` (KeyError naming the known ones otherwise)."""
        for k in self.kpis:
            if k.name == name:
                return k
        raise KeyError(f"no KPI {name!r}; KPIs: {[k.name for k in self.kpis]}")

    def topic(self, name: str) -> Topic:
        """The taxonomy topic called ``name``."""
        for t in self.taxonomy:
            if t.topic == name:
                return t
        raise KeyError(f"no topic {name!r}; topics: {[t.topic for t in self.taxonomy]}")


def _format_location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_program(text: str, source: str = "<string>") -> Program:
    """Parse and validate program-file TOML text.

    Parameters
    ----------
    text : str
        The TOML document.
    source : str
        Where it came from, used in error messages.

    Raises
    ------
    ProgramError
        Naming the file, the key (e.g. ``kpis[2].denominator``) and what is wrong.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Program.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"  {_format_location(err['loc'])}: {msg}")
        raise ProgramError(f"{source}: invalid program file:\n" + "\n".join(problems)) from None


def load_program(path: str | Path) -> Program:
    """Read and validate the program file at ``path`` (see :func:`parse_program`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "insightroi.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProgramError(f"{path}: no program file here (create one with 'insightroi init')") from None
    except UnicodeDecodeError as exc:
        raise ProgramError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_program(text, source=str(path))


def starter_program_text() -> str:
    """The commented starter program file that ``insightroi init`` writes (and the demo uses)."""
    return (Path(__file__).parent / "_starter.toml").read_text(encoding="utf-8")

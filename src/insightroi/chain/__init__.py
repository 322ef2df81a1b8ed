"""The decision chain: insight -> alert -> acknowledged -> action -> fix -> outcome.

Joins chain events by ids (and, where ids are missing, by SKU / SKU family + topic + time,
reported as inferred links), computes workflow KPIs per team and topic, and traces the chain of
custody of one insight, alert or feedback item. Reads the store only (Ibis expressions, so the
same code runs on DuckDB, Spark and Databricks).
"""

from insightroi.chain._kpis import alert_table, chain_summary, reviewer_disagreement, workflow_kpis
from insightroi.chain._links import FOLLOW_UP_TYPES, alert_chains, linked_events
from insightroi.chain._trace import Trace, trace
from insightroi.chain._validate import STAGE_ORDER, ChainEventError, check_chain_event

__all__ = [
    "STAGE_ORDER",
    "ChainEventError",
    "check_chain_event",
    "FOLLOW_UP_TYPES",
    "Trace",
    "alert_chains",
    "alert_table",
    "chain_summary",
    "linked_events",
    "reviewer_disagreement",
    "trace",
    "workflow_kpis",
]

"""The decision chain: insight -> alert -> acknowledged -> action -> fix -> outcome.

Joins chain events by ids (and, where ids are missing, by SKU / SKU family + topic + time,
reported as inferred links), computes workflow KPIs per team and topic, and traces the chain of
custody of one insight, alert or feedback item. Reads the store only (Ibis expressions, so the
same code runs on DuckDB, Spark and Databricks).
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.chain._kpis": ("alert_table", "chain_summary", "reviewer_disagreement", "workflow_kpis"),
    "insightroi.chain._links": ("FOLLOW_UP_TYPES", "alert_chains", "linked_events"),
    "insightroi.chain._trace": ("Trace", "trace"),
    "insightroi.chain._validate": ("STAGE_ORDER", "ChainEventError", "check_chain_event"),
})

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

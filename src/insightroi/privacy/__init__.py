"""Retention and erasure across every stage's tables.

Privacy is not a stage of the flow: a retention rule or an erasure request reaches the raw
tables ingestion wrote, the quarantine, the insights and review labels derived from feedback,
the decision chain, the user's own tables and the saved results of every later stage. So it is
its own package, which reads the program (``[retention]``, ``[[tables]]``) and deletes or rewrites
rows of any table, in one transaction, on the embedded DuckDB store.

Typical use::

    from insightroi.privacy import apply_retention, erase_customer

    report = apply_retention(store, program, dry_run=True)   # what would go
    erased = erase_customer(store, program, "jane.doe@example.com", reason="GDPR art. 17")
    print(erased.deleted, erased.predating)
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.privacy._erase": (
        "ERASED", "MIN_ID_CHARS", "MIN_TEXT_CHARS", "ErasureReport", "erase_customer", "results_before_erasure",
        "subject_hash",
    ),
    "insightroi.privacy._retention": (
        "KEPT_KINDS", "RetentionReport", "RetentionRule", "apply_retention", "resolve_retention",
    ),
})

__all__ = [
    "ERASED",
    "KEPT_KINDS",
    "MIN_ID_CHARS",
    "MIN_TEXT_CHARS",
    "ErasureReport",
    "RetentionReport",
    "RetentionRule",
    "apply_retention",
    "erase_customer",
    "resolve_retention",
    "results_before_erasure",
    "subject_hash",
]

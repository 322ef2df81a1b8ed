"""Delivering alerts to their owners: chat webhooks, e-mail and signed webhooks, from an outbox.

The detector's alerts are written once to ``alert_outbox`` with one ``deliveries`` row per
channel that names their owner (``[[channels]]`` in the program file). :func:`deliver` sends
what is due, retries transient failures with exponential backoff, moves permanent failures to
``dead_letters``, and records ``delivery_sent`` / ``delivery_failed`` chain events with the
time they happened. Every message carries signed links (acknowledge, taking action, not
useful) that the server's ``/l/{token}`` route turns into chain events.
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.delivery._deliver": ("DeliveryPolicy", "DeliveryRun", "deliver", "deliver_due"),
    "insightroi.delivery._message": ("LinkSigner", "Message", "build_message"),
    "insightroi.delivery._outbox": (
        "EnqueueResult", "delivery_id", "enqueue_alerts", "first_due", "outbox_counts", "requeue_dead",
    ),
    "insightroi.delivery._send": ("DELIVERY_HEADER", "IDEMPOTENCY_HEADER", "SendOutcome", "send"),
    "insightroi.delivery._signing": (
        "LINK_ACTIONS", "NOT_USEFUL_REASONS", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "LinkClaim", "LinkTokenError",
        "link_key", "make_link_token", "read_link_token", "sign_webhook", "verify_webhook",
    ),
})

__all__ = [
    "DELIVERY_HEADER",
    "IDEMPOTENCY_HEADER",
    "LINK_ACTIONS",
    "NOT_USEFUL_REASONS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryPolicy",
    "DeliveryRun",
    "EnqueueResult",
    "LinkClaim",
    "LinkSigner",
    "LinkTokenError",
    "Message",
    "SendOutcome",
    "build_message",
    "deliver",
    "deliver_due",
    "delivery_id",
    "enqueue_alerts",
    "first_due",
    "link_key",
    "make_link_token",
    "outbox_counts",
    "read_link_token",
    "requeue_dead",
    "send",
    "sign_webhook",
    "verify_webhook",
]

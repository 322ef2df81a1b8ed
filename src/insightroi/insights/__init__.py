"""The insight model layer: sentiment, topics, severity, spikes, routing, review, validation.

Every classifier follows scikit-learn's contract and has ``classify(texts)`` returning one row per
text with ``label, score, confidence, evidence (JSON), method, model_version``.
"""

from insightroi._lazy import lazy_exports

# Loaded on first use: the CLI imports this package for its commands (insightroi._lazy says why).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.insights._base": ("UNCLASSIFIABLE", "model_version", "prepare_texts"),
    "insightroi.insights._classify": ("ClassifyReport", "InsightModels", "build_models", "classify_store"),
    "insightroi.insights._domain_sentiment": ("DomainSentiment", "load_sentiment_domains"),
    "insightroi.insights._embed": ("embeddings_available",),
    "insightroi.insights._llm": ("ClusterSummary", "LlmError", "LlmSummarizer"),
    "insightroi.insights._review": (
        "ReviewLabelsError", "check_review_labels", "record_review_labels", "review_queue", "validate_from_reviews",
    ),
    "insightroi.insights._sentiment": (
        "SENTIMENT_CLASSES", "EmbeddingSentiment", "LexiconSentiment", "load_reference_sentiment", "sentiment_class",
    ),
    "insightroi.insights._seeded": ("SeededTopics",),
    "insightroi.insights._severity": ("SEVERITY_LEVELS", "SeverityRules"),
    "insightroi.insights._spark": ("classify_spark",),
    "insightroi.insights._spikes": ("Alert", "current_topic_version", "detect_spikes", "write_alerts"),
    "insightroi.insights._summary": ("insights_summary",),
    "insightroi.insights._themes": ("Theme", "cluster_texts", "discover_themes"),
    "insightroi.insights._topic": ("OTHER", "TopicClassifier"),
    "insightroi.insights._validate": ("ValidationReport", "reliability_table", "validate_model"),
    "insightroi.insights._validate_csv": ("validate_csv",),
})

__all__ = [
    "Alert",
    "ClassifyReport",
    "ClusterSummary",
    "DomainSentiment",
    "EmbeddingSentiment",
    "InsightModels",
    "LexiconSentiment",
    "LlmError",
    "LlmSummarizer",
    "OTHER",
    "SENTIMENT_CLASSES",
    "SEVERITY_LEVELS",
    "SeededTopics",
    "SeverityRules",
    "Theme",
    "TopicClassifier",
    "UNCLASSIFIABLE",
    "ValidationReport",
    "build_models",
    "classify_spark",
    "classify_store",
    "cluster_texts",
    "current_topic_version",
    "detect_spikes",
    "discover_themes",
    "embeddings_available",
    "insights_summary",
    "load_reference_sentiment",
    "load_sentiment_domains",
    "model_version",
    "prepare_texts",
    "record_review_labels",
    "reliability_table",
    "review_queue",
    "check_review_labels",
    "ReviewLabelsError",
    "sentiment_class",
    "validate_csv",
    "validate_from_reviews",
    "validate_model",
    "write_alerts",
]

"""The insight model layer: sentiment, topics, severity, spikes, routing, review, validation.

Every classifier follows scikit-learn's contract and has ``classify(texts)`` returning one row per
text with ``label, score, confidence, evidence (JSON), method, model_version``.
"""

from insightroi.insights._base import UNCLASSIFIABLE, model_version, prepare_texts
from insightroi.insights._classify import ClassifyReport, InsightModels, build_models, classify_store
from insightroi.insights._domain_sentiment import DomainSentiment, load_sentiment_domains
from insightroi.insights._embed import embeddings_available
from insightroi.insights._llm import ClusterSummary, LlmError, LlmSummarizer
from insightroi.insights._review import (
    ReviewLabelsError,
    check_review_labels,
    record_review_labels,
    review_queue,
    validate_from_reviews,
)
from insightroi.insights._sentiment import (
    SENTIMENT_CLASSES,
    EmbeddingSentiment,
    LexiconSentiment,
    load_reference_sentiment,
    sentiment_class,
)
from insightroi.insights._seeded import SeededTopics
from insightroi.insights._severity import SEVERITY_LEVELS, SeverityRules
from insightroi.insights._spark import classify_spark
from insightroi.insights._spikes import Alert, current_topic_version, detect_spikes, write_alerts
from insightroi.insights._summary import insights_summary
from insightroi.insights._themes import Theme, cluster_texts, discover_themes
from insightroi.insights._topic import OTHER, TopicClassifier
from insightroi.insights._validate import ValidationReport, reliability_table, validate_model
from insightroi.insights._validate_csv import validate_csv

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

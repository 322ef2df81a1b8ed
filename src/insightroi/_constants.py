"""Names that command-line options show in their help or take as defaults.

Typer reads them when ``insightroi`` starts, for every command (``--help`` too), so they live
here, free of heavy imports, rather than in the modules that use them (numpy, scipy, pydantic,
Ibis); those modules import them from here, so each is defined once.
"""

from __future__ import annotations

__all__ = ["ANALYZE_GATES", "MONITOR_GATES", "ROI_DRAWS", "ROI_SEED", "STAGES"]

#: What ``insightroi analyze --fail-on`` can stop a pipeline on.
ANALYZE_GATES = ("srm", "check", "rule")

#: What ``insightroi monitor --fail-on`` can stop a pipeline on, mildest first.
MONITOR_GATES = ("warn", "alert", "retrain", "retire")

# One seed and one draw count for every door to the ROI: the CLI, the pipeline and the report must
# print the same headline for the same store.
ROI_SEED = 20251
ROI_DRAWS = 100_000

# The stages in flow order; `insightroi run --from/--only` takes these names.
STAGES: tuple[str, ...] = ("classify", "detect", "insights", "chain", "analyze", "roi", "quasi", "monitor", "report")

"""The simulated company with ground truth (potential outcomes) that demonstrates and tests insightroi.

``generate_world`` writes one Parquet file (or folder of parts) per store table, the hidden feedback
labels, the program file and ``truth.json``; ``world_cells`` gives the same world as in-memory
per-cell arrays under both policies, for fast simulation studies. ``synthetic_feedback`` is a
small feedback stream with known topics and injected spikes, for detector checks and benchmarks.
"""

from insightroi.demo._generate import TABLE_KINDS, WorldInfo, generate_world, kpi_truth, resolve_scale, world_cells
from insightroi.demo._synthetic import SYNTHETIC_PHRASES, synthetic_feedback
from insightroi.demo._world import SCALES, family_sums

__all__ = ["SCALES", "SYNTHETIC_PHRASES", "TABLE_KINDS", "WorldInfo", "family_sums", "generate_world", "kpi_truth",
           "resolve_scale", "synthetic_feedback", "world_cells"]

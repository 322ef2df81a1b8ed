"""insightroi: prove (or disprove) the return on an AI customer-insight program.

The public surface is small on purpose; each stage's own package (``insightroi.stats``,
``insightroi.experiments``, ``insightroi.roi``, ...) exports its functions.
"""

from insightroi._lazy import lazy_exports
from insightroi.errors import (
    DataError,
    EstimationError,
    IngestError,
    InsightRoiError,
    ProgramError,
    StoreError,
)

__version__ = "0.1.0"

# Loaded on first use: `import insightroi` runs before every command (`insightroi --help` too), and
# these pull in pydantic, scipy and Ibis. Any submodule is an attribute too (``insightroi.stats``).
__getattr__, __dir__ = lazy_exports(__name__, {
    "insightroi.program": ("Program", "load_program", "parse_program"),
    "insightroi.stats": ("Check", "Result"),
    "insightroi.store": ("Store", "open_store"),
}, submodules=True)

__all__ = [
    "Check",
    "DataError",
    "EstimationError",
    "IngestError",
    "InsightRoiError",
    "Program",
    "ProgramError",
    "Result",
    "Store",
    "StoreError",
    "__version__",
    "load_program",
    "open_store",
    "parse_program",
]


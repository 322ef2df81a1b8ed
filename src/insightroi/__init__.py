"""insightroi: prove (or disprove) the return on an AI customer-insight program.

The public surface is small on purpose; each stage's own package (``insightroi.stats``,
``insightroi.experiments``, ``insightroi.roi``, ...) exports its functions.
"""

from insightroi.errors import (
    DataError,
    EstimationError,
    IngestError,
    InsightRoiError,
    ProgramError,
    StoreError,
)
from insightroi.program import Program, load_program, parse_program
from insightroi.stats import Check, Result
from insightroi.store import Store, open_store

__version__ = "0.1.0"

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

"""insightroi: prove (or disprove) the return on an AI customer-insight program.

The public surface is small on purpose; each stage's own package (``insightroi.stats``,
``insightroi.experiments``, ``insightroi.roi``, ...) exports its functions.
"""

import importlib
from typing import Any

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
_LAZY = {
    "Program": "insightroi.program",
    "load_program": "insightroi.program",
    "parse_program": "insightroi.program",
    "Check": "insightroi.stats",
    "Result": "insightroi.stats",
    "Store": "insightroi.store",
    "open_store": "insightroi.store",
}

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("__"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists and an import inside it failed
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

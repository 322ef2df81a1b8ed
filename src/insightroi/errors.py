"""Named exceptions and the option check shared by every stage.

The library raises these; batch runs (CLI, server, reports) catch them and turn them into a
recorded, explained failure (DESIGN.md, convention 6).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "InsightRoiError",
    "ProgramError",
    "StoreError",
    "StoreBusyError",
    "IngestError",
    "OptionError",
    "DataError",
    "EstimationError",
    "check_option",
]


class InsightRoiError(Exception):
    """Base class of every error insightroi raises on purpose."""


class ProgramError(InsightRoiError, ValueError):
    """The program file is missing, unreadable or invalid; the message names the key."""


class StoreError(InsightRoiError):
    """A store URL cannot be opened, or its schema is newer than this version understands."""


class StoreBusyError(StoreError):
    """Another process holds the store's write lock (a DuckDB file is one writer at a time).

    The message is one line naming the file and the holder (PID and command line where the
    operating system tells them); ``pid`` is that process id, or None when unknown.
    """

    def __init__(self, message: str, *, path: str | None = None, pid: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid


class IngestError(InsightRoiError):
    """A whole file cannot be ingested (unreadable, wrong columns, empty); names the file."""


class DataError(InsightRoiError, ValueError):
    """Data handed to an estimator cannot support the requested analysis."""


class EstimationError(InsightRoiError):
    """No credible estimate exists for this design; the message says why."""


class OptionError(InsightRoiError, ValueError):
    """A parameter given a value outside its allowed set (:func:`check_option`)."""


def check_option(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming all three.

    Parameters
    ----------
    name : str
        The parameter's name, as the caller spelled it.
    value : Any
        What was passed.
    allowed : iterable
        The permitted values (usually the members of a ``Literal``).

    Returns
    -------
    Any
        ``value`` unchanged.

    Raises
    ------
    OptionError
        A ValueError with scikit-learn's template: ``The 'name' parameter must be one of [...].
        Got 'x' instead.`` (an :class:`InsightRoiError` too, so the CLI prints it as one line).
    """
    allowed = list(allowed)
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise OptionError(f"The {name!r} parameter must be one of [{options}]. Got {value!r} instead.")
    return value

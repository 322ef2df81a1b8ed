"""Pure statistics: functions over numpy arrays and sufficient statistics. No I/O, no pandas."""

from insightroi.stats._result import Check, Result

__all__ = ["Check", "Result"]

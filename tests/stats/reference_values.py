"""The published and peer-library figures of ``reference_values.toml``, as pytest comparisons.

Usage in a test module of this folder::

    from reference_values import approx, case, within

    assert r.ci == approx("gbstats_absolute", "ci")

Each case in the TOML file carries its ``source`` and ``call``; a test that needs them in a
failure message reads ``case(name)``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).with_name("reference_values.toml")
REFERENCE: dict[str, dict[str, Any]] = tomllib.loads(_PATH.read_text())


def case(name: str) -> dict[str, Any]:
    """One case: ``source``, ``call``, optional ``note``, and one table per figure."""
    return REFERENCE[name]


def value(name: str, figure: str) -> Any:
    """The published figure itself (a number, or a tuple for a list in the file)."""
    v = REFERENCE[name][figure]["value"]
    return tuple(v) if isinstance(v, list) else v


def approx(name: str, figure: str):
    """``pytest.approx`` of the figure with its recorded ``abs`` / ``rel`` tolerance."""
    f = REFERENCE[name][figure]
    return pytest.approx(value(name, figure), abs=f.get("abs"), rel=f.get("rel"))


def tolerance(name: str, figure: str) -> dict[str, float]:
    """The recorded tolerance alone (``{"rel": 0.02}``), for figures whose value lives elsewhere."""
    f = REFERENCE[name][figure]
    return {k: f[k] for k in ("abs", "rel") if k in f}


def high(name: str, figure: str) -> float:
    """The recorded upper bound of a figure (for a strict ``x < high``)."""
    return REFERENCE[name][figure]["high"]


def within(name: str, figure: str, x: float) -> bool:
    """True when ``low <= x <= high`` for the recorded bounds (either may be absent)."""
    f = REFERENCE[name][figure]
    return f.get("low", -float("inf")) <= x <= f.get("high", float("inf"))

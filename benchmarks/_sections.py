"""The marked sections single benchmarks keep in RESULTS.md below the main table."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_section"]

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(text: str, start: str, end: str, path: Path = RESULTS) -> None:
    """Replace the text between the ``start`` and ``end`` markers, or append it when absent.

    Parameters
    ----------
    text : str
        The section, markers included (it starts with ``start`` and ends with ``end``).
    start, end : str
        The HTML comments that delimit the section.
    path : Path
        The results file (default ``benchmarks/RESULTS.md``).
    """
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if start in old and end in old:
        new = old[: old.index(start)] + text + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new, encoding="utf-8")

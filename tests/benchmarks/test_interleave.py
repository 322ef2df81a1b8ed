"""The benchmarks' interleaving: the call order alternates and the ratio is the median per pair."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _interleave import Pairs, interleave  # noqa: E402


def test_calls_alternate_which_side_goes_first():
    calls = []
    out = interleave(lambda: calls.append("A") or "a", lambda: calls.append("B") or "b", pairs=4)
    # warm-up A B, then pairs A B | B A | A B | B A: neither side always runs second.
    assert "".join(calls) == "AB" + "AB" + "BA" + "AB" + "BA"
    assert (out.ours_out, out.peer_out) == ("a", "b")
    assert len(out.ours_cpu) == len(out.peer_wall) == 4


def test_ratio_is_the_median_of_per_pair_ratios_on_the_chosen_basis():
    p = Pairs(ours_cpu=[1.0, 2.0, 4.0], peer_cpu=[3.0, 2.0, 40.0], ours_wall=[1.0, 1.0, 1.0],
              peer_wall=[0.5, 0.25, 2.0])
    assert p.ratios == [3.0, 1.0, 10.0]
    assert p.ratio == 3.0 and p.ours_s == 2.0 and p.peer_s == 3.0
    p.basis = "wall"
    assert p.ratio == 0.5 and p.peer_s == 0.5
    assert "min 0.25, max 2" in p.describe()


def test_unknown_basis_is_refused():
    with pytest.raises(ValueError, match="basis must be 'cpu' or 'wall'"):
        interleave(lambda: None, lambda: None, basis="gpu")

"""Chunked generation keeps memory bounded: 2M orders written in 100k-order chunks."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

_SCRIPT = r"""
import json, resource, sys
from insightroi.demo import generate_world
import pyarrow, numpy  # imports out of the measurement
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
info = generate_world(sys.argv[1], seed=1, scale=int(sys.argv[2]), chunk_orders=int(sys.argv[3]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kb": peak - base, "orders": info.rows["orders"], "feedback": info.rows["feedback"]}))
"""


def _run(out, n, chunk):
    res = subprocess.run([sys.executable, "-c", _SCRIPT, str(out), str(n), str(chunk)],
                         capture_output=True, text=True, check=True, timeout=900)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _arrow_bytes(out) -> int:
    """What holding the big tables at once would take in Arrow memory (measured part by part)."""
    full = 0
    for kind in ("orders", "feedback", "traffic", "tickets", "refunds"):
        for p in sorted((out / kind).glob("part-*.parquet")):
            full += pq.read_table(p).nbytes
    return full


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_orders_in_chunked_mode(tmp_path):
    """Peak RSS growth is the fixed cell-level world plus one chunk: 4x the orders, ~same memory."""
    small = _run(tmp_path / "a", 500_000, 100_000)
    big = _run(tmp_path / "b", 2_000_000, 100_000)
    assert 1.8e6 < big["orders"] < 2.2e6
    assert len(sorted((tmp_path / "b" / "orders").glob("part-*.parquet"))) >= 15, "a folder of chunk files"
    full_small, full_big = _arrow_bytes(tmp_path / "a"), _arrow_bytes(tmp_path / "b")
    assert full_big > 3 * full_small
    g_small, g_big = small["growth_kb"] * 1024, big["growth_kb"] * 1024
    # 1.5M more orders add ~3/4 of full_big to the data but (almost) nothing to the peak
    assert g_big - g_small < 0.15 * (full_big - full_small), (g_small / 1e6, g_big / 1e6, full_big / 1e6)
    assert g_big < full_big

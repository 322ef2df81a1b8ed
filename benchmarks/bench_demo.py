#!/usr/bin/env python
"""Demo world generation: orders generated per second and peak memory.

"quick" = 1M orders, "full" = 10M orders (the issue's size), chunked (1M orders per chunk),
all tables written as zstd Parquet. Each size runs in a fresh subprocess so its peak RSS is its own.
No peer: no other package generates this world.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

_SCRIPT = r"""
import json, sys, time
from insightroi.demo import generate_world
def hwm():  # VmHWM: ru_maxrss would carry the runner's peak across fork + exec
    return next(float(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
base = hwm()
t = time.perf_counter()
info = generate_world(sys.argv[1], seed=0, scale=int(sys.argv[2]))
dt = time.perf_counter() - t
peak = hwm()
print(json.dumps({"s": dt, "orders": info.rows["orders"], "feedback": info.rows["feedback"],
                  "peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024}))
"""


def _one(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run([sys.executable, "-c", _SCRIPT, d, str(n)], capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return {
        "benchmark": f"generate_world {n:,} orders",
        "ours_s": r["s"], "peer": None, "peer_s": None, "ratio": None,
        "note": (f"{r['orders'] / r['s']:,.0f} orders/s; {r['feedback']:,} feedback rows; "
                 f"peak RSS {r['peak_mb']:,.0f} MB (+{r['growth_mb']:,.0f} MB over imports)"),
    }


def run(scale: str = "quick") -> list[dict]:
    sizes = {"quick": [1_000_000], "full": [10_000_000]}[scale]
    return [_one(n) for n in sizes]


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)

#!/usr/bin/env python
"""Demo world generation: orders generated per second and peak memory.

"quick" = 1M orders, "full" = 10M orders (the issue's size), chunked (1M orders per chunk),
all tables written as zstd Parquet. Each size runs in a fresh subprocess so its peak RSS is its own.
No peer: no other package generates this world.

The second row is ``insightroi demo`` itself (the README's main job, default scale, a fresh
folder each time): its job time (the sum of its stage timings) and the command's wall time, on
the machine as it is and beside two busy processes (pure-Python spin loops, one per core),
alternating the two conditions. Issue 21's targets: <= 15 s of job time on idle cores and
<= 1.5x that beside the two busy processes.
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


def _demo_once(folder: str) -> tuple[float, float, dict]:
    """One ``insightroi demo --json`` in a fresh folder: (job seconds, wall seconds, stage timings)."""
    import time

    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "insightroi", "demo", "--out", folder, "--json"],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    out = res.stdout
    timings = json.loads(out[out.index("{"):])["timings_s"]
    return sum(timings.values()), wall, timings


def demo_job_row(pairs: int = 3) -> dict:
    """``insightroi demo`` job time, alternating a quiet machine and two busy neighbours."""
    import statistics

    spin = [sys.executable, "-c", "while True: pass"]
    quiet, busy, stages = [], [], {}
    with tempfile.TemporaryDirectory() as d:
        for i in range(pairs):
            for loaded in ((False, True) if i % 2 == 0 else (True, False)):
                hogs = [subprocess.Popen(spin) for _ in range(2)] if loaded else []
                try:
                    job, wall, timings = _demo_once(f"{d}/run{i}{int(loaded)}")
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
                (busy if loaded else quiet).append((job, wall))
                if not loaded:
                    stages = timings
    q_job = statistics.median(j for j, _ in quiet)
    b_job = statistics.median(j for j, _ in busy)
    slowest = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])[:4])
    return {
        "benchmark": "insightroi demo (default scale, job time = sum of stage timings, median)",
        "ours_s": q_job, "peer": "the same beside two busy processes", "peer_s": b_job, "ratio": q_job / b_job,
        "note": (f"{pairs} runs each, alternating; command wall median {statistics.median(w for _, w in quiet):.1f} s "
                 f"quiet, {statistics.median(w for _, w in busy):.1f} s busy; slowdown {b_job / q_job:.2f}x "
                 f"(target <= 1.5x); target <= 15 s job time ({'met' if q_job <= 15 else 'NOT met'}); "
                 f"slowest stages (last quiet run): {slowest}"),
    }


def run(scale: str = "quick") -> list[dict]:
    sizes = {"quick": [1_000_000], "full": [10_000_000]}[scale]
    return [_one(n) for n in sizes] + [demo_job_row(3 if scale == "full" else 1)]


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)

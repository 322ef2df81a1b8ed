#!/usr/bin/env python
"""Scaling curve: the end-to-end insightroi pipeline on 1M, 10M and 100M demo orders.

Each size runs ``insightroi.pipeline.run_demo(scale=N)`` -- generate the demo company, ingest it
into a fresh DuckDB file, classify feedback, detect spikes, decision chain, experiment, ROI,
quasi-experiments, monitoring, report -- in its own subprocess, so the peak resident memory
(``VmHWM`` of that process; the forked classification workers' RUSAGE_CHILDREN peak is reported
beside it) belongs to that size alone. Rows: wall time of the whole job, peak RSS and the slowest stages (``DemoRun.timings``).
No peer: no other tool runs this job.

"quick" = 1M orders; "full" = 1M, 10M, 100M. A size is only attempted when the previous one,
extrapolated linearly, fits ``INSIGHTROI_SCALE_BUDGET_S`` (default 3600 s: the 100M run takes about
40 min on 2 cores, so ``make bench`` includes it; lower it for a quicker table); otherwise its row
says so and gives the linear extrapolation. Files go to a temporary folder (or
``INSIGHTROI_SCALE_DIR``) deleted after each size.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"quick": [1_000_000], "full": [1_000_000, 10_000_000, 100_000_000]}
BUDGET_S = float(os.environ.get("INSIGHTROI_SCALE_BUDGET_S", 3600))


def proc_status_kib(field: str = "VmHWM") -> float:
    """A memory field of /proc/self/status in KiB: ``VmHWM`` (peak resident set of this process
    image) or ``VmRSS`` (now). Without /proc: ru_maxrss."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _child(n_orders: int, out_dir: str) -> None:
    from insightroi.pipeline import run_demo

    t0 = time.perf_counter()
    run = run_demo(out_dir, seed=7, scale=n_orders, classify_jobs=-1)  # as `insightroi demo` runs it
    wall = time.perf_counter() - t0
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork + exec, so this process would
    # report the peak of the benchmark runner it was started from (9.6 GB after the 100M-order
    # experiments benchmark). The classification workers are forked: their peak counts the
    # pages they share with this process, so it is reported apart, not added.
    kib = proc_status_kib()
    worker_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    db = Path(out_dir) / "insightroi.duckdb"
    print("RESULT " + json.dumps({
        "n_orders": n_orders, "wall_s": wall, "peak_rss_mib": kib / 1024, "worker_peak_rss_mib": worker_kib / 1024,
        "timings": run.timings,
        "failures": [f"{f['stage']}: {f.get('error', '')[:120]}" for f in run.failures],
        "store_mib": db.stat().st_size / 2**20 if db.exists() else None,
    }), flush=True)


def _one(n_orders: int) -> dict:
    base = os.environ.get("INSIGHTROI_SCALE_DIR")
    tmp = Path(tempfile.mkdtemp(prefix=f"scale{n_orders}_", dir=base))
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", str(n_orders), str(tmp)],
                              capture_output=True, text=True, check=False)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"pipeline at {n_orders:,} orders failed (rc {proc.returncode}): {proc.stderr[-500:]}")
        return json.loads(line[len("RESULT "):])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def _row(res: dict) -> dict:
    slow = sorted(res["timings"].items(), key=lambda kv: -kv[1])[:3]
    note = (f"peak RSS {res['peak_rss_mib']:,.0f} MiB (classify workers {res.get('worker_peak_rss_mib', 0):,.0f} MiB, "
            f"pages shared with the parent included); store {res['store_mib'] or 0:,.0f} MiB; slowest: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in slow))
    if res["failures"]:
        note += f"; stage failures: {'; '.join(res['failures'])}"
    return {"benchmark": f"pipeline {_label(res['n_orders'])} orders", "ours_s": round(res["wall_s"], 2),
            "peer": None, "peer_s": None, "ratio": None, "note": note}


def run(scale: str = "quick") -> list[dict]:
    if scale not in SIZES:
        raise ValueError(f"scale must be one of {sorted(SIZES)}, got {scale!r}")
    rows, last = [], None
    for n in SIZES[scale]:
        if last is not None:
            projected = last["wall_s"] * n / last["n_orders"]
            if projected > BUDGET_S:
                rows.append({"benchmark": f"pipeline {_label(n)} orders", "ours_s": None, "peer": None,
                             "peer_s": None, "ratio": None,
                             "note": (f"NOT MEASURED: linear extrapolation of the {_label(last['n_orders'])} run is "
                                      f"~{projected:,.0f} s, over the {BUDGET_S:.0f} s budget "
                                      "(INSIGHTROI_SCALE_BUDGET_S raises it); peak memory not extrapolated")})
                continue
        last = _one(n)
        rows.append(_row(last))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), sys.argv[3])
    else:
        for r in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
            print(r)

#!/usr/bin/env python
"""Peak resident memory of the pipeline per stage: ``python benchmarks/stage_memory.py 10000000``.

Runs ``insightroi.pipeline.run_demo`` at the given number of demo orders (optionally with DuckDB
settings as a URL query, e.g. ``memory_limit=4GB``) while a thread samples this process's VmRSS
every 0.2 s, and prints each stage's peak and time. Not part of ``run.py``: it explains the
scaling row's peak, it does not compare with a peer.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time


def main(argv: list[str]) -> int:
    from bench_scale import proc_status_kib  # this folder is on sys.path when run as a script

    from insightroi.pipeline import run_demo

    n_orders = int(argv[0]) if argv else 1_000_000
    current = {"stage": "start"}
    peak: dict[str, float] = {}

    def sample() -> None:
        while True:
            rss, stage = proc_status_kib("VmRSS") / 1024, current["stage"]
            peak[stage] = max(peak.get(stage, 0.0), rss)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="stage_memory_") as out:
        url = f"duckdb:///{out}/insightroi.duckdb?{argv[1]}" if len(argv) > 1 else None
        t0 = time.perf_counter()
        run = run_demo(out, seed=7, scale=n_orders, classify_jobs=-1, store_url=url,
                       progress=lambda stage: current.update(stage=str(stage)))
        wall = time.perf_counter() - t0
    print(f"{n_orders:,} orders, {wall:.1f} s, stage failures: {run.failures or 'none'}")
    print("| stage | peak RSS (MiB) | time (s) |\n|---|---|---|")
    for stage, mib in peak.items():
        print(f"| {stage} | {mib:,.0f} | {run.timings.get(stage, 0.0):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

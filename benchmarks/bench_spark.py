#!/usr/bin/env python
"""KPI aggregation on DuckDB vs local Spark: the same Ibis expression on the same demo store.

Data: a demo world ("quick": tiny, 4k orders; "full": small, 50k orders) ingested into DuckDB and
classified; every table is then copied to a local Spark store (``pyspark://``, local[2], UI off)
with ``copy_store``. Timed: ``unit_measures_expr`` over every measure the program's KPIs use
(post and pre period, one row per SKU family with its arm), executed to pandas -- what
``analyze_experiment`` runs first. Best of 3 after one warm-up run on each engine; Spark's
session start (JVM) and the copy are reported in the note, not in the time. Peer = the same
expression on Spark ("ours" = DuckDB, insightroi's default store), so ratio = Spark / DuckDB.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

WORLDS = {"quick": "tiny", "full": "small"}


def _best(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(scale: str = "quick") -> list[dict]:
    if scale not in WORLDS:
        raise ValueError(f"scale must be one of {sorted(WORLDS)}, got {scale!r}")
    from insightroi.demo import generate_world
    from insightroi.insights import classify_store
    from insightroi.metrics import unit_measures_expr
    from insightroi.pipeline import ingest_world
    from insightroi.program import load_program
    from insightroi.store import copy_store, open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench_spark_"))
    spark = duck = None
    try:
        world = generate_world(tmp / "world", seed=3, scale=WORLDS[scale])
        program = load_program(world.program_path)
        duck = open_store(f"duckdb:///{tmp / 'b.duckdb'}")
        ingest_world(duck, world, program)
        classify_store(duck, program)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        t0 = time.perf_counter()
        spark = open_store(f"pyspark:///{tmp / 'warehouse'}?spark.ui.showConsoleProgress=false")
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        copied = copy_store(duck, spark)
        copy_s = time.perf_counter() - t0
        measures = sorted({m for k in program.kpis for m in (k.numerator, k.denominator)})

        def agg(store):
            return lambda: unit_measures_expr(store, program, measures).execute()

        a = agg(duck)().sort_values("unit_id").reset_index(drop=True)
        b = agg(spark)().sort_values("unit_id").reset_index(drop=True)
        same = bool(((a[measures] - b[measures]).abs().to_numpy() <= 1e-9 * (1 + a[measures].abs().to_numpy())).all())
        ours = _best(agg(duck))
        peer = _best(agg(spark))
        rows = sum(copied.values())
        note = (f"{WORLDS[scale]} world, {world.n_orders:,} orders, {rows:,} rows in all tables; {len(measures)} "
                f"measures, {len(a)} units; results equal: {same}; Spark session start {start_s:.0f} s and "
                f"copy {copy_s:.0f} s not timed")
        return [{"benchmark": f"KPI aggregation ({WORLDS[scale]} world)", "ours_s": round(ours, 4),
                 "peer": "PySpark local[2] (same Ibis expr)", "peer_s": round(peer, 4),
                 "ratio": round(peer / ours, 2), "note": note}]
    finally:
        if spark is not None:
            spark.close()
        if duck is not None:
            duck.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    for r in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(r)

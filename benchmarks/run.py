#!/usr/bin/env python
"""Run every benchmark and write benchmarks/RESULTS.md (one table, ours vs peer, same data, same run).

Usage: ``python benchmarks/run.py [--scale quick|full] [--only ingest,roi] [--out benchmarks/RESULTS.md]``

Each ``benchmarks/bench_<area>.py`` exposes ``run(scale) -> list[dict]`` with keys
``benchmark, ours_s, peer, peer_s, ratio, note``. A benchmark that fails is recorded as a failed
row with its error and the run goes on.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _machine_facts() -> list[str]:
    facts = [
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {_cpu_name()} x {os.cpu_count()} logical cores",
        f"- memory: {_mem_gib():.0f} GiB",
        f"- Python {platform.python_version()} on {platform.system()} {platform.machine()}",
    ]
    for pkg in ("duckdb", "ibis", "numpy", "pandas", "pyfixest", "statsmodels", "pyspark"):
        try:
            mod = __import__(pkg)
            facts.append(f"- {pkg} {getattr(mod, '__version__', '?')}")
        except ImportError:
            pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
        facts.append(f"- commit {rev.strip()}")
    except OSError:
        pass
    return facts


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    spec.loader.exec_module(mod)
    return mod


def _fmt(v, digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _kept_sections(path: Path) -> str:
    """The sections after the main table (``## ...``) that single benchmarks write themselves.

    bench_models.py and bench_variance_reduction.py keep their own tables below the main one;
    rewriting the file must not drop them.
    """
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, ln in enumerate(text) if ln.startswith(("## ", "<!-- "))), None)
    return "" if start is None else "\n" + "\n".join(text[start:]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["quick", "full"], default="full")
    ap.add_argument("--only", default="", help="comma-separated areas, e.g. ingest,roi")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args(argv)
    only = {a.strip() for a in args.only.split(",") if a.strip()}
    rows: list[dict] = []
    for path in sorted(HERE.glob("bench_*.py")):
        area = path.stem.removeprefix("bench_")
        if only and area not in only:
            continue
        print(f"== {area} ({args.scale})", flush=True)
        t0 = time.perf_counter()
        try:
            for row in _load(path).run(args.scale):
                rows.append({"area": area, **row})
                print("  ", row, flush=True)
        except Exception as exc:  # one failing benchmark must not hide the others
            traceback.print_exc()
            rows.append({"area": area, "benchmark": "(failed)", "ours_s": None, "peer": None, "peer_s": None,
                         "ratio": None, "note": f"{type(exc).__name__}: {exc}"[:200]})
        print(f"   {area} took {time.perf_counter() - t0:.1f} s", flush=True)
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `python benchmarks/run.py --scale {args.scale}` (or `make bench`). "
        "Ratio = peer time / our time on the same data in the same run (above 1: we are faster).",
        "",
        *_machine_facts(),
        "",
        "| area | benchmark | ours (s) | peer | peer (s) | ratio | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['area']} | {r['benchmark']} | {_fmt(r.get('ours_s'))} | {r.get('peer') or '-'} | "
            f"{_fmt(r.get('peer_s'))} | {_fmt(r.get('ratio'))} | {str(r.get('note') or '').replace('|', '/')} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n" + _kept_sections(Path(args.out)), encoding="utf-8")
    print(f"wrote {args.out}")
    return 1 if any(r["benchmark"] == "(failed)" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

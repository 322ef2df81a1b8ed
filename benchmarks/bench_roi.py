#!/usr/bin/env python
"""ROI Monte Carlo: 100,000 draws over 20 value pools (issue 7 target: under 1 s).

Peer: the same Monte Carlo written as a plain per-draw Python loop (``random.gauss`` /
``random.triangular``, the way a spreadsheet-to-script port usually looks), on the same program,
effects and volumes, in the same run. Ours includes everything compute_roi does (draws,
quantiles, per-pool attribution, scenarios, tornado); the peer computes only the ROI draws and
their quantiles, so the ratio understates our advantage. The two alternate (5 pairs, one native
thread each); CPU seconds, median ratio with min and max.
"""

from __future__ import annotations

import random

from _interleave import interleave, pin_threads

from insightroi.program import Program, parse_program, starter_program_text
from insightroi.roi import RoiVolumes, compute_roi
from insightroi.stats import Result

KPIS = ["tickets_per_1000_orders", "refunds_per_1000_orders", "negative_reviews_per_1000_orders",
        "conversion_rate", "revenue_per_sku_family"]


def _inputs(n_pools: int = 20) -> tuple[Program, dict[str, Result], RoiVolumes]:
    raw = parse_program(starter_program_text()).model_dump(mode="json")
    pools = []
    for i in range(n_pools):
        base = 5.0 + i
        pools.append({"name": f"pool_{i:02d}", "function": f"function_{i % 6}", "kpi": KPIS[i % len(KPIS)],
                      "unit_value": {"low": 0.6 * base, "mode": base, "high": 1.5 * base}, "hard": i % 5 != 4})
    raw["value_pools"] = pools
    prog = Program.model_validate(raw)
    est = {"tickets_per_1000_orders": (-8.0, 2.0), "refunds_per_1000_orders": (-3.0, 1.0),
           "negative_reviews_per_1000_orders": (-2.0, 0.6), "conversion_rate": (0.002, 0.001),
           "revenue_per_sku_family": (150.0, 80.0)}
    effects = {k: Result(estimate=m, se=s, ci=(m - 1.96 * s, m + 1.96 * s), p_value=0.01, method="welch_t", n=200,
                         metric=k) for k, (m, s) in est.items()}
    vol = RoiVolumes({"tickets_per_1000_orders": 1e6, "refunds_per_1000_orders": 1e6,
                      "negative_reviews_per_1000_orders": 1e6, "conversion_rate": 5e6, "revenue_per_sku_family": 200},
                     feedback=3e5, months=9)
    return prog, effects, vol


def _naive(prog: Program, effects: dict[str, Result], vol: RoiVolumes, draws: int, seed: int) -> dict[str, float]:
    r = random.Random(seed)
    coefs = []
    for p in prog.value_pools:
        k = prog.kpi(p.kpi)
        sign = -1.0 if k.direction == "decrease" else 1.0
        coefs.append((p.kpi, sign / k.scale * vol.kpis[p.kpi], p.unit_value, p.hard))
    mult = [vol.months if c.per == "month" else (1.0 if c.per == "total" else vol.feedback / 1000) for c in prog.costs]
    rois = []
    for _ in range(draws):
        eff = {k: r.gauss(res.estimate, res.se) for k, res in effects.items()}
        benefit = 0.0
        for kpi, coef, uv, hard in coefs:
            v = r.triangular(uv.low, uv.high, uv.mode)
            if hard:
                benefit += eff[kpi] * coef * v
        cost = sum(r.triangular(c.amount.low, c.amount.high, c.amount.mode) * m for c, m in zip(prog.costs, mult))
        rois.append((benefit - cost) / cost)
    rois.sort()
    q = lambda p: rois[int(p * (draws - 1))]  # noqa: E731
    return {"ci_low": q(0.05), "conservative": q(0.10), "median": q(0.5), "ci_high": q(0.95)}


def run(scale: str = "quick") -> list[dict]:
    draws = 100_000 if scale == "full" else 10_000
    prog, effects, vol = _inputs(20)
    pin_threads(1)
    seeds = iter(range(1000))
    # Each call draws with a new seed, the same sequence of seeds for both sides.
    pairs = interleave(lambda: compute_roi(prog, effects, vol, draws=draws, rng=next(seeds)),
                       lambda: _naive(prog, effects, vol, draws, seed=0), pairs=5)
    ours, peer = pairs.ours_out, pairs.peer_out
    agree = abs(peer["median"] - ours.median) / max(abs(ours.median), 1e-9)
    return [{
        "benchmark": f"roi monte carlo, {draws:,} draws x 20 value pools x 5 cost lines (CPU s, median)",
        "ours_s": pairs.ours_s, "peer": "per-draw Python loop", "peer_s": pairs.peer_s, "ratio": pairs.ratio,
        "note": (f"{pairs.describe()}; target < 1 s at 100,000 draws; medians agree within {agree:.1%} "
                 f"(ours {ours.median:.3f}, peer {peer['median']:.3f})"),
    }]


if __name__ == "__main__":
    import sys

    for row in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)

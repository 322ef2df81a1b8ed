#!/usr/bin/env python
"""Variance reduction on the demo world: CUPED vs multi-covariate regression adjustment vs CUPAC (issue 20).

Generates the demo world (``insightroi.demo.generate_world``, seed 0), ingests it, and runs
``analyze_experiment`` four times on the same store: unadjusted (``cuped=False``), CUPED (the
default: the KPI's own pre-period value), regression adjustment on ``FEW`` and on ``COVARIATES``'
pre-period values beside it (``[experiment] covariates``), and CUPAC (``cupac = true``: the same covariates
and the KPI's own pre-period feed a gradient-boosted model trained on the period before the
pre-period). Writes one table, the absolute effect's standard error per KPI and the variance
ratios, into ``benchmarks/RESULTS.md`` under its own heading (replacing that section only).

Usage: ``python benchmarks/bench_variance_reduction.py [tiny|small|demo]`` (default ``demo``);
``... selection-sim [runs]`` prints the covariate selection's coverage and A/A size over ``runs``
simulated experiments (default 2,000) instead.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import _sections

COVARIATES = ["orders", "sessions", "feedback", "tickets", "revenue"]
# Two traffic measures only: with 80 clusters every covariate costs two slopes (one per arm), so
# a short list shows what the long one spends on covariates without signal for a KPI.
FEW = ["orders", "sessions"]
HEADING = "## Variance reduction on the demo world: CUPED vs multi-covariate vs CUPAC (issue 20)"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- bench_variance_reduction:start -->", "<!-- bench_variance_reduction:end -->"


def _analyses(scale: str) -> tuple[dict, dict]:
    from insightroi.demo import generate_world
    from insightroi.experiments import analyze_experiment
    from insightroi.pipeline import ingest_world
    from insightroi.program import load_program, parse_program
    from insightroi.store import open_store

    out: dict[str, object] = {}
    info: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as d:
        world = generate_world(Path(d) / "w", seed=0, scale=scale)
        text = Path(world.program_path).read_text()
        prog = load_program(world.program_path)
        def cov(ms):
            return "covariates = [" + ", ".join(f'"{m}"' for m in ms) + "]\n"

        progs = {"unadjusted": prog, "cuped": prog,
                 "few": parse_program(text.replace("[experiment]\n", "[experiment]\n" + cov(FEW))),
                 "regression_adjusted": parse_program(text.replace("[experiment]\n", "[experiment]\n" + cov(COVARIATES))),
                 "cupac": parse_program(text.replace("[experiment]\n", "[experiment]\n" + cov(COVARIATES) + "cupac = true\n")),
                 "selected": parse_program(text.replace("[experiment]\n", "[experiment]\n" + cov(COVARIATES)
                                                        + "cupac = true\nselect_covariates = true\n"))}
        with open_store(f"duckdb:///{d}/s.duckdb") as st:
            ingest_world(st, world, prog)
            for key, p in progs.items():
                t = time.perf_counter()
                out[key] = analyze_experiment(st, p, cuped=key != "unadjusted", weekly=False)
                info[f"{key}_s"] = time.perf_counter() - t
            # The same selection without its evidence threshold (the one-standard-error rule alone),
            # to show what the threshold changes on this world.
            from insightroi.experiments import _covselect

            saved, _covselect.MIN_Z = _covselect.MIN_Z, 0.0
            try:
                out["selected_1se"] = analyze_experiment(st, progs["selected"], weekly=False)
            finally:
                _covselect.MIN_Z = saved
            info["min_z"] = saved
        info["units"] = out["cuped"].n_treatment + out["cuped"].n_control
        info["design"] = f"{prog.experiment.design} on {prog.experiment.unit}"
    return out, info


def _ratio(a: float, b: float) -> float:
    return a**2 / b**2 if b and math.isfinite(a) and math.isfinite(b) else math.nan


def table(out: dict) -> list[dict]:
    """One row per KPI: the absolute effect's SE under each method and the variance ratios."""
    rows = []
    for name, c in out["cuped"].results.items():
        few, ra, cu, raw = (out[k].results[name] for k in ("few", "regression_adjusted", "cupac", "unadjusted"))
        sel = out["selected"].results[name]
        chosen = sel.extra.get("covariate_selection") or {}
        sel1 = out["selected_1se"].results[name]
        chosen1 = sel1.extra.get("covariate_selection") or {}
        rows.append({
            "selected_1se_vs_cuped": _ratio(sel1.se, c.se),
            "selected_1se": _chosen_label(chosen1) if chosen1 else sel1.method,
            "z": chosen.get("z_vs_cuped") if chosen.get("method") != "cuped" else None,
            "se_selected": sel.se, "selected_vs_cuped": _ratio(sel.se, c.se),
            "selected": _chosen_label(chosen) if chosen else sel.method,
            "kpi": name, "se_unadjusted": raw.se, "se_cuped": c.se, "se_few": few.se, "se_ra": ra.se,
            "se_cupac": cu.se, "methods": f"{c.method} / {few.method} / {ra.method} / {cu.method}",
            "few_vs_cuped": _ratio(few.se, c.se), "ra_vs_cuped": _ratio(ra.se, c.se),
            "cupac_vs_cuped": _ratio(cu.se, c.se),
            "cuped_vs_raw": _ratio(c.se, raw.se), "cupac_training": cu.extra.get("cupac_training", ""),
        })
    return rows


def _chosen_label(chosen: dict) -> str:
    if chosen["method"] == "cuped":
        return "CUPED"
    covs = [c.removesuffix("_pre") for c in chosen["covariates"]]
    head = "CUPAC" if chosen["cupac"] else "RA"
    return f"{head}({', '.join(covs)})" if covs else head


def markdown(rows: list[dict], info: dict, scale: str) -> str:
    def f(x: float) -> str:
        return "-" if x is None or x != x else f"{x:.4g}"

    lines = [
        HEADING, "",
        f"`python benchmarks/bench_variance_reduction.py {scale}`: demo world seed 0, scale {scale!r} "
        f"({info['design']}, {info['units']} units). Standard error of the absolute effect per KPI (KPI "
        "units); variance ratios below 1 favour the method. RA = regression adjustment on the KPI's "
        f"pre-period value and the covariates (Lin's interacted fit, ratio KPIs linearised): RA2 on "
        f"{', '.join(FEW)}, RA5 on {', '.join(COVARIATES)}; CUPAC (on the five) adds a gradient-boosted "
        "model's prediction trained on the period before the pre-period (or cross-fitted within it, as "
        "listed below). A method column that names CUPED means the fit fell back to it (see the KPI's "
        "covariate_adjustment check). Selected = `select_covariates = true` over the five and CUPAC: per KPI, "
        "the set (CUPED, the own pre-period value plus any subset of the five, or CUPAC) whose leave-one-out "
        "error within arms predicting the pre-period from the period before it (or the pre-period's second "
        "half from its first) is lowest, the fewest covariates within one standard error of the best, "
        f"kept over CUPED only when it beats CUPED's criterion by {info['min_z']:g} paired standard errors "
        "(the last two columns: the one-standard-error rule alone); it never sees the experiment's outcome. "
        f"Analysis time: CUPED {info['cuped_s']:.1f} s, RA5 {info['regression_adjusted_s']:.1f} s, "
        f"CUPAC {info['cupac_s']:.1f} s, selected {info['selected_s']:.1f} s.", "",
        "| KPI | SE unadj. | SE CUPED | SE RA2 | SE RA5 | SE CUPAC | SE selected | var CUPED/unadj. | var RA2/CUPED "
        "| var RA5/CUPED | var CUPAC/CUPED | var selected/CUPED | selected set | var 1-SE/CUPED | 1-SE set | methods (CUPED / RA2 / RA5 / CUPAC) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['kpi']} | {f(r['se_unadjusted'])} | {f(r['se_cuped'])} | {f(r['se_few'])} | "
                     f"{f(r['se_ra'])} | {f(r['se_cupac'])} | {f(r['se_selected'])} | {f(r['cuped_vs_raw'])} | "
                     f"{f(r['few_vs_cuped'])} | {f(r['ra_vs_cuped'])} | {f(r['cupac_vs_cuped'])} | "
                     f"{f(r['selected_vs_cuped'])} | {r['selected']} | {f(r['selected_1se_vs_cuped'])} | "
                     f"{r['selected_1se']} | {r['methods']} |")
    training = sorted({r["cupac_training"] for r in rows if r["cupac_training"]})
    if training:
        lines += ["", "CUPAC training: " + "; ".join(training) + "."]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's marked section of RESULTS.md, or append it.

    Markers, not "up to the next heading": the next section starts with bench_models' start
    marker, which a heading-bounded replacement swallowed.
    """
    _sections.write_section(f"{START}\n\n{text.rstrip()}\n\n{END}", START, END, path)


def selection_simulation(runs: int = 2000) -> dict[str, float]:
    """Coverage, bias and A/A size of the selected estimator over ``runs`` simulated experiments.

    The world of ``tests/experiments/test_exp_covselect.py`` (200 units, a covariate of middling
    signal and two of noise), at full size: the test runs 400 of each.
    """
    import numpy as np

    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"),
                    str(Path(__file__).resolve().parents[1] / "tests" / "experiments")]
    import test_exp_covselect as sim

    out: dict[str, float] = {"runs": runs}
    for name, effect, seed in (("effect", sim.EFFECT, 121), ("aa", 0.0, 122)):
        o = sim._run(sim._world(runs, 200, effect, signal=0.8, seed=seed), runs)
        truth = effect * sim.BASE
        out[f"{name}_coverage"] = float(np.mean((o["lo"] <= truth) & (truth <= o["hi"])))
        out[f"{name}_cuped_coverage"] = float(np.mean((o["cuped_lo"] <= truth) & (truth <= o["cuped_hi"])))
        out[f"{name}_picked"] = float(o["picked"].mean())
        out[f"{name}_bias_in_se"] = float((o["est"].mean() - truth) / (o["est"].std(ddof=1) / math.sqrt(runs)))
        out[f"{name}_var_vs_cuped"] = float(o["est"].var(ddof=1) / o["cuped_est"].var(ddof=1))
    out["aa_rejection"] = 1 - out["aa_coverage"]
    return out


def main(scale: str = "demo") -> None:
    if scale == "selection-sim":
        print(selection_simulation(int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
        return
    out, info = _analyses(scale)
    rows = table(out)
    text = markdown(rows, info, scale)
    write_section(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo")

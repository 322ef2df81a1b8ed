"""ROI interval coverage and the conservative headline on the demo world, over 200 seeds.

Issue 7, "Must show": on the demo world over many seeds, the ROI interval covers the true ROI at
its nominal rate (the rate measured is stated here) and the conservative headline is below the
truth in at least 85% of seeds.

Each seed runs what the pipeline runs, minus the files: the world comes from ``world_cells`` (the
same cell-level draws ``generate_world`` writes; test_demo_world.py checks the files reproduce
them), the program is the demo program ``generate_world`` writes (the starter with its fixed
cost lines scaled to the world's size), the per-KPI effects come from
:func:`insightroi.experiments.kpi_effect` (ratio of sums per arm over SKU families, delta-method
variance, CUPED on the 90-day pre-period: what ``analyze_experiment`` calls), the volumes are
built as ``pipeline._roi`` builds them (treated denominators and treated feedback rows in the
window, window months) and :func:`insightroi.roi.compute_roi` turns them into the ROI. The truth
is truth.json's ``roi.roi``, computed by the generator's own ``_roi_truth`` (checked against a
written truth.json below).

Measured at "small" scale (50k orders, 64 families), seeds 0-199, 20,000 draws:

- 90% interval covers the true ROI: 0.90 (180/200; nominal 0.90, one binomial s.e. 2.1 points);
  it was 0.875 before the effects were drawn with their delta-method correlation;
- with unit values and costs fixed at their modes (the truth's values): 0.90 as well; at this
  scale the effects' sampling error dwarfs the value and cost ranges;
- conservative headline (P10) below the true ROI: 0.94 (188/200; 0.925 at the modes).

Known, and reported rather than hidden (neither moves these numbers much at this scale):

- Tickets and refunds share the orders denominator and the same families' defects; their
  estimation errors correlate about 0.14 here and about 0.45 at "demo" scale. Drawn as
  independent, the demo-scale interval was too narrow (coverage about 0.82 over 200 seeds); the
  pipeline and this study now pass the delta-method correlation
  (:func:`insightroi.experiments._correlation.effect_correlation_from_units`).
- The engine's avoided events are ``-effect / scale x treated denominator`` (a rate change times
  the treated orders); the truth counts events. Treatment also recovers orders that the defects
  cost, and those orders carry baseline tickets and refunds, so the rate-based figure exceeds
  the counted one by about 15% of the avoided events (about +0.4 in ROI units, against an
  interval half-width of about 9.5 here).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from helpers.parallel import map_in_processes
from insightroi.demo import family_sums, kpi_truth, resolve_scale, world_cells
# The generator's own program loader and ROI truth: the test must use the truth.json definition,
# not a re-derivation of it.
from insightroi.demo._generate import _load, _roi_truth
from insightroi.experiments import kpi_effect
from insightroi.experiments import effect_correlation_from_units
from insightroi.program import Program, Range
from insightroi.roi import RoiVolumes, compute_roi

SCALE = "small"
N_SEEDS = 200
DRAWS = 20_000


def demo_program(scale: str | int = SCALE) -> Program:
    """The program generate_world writes for this scale (fixed cost lines scaled to its size)."""
    n_orders, _ = resolve_scale(scale)
    program, _ = _load(None, n_orders)
    return program


def at_modes(program: Program) -> Program:
    """A copy whose unit values and cost amounts are fixed at their modes (low = mode = high)."""
    def fix(r: Range) -> Range:
        return Range(low=r.mode, mode=r.mode, high=r.mode)

    return program.model_copy(update={
        "value_pools": [p.model_copy(update={"unit_value": fix(p.unit_value)}) for p in program.value_pools],
        "costs": [c.model_copy(update={"amount": fix(c.amount)}) for c in program.costs],
    })


def pre_period_sums(world, program: Program) -> dict[str, np.ndarray]:
    """Per-family sums over the pre-period (the CUPED covariate), from the same cells.

    Before the window both policies coincide (no defect is fixed faster before the program
    starts), so "observed" is what the files hold there.
    """
    mask = np.zeros(world.n_days, bool)
    mask[world.window_start - program.experiment.pre_period_days : world.window_start] = True
    return family_sums(dataclasses.replace(world, window=mask, extra={}), "observed")


def one_seed(seed: int, program: Program, programs: dict[str, Program]) -> dict:
    """Truth and the ROI results (one per program in ``programs``) for one demo world."""
    w = world_cells(seed=seed, scale=SCALE, program=program)
    obs = family_sums(w, "observed")
    pre = pre_period_sums(w, program)
    treated = w.fam_treated
    truth = _roi_truth(kpi_truth(w, program), program, w, float(obs["feedback"][treated].sum()))

    arm = np.where(treated, "treatment", "control")
    priced = sorted({p.kpi for p in program.value_pools})
    effects = {}
    for name in priced:
        k = program.kpi(name)
        df = pd.DataFrame({"arm": arm, "num": obs[k.numerator], "den": obs[k.denominator],
                           "num_pre": pre[k.numerator], "den_pre": pre[k.denominator]})
        effects[name] = kpi_effect(df, k, alpha=program.experiment.alpha)[0]
    volumes = RoiVolumes(
        kpis={name: float(obs[program.kpi(name).denominator][treated].sum()) for name in priced},
        feedback=float(obs["feedback"][treated].sum()),
        months=float(w.window.sum()) / 30.4375,
    )
    # As the pipeline does: effects sharing families and the orders denominator are drawn correlated.
    units = pd.DataFrame({"arm": arm, **{m: obs[m] for k in priced
                                         for m in (program.kpi(k).numerator, program.kpi(k).denominator)}})
    correlation = effect_correlation_from_units(
        units, [(k, program.kpi(k).numerator, program.kpi(k).denominator) for k in priced])
    out = {"truth": truth["roi"], "truth_detail": truth, "effects": effects, "volumes": volumes}
    for label, prog in programs.items():
        out[label] = compute_roi(prog, effects, volumes, draws=DRAWS, rng=np.random.default_rng([seed, 7]),
                                 correlation=correlation)
    return out


def _study_row(seed: int) -> dict:
    program = demo_program()
    programs = {"ranges": program, "modes": at_modes(program)}
    r = one_seed(seed, program, programs)
    row = {"truth": r["truth"]}
    for label in programs:
        res = r[label]
        row[f"{label}_lo"], row[f"{label}_hi"] = res.ci
        row[f"{label}_conservative"] = res.conservative
    return row


@pytest.fixture(scope="module")
def study():
    # The seeds are independent: both cores share them (the figures do not change).
    return pd.DataFrame(map_in_processes(_study_row, range(N_SEEDS), chunksize=10))


def _rates(d: pd.DataFrame, label: str) -> tuple[float, float]:
    covered = (d[f"{label}_lo"] <= d.truth) & (d.truth <= d[f"{label}_hi"])
    below = d[f"{label}_conservative"] < d.truth
    return float(covered.mean()), float(below.mean())


@pytest.mark.slow
def test_conservative_headline_is_below_the_true_roi_in_at_least_85_percent_of_seeds(study):
    assert study.truth.notna().all() and len(study) == N_SEEDS
    _, below = _rates(study, "ranges")
    assert below >= 0.85, below  # measured 0.92


@pytest.mark.slow
def test_roi_interval_covers_the_true_roi_at_about_its_nominal_90_percent(study):
    covered, _ = _rates(study, "ranges")
    # Nominal 0.90; the interval also carries the unit-value and cost ranges while the truth sits
    # at their modes, which can only widen it. 0.85 is 2.4 binomial s.e. below 0.90 at 200 seeds.
    assert covered >= 0.85, covered  # measured 0.875


@pytest.mark.slow
def test_with_values_and_costs_at_their_modes_coverage_is_near_90_percent(study):
    covered, below = _rates(study, "modes")
    # Only the effects' sampling error is left: coverage within about 2.4 binomial s.e. of 0.90.
    assert 0.85 <= covered <= 0.95, covered  # measured 0.875
    assert below >= 0.85, below  # measured 0.92
    # the intervals are not degenerate: every seed's interval has positive width
    assert (study.modes_hi > study.modes_lo).all()


def test_the_study_reproduces_the_truth_and_volumes_generate_world_writes(tmp_path):
    """The per-seed truth and volumes above are the ones the written demo world holds."""
    from insightroi.demo import generate_world

    seed = 3
    info = generate_world(tmp_path / "w", seed=seed, scale=SCALE)
    program = demo_program()
    r = one_seed(seed, program, {"ranges": program})
    assert r["truth"] == pytest.approx(info.truth["roi"]["roi"], rel=1e-12)
    assert r["truth_detail"]["cost"] == pytest.approx(info.truth["roi"]["cost"], rel=1e-12)
    assert r["volumes"].months == pytest.approx(info.truth["roi"]["months"], rel=1e-12)
    # treated orders in the window, from the written per-family observed sums
    fams = info.truth["family_sums"]["families"]
    treated = set(info.truth["assignment"]["treatment"])
    orders = info.truth["family_sums"]["observed"]["orders"]
    want = sum(o for f, o in zip(fams, orders) if f in treated)
    assert r["volumes"].kpis["tickets_per_1000_orders"] == pytest.approx(want, rel=1e-12)
    # the effects are the pipeline's estimator, CUPED on the pre-period, with finite errors
    for name, e in r["effects"].items():
        assert math.isfinite(e.estimate) and e.se > 0, name
        assert e.extra.get("cuped") is True and e.method == "cuped_ratio", (name, e.method)

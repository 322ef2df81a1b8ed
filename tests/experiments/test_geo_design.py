"""The geo designer: backtest MDEs that hold up on fresh data, and a CLI whose design ``analyze`` reads.

The simulated panel has a known structure (40 markets: levels, loadings on a common seasonal
and wandering factor, idiosyncratic noise that falls with market size), so fresh experiments can
be drawn from the same world: the chosen design, run on 4,000 of them with its reported MDE
injected (the brute-force check), must detect it within 3 points of the stated power (0.8), and must beat random sets of as many
markets on the true (simulated) relative error.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats as sps
from typer.testing import CliRunner

from helpers.cli_shell import stage_app
from insightroi.experiments import analyze_quasi_design, design_geo, geo_power
from insightroi.experiments._geo import _demeaned_fit
from insightroi.experiments._geo_cli import register, set_experiment_keys
from insightroi.ingest import ingest_frame
from insightroi.program import load_program, parse_program, starter_program_text
from insightroi.store import open_store

N, T = 40, 52


def _world(seed=0):
    rng = np.random.default_rng(seed)
    size = rng.lognormal(0, 1.2, N)
    return {"level": rng.uniform(20, 40, N), "loading": rng.uniform(0.5, 1.5, N), "sd": 2.0 / np.sqrt(size)}


def _draw(w, weeks, rng, n=None):
    """Panels (n, weeks, N): seasonal factor with a random phase plus a random walk, loadings, noise."""
    shape = () if n is None else (n,)
    t = np.arange(weeks)
    f = (3 * np.sin(2 * np.pi * (t + rng.uniform(0, 52, shape + (1,))) / 52)
         + np.cumsum(rng.normal(0, 0.2, shape + (weeks,)), axis=-1))
    return w["level"] + f[..., :, None] * w["loading"] + rng.normal(size=shape + (weeks, N)) * w["sd"]


def _att(panels, idx, n_pre):
    """The demeaned-SC estimate of each panel's post-period mean gap for the treated set ``idx``."""
    tr = np.asarray(idx)
    oth = np.setdiff1d(np.arange(N), tr)
    out = np.empty(len(panels))
    for i, P in enumerate(panels):
        y1, Y0 = P[:, tr].mean(axis=1), P[:, oth]
        w, c = _demeaned_fit(y1, Y0, n_pre)
        out[i] = float((y1[n_pre:] - (Y0[n_pre:] @ w + c)).mean())
    return out


@pytest.fixture(scope="module")
def designed():
    w = _world()
    Y = _draw(w, T, np.random.default_rng(1))
    d = design_geo(Y, [f"m{i:02d}" for i in range(N)], treated_counts=(2, 4), weeks=(4, 8), n_candidates=100,
                   target_mde_relative=0.05, seed=3)
    return w, Y, d


def test_chosen_design_has_the_stated_power_at_its_mde(designed):
    w, _, d = designed
    c = d.chosen
    panels = _draw(w, T + c.weeks, np.random.default_rng(7), 4000)
    att = _att(panels, c.index, T)
    crit = sps.norm.ppf(1 - d.alpha / 2) * c.sigma
    power = float(np.mean(np.abs(att + c.mde) > crit))
    size = float(np.mean(np.abs(att) > crit))
    # Issue 20 asks for the brute-force power within 3 points of the design's; 4,000 fresh experiments
    # put the Monte Carlo SE at 0.6 points. Measured 0.784-0.795 on three draw seeds of 2,000
    # (0.70 before the shrinkage of the backtest variances), size 0.051-0.055.
    assert abs(power - d.power) <= 0.03, (power, d.power)
    assert size <= 0.075, size
    assert abs(geo_power(c.mde, c.sigma, d.alpha) - d.power) < 1e-4  # the far tail adds ~1e-6


def test_ranked_best_beats_random_sets(designed):
    w, _, d = designed
    c = d.chosen
    rng = np.random.default_rng(5)
    k = len(c.index)
    panels = _draw(w, T + c.weeks, np.random.default_rng(9), 150)
    level = w["level"]

    def true_mde_rel(idx):
        return float(np.sqrt(np.mean(_att(panels, idx, T) ** 2)) / level[list(idx)].mean())

    best = true_mde_rel(c.index)
    rand = [true_mde_rel(tuple(sorted(rng.choice(N, size=k, replace=False)))) for _ in range(8)]
    print(f"true relative error: chosen {best:.4f}, random sets median {np.median(rand):.4f} {np.round(rand, 4)}")
    # Measured: chosen 0.0177 against a median 0.0235 of 8 random sets (one of them 0.0168).
    assert best < 0.85 * float(np.median(rand)), (best, rand)
    assert sum(best < r for r in rand) >= 6, (best, rand)
    # The designer's ranking is by its own MDE: the chosen one is the first of its duration.
    assert c.mde_relative <= min(x.mde_relative for x in d.ranked if x.weeks == c.weeks) + 1e-12
    assert d.meets_target and c.mde_relative <= 0.05


def test_design_is_reproducible(designed):
    _, Y, d = designed
    again = design_geo(Y, list(d.markets), treated_counts=(2, 4), weeks=(4, 8), n_candidates=100,
                       target_mde_relative=0.05, seed=3)
    assert again.chosen == d.chosen
    assert [x.markets for x in again.ranked[:20]] == [x.markets for x in d.ranked[:20]]


def test_set_experiment_keys_keeps_comments():
    text = starter_program_text()
    out = set_experiment_keys(text, {"design": '"synthetic_control"', "unit": '"region"', "end": "2026-04-26"})
    prog = parse_program(out)
    assert prog.experiment.design == "synthetic_control" and prog.experiment.unit == "region"
    assert prog.experiment.end == date(2026, 4, 26)
    kept = [ln for ln in text.splitlines() if ln.lstrip().startswith("#")]
    assert all(ln in out.splitlines() for ln in kept)
    assert len(out.splitlines()) == len(text.splitlines())  # every key was there: replaced, none added


# ------------------------------------------------------------------------------------------ CLI on a store

START = date(2026, 3, 2)
PRE_DAYS, POST_DAYS = 182, 56
REGIONS = [f"r{i:02d}" for i in range(14)]


def _program_text() -> str:
    text = starter_program_text()
    for old, new in (('name = "theme-alerts-2025"', 'name = "geo-test"'), ("start = 2025-07-01", f"start = {START}"),
                     ("end = 2026-03-31", f"end = {START + timedelta(days=POST_DAYS - 1)}"),
                     ('design = "cluster"\nunit = "sku_family"', 'design = "synthetic_control"\nunit = "region"'),
                     ("pre_period_days = 90", f"pre_period_days = {PRE_DAYS}")):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _store(path):
    rng = np.random.default_rng(4)
    days = PRE_DAYS + POST_DAYS
    t = np.arange(days)
    season = 1 + 0.25 * np.sin(2 * np.pi * t / 91)
    n_r = len(REGIONS)
    lam = rng.uniform(10, 30, n_r)[:, None] * (1 + rng.uniform(0.6, 1.4, n_r)[:, None] * (season - 1))
    counts = rng.poisson(lam)
    reg = np.repeat(np.arange(n_r), counts.sum(axis=1))
    day = np.concatenate([np.repeat(t, counts[r]) for r in range(n_r)])
    n = reg.size
    first = pd.Timestamp(START - timedelta(days=PRE_DAYS))
    when = first + pd.to_timedelta(day, "D") + pd.to_timedelta(rng.integers(0, 86400, n), "s")
    ids = np.char.add("o-", np.arange(n).astype(str))
    region = np.asarray(REGIONS)[reg]
    orders = pd.DataFrame({"id": ids, "customer_id": np.char.add("c-", rng.integers(0, 5000, n).astype(str)),
                           "sku_family": "all", "region": region, "order_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "quantity": 1, "revenue": 50.0, "margin": 15.0})
    risk = rng.lognormal(0, 0.2, n_r)
    tk = np.flatnonzero(rng.random(n) < 0.06 * risk[reg] * season[day] ** 2)
    tickets = pd.DataFrame({"id": np.char.add("t-", tk.astype(str)), "order_id": ids[tk], "region": region[tk],
                            "sku_family": "all", "opened_at": when[tk].strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "handle_minutes": 10.0, "deflected": False, "team": "support", "channel": "chat"})
    prog = parse_program(_program_text())
    with open_store(f"duckdb:///{path}") as st:
        for name, df in (("orders", orders), ("tickets", tickets)):
            rep = ingest_frame(st, name, df, source=name, program=prog)
            assert rep.quarantined == 0, rep.errors[:3]


def _app() -> typer.Typer:
    return stage_app(register)


@pytest.fixture(scope="module")
def geo_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("geo_design")
    (home / "insightroi.toml").write_text(_program_text(), encoding="utf-8")
    _store(home / "s.duckdb")
    return home


def _cli(home, *args):
    res = CliRunner().invoke(_app(), ["geo-design", "--store", f"duckdb:///{home / 's.duckdb'}", "--program",
                                      str(home / "insightroi.toml"), "--kpi", "tickets_per_1000_orders",
                                      "-k", "2", "-k", "3", "-w", "4", "-w", "8", "--candidates", "40", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_writes_assignments_that_analyze_reads(geo_store):
    home = geo_store
    out = json.loads(_cli(home, "--json"))
    chosen = out["chosen"]
    assert out["written"] == len(REGIONS) and not out["dry_run"]
    assert 1 <= len(out["ranked"]) <= 10 and out["ranked"][0]["mde_relative"] <= out["ranked"][-1]["mde_relative"]
    prog = load_program(home / "insightroi.toml")
    with open_store(f"duckdb:///{home / 's.duckdb'}") as st:
        res = analyze_quasi_design(st, prog, kpis=["tickets_per_1000_orders"], n_placebo_groups=30)
        asg = st.table("assignments").execute()
    assert set(asg.unit_id[asg.arm == "treatment"]) == set(chosen["markets"])
    assert res.n_treatment == len(chosen["markets"]) and res.n_control == len(REGIONS) - len(chosen["markets"])
    r = res.results["tickets_per_1000_orders"]
    assert r.method == "synthetic_control" and np.isfinite(r.estimate)

    # Re-running draws the same candidates and stores nothing new.
    again = json.loads(_cli(home, "--json"))
    assert again["chosen"]["markets"] == chosen["markets"] and again["written"] == 0

    # --write sets the [experiment] keys in place, comments kept.
    before = (home / "insightroi.toml").read_text(encoding="utf-8")
    text = _cli(home, "--write")
    after = (home / "insightroi.toml").read_text(encoding="utf-8")
    assert "set design, unit, end" in " ".join(text.split())
    end = START + timedelta(days=7 * chosen["weeks"] - 1)
    assert load_program(home / "insightroi.toml").experiment.end == end
    # The set was chosen for its fit: the analysis is told to compare it with placebo groups of like fit.
    assert load_program(home / "insightroi.toml").experiment.placebo_groups == "matched_fit"
    assert [ln for ln in before.splitlines() if ln.lstrip().startswith("#")] == \
        [ln for ln in after.splitlines() if ln.lstrip().startswith("#")]

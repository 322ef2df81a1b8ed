"""Issue 6 on the demo world with the randomization ignored: DiD and the time-series
counterfactual cover the true effect; the claim validator rejects a before/after spike claim and
supports the true effect.

World: ``insightroi.demo.generate_world(seed=0, scale="demo")`` (400k orders, 80 SKU families;
the smallest preset where the effect is detectable at all: at "small", 64 families and 50k
orders, the whole effect is ~31 avoided negative reviews and no estimator separates it from
noise). Treated = families that got the program, control = all the others; truth = truth.json
(``att``: the program's effect on the treated families' KPI, same draws under both policies).

What is and is not claimed. On this world the effect on negative reviews is about -1.7 per 1,000
orders (-14%) and the family-level noise (product-defect bursts) is of the same size, so a 95%
interval excludes zero only in some worlds: over seeds 0-59, the validator supports the true
claim in 21 (35%), calls it weak/inconclusive in 36 and not supported in 3, and rates the
cherry-picked claim not supported in 40, weak in 16, supported in 4; its interval covers the
ATT in 56 (93%). The randomized CUPED analysis of the same worlds has similar power (seed 7, the ``insightroi demo`` default, is one
where neither is significant). Seed 0 is a world where it is. The seed-independent properties
(intervals cover, spike claims are rarely supported, true claims rarely rejected) are checked
over 16 further seeds in the last test.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

demo = pytest.importorskip("insightroi.demo")

from insightroi.experiments._claim import validate_claim  # noqa: E402
from insightroi.experiments import claim_panel  # noqa: E402
from insightroi.experiments import naive_before_after_claim, quasi_section  # noqa: E402
from insightroi.program import load_program  # noqa: E402
from insightroi.store import open_store  # noqa: E402

PRIMARY = "negative_reviews_per_1000_orders"


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    from insightroi.pipeline import ingest_world

    world = demo_world("demo", 0)
    prog = load_program(world.program_path)
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('demo_claim')}/s.duckdb")
    ingest_world(st, world, prog)
    truth = json.loads((world.out_dir / "truth.json").read_text())
    section = quasi_section(st, prog, truth=truth)
    yield prog, st, truth, section
    st.close()


def _claim(section, label):
    return next(c for c in section["claims"] if c["label"] == label)


def test_demo_did_and_time_series_cover_the_truth(world):
    prog, st, truth, section = world
    att = truth["kpis"][PRIMARY]["att"]
    rows = {r["method"]: r for r in section["quasi"] if r["kpi"] == PRIMARY}
    assert set(rows) == {"did", "causal_impact", "did_adjusted"}
    for method, r in rows.items():
        assert r["truth_att"] == pytest.approx(att)
        assert r["ci_low"] <= att <= r["ci_high"], (method, r)
    # The validator's pre-period-adjusted estimate is also significant here; the plain ratio
    # DiD (pre-period weight fixed at 1) is not, which is why the validator does not use it.
    assert rows["did_adjusted"]["ci_high"] < 0
    assert rows["did"]["ci_low"] < 0 < rows["did"]["ci_high"]
    assert rows["did_adjusted"]["ci_high"] - rows["did_adjusted"]["ci_low"] < 0.7 * (rows["did"]["ci_high"] - rows["did"]["ci_low"])


def test_demo_spike_claim_is_not_supported(world):
    prog, st, truth, section = world
    c = _claim(section, "naive")
    # The cherry-pick: treated families' worst 4 pre-rollout weeks against the first 4 after.
    panel, rollout = claim_panel(st, prog, [PRIMARY])
    naive = naive_before_after_claim(panel, numerator="negative_reviews", denominator="orders", rollout=rollout)
    assert c["claim"] == f"negative reviews per 1000 orders down {abs(naive):.0%}"
    assert naive < -0.25  # what the slide would say
    assert c["verdict"] == "not supported", c["reasons"]
    # The validator found the window the claim came from, and it is the worst of the pre-period.
    search = c["windows"]["before_search"]
    assert search["reproduced"] and not search["is_last_window"]
    assert c["relative_change"] == pytest.approx(naive, abs=0.005)
    rtm = c["regression_to_mean"]
    assert rtm["status"] == "fail"
    assert rtm["details"]["most_extreme_of"] == search["n_windows"] > 5
    assert rtm["details"]["share_explained"] > 0.25
    # The claimed size overstates the incremental effect; the reasons say why.
    assert c["incremental_relative"] > naive
    assert any("regressed to the mean and overstates" in r for r in c["reasons"])
    assert any(r.startswith("Regression to the mean") for r in c["reasons"])


def test_demo_true_effect_claim_is_supported(world):
    prog, st, truth, section = world
    t = truth["kpis"][PRIMARY]
    c = _claim(section, "true")
    assert c["claim"] == f"negative reviews per 1000 orders down {abs(t['ate_relative']):.0%}"
    assert c["verdict"] == "supported", c["reasons"]
    lo, hi = c["incremental_relative_ci"]
    assert hi < 0 and lo <= t["ate_relative"] <= hi
    inc_lo, inc_hi = c["incremental"]["ci"]
    assert inc_lo <= t["att"] <= inc_hi
    assert c["incremental"]["method"] == "ratio_ancova"
    assert c["regression_to_mean"]["status"] == "pass"
    assert c["pre_trends"]["status"] == "pass"
    assert c["persistence"]["status"] == "pass"
    assert c["triangulation"]["status"] != "fail"
    assert any("is significant and contains the claimed" in r for r in c["reasons"])


# ---- the same over more worlds, from the cell simulation (no files) ----------------------------

_MEASURES = ("orders", "negative_reviews", "tickets", "refunds", "sessions", "conversions")


def _cell_panel(seed: int, scale: str = "demo"):
    """The family x week panel :func:`claim_panel` reads from the store, built from the cells.

    Same draws as :func:`insightroi.demo.generate_world` (``world_cells``); checked equal to the
    store's panel in :func:`test_cell_panel_equals_the_store_panel`.
    """
    from insightroi.demo._generate import _scaled_starter, resolve_scale
    from insightroi.demo._world import ORIGINS
    from insightroi.program import parse_program

    prog = parse_program(_scaled_starter(resolve_scale(scale)[0]), "demo")
    w = demo.world_cells(seed, scale, prog)
    e = prog.experiment
    pre_weeks = -(-e.pre_period_days // 7)
    p0 = (e.start - timedelta(days=7 * pre_weeks) - w.start).days
    n_weeks = (w.window_end - p0 + 1) // 7  # whole weeks only, as claim_panel
    tm = w.sku_treated()
    cells = {
        "orders": w.orders(tm), "conversions": w.orders(tm), "sessions": w.sessions,
        "negative_reviews": sum(w.count("negrev", o, tm) for o in ORIGINS),
        "tickets": sum(w.count("ticket", o, tm) for o in ORIGINS),
        "refunds": sum(w.count("refund", o, tm) for o in ORIGINS),
    }
    F = len(w.fam_ids)
    day_week = (np.arange(w.n_days) - p0) // 7
    keep = (day_week >= 0) & (day_week < n_weeks)
    panel = pd.DataFrame({"unit": np.repeat(w.fam_ids, n_weeks), "period": np.tile(np.arange(n_weeks), F),
                          "treated": np.repeat(w.fam_treated, n_weeks)})
    for name, arr in cells.items():
        sku_week = np.zeros((arr.shape[0], n_weeks))
        np.add.at(sku_week.T, day_week[keep], arr[:, keep].T)
        fam_week = np.zeros((F, n_weeks))
        np.add.at(fam_week, w.sku_fam, sku_week)
        panel[name] = fam_week.ravel()
    return panel, pre_weeks, demo.kpi_truth(w, prog), prog


def test_cell_panel_equals_the_store_panel(world):
    prog, st, truth, section = world
    store_panel, rollout = claim_panel(st, prog, [PRIMARY, "tickets_per_1000_orders", "refunds_per_1000_orders", "conversion_rate"])
    cell_panel, pre_weeks, cell_truth, _ = _cell_panel(0)
    assert pre_weeks == rollout
    assert cell_truth[PRIMARY]["att"] == pytest.approx(truth["kpis"][PRIMARY]["att"], rel=1e-9)
    m = store_panel.merge(cell_panel, on=["unit", "period"], suffixes=("", "_cells"), how="left")
    assert len(m) == len(store_panel) and m["treated"].eq(m["treated_cells"]).all()
    for name in _MEASURES:
        np.testing.assert_array_equal(m[name].to_numpy(dtype=float), m[f"{name}_cells"].to_numpy(dtype=float))
    # The store only lacks family-weeks with no rows at all.
    assert cell_panel.merge(store_panel[["unit", "period"]], how="left", indicator=True).query("_merge == 'left_only'")["orders"].sum() == 0


@pytest.mark.slow
def test_demo_claim_verdicts_over_worlds():
    # Seeds 1-16 of the same world, claims built as quasi_section builds them (measured: covers
    # 15/16; spike claim supported 1, true claim supported 4 / not supported 1). Over seeds
    # 0-59: covers 93%, spike claims 'supported' 7%, true claims 'not supported' 5%.
    adjacent = {"tickets_per_1000_orders": ("tickets", "orders", "decrease", 1000.0),
                "refunds_per_1000_orders": ("refunds", "orders", "decrease", 1000.0),
                "conversion_rate": ("conversions", "sessions", "increase", 1.0)}
    covered = spike_supported = true_rejected = true_supported = 0
    seeds = range(1, 17)
    for seed in seeds:
        panel, rollout, truth, _ = _cell_panel(seed)
        t = truth[PRIMARY]
        naive = naive_before_after_claim(panel, numerator="negative_reviews", denominator="orders", rollout=rollout)
        reps = {}
        for label, rel in (("naive", naive), ("true", t["ate_relative"])):
            text = f"negative reviews per 1000 orders {'down' if rel < 0 else 'up'} {abs(rel):.0%}"
            reps[label] = validate_claim(text, panel, rollout=rollout, numerator="negative_reviews", denominator="orders",
                                         scale=1000.0, kpi=PRIMARY, adjacent=adjacent, kpi_direction="decrease")
        lo, hi = reps["true"].incremental.ci
        covered += lo <= t["att"] <= hi
        spike_supported += reps["naive"].verdict == "supported"
        true_rejected += reps["true"].verdict == "not supported"
        true_supported += reps["true"].verdict == "supported"
    n = len(seeds)
    assert covered >= n - 2
    assert spike_supported <= 3
    assert true_rejected <= 2
    assert true_supported >= 2  # some power, not none

"""The per-arm power table of ``plan`` for A/B/n designs (issue 20).

With three treatment arms in the assignments, every KPI row of ``power_table`` gains ``arms``: each
arm's MDE against control equal to ``stats.multi_arm_mde`` at the row's own variance, on the
variance the two-arm columns use (so the two tables cannot drift apart), and wider than what the
pooled comparison detects (fewer units per arm, a level split across arms).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.experiments import power_table
from insightroi._core_cli import arm_power_table
from insightroi.experiments._power_table import arm_mdes
from insightroi.program import parse_program, starter_program_text
from insightroi.stats import mde_from_se, multi_arm_mde
from insightroi.store import open_store

TEXT = starter_program_text().replace("end = 2026-03-31", "end = 2025-09-30")
ARMS = ("daily", "hourly", "weekly")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    prog = parse_program(TEXT)
    tables = simulate_experiment_tables(prog, n_units=180, effect=-0.3, seed=4)
    a = tables["assignments"].copy()
    treated = a.arm == "treatment"
    # The treated units split over three arms by their id; control keeps its own.
    idx = a.loc[treated, "unit_id"].str[1:].astype(int).to_numpy()
    a.loc[treated, "arm"] = np.array(ARMS)[idx % 3]
    path = tmp_path_factory.mktemp("pw") / "s.duckdb"
    with open_store(f"duckdb:///{path}") as st:
        write_tables(st, {**tables, "assignments": a})
        out = power_table(prog, st, kpis=["negative_reviews_per_1000_orders", "conversion_rate"])
    return prog, out, a


def test_each_arm_mde_equals_multi_arm_mde_on_the_rows_variance(rows):
    prog, out, assignments = rows
    e = prog.experiment
    counts = assignments.arm.value_counts()
    for r in out:
        assert [x["arm"] for x in r["arms"]] == list(ARMS)
        assert r["arms_weeks"] == pytest.approx(r["planned_weeks"])
        sizes = [int(counts[a]) for a in ARMS]
        assert [x["units"] for x in r["arms"]] == sizes
        base = r["baseline"] / prog.kpi(r["kpi"]).scale
        for key, vkey in (("mde_relative", "variance"), ("mde_relative_cuped", "variance_cuped")):
            v = r["arms"][0][vkey]
            for corr in ("holm", "dunnett"):
                direct = multi_arm_mde(int(counts["control"]), sizes, sd=math.sqrt(v), alpha=e.alpha,
                                       power_target=e.power, correction=corr) / abs(base)
                np.testing.assert_allclose([x[key] for x in r["arms"]], direct, rtol=1e-12)
        # Same variance as the two-arm columns: it reproduces their MDE at the planned end.
        m = 1 - e.mde_relative if prog.kpi(r["kpi"]).direction == "decrease" else 1 + e.mde_relative
        inv_n = max(m, m * m) / r["units_treatment"] + 1 / r["units_control"]
        dof = r["units_treatment"] + r["units_control"] - 2
        for col, vkey in (("mde_at_planned_end", "variance"), ("mde_at_planned_end_cuped", "variance_cuped")):
            two = mde_from_se(math.sqrt(r["arms"][0][vkey] * inv_n), alpha=e.alpha, power_target=e.power,
                              df=dof) / abs(base)
            assert two == pytest.approx(r[col], rel=1e-9)
            # An arm has a third of the treated units and a third of the level: its MDE is wider.
            assert min(x[col.replace("mde_at_planned_end", "mde_relative")] for x in r["arms"]) > r[col]


def test_arm_mdes_against_the_normal_formula():
    # Bonferroni level alpha / 2 for two arms; NormalIndPower solves the two-sided power equation,
    # which for an MDE this far from zero is the one-sided formula to 1e-6.
    from scipy.stats import norm

    out = arm_mdes(1000, {"a": 500, "b": 1000}, 4.0, 1.0, 2.0, alpha=0.05, power=0.8)
    z = norm.ppf(1 - 0.05 / 4) + norm.ppf(0.8)
    for x, n in zip(out, (500, 1000)):
        assert x["mde_relative"] == pytest.approx(z * 2.0 * math.sqrt(1 / 1000 + 1 / n) / 2.0, rel=1e-6)
        assert x["mde_relative_cuped"] == pytest.approx(x["mde_relative"] / 2, rel=1e-12)


def test_two_arm_plans_have_no_arm_rows_and_the_table_prints(rows, tmp_path):
    _, out, _ = rows
    t = arm_power_table(out)
    assert t is not None and t.row_count == 3 * len(out)
    assert arm_power_table([{k: v for k, v in r.items() if k != "arms"} for r in out]) is None
    prog = parse_program(TEXT)
    with open_store(f"duckdb:///{tmp_path / 'two.duckdb'}") as st:
        write_tables(st, simulate_experiment_tables(prog, n_units=60, seed=2))
        two = power_table(prog, st, kpis=["conversion_rate"])
    assert "arms" not in two[0]

"""A user table declared in the program but not ingested yet: its KPIs are not estimable, the rest run.

So the starter's CX block can be switched on before the first survey export lands: `analyze` says
which table to ingest instead of failing every KPI.
"""

from __future__ import annotations

import pytest

from helpers.cx_tables import SURVEY_COLUMNS, table_toml
from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.experiments import analyze_experiment
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

BASE = starter_program_text().replace("end = 2026-03-31", "end = 2025-09-30")
NPS = table_toml("surveys", {**SURVEY_COLUMNS, "sku_family": "string"}, time_column="answered_at") + """
[[measures]]
name = "nps"
table = "surveys"
aggregation = "mean"
value = "case when nps >= 9 then 1 when nps <= 6 then -1 else 0 end"

[[kpis]]
name = "nps_score"
layer = "business"
numerator = "nps"
owner = "cx"
direction = "increase"
"""


def test_a_declared_table_not_ingested_leaves_its_kpi_not_estimable_and_the_others_unchanged(tmp_path):
    base, with_nps = parse_program(BASE), parse_program(BASE + NPS)
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as st:
        write_tables(st, simulate_experiment_tables(base, n_units=80, seed=4))
        res = analyze_experiment(st, with_nps, weekly=False)
        plain = analyze_experiment(st, base, weekly=False)
        assert "user_surveys" not in st.user_tables()
    nps = res.results["nps_score"]
    assert nps.method == "not_estimable"
    # The KPI says why in its own words, not what its emptiness looks like to the estimator
    # ("the control arm has no ... (a workflow KPI ...)", which a user read as a missing control).
    assert nps.diagnostics[-1].message == ("the user table 'surveys' is declared but not ingested "
                                           "(insightroi ingest --table surveys FILE): no rows")
    check = next(c for c in res.checks if c.name == "user_tables")
    assert check.status == "warn"
    assert "'surveys' is declared but not ingested (insightroi ingest --table surveys FILE): nps_score" in check.message
    # Every other KPI is analysed exactly as without the survey KPI.
    for name, r in plain.results.items():
        got = res.results[name]
        if r.method == "not_estimable":
            continue
        assert (got.estimate, got.se) == pytest.approx((r.estimate, r.se), rel=1e-12), name
    assert not [c for c in plain.checks if c.name == "user_tables"]


def test_a_kpi_whose_denominator_is_absent_from_both_arms_does_not_blame_the_control_arm():
    import pandas as pd

    from insightroi.experiments._analysis import kpi_effect

    kpi = parse_program(BASE).kpi("conversion_rate")
    units = pd.DataFrame({"unit_id": [f"u{i}" for i in range(6)], "arm": ["control", "treatment"] * 3,
                          "num": 0.0, "den": 0.0, "num_pre": 0.0, "den_pre": 0.0})
    ab, _ = kpi_effect(units, kpi, alpha=0.05, cuped=False)
    assert ab.diagnostics[-1].message == (f"neither arm has any {kpi.denominator} in the window, so conversion_rate "
                                          "cannot be compared (is the table holding them ingested?)")
    units.loc[units.arm == "treatment", "den"] = 10.0
    ab, _ = kpi_effect(units, kpi, alpha=0.05, cuped=False)
    assert ab.diagnostics[-1].message.startswith(f"the control arm has no {kpi.denominator} in the window")

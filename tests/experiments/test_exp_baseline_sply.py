"""``baseline = "same_period_last_year"``: the covariate is each unit's KPI over the window 52 weeks earlier.

Checked against per-unit sums computed with pandas from the simulated rows themselves (not through
the metrics layer), so a wrong window shift, an off-by-one day or a covariate still read from the
pre-period would each change the estimate.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.errors import DataError
from insightroi.experiments import analyze_experiment
from insightroi.experiments._analysis import kpi_effect
from insightroi.metrics import analysis_windows
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

# A 92-day window with 400 days of history before it, so last year's window is fully in the data.
BASE = (starter_program_text().replace("end = 2026-03-31", "end = 2025-09-30")
        .replace("pre_period_days = 90", "pre_period_days = 400"))
SPLY = BASE.replace("pre_period_days = 400", 'pre_period_days = 400\nbaseline = "same_period_last_year"', 1)
KPI = "tickets_per_1000_orders"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    prog = parse_program(BASE)
    tables = simulate_experiment_tables(prog, n_units=120, seed=9, effect=-0.3)
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('sply')}/sply.duckdb")
    write_tables(st, tables)
    yield st, tables
    st.close()


def _per_unit(tables, window):
    lo = datetime.combine(window[0], datetime.min.time())
    hi = datetime.combine(window[1] + timedelta(days=1), datetime.min.time())
    o, t = tables["orders"], tables["tickets"]
    den = o[(o.order_time >= lo) & (o.order_time < hi)].groupby("sku_family").size()
    num = t[(t.opened_at >= lo) & (t.opened_at < hi)].groupby("sku_family").size()
    return num, den


def test_the_window_is_shifted_back_52_weeks():
    prog = parse_program(SPLY)
    window, pre = analysis_windows(prog)
    assert window == (date(2025, 7, 1), date(2025, 9, 30))
    assert pre == (date(2024, 7, 2), date(2024, 10, 1))  # 364 days back: Tuesday to Tuesday, as the window
    assert pre[0].weekday() == window[0].weekday()


def test_the_estimate_equals_cuped_on_last_years_per_unit_counts_from_the_raw_rows(world):
    st, tables = world
    prog, base_prog = parse_program(SPLY), parse_program(BASE)
    res = analyze_experiment(st, prog, kpis=[KPI], weekly=False)
    window, pre = analysis_windows(prog)
    pw = res.to_dict()["pre_window"]
    assert (date.fromisoformat(pw["start"]), date.fromisoformat(pw["end"])) == pre

    a = tables["assignments"]
    num, den = _per_unit(tables, window)
    num_pre, den_pre = _per_unit(tables, pre)
    df = pd.DataFrame({"unit_id": a.unit_id, "arm": a.arm}).sort_values("unit_id", kind="stable")
    for col, s in (("num", num), ("den", den), ("num_pre", num_pre), ("den_pre", den_pre)):
        df[col] = df.unit_id.map(s).fillna(0).to_numpy(dtype=float)
    expected, _ = kpi_effect(df.reset_index(drop=True), prog.kpi(KPI), alpha=prog.experiment.alpha)
    got = res.results[KPI]
    assert got.method == expected.method == "cuped_ratio"
    assert (got.estimate, got.se) == pytest.approx((expected.estimate, expected.se), rel=1e-10)

    # The covariate is last year's, not the 400-day pre-period's: the default analysis differs.
    default = analyze_experiment(st, base_prog, kpis=[KPI], weekly=False).results[KPI]
    assert abs(default.estimate - got.estimate) > 1e-6 * abs(got.estimate)
    assert got.ci[0] < -0.3 * got.extra["control_mean"] < got.ci[1]  # the planted -30% is recovered


def test_a_window_of_a_year_or_more_and_a_quasi_design_are_refused():
    with pytest.raises(Exception, match="shorter than 52 weeks"):
        parse_program(SPLY.replace("end = 2025-09-30", "end = 2026-07-01"))
    with pytest.raises(Exception, match="randomized unit designs"):
        parse_program(SPLY.replace('design = "cluster"', 'design = "did"'))
    # An open-ended window that has grown past 52 weeks is refused when the analysis runs.
    open_ended = parse_program(SPLY.replace("end = 2025-09-30\n", ""))
    with pytest.raises(DataError, match="52 weeks or longer"):
        analysis_windows(open_ended, today=date(2026, 8, 1))
    assert analysis_windows(open_ended, today=date(2026, 6, 1))[1] == (date(2024, 7, 2), date(2025, 6, 2))

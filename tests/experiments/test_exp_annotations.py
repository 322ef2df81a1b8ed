"""Annotated events (promotions, outages) inside an experiment's or a claim's window are named by a
check whose status the program's ``experiment.annotation_rule`` sets (issue 23, "Baselines and
confounders"), on a real DuckDB store."""

from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.simstore import simulate_experiment_tables, write_tables
from insightroi.cli import app
from insightroi.experiments import analyze_experiment, validate_claim_in_store
from insightroi.experiments._checks import annotation_check
from insightroi.ingest import ingest_frame
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

TEXT = (starter_program_text().replace("end = 2026-03-31", "end = 2025-10-27")
        .replace("pre_period_days = 90", "pre_period_days = 84"))
KPI = "negative_reviews_per_1000_orders"
PROMO = {"id": "ann-1", "kind": "promotion", "start_time": "2025-07-14T00:00:00Z",
         "end_time": "2025-07-20T00:00:00Z", "scope": "all", "description": "20% off sitewide"}
BEFORE = {"id": "ann-0", "kind": "outage", "start_time": "2024-01-02T00:00:00Z", "end_time": "2024-01-03T00:00:00Z",
          "scope": "all", "description": "long before any window"}


def _program(rule: str, excluded: str = "[]"):
    return parse_program(TEXT.replace("exclude_windows = []", f'exclude_windows = {excluded}\nannotation_rule = "{rule}"'))


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("ann") / "s.duckdb"
    url = f"duckdb:///{path}"
    with open_store(url) as st:
        prog = parse_program(TEXT)
        write_tables(st, simulate_experiment_tables(prog, n_units=40, orders_per_unit_day=4.0,
                                                    negative_review_rate=0.08, effect=-0.3, seed=3))
        ingest_frame(st, "annotations", pd.DataFrame([PROMO, BEFORE]), program=prog)
    return url


def test_overlap_logic_rule_and_exclusions():
    rows = [{"id": "a", "kind": "outage", "start_time": datetime(2025, 8, 1), "end_time": None, "scope": "all",
             "description": "carrier down"},
            {"id": "b", "kind": "promotion", "start_time": datetime(2025, 7, 20), "end_time": datetime(2025, 8, 2),
             "scope": "category:shoes", "description": None}]
    win = (date(2025, 8, 1), date(2025, 8, 31))
    warn = annotation_check(rows, win)
    assert warn.status == "warn" and "outage 2025-08-01 to 2025-08-01" in warn.message
    assert "promotion 2025-07-20 to 2025-08-02 (category:shoes)" in warn.message
    assert [e["id"] for e in warn.details["events"]] == ["b", "a"]
    assert annotation_check(rows, win, rule="fail").status == "fail"
    assert annotation_check(rows, win, rule="ignore").status == "skip"
    # Ending the day before the window, or wholly inside a declared exclusion: not counted.
    assert annotation_check(rows[1:], (date(2025, 8, 3), date(2025, 8, 31))).status == "pass"
    assert annotation_check(rows[:1], win, excluded=[(date(2025, 7, 31), date(2025, 8, 2))]).status == "pass"


def test_analyze_names_the_promotion_and_the_rule_sets_its_status(store_url, tmp_path):
    with open_store(store_url) as st:
        warned = analyze_experiment(st, _program("warn"), kpis=[KPI], weekly=False)
        failed = analyze_experiment(st, _program("fail"), kpis=[KPI], weekly=False)
        excluded = analyze_experiment(st, _program("fail", "[[2025-07-14, 2025-07-20]]"), kpis=[KPI], weekly=False)
    check = {c.name: c for c in warned.checks}["annotations"]
    assert check.status == "warn" and "promotion 2025-07-14 to 2025-07-20 (all): 20% off sitewide" in check.message
    assert [e["id"] for e in check.details["events"]] == ["ann-1"]  # the 2024 outage is outside
    assert {c.name: c for c in failed.checks}["annotations"].status == "fail"
    assert {c.name: c for c in excluded.checks}["annotations"].status == "pass"
    # A CI job gated on failed checks stops on it.
    prog = tmp_path / "insightroi.toml"
    prog.write_text(TEXT.replace("exclude_windows = []", 'exclude_windows = []\nannotation_rule = "fail"'))
    res = CliRunner().invoke(app, ["analyze", "--store", store_url, "--program", str(prog), "--kpi", KPI, "--json",
                                   "--fail-on", "check"])
    assert res.exit_code == 3 and "check annotations (experiment)" in res.stderr


def test_a_claim_over_a_promotion_is_at_most_weak_when_the_rule_says_fail(store_url):
    claim = "negative reviews down 30%"
    with open_store(store_url) as st:
        warn = validate_claim_in_store(st, _program("warn"), claim, KPI)
        fail = validate_claim_in_store(st, _program("fail"), claim, KPI)
        ignore = validate_claim_in_store(st, _program("ignore"), claim, KPI)
    assert ignore.verdict == "supported" and ignore.annotations.status == "skip"
    assert warn.verdict == "supported" and warn.annotations.status == "warn"
    assert any("20% off sitewide" in r for r in warn.reasons)
    assert fail.verdict == "weak" and fail.annotations.status == "fail"
    assert json.loads(json.dumps(fail.to_dict()))["annotations"]["status"] == "fail"
    assert "annotations: FAIL" in fail.summary()

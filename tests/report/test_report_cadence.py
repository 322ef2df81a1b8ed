"""Cadence reports: the experiment window period by period, on the tiny demo company's real DuckDB store.

`insightroi report --cadence week|month|quarter` saves a series (one analysis of the primary KPI
per calendar period, cumulative from the experiment start) and renders one section per period.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, datetime, timedelta
from html.parser import HTMLParser

import httpx
import ibis
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.report_sample import sample_bundle
from insightroi.bundle import load_section
from insightroi.chain import chain_summary
from insightroi.cli import app
from insightroi.experiments import analyze_experiment
from insightroi.program import PRAISE_OWNER, load_program
from insightroi.report import format_helpers, render_html
from insightroi.report._cadence import calendar_periods, cadence_unit, load_cadence, run_cadence
from insightroi.store import open_store


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The tiny demo company, every stage run, through the real CLI (its store and program file)."""
    out = tmp_path_factory.mktemp("cadence-demo")
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--scale", "tiny", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    return out, f"duckdb:///{out}/insightroi.duckdb", load_program(out / "world" / "insightroi.toml")


@pytest.fixture(scope="module")
def quarterly(demo, tmp_path_factory):
    """`insightroi report --cadence quarterly` (the old spelling) on the demo store."""
    out, url, _ = demo
    report_dir = tmp_path_factory.mktemp("cadence-report")
    result = CliRunner().invoke(app, ["report", "--store", url, "--program", str(out / "world" / "insightroi.toml"),
                                      "--out", str(report_dir), "--cadence", "quarterly"])
    assert result.exit_code == 0, result.output
    with open_store(url) as st:
        series = load_cadence(st, "quarter")
    return report_dir, series, result.output


@pytest.fixture(scope="module")
def weekly(demo):
    _, url, prog = demo
    with open_store(url) as st:
        return run_cadence(st, prog, "week")


# ---- periods -------------------------------------------------------------------------------------
def test_iso_weeks_run_monday_to_sunday_across_the_year_end():
    weeks = calendar_periods(date(2020, 12, 23), date(2021, 1, 12), "week")
    assert [w["label"][:8] for w in weeks] == ["2020-W52", "2020-W53", "2021-W01", "2021-W02"]
    assert weeks[0]["start"] == date(2020, 12, 21) and weeks[0]["covered_start"] == date(2020, 12, 23)
    assert weeks[1]["start"] == date(2020, 12, 28) and weeks[1]["end"] == date(2021, 1, 3)
    assert weeks[-1]["end"] == date(2021, 1, 17) and weeks[-1]["covered_end"] == date(2021, 1, 12)
    assert [w["partial"] for w in weeks] == [True, False, False, True]


def test_months_and_quarters_are_calendar_ones():
    months = calendar_periods(date(2024, 1, 31), date(2024, 3, 1), "monthly")
    assert [(m["label"], m["start"], m["end"]) for m in months] == [
        ("January 2024", date(2024, 1, 1), date(2024, 1, 31)),
        ("February 2024", date(2024, 2, 1), date(2024, 2, 29)),  # a leap year
        ("March 2024", date(2024, 3, 1), date(2024, 3, 31)),
    ]
    quarters = calendar_periods(date(2024, 3, 31), date(2024, 4, 1), "quarter")
    assert [(q["label"], q["start"], q["end"]) for q in quarters] == [
        ("Q1 2024", date(2024, 1, 1), date(2024, 3, 31)), ("Q2 2024", date(2024, 4, 1), date(2024, 6, 30))]


def test_a_cadence_outside_the_list_names_the_parameter():
    assert [cadence_unit(c) for c in ("weekly", "month", "quarterly")] == ["week", "month", "quarter"]
    with pytest.raises(ValueError, match="'cadence' parameter must be one of"):
        cadence_unit("daily")
    result = CliRunner().invoke(app, ["report", "--cadence", "daily"])
    assert result.exit_code == 1 and "--cadence must be one of week, month, quarter" in result.output


# ---- the series ----------------------------------------------------------------------------------
def test_weekly_series_ends_at_the_full_window_analysis(demo, weekly):
    _, url, prog = demo
    kpi = prog.experiment.primary_kpi
    with open_store(url) as st:
        full = analyze_experiment(st, prog, kpis=[kpi])
        saved = next(k for k in load_section(st, "analyze")["kpis"] if k["name"] == kpi)
    weeks = weekly["periods"]
    assert len(weeks) == 40  # 1 Jul 2025 (a Tuesday) to 31 Mar 2026 (a Tuesday): ISO weeks 27 to 14
    last = weeks[-1]
    assert last["to_date"] == {"start": full.window[0].isoformat(), "end": full.window[1].isoformat()}
    r = full.results[kpi]
    assert abs(last["estimate"] - r.estimate) < 1e-9
    assert abs(last["ci_low"] - r.ci[0]) < 1e-9 and abs(last["ci_high"] - r.ci[1]) < 1e-9
    assert abs(last["estimate"] - saved["estimate"]) < 1e-9  # what `insightroi analyze` saved
    # Each week is Monday to Sunday, they follow one another, and each analyses from the start.
    for a, b in zip(weeks, weeks[1:]):
        assert date.fromisoformat(b["start"]) == date.fromisoformat(a["end"]) + timedelta(days=1)
    assert all(date.fromisoformat(w["start"]).weekday() == 0 and date.fromisoformat(w["end"]).weekday() == 6
               for w in weeks)
    assert {w["to_date"]["start"] for w in weeks} == {"2025-07-01"}
    # Cumulative: a middle week is its own analysis, not the full window's number repeated.
    assert weeks[10]["estimate"] != pytest.approx(last["estimate"], abs=1e-6)
    assert weekly["seconds"] > 0 and weekly["analysis_seconds"] <= weekly["seconds"]


def test_a_middle_period_is_the_analysis_of_its_window(demo, weekly):
    _, url, prog = demo
    kpi = prog.experiment.primary_kpi
    week = weekly["periods"][12]
    with open_store(url) as st:
        a = analyze_experiment(st, prog, kpis=[kpi], window=(date(2025, 7, 1), date.fromisoformat(week["end"])),
                               weekly=False)
    assert abs(week["estimate"] - a.results[kpi].estimate) < 1e-12


def test_alerts_per_period_add_up_to_the_windows_alerts(demo, weekly):
    _, url, _ = demo
    lo, hi = datetime(2025, 7, 1), datetime(2026, 4, 1)
    with open_store(url) as st:
        funnel = chain_summary(st, start=lo, end=hi)["funnel"]
        saved_chain = load_section(st, "chain")
        ev = st.table("chain_events")
        alerts = ev.filter(ev.event_type == "alert_delivered").mutate(aid=ibis.coalesce(ev.alert_id, ev.id))
        first = alerts.group_by("aid").aggregate(t=alerts.event_time.min()).execute()
    assert funnel["alerts"] > 10
    assert sum(w["alerts"] for w in weekly["periods"]) == funnel["alerts"] == weekly["alerts_total"]
    # The demo's alerts all fall in its window, so the chain section counts the same ones.
    assert saved_chain["funnel"]["alerts"] == funnel["alerts"]
    # Per week, against the raw events: first delivery of each alert id in Monday..Sunday.
    for w in weekly["periods"]:
        s, e = date.fromisoformat(w["covered_start"]), date.fromisoformat(w["covered_end"])
        assert w["alerts"] == int(((first.t.dt.date >= s) & (first.t.dt.date <= e)).sum()), w["label"]


def test_a_praise_alert_is_not_counted_by_the_cadence_as_the_chain_leaves_it_out(demo, quarterly, tmp_path):
    """One praise alert (and its acknowledgement) added to a copy of the demo store changes no
    period's counts: the cadence's alert total stays the chain funnel's ``alerts``."""
    _, url, prog = demo
    _, base, _ = quarterly
    copy = tmp_path / "praise.duckdb"
    shutil.copyfile(url.removeprefix("duckdb:///"), copy)
    lo, hi = datetime(2025, 7, 1), datetime(2026, 4, 1)
    with open_store(f"duckdb:///{copy}") as st:
        st.append("chain_events", pd.DataFrame([
            {"id": "praise-1", "event_type": "alert_delivered", "alert_id": "praise-1", "team": PRAISE_OWNER,
             "topic": "praise", "sku_family": None, "event_time": datetime(2025, 8, 6), "actor": "insightroi-detect",
             "payload": json.dumps({"kind": "praise", "day": "2025-08-05", "observed": 30}), "batch_id": "t"},
            {"id": "praise-1-ack", "event_type": "acknowledged", "alert_id": "praise-1", "team": PRAISE_OWNER,
             "event_time": datetime(2025, 8, 6, 9), "actor": "dana", "payload": "{}", "batch_id": "t"},
        ]))
        summary = chain_summary(st, start=lo, end=hi)
        series = run_cadence(st, prog, "quarter", save=False)
    assert summary["praise"]["alerts"] == 1 and summary["funnel"]["alerts"] == base["alerts_total"]
    assert series["alerts_total"] == summary["funnel"]["alerts"]
    counts = ("alerts", "acknowledged", "actions", "fixes")
    assert [[p[c] for c in counts] for p in series["periods"]] == [[p[c] for c in counts] for p in base["periods"]]


# ---- the report ----------------------------------------------------------------------------------
def test_quarterly_report_periods_are_calendar_quarters(quarterly):
    _, series, output = quarterly
    assert series["cadence"] == "quarter"
    assert [(p["label"], p["start"], p["end"]) for p in series["periods"]] == [
        ("Q3 2025", "2025-07-01", "2025-09-30"), ("Q4 2025", "2025-10-01", "2025-12-31"),
        ("Q1 2026", "2026-01-01", "2026-03-31")]
    assert [p["to_date"]["end"] for p in series["periods"]] == ["2025-09-30", "2025-12-31", "2026-03-31"]
    assert "cadence: 3 quarters of negative_reviews_per_1000_orders" in output


class _Periods(HTMLParser):
    """The period sections of a report page: their data attributes and visible text."""

    def __init__(self):
        super().__init__()
        self.sections, self._depth = [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "period" in (a.get("class") or "").split():
            self.sections.append({"attrs": a, "text": ""})
            self._depth = 1
        elif tag == "section" and self._depth:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "section" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.sections[-1]["text"] += data


def _periods(html: str) -> list[dict]:
    p = _Periods()
    p.feed(html)
    return p.sections


def test_report_has_one_section_per_period_with_the_saved_figures(quarterly):
    report_dir, series, _ = quarterly
    html = (report_dir / "report.html").read_text()
    sections = _periods(html)
    assert len(sections) == len(series["periods"]) == 3
    fmt = format_helpers("USD")
    for sec, p in zip(sections, series["periods"]):
        a, text = sec["attrs"], " ".join(sec["text"].split())
        assert (a["data-label"], a["data-start"], a["data-end"]) == (p["label"], p["start"], p["end"])
        assert float(a["data-estimate"]) == p["estimate"]
        assert float(a["data-ci-low"]) == p["ci_low"] and float(a["data-ci-high"]) == p["ci_high"]
        assert int(a["data-alerts"]) == p["alerts"] and int(a["data-actions"]) == p["actions"]
        assert float(a["data-value-soft"]) == p["value_soft"] and a["data-value-hard"] == ""
        # What a reader sees is the same figure, formatted.
        assert f"Effect to date{fmt['num'](p['estimate'], True)}" in text
        assert f"CI {fmt['num'](p['ci_low'], True)} to {fmt['num'](p['ci_high'], True)}" in text
        assert f"Alerts raised{p['alerts']}" in text and f"{p['actions']} actions" in text
        assert f"Soft value to date{fmt['money'](p['value_soft'], True)}" in text
    # The header names the span by quarter, not one quarter for nine months of figures.
    assert "reporting period 01 Jul 2025 – 31 Mar 2026 by quarter (3 quarters)" in html
    assert "Q1 2026 (01 Jan" not in html
    assert html.count("<svg") > html.count('id="cadence"') and 'id="cadence"' in html
    # report.json carries the same series the store holds.
    assert json.loads((report_dir / "report.json").read_text())["cadence"] == series
    # The finance page has it too; the executive page does not.
    assert len(_periods((report_dir / "report-finance.html").read_text())) == 3
    assert _periods((report_dir / "report-executive.html").read_text()) == []


def test_sequential_programs_get_always_valid_intervals(demo):
    _, url, prog = demo
    seq = prog.model_copy(update={"experiment": prog.experiment.model_copy(update={"sequential": True})})
    kpi = prog.experiment.primary_kpi
    with open_store(url) as st:
        fixed = run_cadence(st, prog, "quarter", save=False)
        series = run_cadence(st, seq, "quarter", save=False)
        full = analyze_experiment(st, seq, kpis=[kpi])
    assert series["sequential"] is True and fixed["sequential"] is False
    last, last_fixed = series["periods"][-1], fixed["periods"][-1]
    assert abs(last["ci_low"] - full.results[kpi].ci[0]) < 1e-9
    # A confidence sequence is wider than the fixed-horizon interval at the same look.
    assert last["ci_high"] - last["ci_low"] > 1.05 * (last_fixed["ci_high"] - last_fixed["ci_low"])
    assert not any("sequential is false" in n for n in series["notes"])
    assert any("sequential is false" in n for n in fixed["notes"])
    html = render_html({**sample_bundle(), "cadence": series})
    assert "always-valid CI" in html and "always valid (confidence sequence" in html


def test_a_bundle_without_a_series_keeps_the_old_period_label():
    html = render_html(sample_bundle(), cadence="quarter")
    assert "Q1 2026 (01 Jan – 31 Mar 2026)" in html and 'class="card period"' not in html
    assert re.search(r'id="cadence"', html) is None


def test_run_with_a_cadence_writes_the_same_series_as_report(demo, tmp_path):
    out, url, _ = demo
    prog_path = str(out / "world" / "insightroi.toml")
    run = CliRunner().invoke(app, ["run", "--store", url, "--program", prog_path, "--only", "report",
                                   "--out", str(tmp_path / "run"), "--cadence", "monthly"])
    assert run.exit_code == 0, run.output
    with open_store(url) as st:
        series = load_cadence(st, "month")
    assert series["cadence"] == "month" and len(series["periods"]) == 9  # Jul 2025 .. Mar 2026
    assert json.loads((tmp_path / "run" / "report.json").read_text())["cadence"] == series
    assert len(_periods((tmp_path / "run" / "report.html").read_text())) == 9
    bad = CliRunner().invoke(app, ["run", "--store", url, "--program", prog_path, "--cadence", "fortnight"])
    assert bad.exit_code != 0 and "--cadence must be one of" in bad.output


# ---- the dashboard (last: the server holds the demo store until the module ends) -----------------
def test_dashboard_monitoring_page_shows_the_saved_series(demo, quarterly, live_server):
    from insightroi.server import create_app

    out, url, _ = demo
    _, series, _ = quarterly
    token = "cadence-test-token-0123456789abcdef"
    srv = live_server(create_app(url, program=out / "world" / "insightroi.toml", token=token))
    with httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
        page = c.get("/monitoring")
        saved = c.get("/api/v1/results/cadence:quarter")
    assert page.status_code == 200 and saved.status_code == 200
    assert saved.json() == series
    html = page.text
    i = html.index('id="cadence-quarter"')
    section = html[i:html.index("</section>", i)]
    rows = re.findall(r'<tr data-start="([^"]+)" data-end="([^"]+)" data-estimate="([^"]*)" data-alerts="(\d+)"', section)
    assert [(s, e, float(est), int(n)) for s, e, est, n in rows] == [
        (p["start"], p["end"], p["estimate"], p["alerts"]) for p in series["periods"]]
    assert "Q3 2025" in section and "<svg" in section

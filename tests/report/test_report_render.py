"""The HTML report: consistent sample bundle, views, sections only when present, offline, safe."""

from __future__ import annotations

import json
import math
import re

import pytest
import typer
from typer.testing import CliRunner

from insightroi.report import CADENCES, VIEWS, cadence_period, render_html, sample_bundle, write_report
from insightroi.report import _cli as report_cli
from insightroi.store import open_store


@pytest.fixture(scope="module")
def bundle():
    return sample_bundle()


# ---- the fixture itself must be internally consistent -------------------------------------------
def test_sample_bundle_roi_figures_add_up(bundle):
    roi = bundle["roi"]
    kpis = {k["name"]: k for k in bundle["kpis"]}
    hard = 0.0
    for p in roi["pools"]:
        k = kpis[p["kpi"]]
        avoided = -k["estimate"] / 1000 * 1_200_000  # scale 1000, treated orders in the window
        assert p["avoided_events"] == pytest.approx(avoided, abs=0.1)
        if p["hard"]:
            hard += avoided * p["unit_value"]["mode"]
    assert roi["benefit"] == pytest.approx(hard, rel=1e-9)
    assert roi["cost"] == pytest.approx(sum(c["total_mode"] for c in roi["costs"]), abs=0.05)
    assert roi["estimate"] == pytest.approx((roi["benefit"] - roi["cost"]) / roi["cost"], rel=1e-5)
    assert roi["bcr"] == pytest.approx(roi["benefit"] / roi["cost"], rel=1e-5)
    expected = next(s for s in roi["scenarios"] if s["name"] == "expected")
    assert expected["roi"] == pytest.approx(roi["estimate"], rel=1e-6)
    worst, best = (next(s for s in roi["scenarios"] if s["name"] == n) for n in ("worst", "best"))
    assert worst["roi"] < roi["estimate"] < best["roi"]
    assert sum(roi["histogram"]["counts"]) == roi["n_draws"]
    assert len(roi["histogram"]["edges"]) == len(roi["histogram"]["counts"]) + 1
    assert roi["ci_low"] < roi["conservative"] < roi["median"] < roi["ci_high"]
    assert sum(p["share"] for p in roi["pools"] if p["hard"]) == pytest.approx(1.0, abs=1e-3)
    assert [t["swing"] for t in roi["tornado"]] == sorted((t["swing"] for t in roi["tornado"]), reverse=True)


def test_sample_bundle_effects_and_chain_add_up(bundle):
    for k in bundle["kpis"]:
        if k["control_mean"] is None:
            continue
        assert k["estimate"] == pytest.approx(k["treatment_mean"] - k["control_mean"], abs=1e-9)
        assert k["ci_low"] < k["estimate"] < k["ci_high"]
        assert k["relative"] == pytest.approx(k["estimate"] / k["control_mean"], abs=1e-6)
        assert k["truth_relative"] == pytest.approx(k["truth"] / k["control_mean"], abs=1e-6)
    funnel, teams = bundle["chain"]["funnel"], bundle["chain"]["by_team"]
    for stage in ("alerts", "acknowledged", "acted", "fixed"):
        assert funnel[stage] == sum(t[stage] for t in teams)
    assert funnel["insights"] > funnel["alerts"] >= funnel["acknowledged"] >= funnel["acted"] >= funnel["fixed"]
    adoption = next(k for k in bundle["kpis"] if k["name"] == "alert_adoption_rate")
    assert adoption["estimate"] == pytest.approx(funnel["acted"] / funnel["alerts"], abs=1e-6)
    topics = bundle["insights"]["topics"]
    assert sum(t["share"] for t in topics) == pytest.approx(1.0, abs=1e-3)
    json.dumps(bundle, allow_nan=False)  # JSON-able, as the store requires


# ---- rendering ----------------------------------------------------------------------------------
@pytest.mark.parametrize("view", VIEWS)
def test_every_view_is_self_contained_html(bundle, view):
    html = render_html(bundle, view=view)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # Offline: no external scripts, stylesheets, images or fonts.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    assert f'data-view="{view}"' in html


def test_full_report_has_every_section(bundle):
    html = render_html(bundle)
    for section in ("summary", "tree", "experiment", "effects", "roi", "assumptions", "chain", "insights",
                    "monitor", "claims"):
        assert f'id="{section}"' in html, section
    # Executive summary: decision, KPI moved, window, ROI with interval and P(ROI>0).
    assert "Continue and scale the program" in html
    assert "−15.0%" in html and "2025-07-01" in html and "2026-03-31" in html
    assert "129%" in html and "90% interval 14% to 233%" in html and "97%" in html
    # Every experiment check with its result.
    for c in bundle["experiment"]["checks"]:
        assert c["message"] in html
    assert html.count('class="badge warn"') >= 1 and 'class="badge skip"' in html
    # Charts are inline SVG: forest, histogram, tornado, funnel, cost bars, decay trend.
    for title in ("Relative effect per KPI", "Distribution of simulated ROI", "Sensitivity of ROI",
                  "Decision chain funnel", "Cost stack", "lift decay"):
        assert title in html, title
    assert html.count("<svg") >= 6
    # Assumptions behind each value line, and soft value kept out of the headline.
    assert "Cost per ticket from the support budget" in html and "$4 / $6 / $9" in html
    assert "soft value is shown separately" in html


def test_truth_only_for_demo_bundles():
    demo = render_html(sample_bundle(is_demo=True))
    real = render_html(sample_bundle(is_demo=False))
    assert "ground truth" in demo and "truth 106%" in demo
    assert "ground truth" not in real and "DEMO DATA" not in real


def test_sections_render_only_when_present():
    html = render_html({"program": {"name": "Bare program", "value_hypothesis": "A hypothesis long enough"}})
    assert "Bare program" in html and 'id="summary"' in html
    for section in ("roi", "experiment", "effects", "chain", "monitor", "tree", "claims"):
        assert f'id="{section}"' not in html
    b = sample_bundle()
    del b["roi"]
    html = render_html(b)
    assert 'id="roi"' not in html and 'id="effects"' in html


def test_audience_views_show_their_slice(bundle):
    fin = render_html(bundle, view="finance")
    assert "Three numbers" in fin and fin.count('class="stat"') >= 3 and 'id="trend"' in fin
    assert 'id="insights"' not in fin
    sup = render_html(bundle, view="support")
    assert "Resolution time by team" in sup and "Tickets deflected" in sup and "Top pain points" in sup
    assert "alr-0005" in sup and "alr-0001" not in sup  # only support-owned alerts
    prod = render_html(bundle, view="product")
    assert "Emerging themes" in prod and "Fixes shipped" in prod and "×3.3" in prod
    execv = render_html(bundle, view="executive")
    assert "Monitoring recommends to retrain the model" in execv
    assert "was 15.0% lower in treated units than in the control group" in execv
    assert 'id="assumptions"' not in execv


@pytest.mark.parametrize("cadence,label", [
    ("weekly", "Week ending 31 Mar 2026 (25 Mar – 31 Mar)"),
    ("monthly", "March 2026"),
    ("quarterly", "Q1 2026 (01 Jan – 31 Mar 2026)"),
])
def test_cadence_presets_label_the_period(bundle, cadence, label):
    assert cadence_period(bundle["window"], cadence)["label"] == label
    assert label in render_html(bundle, view="executive", cadence=cadence)


def test_bad_options_name_the_parameter(bundle):
    with pytest.raises(ValueError, match="'view' parameter must be one of"):
        render_html(bundle, view="board")
    with pytest.raises(ValueError, match="'cadence'"):
        render_html(bundle, cadence="daily")
    with pytest.raises(ValueError, match="program"):
        render_html({"kpis": []})
    assert set(CADENCES) == {"weekly", "monthly", "quarterly"}


def test_untrusted_text_is_escaped_and_summaries_sanitised():
    b = sample_bundle()
    b["program"]["name"] = "<script>alert(1)</script>"
    b["kpis"][0]["summary_html"] = '<table onclick="x()"><tr><td>ok</td></tr></table><script>steal()</script><img src=x onerror=y>'
    b["insights"]["new_themes"][0]["examples"] = ['<img src="http://evil/x.png">']
    html = render_html(b)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<script" not in html and "onclick" not in html and "onerror" not in html and "<img" not in html
    assert "<td>ok</td>" in html


def test_missing_numbers_render_as_dashes():
    b = sample_bundle()
    b["roi"]["p_positive"] = None
    b["roi"]["payback_months"] = None
    b["kpis"][0]["p_value"] = None
    html = render_html(b)
    assert "None" not in re.sub(r"<[^>]+>", "", html)
    assert "nan" not in re.sub(r"<[^>]+>", "", html).lower().replace("financ", "")


def test_write_report_writes_every_view_and_json(tmp_path, bundle):
    paths = write_report(bundle, tmp_path / "out", cadence="monthly")
    assert set(paths) == set(VIEWS) | {"json"}
    assert paths["full"].name == "report.html" and paths["finance"].name == "report-finance.html"
    for p in paths.values():
        assert p.stat().st_size > 1000
    assert json.loads(paths["json"].read_text()) == bundle
    # Small: inline SVG, no 4.8 MB plotly.js in each file.
    assert paths["full"].stat().st_size < 200_000


def _cli_app():
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so "report" is a subcommand as in the real CLI
        pass

    report_cli.register(app)
    return app


def test_cli_report_reads_latest_bundle_from_store(tmp_path, bundle):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    runner = CliRunner()
    empty = runner.invoke(_cli_app(), ["report", "--store", url, "--out", str(tmp_path / "r0")])
    assert empty.exit_code == 1
    assert "run insightroi demo or the stages first" in empty.output
    with open_store(url) as st:
        st.save_result("bundle", "latest", bundle)
    ok = runner.invoke(_cli_app(), ["report", "--store", url, "--out", str(tmp_path / "r1")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r1" / "report.html").exists() and (tmp_path / "r1" / "report-support.html").exists()
    one = runner.invoke(_cli_app(), ["report", "--store", url, "--out", str(tmp_path / "r2"), "--view", "finance"])
    assert one.exit_code == 0 and (tmp_path / "r2" / "report-finance.html").exists()
    assert not (tmp_path / "r2" / "report.html").exists()
    bad = runner.invoke(_cli_app(), ["report", "--store", url, "--view", "board"])
    assert bad.exit_code == 1 and "--view must be one of" in bad.output


def test_roi_histogram_bars_match_counts(bundle):
    html = render_html(bundle, view="full")
    svg = html[html.index('aria-label="Distribution of simulated ROI"'):]
    svg = svg[: svg.index("</svg>")]
    bars = re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)
    assert len(bars) == len(bundle["roi"]["histogram"]["counts"])
    heights = [float(h) for h in bars]
    counts = bundle["roi"]["histogram"]["counts"]
    top = max(range(len(counts)), key=counts.__getitem__)
    assert max(range(len(heights)), key=heights.__getitem__) == top
    assert all(math.isfinite(h) and h >= 0 for h in heights)


def test_stage_failures_are_reported_not_hidden():
    b = sample_bundle()
    b["failures"] = [{"stage": "monitor", "status": "failed", "error": "EstimationError: too few periods"},
                     {"stage": "quasi-experiments", "status": "skipped", "error": "stage not available: x"}]
    for view in ("full", "executive"):
        html = render_html(b, view=view)
        assert 'id="failures"' in html and "EstimationError: too few periods" in html
    assert 'id="failures"' not in render_html(sample_bundle())


@pytest.mark.parametrize("section", ["experiment", "kpis", "roi", "chain", "insights", "monitor", "claims"])
def test_partial_sections_from_other_stages_still_render(section):
    # Other stages may fill a section only in part: drop each key in turn, every view still renders.
    base = sample_bundle()
    value = base[section]
    keys = list(value[0]) if isinstance(value, list) else list(value)
    for key in keys:
        b = sample_bundle()
        for item in (b[section] if isinstance(b[section], list) else [b[section]]):
            item.pop(key, None)
        for view in VIEWS:
            assert "</html>" in render_html(b, view=view), (section, key, view)


def test_claims_table_says_where_each_claim_comes_from():
    b = sample_bundle()
    b["claims"] = [
        {"claim": "orders down 29%", "label": "naive", "verdict": "not_supported",
         "incremental_relative": -0.17, "incremental_relative_ci": [-0.33, -0.015], "reasons": ["Spike."]},
        {"claim": "orders down 12%", "label": "true", "verdict": "supported",
         "incremental_relative": -0.121, "incremental_relative_ci": [-0.2, -0.04], "reasons": ["Holds."]},
    ]
    section = render_html(b).split('id="claims"')[1].split("</section>")[0]
    rows = re.findall(r"<tr><td>(.*?)</tr>", section, flags=re.S)
    assert len(rows) == 2
    assert "orders down 29%" in rows[0] and "no control" in rows[0] and "−17.0% [−33.0%, −1.5%]" in rows[0]
    assert "orders down 12%" in rows[1] and "true effect the demo world simulated" in rows[1]

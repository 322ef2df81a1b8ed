"""The HTML report: consistent sample bundle, views, sections only when present, offline, safe."""

from __future__ import annotations

import json
import math
import re

import pytest
import typer
from typer.testing import CliRunner

from insightroi.bundle import Bundle, migrate_bundle
from helpers.report_sample import sample_bundle, sample_sections
from insightroi.report import CADENCES, VIEWS, cadence_period, render_html, write_report
from insightroi.report import _cli as report_cli
from insightroi.report import kpi_verdict
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
    for section in ("roi", "experiment", "effects", "chain", "monitor", "tree", "claims", "decision-rules", "quasi",
                    "provenance"):
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
    assert "Resolution time by team" in sup and "support tickets avoided" in sup and "Top pain points" in sup
    assert "alr-0005" in sup and "alr-0001" not in sup  # only support-owned alerts
    prod = render_html(bundle, view="product")
    assert "Emerging themes" in prod and "Fixes shipped" in prod and "×3.3" in prod
    assert "alr-0005" not in prod and "alr-0003" not in prod  # support's and logistics' alerts stay out
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


def test_cli_report_writes_the_bundle_assembled_from_saved_sections(tmp_path):
    from insightroi.bundle import assemble_bundle, program_hash
    from insightroi.program import parse_program, starter_program_text

    prog_path = tmp_path / "insightroi.toml"
    prog_path.write_text(starter_program_text(), encoding="utf-8")
    program = parse_program(starter_program_text())
    url = f"duckdb:///{tmp_path}/s.duckdb"
    runner = CliRunner()
    args = ["report", "--store", url, "--program", str(prog_path)]
    missing = runner.invoke(_cli_app(), ["report", "--store", url, "--program", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 1 and "no program file" in missing.output
    with open_store(url) as st:
        for stage, payload in sample_sections(program_hash(program)).items():
            st.save_result("section", stage, payload)
    ok = runner.invoke(_cli_app(), [*args, "--out", str(tmp_path / "r1")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r1" / "report.html").exists() and (tmp_path / "r1" / "report-support.html").exists()
    with open_store(url) as st:
        expected = assemble_bundle(st, program).to_report()
    written = json.loads((tmp_path / "r1" / "report.json").read_text())
    drop = lambda b: {k: v for k, v in b.items() if k != "generated_at"}  # noqa: E731
    assert drop(written) == drop(expected)
    printed = runner.invoke(_cli_app(), [*args, "--out", str(tmp_path / "r3"), "--json"])
    assert printed.exit_code == 0 and drop(json.loads(printed.stdout)) == drop(expected)
    html = (tmp_path / "r1" / "report.html").read_text()
    assert 'id="decision-rules"' in html and 'id="quasi"' in html and 'id="provenance"' in html
    one = runner.invoke(_cli_app(), [*args, "--out", str(tmp_path / "r2"), "--view", "finance"])
    assert one.exit_code == 0 and (tmp_path / "r2" / "report-finance.html").exists()
    assert not (tmp_path / "r2" / "report.html").exists()
    bad = runner.invoke(_cli_app(), [*args, "--view", "board"])
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


# ---- schema 2: the saved objects, shown as saved -------------------------------------------------
@pytest.mark.parametrize("is_demo", [True, False])
def test_sample_bundle_validates_against_the_bundle_schema(is_demo):
    b = sample_bundle(is_demo=is_demo)
    model = Bundle.model_validate(b)
    assert model.schema_version == 2 and model.program.primary_kpi == "negative_reviews_per_1000_orders"
    assert model.program.audiences["support"] and model.decision_rules and model.provenance
    assert all(k.significant_adjusted is not None for k in model.kpis if k.p_adjusted is not None)
    # The sample is what report.json holds, so it survives the round trip through the schema.
    assert migrate_bundle(b).to_report()["kpis"][0]["name"] == b["kpis"][0]["name"]


def test_report_package_points_at_the_bundle_module_not_contracts_md():
    from pathlib import Path

    import insightroi.report as rep

    for path in Path(rep.__file__).parent.rglob("*"):
        if path.suffix in (".py", ".j2", ".css"):
            assert "CONTRACTS.md" not in path.read_text(encoding="utf-8"), path


def _card(html: str, card_id: str) -> str:
    part = html.split(f'id="{card_id}"', 1)[1]
    return part[: part.index('<div class="stat"')] if '<div class="stat"' in part else part[:2000]


def test_primary_kpi_card_shows_the_programs_primary_kpi_not_the_lowest_p_value():
    b = sample_bundle()
    b["program"]["primary_kpi"] = "refunds_per_1000_orders"
    refunds = next(k for k in b["kpis"] if k["name"] == "refunds_per_1000_orders")
    assert refunds["p_value"] > min(k["p_value"] for k in b["kpis"] if k["p_value"] is not None)
    for view in ("full", "executive"):
        html = render_html(b, view=view)
        card = _card(html, "primary-kpi")
        assert "refunds per 1000 orders" in card and "−8.0%" in card
        assert "negative reviews" not in card
    assert "the primary KPI refunds per 1000 orders was 8.0% lower" in render_html(b, view="executive")


def test_primary_kpi_without_a_result_is_said_plainly():
    b = sample_bundle()
    b["program"]["primary_kpi"] = "revenue_per_sku_family"  # a program KPI the analysis did not estimate
    html = render_html(b, view="executive")
    card = _card(html, "primary-kpi")
    assert "no result" in card and "revenue per sku family" in card
    assert "%" not in card  # no other KPI's number stands in for it
    assert "There is no result yet for the primary KPI, revenue per sku family." in html
    del b["program"]["primary_kpi"]
    assert "The program names no primary KPI" in _card(render_html(b), "primary-kpi")


def _kpi_row(html: str, name: str) -> str:
    # A row holds the KPI's own result table, so it ends where the next KPI's row starts.
    return html.split(f'<tr data-kpi="{name}">')[1].split("<tr data-kpi=")[0].split("</tbody></table>")[0]


def test_verdict_badges_use_the_holm_adjusted_result():
    b = sample_bundle()
    refunds = next(k for k in b["kpis"] if k["name"] == "refunds_per_1000_orders")
    # Significant before adjustment (the interval excludes zero, p = 0.016), not after Holm.
    assert refunds["ci_high"] < 0 and refunds["p_value"] < 0.05
    refunds["p_adjusted"], refunds["significant_adjusted"] = 0.08, False
    html = render_html(b)
    row = _kpi_row(html, "refunds_per_1000_orders")
    assert "improved" not in row and ">inconclusive<" in row and "adjusted (Holm)" in row
    good = _kpi_row(html, "negative_reviews_per_1000_orders")
    assert 'class="badge good" title="adjusted (Holm): p = &lt; 0.001 &lt; alpha 0.05"' in good
    assert kpi_verdict(refunds) is None
    # The direction decides the sign: a significant rise of a KPI meant to fall is "worsened".
    assert kpi_verdict({**refunds, "significant_adjusted": True}) is True
    assert kpi_verdict({**refunds, "significant_adjusted": True, "direction": "increase"}) is False
    # Schema-1 rows have only the Holm p-value; it decides, the unadjusted interval does not.
    legacy = {k: v for k, v in refunds.items() if k != "significant_adjusted"}
    assert kpi_verdict(legacy) is None and kpi_verdict({**legacy, "p_adjusted": 0.03}) is True


def test_audience_views_route_by_the_programs_owners():
    b = sample_bundle()
    b["program"]["audiences"] = {"support": ["support", "ecommerce"], "product": ["ml_platform"], "finance": ["finance"]}
    # A KPI's name says nothing about who owns it: a "tickets" KPI owned by finance is finance's.
    tickets = next(k for k in b["kpis"] if k["name"] == "tickets_per_1000_orders")
    tickets["owner"] = "finance"
    owned = lambda owners: sorted(k["name"] for k in b["kpis"] if k["owner"] in owners)  # noqa: E731
    sup = render_html(b, view="support")
    assert sorted(set(re.findall(r'data-kpi="([^"]+)"', sup))) == owned({"support", "ecommerce"}) == ["conversion_rate"]
    assert "ecommerce" in sup.split('id="audience"')[1].split("</p>")[0]
    assert sorted(re.findall(r"<td>(alr-\d+)</td>", sup)) == ["alr-0005"]
    prod = render_html(b, view="product")
    assert sorted(set(re.findall(r'data-kpi="([^"]+)"', prod))) == ["defect_mentions_per_1000_feedback"]
    assert "negative reviews" not in prod.split('id="effects"')[1].split("</section>")[0]
    assert "alr-0001" not in prod  # product_quality is not in this program's product audience
    fin = render_html(b, view="finance")
    assert sorted(set(re.findall(r'data-kpi="([^"]+)"', fin))) == owned({"finance"})
    # Teams too: the support view's resolution charts show only the support audience's teams.
    b["program"]["audiences"]["support"] = ["logistics"]
    sup = render_html(b, view="support")
    resolution = sup.split('id="resolution"')[1].split("</section>")[0]
    assert "logistics" in resolution and "fulfillment" not in resolution and "product quality" not in resolution


def test_decision_rules_table_renders_every_status():
    b = sample_bundle()
    b["decision_rules"] = [
        {"kpi": "negative_reviews_per_1000_orders", "rule": "down 15% vs control", "status": "pass",
         "message": "-15.0% [-22.3%, -7.7%], Holm p = 0.000317", "target_relative": -0.15},
        {"kpi": "tickets_per_1000_orders", "rule": "down 10% vs control", "status": "inconclusive",
         "message": "-8.0% [-12.9%, -3.1%], Holm p = 0.0055", "target_relative": -0.1},
        {"kpi": "conversion_rate", "rule": "not down vs control", "status": "fail",
         "message": "-3.0% [-5.0%, -1.0%], Holm p = 0.01", "target_relative": None},
        {"kpi": "revenue_per_sku_family", "rule": "up vs control", "status": "not_evaluable",
         "message": "no effect estimate for this KPI", "target_relative": None},
    ]
    Bundle.model_validate(b)
    for view in ("full", "executive"):
        section = render_html(b, view=view).split('id="decision-rules"')[1].split("</section>")[0]
        rows = re.findall(r'<tr data-status="([a-z_]+)">(.*?)</tr>', section, flags=re.S)
        assert [r[0] for r in rows] == ["pass", "inconclusive", "fail", "not_evaluable"]
        for (status, row), rule in zip(rows, b["decision_rules"]):
            assert f'class="badge {status}"' in row and rule["rule"] in row and rule["message"] in row
        assert "not evaluable" in section and "(target −15%)" in section
    assert 'id="decision-rules"' not in render_html(b, view="finance")


def test_quasi_rows_saved_claims_and_provenance_in_the_full_report():
    b = sample_bundle()
    html = render_html(b)
    quasi = html.split('id="quasi"')[1].split("</section>")[0]
    assert quasi.count("<tr><td>") == len(b["quasi"]) and "causal impact" in quasi and "did" in quasi
    assert 'class="badge fail">no<' in quasi  # the time-series estimate misses the demo truth
    claims = html.split('id="claims"')[1].split("</section>")[0]
    saved = next(r for r in re.findall(r"<tr><td>(.*?)</tr>", claims, flags=re.S) if "fell 12%" in r)
    assert "tickets per 1000 orders fell 12%" in saved and "validate-claim" in saved
    assert 'class="badge weak">weak<' in saved and "{" not in saved  # the parsed claim shows as its text
    b["claims"] = [{"claim": {"text": "refunds halved"}, "label": "saved", "verdict": "not supported"}]
    row = render_html(b).split('id="claims"')[1].split("</section>")[0]
    assert 'class="badge not_supported">not supported<' in row
    prov = html.split('id="provenance"')[1].split("</footer>")[0]
    for stage in ("classify", "analyze", "roi", "quasi", "monitor"):
        assert f"<td>{stage}</td>" in prov
    assert b["provenance"]["analyze"]["program_hash"] in prov and "topics-0.9" in prov and "0.1.0" in prov
    assert "2026-04-02 07:51:47" in prov


def test_lift_decay_names_its_kpi_in_the_kpis_units():
    """The monitor values the first hard-priced KPI, which need not be the primary one, and its
    effects are differences in KPI units: the chart says which KPI and never prints them as %."""
    b = sample_bundle()
    b["monitor"]["decay_kpi"] = "tickets_per_1000_orders"
    b["monitor"]["decay"] = [{"period": p, "estimate": e, "ci_low": e - 2.0, "ci_high": e + 2.0}
                             for p, e in (("2025-07-01", -6.87), ("2025-07-29", -5.82), ("2025-08-26", -2.41))]
    html = render_html(b)
    assert "Effect on tickets per 1000 orders by period" in html
    assert "Effect on tickets per 1000 orders per period" in render_html(b, view="finance")
    decay_svg = html[html.index("Effect on tickets per 1000 orders by period"):]
    decay_svg = decay_svg[:decay_svg.index("</svg>")]
    assert "-6.87" in decay_svg or "−6.87" in decay_svg
    assert not re.search(r"[−-]\d+%", decay_svg)
    # A bundle saved before the KPI was recorded says so instead of claiming the primary KPI.
    del b["monitor"]["decay_kpi"]
    assert "Effect on the decision KPI by period" in render_html(b)


def test_a_theme_without_an_owner_shows_a_dash_not_none():
    b = sample_bundle()
    b["insights"]["topics"] = [*b["insights"]["topics"], {"topic": "other", "count": 10**6, "share": 0.5, "owner": None}]
    html = render_html(b, view="support")
    assert "<td>other</td>" in html and ">None<" not in html

"""The main job end to end: `insightroi demo` on a tiny world, through the real CLI and store."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.store import open_store


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--scale", "tiny", "--seed", "3", "--json"])
    return out, result


def test_demo_runs_every_stage_without_failures(demo_run):
    out, result = demo_run
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["failures"] == []
    for stage in ("generate world", "ingest", "classify", "detect", "insights", "chain", "analyze", "roi", "quasi",
                  "monitor", "report"):
        assert stage in payload["timings_s"], stage


def test_demo_json_has_the_documented_keys_and_the_truth(demo_run):
    out, result = demo_run
    payload = json.loads(result.stdout)
    names = {k["name"] for k in payload["kpis"]}
    assert "negative_reviews_per_1000_orders" in names
    for k in payload["kpis"]:
        assert set(k) >= {"name", "estimate", "ci_low", "ci_high", "truth"}
        if k["estimate"] is not None:
            assert k["ci_low"] <= k["estimate"] <= k["ci_high"]
    truth = json.loads((out / "world" / "truth.json").read_text())
    primary = next(k for k in payload["kpis"] if k["name"] == "negative_reviews_per_1000_orders")
    assert primary["truth"] == pytest.approx(truth["kpis"]["negative_reviews_per_1000_orders"]["ate"])
    roi = payload["roi"]
    assert set(roi) >= {"estimate", "ci_low", "ci_high", "truth"}
    assert roi["truth"] == pytest.approx(truth["roi"]["roi"])
    assert roi["ci_low"] <= roi["conservative"] <= roi["ci_high"]


def test_demo_writes_report_and_saves_the_bundle(demo_run):
    from insightroi.bundle import STAGES, assemble_bundle
    from insightroi.program import load_program

    out, _ = demo_run
    html = (out / "report.html").read_text()
    assert "<html" in html and "negative_reviews_per_1000_orders" in html
    bundle = json.loads((out / "report.json").read_text())
    with open_store(f"duckdb:///{out}/insightroi.duckdb") as st:
        saved = st.load_result("bundle:latest")
        assert saved["kpis"] == json.loads(json.dumps(bundle["kpis"]))
        # Every stage saved its own section with provenance, and the report is those sections.
        again = assemble_bundle(st, load_program(out / "world" / "insightroi.toml")).to_report()
        assert set(again["provenance"]) == set(STAGES) - {"report"}
        assert again["kpis"] == bundle["kpis"] and again["roi"] == bundle["roi"]
        assert st.count("quarantine") == 0, "the demo world is clean: nothing may be quarantined"
        assert st.count("insights") > 0 and st.count("chain_events") > 0


def test_demo_quarantines_injected_bad_rows_and_fires_srm(tmp_path):
    result = CliRunner().invoke(
        app, ["demo", "--out", str(tmp_path), "--scale", "tiny", "--seed", "3", "--bad-rows", "25",
              "--bad-assignment", "--json"])
    assert result.exit_code == 0, result.output
    with open_store(f"duckdb:///{tmp_path}/insightroi.duckdb") as st:
        assert st.count("quarantine") == 25
    bundle = json.loads((tmp_path / "report.json").read_text())
    srm = next(c for c in bundle["experiment"]["checks"] if c["name"] == "sample_ratio_mismatch")
    assert srm["status"] == "fail"




def test_detected_alerts_are_not_routed_to_the_holdout(demo_run, monkeypatch):
    # The tiny world is too small for real spikes, so the detector is fed two known ones: one in a
    # treated family, one in a holdout family. Only the first may reach its owner.
    from datetime import date

    from insightroi.insights import Alert
    from insightroi.program import load_program

    out, _ = demo_run
    program = load_program(out / "world" / "insightroi.toml")
    with open_store(f"duckdb:///{out}/insightroi.duckdb") as st:
        arms = dict(st.con.con.execute("SELECT arm, min(unit_id) FROM assignments GROUP BY arm").fetchall())
        fake = [Alert(f"alert:test:{arm}", "product_defect", fam, date(2025, 9, 1), 9, 2.0, 1e-5, 4.5,
                      "product_quality", "v-test") for arm, fam in arms.items()]
        from insightroi import services

        monkeypatch.setattr(services, "detect_spikes", lambda store, program, **kw: fake)
        section = services.run_detect(st, program)
        routed = section.alerts
        written = {r[0] for r in st.con.con.execute(
            "SELECT alert_id FROM chain_events WHERE alert_id LIKE 'alert:test:%'").fetchall()}
    assert [a["sku_family"] for a in routed] == [arms["treatment"]]
    assert section.withheld_control == 1
    assert written == {"alert:test:treatment"}


def test_model_validation_on_a_label_sample_matches_all_labels(demo_run, monkeypatch):
    # Above MAX_VALIDATION_LABELS the demo validates on a seeded sample; its figures must be those
    # of all labels up to sampling error, and exactly them when the cap is not reached.
    from insightroi import pipeline
    from insightroi.program import load_program

    out, _ = demo_run
    program = load_program(out / "world" / "insightroi.toml")
    with open_store(f"duckdb:///{out / 'insightroi.duckdb'}") as st:
        full = pipeline.validate_on_labels(st, program, out / "world" / "labels.parquet")
        assert full["n"] > 600
        monkeypatch.setattr(pipeline, "MAX_VALIDATION_LABELS", 300)
        sample = pipeline.validate_on_labels(st, program, out / "world" / "labels.parquet")
        again = pipeline.validate_on_labels(st, program, out / "world" / "labels.parquet")
    assert sample["n"] == 300 and again == sample  # seeded
    assert abs(sample["accuracy"] - full["accuracy"]) < 0.06  # ~2.7 SE of 300 draws from ~735


def test_roi_command_on_the_demo_store_prints_the_demo_roi_exactly(demo_run):
    # One number everywhere: `insightroi roi` (same default seed and draws) on the store the demo
    # wrote gives the ROI the demo's report shows, to the last bit.
    out, _ = demo_run
    store = f"duckdb:///{out}/insightroi.duckdb"
    program = str(out / "world" / "insightroi.toml")
    res = CliRunner().invoke(app, ["roi", "--store", store, "--program", program, "--json"])
    assert res.exit_code == 0, res.output
    cli = json.loads(res.stdout)
    report = json.loads((out / "report.json").read_text())["roi"]
    for key in ("conservative", "median", "ci_low", "ci_high", "p_positive", "estimate", "benefit", "cost", "months"):
        assert cli[key] == report[key], key


def test_run_resumes_and_reruns_single_stages(demo_run, tmp_path):
    out, _ = demo_run
    store = f"duckdb:///{out}/insightroi.duckdb"
    program = str(out / "world" / "insightroi.toml")
    res = CliRunner().invoke(app, ["run", "--store", store, "--program", program, "--only", "roi", "--only", "report",
                                   "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert list(payload["stages"]) == ["roi", "report"]
    assert payload["roi"]["conservative"] == json.loads((out / "report.json").read_text())["roi"]["conservative"]
    assert (tmp_path / "report.html").exists()
    bad = CliRunner().invoke(app, ["run", "--store", store, "--program", program, "--from", "nonsense"])
    assert bad.exit_code == 1 and "stage" in bad.output and "classify" in bad.output

"""``insightroi roi`` on a real DuckDB store: reads saved Results and volumes, prints, saves."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from helpers.cli_shell import stage_app
from insightroi.bundle import ExperimentSection, load_section, save_section
from insightroi.program import starter_program_text
from insightroi.roi import RoiVolumes
from insightroi.roi._cli import register
from insightroi.stats import Result
from insightroi.store import open_store


def _app() -> typer.Typer:
    return stage_app(register)


def _setup(tmp_path, with_volumes=True):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text(), encoding="utf-8")
    # What `insightroi analyze` saves: its section with the Results, the treated volumes and the
    # effects' correlation (the ROI's only inputs).
    results = {}
    for name, est, se in (("tickets_per_1000_orders", -8.0, 2.0), ("refunds_per_1000_orders", -3.0, 1.0)):
        results[name] = Result(estimate=est, se=se, ci=(est - 2 * se, est + 2 * se), p_value=0.001,
                               method="cluster_welch", n=120, metric=name).to_dict()
    vol = RoiVolumes({"tickets_per_1000_orders": 1e6, "refunds_per_1000_orders": 1e6,
                      "negative_reviews_per_1000_orders": 1e6}, feedback=2e5, months=9)
    section = ExperimentSection(name="t", design="cluster", unit="sku_family", results=results,
                                volumes=vol.to_dict() if with_volumes else None)
    with open_store(url) as st:
        if with_volumes is not None:
            save_section(st, "analyze", section)
    return url, prog


def test_roi_command_prints_json_and_saves(tmp_path):
    url, prog = _setup(tmp_path)
    out = CliRunner().invoke(_app(), ["roi", "--store", url, "--program", str(prog), "--json",
                                      "--draws", "3000", "--seed", "7"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    # Over the starter program's 12-month horizon: the 9-month window's run-rate x 12 / 9.
    assert d["months"] == 12 and d["draws"] == 3000
    assert d["benefit"] == pytest.approx((8000 * 6.5 + 3000 * 25.0) * 12 / 9, rel=1e-12)
    assert d["ci_low"] <= d["conservative"] <= d["median"] <= d["ci_high"]
    with open_store(url) as st:
        saved = load_section(st, "roi")
    assert {k: v for k, v in saved.items() if k != "provenance"} == d
    assert saved["provenance"]["stage"] == "roi"
    # Same seed, same answer.
    again = CliRunner().invoke(_app(), ["roi", "--store", url, "--program", str(prog), "--json",
                                        "--draws", "3000", "--seed", "7"])
    assert json.loads(again.output)["conservative"] == d["conservative"]


def test_roi_command_tables(tmp_path):
    url, prog = _setup(tmp_path)
    out = CliRunner().invoke(_app(), ["roi", "--store", url, "--program", str(prog), "--draws", "2000"],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for text in ("conservative headline", "P(ROI > 0)", "soft value", "Scenarios", "Sensitivity",
                 "Value pools", "Cost stack", "support_tickets_avoided"):
        assert text in out.output


def test_roi_command_without_volumes_says_what_to_run(tmp_path):
    url, prog = _setup(tmp_path, with_volumes=False)
    out = CliRunner().invoke(_app(), ["roi", "--store", url, "--program", str(prog), "--draws", "2000"])
    assert out.exit_code == 1
    text = " ".join(out.output.split())  # Rich wraps at the test terminal's width
    assert "insightroi analyze" in text and "volumes" in text


def test_roi_command_without_results_says_what_to_run(tmp_path):
    url = f"duckdb:///{tmp_path}/empty.duckdb"
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text(), encoding="utf-8")
    out = CliRunner().invoke(_app(), ["roi", "--store", url, "--program", str(prog)])
    assert out.exit_code == 1 and "no saved experiment section" in " ".join(out.output.split())

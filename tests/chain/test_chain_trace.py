"""trace(): the chain of custody of one id, and the ``insightroi trace`` / ``chain`` commands."""

from __future__ import annotations

import importlib.util
import json

from helpers.cli_shell import stage_app
from insightroi.bundle import load_section
from insightroi.program import starter_program_text
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from insightroi.chain import trace
from insightroi.chain._cli import register
from insightroi.store import open_store

_spec = importlib.util.spec_from_file_location("_chain_world", Path(__file__).with_name("test_chain_workflow.py"))
_world = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_world)



@pytest.fixture(scope="module")
def url(tmp_path_factory):
    return _world.build_store(tmp_path_factory.mktemp("trace"))


def test_trace_alert_has_the_whole_chain(url):
    with open_store(url) as st:
        tr = trace(st, "A1")
    assert tr.kind == "alert"
    assert [f["id"] for f in tr.feedback] == ["f1"]
    assert tr.feedback[0]["text"] == "It stopped working after two days"
    assert tr.feedback[0]["reviews"][0]["reviewer"] == "ann"
    (ins,) = [i for i in tr.insights if i["id"] == "i1"]
    assert (ins["label"], ins["confidence"], ins["evidence"], ins["model_version"]) == (
        "product_defect", 0.91, "stopped working", "v1")
    (a,) = tr.alerts
    assert (a["alert_id"], a["team"], a["recipient"], a["link"]) == ("A1", "product_quality", "pq-oncall", "id")
    assert [e["event_type"] for e in a["events"]] == ["acknowledged", "action_taken", "fix_deployed", "outcome"]
    assert a["events"][1]["payload"] == {"action": "supplier notified"}
    o = a["outcome"]
    assert (o["anchor"], o["complaints_before"], o["complaints_after"]) == ("fix_deployed", 4, 1)
    assert o["change"] == pytest.approx(-0.75)
    # Offsets from the fix at T0+5d: c1 -25d, f1 -15d, c2 -10d, c3 -4d, c4 +5d.
    assert {w["week"]: w["complaints"] for w in o["weekly"]} == {-4: 1, -3: 1, -2: 1, -1: 1, 0: 1, 1: 0, 2: 0, 3: 0}
    stages = [s["stage"] for s in tr.timeline()]
    assert stages[0] == "feedback" and stages[-1] == "outcome"
    json.dumps(tr.to_dict(), allow_nan=False)


def test_trace_from_insight_and_from_feedback_reach_the_same_alert(url):
    with open_store(url) as st:
        by_insight = trace(st, "i1")
        by_feedback = trace(st, "f1")
    assert by_insight.kind == "insight" and by_feedback.kind == "feedback"
    assert [a["alert_id"] for a in by_insight.alerts] == ["A1"] == [a["alert_id"] for a in by_feedback.alerts]
    assert {i["task"] for i in by_feedback.insights} == {"topic", "sentiment"}


def test_trace_inferred_paths(url):
    with open_store(url) as st:
        ev = trace(st, "a2-ack")           # an id-less event, linked by family + topic + time
        fz = trace(st, "fz")               # feedback whose alert carries no insight id
        spike = trace(st, "i2")            # insight event with feedback ids in its payload
    assert ev.kind == "event" and [a["alert_id"] for a in ev.alerts] == ["A2"]
    assert any("SKU family, topic and time" in n for n in ev.notes)
    assert [e["link"] for e in ev.alerts[0]["events"]] == ["inferred", "id"]
    assert ev.alerts[0]["outcome"]["anchor"] == "alert_delivered"
    assert [(a["alert_id"], a["link"]) for a in fz.alerts] == [("A6", "inferred")]
    assert fz.alerts[0]["events"] == []
    assert [f["id"] for f in spike.feedback] == ["fs"]
    assert sorted(a["alert_id"] for a in spike.alerts) == ["A2", "A4"]


def test_trace_unknown_id(url):
    with open_store(url) as st, pytest.raises(KeyError, match="no insight, alert"):
        trace(st, "nope")


def _app() -> typer.Typer:
    return stage_app(register)


def test_trace_and_chain_commands(url, tmp_path):
    runner = CliRunner()
    out = runner.invoke(_app(), ["trace", "A1", "--store", url], env={"COLUMNS": "220"})
    assert out.exit_code == 0, out.output
    for text in ("alert A1", "product_quality", "It stopped working", "supplier notified", "4 -> 1", "Timeline"):
        assert text in out.output
    js = runner.invoke(_app(), ["trace", "f1", "--store", url, "--json"])
    assert json.loads(js.output)["alerts"][0]["alert_id"] == "A1"
    missing = runner.invoke(_app(), ["trace", "nope", "--store", url])
    assert missing.exit_code == 1 and "no insight, alert, feedback item or chain event has id 'nope'\n" in missing.output
    ch = runner.invoke(_app(), ["chain", "--store", url, "--json"])
    assert ch.exit_code == 0, ch.output
    assert json.loads(ch.output)["funnel"]["alerts"] == 6
    with open_store(url) as st:
        assert load_section(st, "chain") is None  # no program file: a view, not the stage's section
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text(), encoding="utf-8")
    ch = runner.invoke(_app(), ["chain", "--store", url, "--program", str(prog), "--json"])
    assert ch.exit_code == 0, ch.output
    with open_store(url) as st:
        saved = load_section(st, "chain")
    assert saved["inferred_links"] == 5 and saved["provenance"]["stage"] == "chain"
    table = runner.invoke(_app(), ["chain", "--store", url], env={"COLUMNS": "220"})
    assert table.exit_code == 0 and "logistics" in table.output and "6 alerts" in table.output

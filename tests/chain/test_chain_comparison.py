"""Before/after complaint figures carry their comparison: treated vs control over the same windows
when the design has a control arm of SKU families, otherwise "uncontrolled before/after" (the
comparison validate-claim rejects), in `trace`, `chain` and the bundle's chain section."""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from helpers.cli_shell import stage_app
from insightroi.chain import chain_summary, trace
from insightroi.chain._cli import register
from insightroi.store import open_store

_spec = importlib.util.spec_from_file_location("_chain_world", Path(__file__).with_name("test_chain_workflow.py"))
_world = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_world)
T0, D = _world.T0, timedelta(days=1)


def _app() -> typer.Typer:
    return stage_app(register)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    return _world.build_store(tmp_path_factory.mktemp("cmp"))


def _add_control(url):
    """F1 (A1's family) treated, F2 control; two more F2 product_defect complaints before A1's fix."""
    extra = [("k1", T0 - 10 * D), ("k2", T0 - 3 * D)]
    with open_store(url) as st, st.transaction():
        st.append("feedback", pd.DataFrame([{"id": i, "source": "review", "event_time": t, "sku_family": "F2",
                                             "sku": "S9", "text": "stopped working", "rating": 1.0} for i, t in extra]))
        st.append("insights", pd.DataFrame([{"id": f"ins-{i}", "feedback_id": i, "task": "topic",
                                             "label": "product_defect", "confidence": 0.8, "evidence": "kw",
                                             "method": "lexicon", "model_version": "v1", "created_at": t}
                                            for i, t in extra]))
        st.append("assignments", pd.DataFrame([
            {"id": f"as-{u}", "experiment": "alerts", "unit_type": "sku_family", "unit_id": u, "arm": arm,
             "assigned_at": T0 - 60 * D} for u, arm in (("F1", "treatment"), ("F3", "treatment"), ("F2", "control"))]))


def test_uncontrolled_then_treated_vs_control(url):
    runner = CliRunner()
    with open_store(url) as st:
        o = trace(st, "A1").alerts[0]["outcome"]
        s = chain_summary(st)
    assert (o["comparison"], o["complaints_before"], o["complaints_after"]) == ("uncontrolled before/after", 4, 1)
    assert "validate-claim rejects" in o["note"] and "control_before" not in o
    assert s["complaints_comparison"] == "uncontrolled before/after"
    out = runner.invoke(_app(), ["trace", "A1", "--store", url], env={"COLUMNS": "250"})
    assert out.exit_code == 0
    assert "(uncontrolled before/after: validate-claim rejects this comparison)" in " ".join(out.output.split())
    ch = runner.invoke(_app(), ["chain", "--store", url], env={"COLUMNS": "250"})
    assert ch.exit_code == 0 and "uncontrolled before/after; validate-claim" in " ".join(ch.output.split())

    _add_control(url)
    with open_store(url) as st:
        o = trace(st, "A1").alerts[0]["outcome"]
        s = chain_summary(st)
    # Control F2, same windows around the fix at T0+5d: k1, k2 before; c8 (T0+10d) after.
    assert (o["comparison"], o["control_families"], o["control_before"], o["control_after"]) == (
        "treated vs control", 1, 2, 1)
    assert o["control_change"] == pytest.approx(-0.5)
    assert o["net_change"] == pytest.approx((1 / 4) / (1 / 2) - 1)
    assert s["complaints_comparison"] == "treated vs control"
    pq = next(r for r in s["by_team"] if r["team"] == "product_quality")
    assert (pq["complaints_before"], pq["complaints_after"], pq["control_before"], pq["control_after"]) == (4, 1, 2, 1)
    assert pq["net_complaint_change"] == pytest.approx(-0.5)
    out = runner.invoke(_app(), ["trace", "A1", "--store", url], env={"COLUMNS": "250"})
    text = " ".join(out.output.split())
    assert "treated vs control: 1 control families over the same windows 2 -> 1 (-50%), net -50%" in text
    js = json.loads(runner.invoke(_app(), ["chain", "--store", url, "--json"]).output)
    assert js["complaints_comparison"] == "treated vs control"


def test_dashboard_trace_page_shows_the_comparison(tmp_path, live_server):
    pytest.importorskip("fastapi")
    import httpx

    from insightroi.server import create_app

    token = "test-token-comparison-0123456789abcdef"
    auth = {"Authorization": f"Bearer {token}"}
    (tmp_path / "u").mkdir()
    (tmp_path / "c").mkdir()
    plain = _world.build_store(tmp_path / "u")
    controlled = _world.build_store(tmp_path / "c")
    _add_control(controlled)
    pages = {}
    for name, url in (("plain", plain), ("controlled", controlled)):
        srv = live_server(create_app(url, token=token))
        with httpx.Client(base_url=srv.url, timeout=60, headers=auth) as c:
            pages[name] = " ".join(c.get("/trace/A1").text.split())
    assert 'data-comparison="uncontrolled before/after"' in pages["plain"]
    assert "<b>Uncontrolled before/after</b>: validate-claim rejects this comparison" in pages["plain"]
    assert 'data-comparison="treated vs control"' in pages["controlled"]
    assert "<b>Treated vs control</b>: the same windows in 1 control families, 2 → 1 (-50%); net -50%" in pages["controlled"]

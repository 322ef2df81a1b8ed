"""A new user's own data through the README's "Using it on your data" commands, one subprocess each.

The world is real customer text (shared/reference/sentiment) in CSV exports with planted effects
(see userworld.py). The commands are read from the README's user-flow block, so the README shows
exactly what is tested. Checks: every command exits 0; the planted effects lie in their intervals;
the ROI and the effects are identical in the CLI's --json, report.json and the dashboard's API; no
alert reaches a control unit, and every alert carries the feedback rows that triggered it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.paths import REFERENCE_DIR
from insightroi.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
from userworld import write_user_world, user_program  # noqa: E402

pytestmark = pytest.mark.skipif(not (REFERENCE_DIR / "sentiment").exists(), reason="reference data not present")

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent / "insightroi"


def readme_commands() -> list[list[str]]:
    """The README's user-flow block as argument lists (comments dropped)."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- user-flow:.*?```bash\n(.*?)```\s*<!-- /user-flow -->", text, re.S)
    assert block, "README lost its user-flow block"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line.strip()]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def user_flow(tmp_path_factory):
    """Run the README's commands on the user's world; return the folder and each command's output."""
    home = tmp_path_factory.mktemp("user")
    world = write_user_world(home / "data")
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("INSIGHTROI_API_TOKEN", None)  # serve keeps its own token in ./.insightroi-token (mode 0600)
    env.pop("INSIGHTROI_STORE", None)
    env.pop("INSIGHTROI_PROGRAM", None)
    outputs: dict[str, subprocess.CompletedProcess] = {}
    server = None
    for args in readme_commands():
        assert args[0] == "insightroi", args
        args = args[1:]
        if args[0] == "trace":
            detect = json.loads(_run(["detect", "--dry-run", "--json"], home, env).stdout)
            args = ["trace", detect["alerts"][0]["alert_id"]]
        if args[0] == "serve":
            port = _free_port()
            server = subprocess.Popen([str(BIN), "serve", "--port", str(port)], cwd=home, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            outputs["serve"] = port
            outputs["serve_token"] = (home / ".insightroi-token").read_text(encoding="utf-8").strip()
            continue
        res = _run(args, home, env)
        key = args[0] if args[0] != "ingest" else f"ingest {args[1]}"
        outputs[key] = res
        assert res.returncode == 0, f"insightroi {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        if args[0] == "init":
            prog = home / "insightroi.toml"
            prog.write_text(user_program(prog.read_text(encoding="utf-8")), encoding="utf-8")
    try:
        yield home, world, outputs, env
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def _fetch(outputs: dict, path: str) -> bytes:
    """GET ``path`` from the README's server with its token (reads need it)."""
    req = urllib.request.Request(f"http://127.0.0.1:{outputs['serve']}{path}",
                                 headers={"Authorization": f"Bearer {outputs['serve_token']}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def _get(outputs: dict, path: str):
    return json.loads(_fetch(outputs, path))


def test_every_readme_command_ran(user_flow):
    home, world, outputs, _ = user_flow
    names = {" ".join(a[1:3]) if a[1] == "ingest" else a[1] for a in readme_commands()}
    assert names <= set(outputs), names - set(outputs)
    status = outputs["status"].stdout
    assert f"{world.n_rows['orders']:,}" in status and f"{world.n_rows['feedback']:,}" in status
    with open_store(f"duckdb:///{home}/insightroi.duckdb") as st:
        for table, n in world.n_rows.items():
            assert st.count(table) == n, table
        assert st.count("quarantine") == 0


def test_planted_effects_lie_in_their_intervals(user_flow):
    home, world, _, env = user_flow
    sec = json.loads(_run(["analyze", "--json"], home, env).stdout)
    rows = {k["name"]: k for k in sec["kpis"]}
    for kpi, planted in world.planted.items():
        r = rows[kpi]
        assert r["ci_low"] <= planted <= r["ci_high"], (kpi, planted, r["ci_low"], r["ci_high"])
    # The primary KPI's planted -25% is found after Holm, and its rule ("down 15%") is evaluated.
    primary = rows["negative_reviews_per_1000_orders"]
    assert primary["significant_adjusted"] is True and primary["relative"] < -0.15
    rule = next(r for r in sec["decision_rules"] if r["kpi"] == "negative_reviews_per_1000_orders")
    assert rule["status"] in ("pass", "inconclusive")
    # No planted effect on conversion: its guardrail holds.
    guard = next(r for r in sec["decision_rules"] if r["kpi"] == "conversion_rate")
    assert guard["status"] == "pass"


def test_one_number_everywhere(user_flow):
    home, world, outputs, env = user_flow
    # Each stage command prints the section it saves; report and dashboard show those sections.
    # (Rerunning a stage may move the last bits: DuckDB's parallel sums are not order-stable.)
    analyze_cli = json.loads(_run(["analyze", "--json"], home, env).stdout)
    roi_cli = json.loads(_run(["roi", "--json"], home, env).stdout)
    report_cli = json.loads(_run(["report", "--json"], home, env).stdout)
    report = json.loads((home / "report" / "report.json").read_text())
    assert report_cli == report
    api = _get(outputs, "/api/bundle")
    for key in ("conservative", "median", "ci_low", "ci_high", "p_positive", "benefit", "cost", "months"):
        assert roi_cli[key] == report["roi"][key] == api["roi"][key], key
    assert report["roi"]["months"] == 12  # the program's horizon_months, not the 12-week window
    cli_kpis = {k["name"]: (k["estimate"], k["ci_low"], k["ci_high"], k["p_adjusted"]) for k in analyze_cli["kpis"]}
    for source in (report, api):
        got = {k["name"]: (k["estimate"], k["ci_low"], k["ci_high"], k["p_adjusted"]) for k in source["kpis"]}
        assert got == cli_kpis
    assert report["program"]["primary_kpi"] == "negative_reviews_per_1000_orders"
    # The claim the user validated is in the report.
    assert any("40%" in json.dumps(c.get("claim")) for c in report["claims"])
    html = (home / "report" / "report.html").read_text()
    assert "Decision rules" in html


def test_no_alert_reaches_a_control_unit_and_alerts_carry_their_evidence(user_flow):
    home, world, outputs, _ = user_flow
    with open_store(f"duckdb:///{home}/insightroi.duckdb") as st:
        ce = st.table("chain_events")
        alerts = ce.filter(ce.event_type == "alert_delivered").execute()
        fb_ids = set(st.table("feedback").select("id").execute().id)
    assert len(alerts) > 0
    assert set(alerts.sku_family) <= set(world.treated), set(alerts.sku_family) & set(world.control)
    spike = alerts[(alerts.sku_family == world.spike_families["treatment"]) & (alerts.topic == "product_defect")]
    assert len(spike) >= 1, "the planted defect spike in a treated family was not alerted"
    for payload in alerts.payload:
        ids = json.loads(payload)["feedback_ids"]
        assert ids and set(ids) <= fb_ids
    assert "withheld" in outputs["detect"].stdout  # the control family's spike was found and held back


def test_cli_runs_while_serving_and_dashboard_shows_the_saved_results(user_flow):
    home, world, outputs, env = user_flow
    res = _run(["status"], home, env)
    assert res.returncode == 0, res.stderr
    html = _fetch(outputs, "/").decode()
    assert "No results in this store yet" not in html
    assert "negative reviews per 1000 orders" in html.replace("_", " ")

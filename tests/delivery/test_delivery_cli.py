"""`insightroi deliver`: exit codes and output like the other commands (0 ran, 1 refused, 3 gate)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from _dlv_helpers import WEBHOOK_SECRET, Receiver, seed_alerts
from insightroi.cli import app
from insightroi.program import starter_program_text
from insightroi.store import open_store

HOOK = ('\n[[channels]]\nname = "tickets"\nkind = "webhook"\nowners = ["logistics"]\nurl = "env:TEST_HOOK_URL"\n'
        'secret = "env:TEST_HOOK_SECRET"\n')


def _setup(tmp_path, monkeypatch, receiver, channels=HOOK):
    tmp_path.mkdir(exist_ok=True)
    monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    monkeypatch.delenv("INSIGHTROI_PUBLIC_URL", raising=False)
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text() + channels)
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with open_store(url) as st:
        seed_alerts(st, 3)
    return ["--store", url, "--program", str(prog), "--since", "2026-01-01"]


def test_deliver_sends_and_reports(tmp_path, monkeypatch):
    receiver = Receiver()
    try:
        args = _setup(tmp_path, monkeypatch, receiver)
        res = CliRunner().invoke(app, ["deliver", *args, "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert (out["enqueued"], out["sent"], out["dead"], out["pending"]) == (3, 3, 0, 0)
        assert out["totals"] == {"pending": 0, "sending": 0, "delivered": 3, "dead": 0, "dead_letters": 0}
        again = CliRunner().invoke(app, ["deliver", *args])
        assert again.exit_code == 0 and "outbox totals: 3 delivered" in again.stdout
        assert len(receiver.requests) == 3
    finally:
        receiver.close()


def test_deliver_exit_codes(tmp_path, monkeypatch):
    receiver = Receiver()
    try:
        args = _setup(tmp_path, monkeypatch, receiver)
        receiver.status_override = 410
        res = CliRunner().invoke(app, ["deliver", *args, "--fail-on-dead"])
        assert res.exit_code == 3
        assert "3 delivery(ies) dead-lettered" in res.stderr and "HTTP 410" in res.stderr
        # The receiver is fixed: requeued, the three go through; the dead letters stay as the record.
        receiver.status_override = None
        res = CliRunner().invoke(app, ["deliver", *args, "--requeue-dead", "nope"])
        assert res.exit_code == 1 and "no channel 'nope'" in res.stderr
        res = CliRunner().invoke(app, ["deliver", *args, "--requeue-dead", "tickets", "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert (out["sent"], out["totals"]["delivered"], out["totals"]["dead_letters"]) == (3, 3, 3)
        assert len(receiver.accepted) == 3
        none = _setup(tmp_path / "b", monkeypatch, receiver, channels="")
        res = CliRunner().invoke(app, ["deliver", *none])
        assert res.exit_code == 1 and "no [[channels]]" in res.stderr
        seed = _setup(tmp_path / "c", monkeypatch, receiver)
        monkeypatch.delenv("TEST_HOOK_SECRET")
        res = CliRunner().invoke(app, ["deliver", *seed])
        assert res.exit_code == 1 and "environment variable TEST_HOOK_SECRET, which is not set" in res.stderr
        with open_store(seed[1]) as st:  # refused before anything was written or claimed
            assert st.sql("SELECT count(*) AS n FROM deliveries").to_pylist() == [{"n": 0}]
        res = CliRunner().invoke(app, ["deliver", *seed, "--public-url", "https://x.test"])
        assert res.exit_code == 1 and "INSIGHTROI_LINK_SECRET" in res.stderr
    finally:
        receiver.close()

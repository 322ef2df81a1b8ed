"""A small classified store for the review-queue tests (CLI and dashboard page): 60 feedback items
from a dozen customer-like texts, one with markup inside, classified by ``insightroi classify``."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from typer.testing import CliRunner

from helpers.cli_shell import stage_app
from insightroi.insights._cli import register
from insightroi.program import starter_program_text
from insightroi.store import open_store

__all__ = ["TEXTS", "review_world"]

TEXTS = [
    "my order arrived two weeks late", "tracking has not updated in days", "the box was crushed",
    "battery drains in an hour", "it stopped working, defective", "bought it for my dad",
    "the colour is nice I guess", "support never answered", "way too expensive", "runs a size small",
    "not sure what to think", "it came with a <script>alert(1)</script> note [bold]inside[/bold]",
]


def review_world(tmp_path):
    """Program file, DuckDB store and classified feedback in ``tmp_path``.

    Returns
    -------
    tuple
        ``(app, runner, store_url, program_path, tmp_path)``: a Typer app with the insight
        commands (classify, review, ...) and its runner.
    """
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text())
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    n = 60
    fb = pd.DataFrame({"id": [f"fb-{i:03d}" for i in range(n)], "source": "review",
                       "event_time": [datetime(2026, 3, 1) + timedelta(hours=i) for i in range(n)],
                       "text": [f"{TEXTS[i % len(TEXTS)]} (order {i})" for i in range(n)]})
    with open_store(url) as st, st.transaction():
        st.append("feedback", fb)
    app = stage_app(register)
    runner = CliRunner()
    res = runner.invoke(app, ["classify", "--store", url, "--program", str(prog), "--json"])
    assert res.exit_code == 0, res.output
    return app, runner, url, prog, tmp_path

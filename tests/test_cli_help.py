"""Every command's ``--help`` shows its text as written.

Typer renders help with Rich markup, where ``[monitoring]`` or ``[[tables]]`` (program-file
sections the help refers to) are read as tags and vanish unless escaped as ``\\[``.
"""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from insightroi.cli import app

_BRACKETED = re.compile(r"\[\[?[a-z_.]+\]\]?")


def _texts(cmd) -> list[str]:
    out = [cmd.help or ""]
    out += [p.help or "" for p in cmd.params if getattr(p, "help", None)]
    return out


def test_bracketed_names_survive_in_every_help():
    root = typer.main.get_command(app)
    runner = CliRunner()
    checked = 0
    for name, cmd in root.commands.items():
        wanted = {m for t in _texts(cmd) for m in _BRACKETED.findall(t.replace("\\[", "["))}
        if not wanted:
            continue
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
        assert res.exit_code == 0, res.output
        shown = re.sub(r"\s+", " ", res.output.replace("│", " "))
        missing = sorted(w for w in wanted if w not in shown)
        assert not missing, f"insightroi {name} --help lost {missing} (escape '[' as '\\\\[' in help text)"
        checked += 1
    assert checked >= 2  # ingest and monitor refer to program-file sections

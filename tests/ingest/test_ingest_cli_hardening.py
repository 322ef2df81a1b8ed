"""The CLI with hostile names and a busy store (issue 16): Rich markup in a file, column or
program name prints as written, and a store held by another process is one line, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from insightroi.cli import app
from insightroi.program import starter_program_text

HEADER = "id,source,event_time,text\n"


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_markup_in_file_names_prints_as_written(tmp_path, monkeypatch):
    # '[/i]' and '[/bold]' in a path: a directory 'd[' holding 'i]x.csv'. Relative paths: the table
    # wraps a long absolute one (a parallel worker's tmp folder is longer) and the test reads lines.
    monkeypatch.chdir(tmp_path)
    bad = _csv(Path("exports") / "d[" / "i]x.csv", HEADER + "a,chat,2025-01-01T00:00:00Z,hi\nb,chat,bad,hi\n")
    _csv(Path("exports") / "e[" / "bold]x.csv", HEADER + "c,chat,2025-01-01T00:00:00Z,hi\n")
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    res = CliRunner().invoke(app, ["ingest", "feedback", "exports", "--store", url])
    assert res.exit_code == 0, res.output
    assert "d[/i]x.csv" in res.output and "e[/bold]x.csv" in res.output
    assert "d[/i]x.csv row 2, field 'event_time': cannot parse 'bad' as a timestamp" in res.output
    res = CliRunner().invoke(app, ["ingest", "feedback", str(bad), "--store", url, "--program", str(tmp_path / "none.toml")])
    assert res.exit_code == 1
    assert "none.toml: no program file here" in res.output


def test_markup_in_a_column_name_is_named_in_the_error(tmp_path):
    path = _csv(tmp_path / "col.csv", "id,source,event_time,text,[/i]\na,chat,2025-01-01T00:00:00Z,hi,x\n")
    res = CliRunner().invoke(app, ["ingest", "feedback", str(path), "--store", f"duckdb:///{tmp_path / 's.duckdb'}"])
    assert res.exit_code == 1
    assert "unknown column(s) '[/i]'" in " ".join(res.output.split())


def test_markup_in_the_program_name_prints_in_plan(tmp_path):
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text().replace(
        'name = "Acme Commerce - complaint-theme alerts"', 'name = "Acme [/bold] alerts [/i]"', 1), encoding="utf-8")
    res = CliRunner().invoke(app, ["plan", "--program", str(prog), "--store", f"duckdb:///{tmp_path / 'none.duckdb'}"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == "Acme [/bold] alerts [/i]"


def test_a_store_held_by_another_process_is_one_line_and_exit_code_2(tmp_path):
    db = tmp_path / "held.duckdb"
    url = f"duckdb:///{db}"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom insightroi.store import open_store\nst = open_store(sys.argv[1])\n"
         "with st.transaction():\n    print('held', flush=True)\n    time.sleep(60)\n", url],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        path = _csv(tmp_path / "one.csv", HEADER + "a,chat,2025-01-01T00:00:00Z,hi\n")
        env = {**os.environ, "INSIGHTROI_BUSY_TIMEOUT": "0.5"}
        t0 = time.perf_counter()
        for args in (["ingest", "feedback", str(path)], ["status"]):
            res = subprocess.run([sys.executable, "-m", "insightroi", *args, "--store", url],
                                 capture_output=True, text=True, env=env, timeout=120)
            assert res.returncode == 2, res.stderr
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
            assert lines[0].startswith(f"error: store {db} is busy: process {holder.pid} (")
        assert time.perf_counter() - t0 < 60
    finally:
        holder.kill()
        holder.wait()

"""The user's flow on a ``pyspark://`` store (local Spark): a smaller world, one CLI process per command.

Each command is a new process with a new Spark session, so the store must be found again from its
warehouse folder on every call: Spark's default catalog lives in memory, and the second process used
to find the table folders but no tables (LOCATION_ALREADY_EXISTS). The warehouse URL is relative
(``pyspark:///warehouse``: the command's folder) and no Derby ``metastore_db`` may be left there.
The figures must equal the same world's on DuckDB: the KPI aggregations are one set of Ibis expressions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from insightroi.ingest import ingest_path
from insightroi.program import parse_program, starter_program_text
from insightroi.services import run_analyze
from insightroi.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
from helpers.paths import REFERENCE_DIR  # noqa: E402
from userworld import user_program, write_user_world  # noqa: E402

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.slow,
              pytest.mark.skipif(not (REFERENCE_DIR / "sentiment").exists(), reason="reference data not present")]
BIN = Path(sys.executable).parent / "insightroi"
TABLES = ("orders", "feedback", "tickets", "refunds", "assignments")


def _run(args, cwd, env):
    res = subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"insightroi {' '.join(args)}: {res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def spark_flow(tmp_path_factory):
    home = tmp_path_factory.mktemp("spark")
    env = {**os.environ, "COLUMNS": "200", "SPARK_LOCAL_IP": "127.0.0.1",
           "INSIGHTROI_STORE": "pyspark:///warehouse"}  # relative: every command runs in `home`
    env.pop("INSIGHTROI_PROGRAM", None)
    world = write_user_world(home / "data", n_families=12, orders_per_day=(10, 20))
    _run(["init", "."], home, env)
    prog = home / "insightroi.toml"
    prog.write_text(user_program(prog.read_text(encoding="utf-8")), encoding="utf-8")
    for table in TABLES:
        _run(["ingest", table, str(world.files[table])], home, env)
    run = json.loads(_run(["run", "--json"], home, env).stdout)
    roi = json.loads(_run(["roi", "--json"], home, env).stdout)
    return home, world, run, roi


def test_every_stage_runs_on_spark_across_processes(spark_flow):
    home, world, run, roi = spark_flow
    assert run["failures"] == []
    assert all(s["status"] == "ok" for s in run["stages"].values())
    assert (home / "warehouse" / "feedback").is_dir() and not (home / "metastore_db").exists()
    # A later process reads the sections the run saved: the same ROI to the last bit.
    assert roi["conservative"] == run["roi"]["conservative"] and roi["median"] == run["roi"]["median"]
    report = json.loads((home / "report" / "report.json").read_text())
    assert report["roi"]["conservative"] == run["roi"]["conservative"]


def test_spark_figures_equal_duckdb_on_the_same_world(spark_flow, tmp_path):
    home, world, run, _ = spark_flow
    program = parse_program(user_program(starter_program_text()))
    with open_store(f"duckdb:///{tmp_path}/same.duckdb") as st:
        for table in TABLES:
            ingest_path(st, table, world.files[table], program=program)
        duck = {k.name: k for k in run_analyze(st, program).kpis}
    # Sentiment/topic KPIs depend on classification, which the DuckDB side did not run.
    for name in ("negative_reviews_per_1000_orders", "tickets_per_1000_orders", "refunds_per_1000_orders"):
        spark = next(k for k in run["kpis"] if k["name"] == name)
        assert spark["estimate"] == pytest.approx(duck[name].estimate, rel=1e-9), name
        assert spark["ci_high"] == pytest.approx(duck[name].ci_high, rel=1e-9), name

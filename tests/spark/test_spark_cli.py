"""A ``pyspark://`` store across CLI calls: every call is a new process with a new Spark session.

Spark's default catalog lives in memory, so the second process used to find the warehouse's
table folders but no tables, and failed creating them again (LOCATION_ALREADY_EXISTS). Each
call must see what the previous one wrote, and leave no Derby ``metastore_db`` in the cwd.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("pyspark")

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _cli(cwd, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("INSIGHTROI_STORE", None)
    return subprocess.run([sys.executable, "-m", "insightroi", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_two_cli_calls_on_one_pyspark_store(tmp_path):
    (tmp_path / "fb.csv").write_text("id,source,event_time,text\n"
                                     "fb-1,review,2025-01-01T00:00:00Z,hinge cracked\n"
                                     "fb-2,review,2025-01-02T00:00:00Z,arrived late\n")
    url = "pyspark:///warehouse"  # relative: tmp_path/warehouse
    first = _cli(tmp_path, "ingest", "feedback", "fb.csv", "--store", url)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _cli(tmp_path, "status", "--store", url)
    assert second.returncode == 0, second.stderr[-3000:]
    row = next(line for line in second.stdout.splitlines() if " feedback " in line)
    assert row.split("│")[2].strip() == "2"  # the rows the first process wrote
    assert (tmp_path / "warehouse" / "feedback").is_dir()
    assert not (tmp_path / "metastore_db").exists()

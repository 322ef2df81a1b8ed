"""Property-based fuzzing of the OpenAPI spec (schemathesis): no input makes the server fail (5xx).

Runs in-process over ASGI against a real DuckDB file seeded with the sample data, with a valid
token so the write endpoints are exercised past authentication. Bounded: at most 30 examples per
operation, no per-example deadline (the machine is shared).
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from _srv_helpers import TOKEN, seed_store
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")

from insightroi.server import create_app  # noqa: E402

_DIR = Path(tempfile.mkdtemp(prefix="insightroi-fuzz-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_URL = f"duckdb:///{_DIR}/fuzz.duckdb"
seed_store(_URL)
# "testserver" is the Host of schemathesis' in-process ASGI client; a fuzzed wrong token must not
# lock the fuzzer out (throttling has its own test).
APP = create_app(_URL, token=TOKEN, max_body_bytes=100_000, allowed_hosts=["testserver"], max_auth_failures=10**9)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def _check(case):
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        # Every refusal is a JSON body with a readable reason.
        assert isinstance(response.json().get("detail"), str)
    case.validate_response(response, checks=[schemathesis.checks.not_a_server_error])


def _operation_test(label: str):
    @schema.include(name=label).parametrize()
    @settings(max_examples=30, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), database=None)
    def test(case):
        _check(case)

    return test


# One test function per operation, so each has its own node id: `schema.parametrize()` on one
# function gives all operations the same id, and pytest-xdist (`make test` runs two workers) then
# ran one of the 13. Each keeps schemathesis' phases (examples, coverage, fuzzing).
OPERATIONS = sorted(r.ok().label for r in schema.get_all_operations())
for _label in OPERATIONS:
    globals()["test_no_server_errors_" + re.sub(r"[^a-z0-9]+", "_", _label.lower()).strip("_")] = _operation_test(_label)


def test_every_operation_of_the_spec_is_fuzzed():
    tests = [name for name in globals() if name.startswith("test_no_server_errors_")]
    assert len(tests) == len(OPERATIONS) >= 13 and "POST /api/v1/chain-events/batch" in OPERATIONS

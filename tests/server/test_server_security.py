"""The web surface locked down: token for reads, Host check, throttling, revocable sessions, no 500s.

Against real uvicorn servers on loopback over real DuckDB files; each probe of the hardening issue
has a test asserting the exact answer.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from _srv_helpers import TOKEN, LiveServer, free_port, seed_store
from helpers.live_server import wait_until_serving

from insightroi.server import create_app
from insightroi.store import open_store

AUTH = {"Authorization": f"Bearer {TOKEN}"}
READS = ["/api/v1/insights", "/api/v1/alerts", "/api/v1/results", "/api/v1/results/bundle:latest", "/api/bundle",
         "/api/v1/trace/alr-0001"]
PAGES = ["/", "/themes", "/inbox", "/deliveries", "/review", "/experiment", "/monitoring", "/trace/alr-0004"]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('sec')}/sec.duckdb"
    seed_store(url)
    return url


@pytest.fixture(scope="module")
def server(store_url, live_server):
    # No throttling here (its own tests below): these tests send wrong tokens on purpose.
    return live_server(create_app(store_url, token=TOKEN, max_auth_failures=10_000))


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _events(server, alert_id: str) -> list[dict]:
    backend = server.server.config.app.state.backend()
    return backend.store.sql("SELECT id, event_type FROM chain_events WHERE alert_id = ?", [alert_id]).to_pylist()


# ---- reads need the token ------------------------------------------------------------------------
@pytest.mark.parametrize("path", READS)
def test_unauthenticated_api_reads_are_401(client, path):
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, (path, headers)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"].startswith("reading needs the API token")
    assert client.get(path, headers=AUTH).status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_unauthenticated_pages_are_the_sign_in_form_with_nothing_of_the_store(client, path):
    r = client.get(path)
    assert r.status_code == 401 and 'name="token"' in r.text
    assert f'name="next" value="{path}"' in r.text
    # Neither the program's name nor any alert or trace leaks to a page that is not signed in.
    assert "Acme" not in r.text and "data-alert" not in r.text and "fix deployed" not in r.text
    assert "alr-000" not in r.text.replace(path, "")  # the requested path itself comes back as `next`
    assert client.get(path, headers=AUTH).status_code == 200


def test_health_login_and_spec_stay_open(client):
    assert client.get("/api/v1/health").json()["status"] == "ok"
    assert client.get("/login").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_public_read_serves_reads_without_a_token_but_not_writes(store_url):
    with LiveServer(create_app(store_url, token=TOKEN, public_read=True)) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.get("/api/v1/alerts").status_code == 200 and c.get("/").status_code == 200
        w = c.post("/api/v1/chain-events", json={"event_type": "acknowledged", "alert_id": "alr-0001"})
        assert w.status_code == 401


# ---- Host header ---------------------------------------------------------------------------------
def test_foreign_host_is_400(client, server):
    for host in ("evil.example", "rebind.attacker.test:80", "127.0.0.1.nip.io"):
        r = client.get("/api/v1/health", headers={"Host": host})
        assert r.status_code == 400 and r.text == "Invalid host header", host
        assert client.get("/api/v1/alerts", headers={**AUTH, "Host": host}).status_code == 400
    assert client.get("/api/v1/health", headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_allowed_hosts_are_configurable(store_url):
    app = create_app(store_url, token=TOKEN, allowed_hosts=["insights.acme.example"])
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.get("/api/v1/health", headers={"Host": "insights.acme.example"}).status_code == 200
        assert c.get("/api/v1/health").status_code == 400  # 127.0.0.1 is not in this list


# ---- throttling ----------------------------------------------------------------------------------
def test_wrong_bearer_tokens_are_throttled(store_url):
    app = create_app(store_url, token=TOKEN, max_auth_failures=3, auth_window_s=60)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        codes = [c.get("/api/v1/alerts", headers={"Authorization": f"Bearer guess-{i}"}).status_code for i in range(3)]
        assert codes == [401, 401, 401]
        # Past the limit even the right token is refused, or guessing would go on at full speed.
        r = c.get("/api/v1/alerts", headers=AUTH)
        assert r.status_code == 429 and 55 <= int(r.headers["retry-after"]) <= 60
        assert "too many failed sign-ins or wrong tokens" in r.json()["detail"]
        w = c.post("/api/v1/chain-events", headers=AUTH, json={"event_type": "acknowledged", "alert_id": "alr-0001"})
        assert w.status_code == 429
        assert c.get("/api/v1/health").status_code == 200  # no token asked, nothing refused


def test_wrong_sign_ins_are_throttled(store_url):
    app = create_app(store_url, token=TOKEN, max_auth_failures=2, auth_window_s=1.5)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        assert [c.post("/login", data={"token": f"guess-{i}"}).status_code for i in range(2)] == [401, 401]
        r = c.post("/login", data={"token": TOKEN})
        assert r.status_code == 429 and r.headers["retry-after"] in ("1", "2") and "set-cookie" not in r.headers
        time.sleep(1.6)  # the window passes: the right token signs in
        assert c.post("/login", data={"token": TOKEN}).status_code == 303


# ---- sessions ------------------------------------------------------------------------------------
def _sign_in(c: httpx.Client) -> str:
    r = c.post("/login", data={"token": TOKEN, "next": "/inbox"})
    assert r.status_code == 303
    return re.search(r'name="csrf" value="([0-9a-f]+)"', c.get("/inbox").text).group(1)


def test_a_session_is_revoked_on_sign_out(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        csrf = _sign_in(c)
        cookie = c.cookies.get("insightroi_session")
        assert c.get("/api/v1/alerts").status_code == 200  # the session reads the API too
        # Sign-out needs the form's CSRF value: a cross-site form cannot sign anyone out.
        assert c.post("/logout", data={"csrf": ""}).status_code == 403
        assert c.post("/logout", data={"csrf": "0" * 40}).status_code == 403
        assert c.get("/inbox").status_code == 200
        out = c.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
    # A copy of the cookie taken before the sign-out is refused everywhere.
    with httpx.Client(base_url=server.url, timeout=60, cookies={"insightroi_session": cookie}) as stolen:
        assert stolen.get("/inbox").status_code == 401
        assert stolen.get("/api/v1/alerts").status_code == 401
        before = len(_events(server, "alr-0005"))
        r = stolen.post("/inbox/alr-0005", data={"event_type": "acknowledged", "form_id": "after-out", "csrf": csrf})
        assert r.status_code == 401
        assert len(_events(server, "alr-0005")) == before


# ---- no 500 for malformed input ------------------------------------------------------------------
def test_non_ascii_csrf_and_cookie_are_refused_not_500(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        _sign_in(c)
        r = c.post("/inbox/alr-0005", data={"event_type": "acknowledged", "form_id": "na", "csrf": "é" * 40})
        assert r.status_code == 403
        assert c.post("/logout", data={"csrf": "ü✓"}).status_code == 403
    for raw in ("insightroi_session=é.é", "insightroi_session=nonce.ümac", "insightroi_session=ßß"):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.get("/inbox", headers={"Cookie": raw.encode("utf-8")})
            assert r.status_code == 401, raw
            r = c.post("/inbox/alr-0005", headers={"Cookie": raw.encode("utf-8")},
                       data={"event_type": "acknowledged", "form_id": "na2", "csrf": "x"})
            assert r.status_code == 401, raw
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.get("/api/v1/alerts", headers={"Authorization": "Bearer ÿÿÿ".encode("latin-1")})
        assert r.status_code == 401


@pytest.mark.parametrize("url", ["/api/v1/insights?task=%00", "/api/v1/insights?label=a%00b", "/api/v1/trace/a%00b",
                                 "/trace/%00", "/api/v1/results/%00", "/inbox?team=%00", "/login?next=/%00"])
def test_nul_in_query_or_path_is_400(client, url):
    r = client.get(url, headers=AUTH)
    assert r.status_code == 400 and r.json()["detail"] == "NUL bytes are not allowed in the path or query"


@pytest.mark.parametrize("path,body", [
    ("/api/v1/chain-events", {"event_type": "acknowledged", "alert_id": "alr-0001",
                              "event_time": "0001-01-01T00:00:00+14:00"}),
    ("/api/v1/feedback", {"source": "review", "text": "ok", "event_time": "0001-01-01T00:00:00+14:00"}),
])
def test_event_time_that_overflows_utc_is_422(client, path, body):
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 422 and r.json()["fields"] == ["event_time"]
    assert "outside the representable range in UTC" in r.json()["detail"]


def test_nul_in_a_body_and_dates_outside_1990_2100_are_422(client):
    r = client.post("/api/v1/feedback", headers=AUTH,
                    json={"source": "review", "text": "a\u0000b", "event_time": "2026-03-01T00:00:00Z"})
    assert r.status_code == 422 and "text contains a NUL byte" in r.json()["detail"]
    r = client.post("/api/v1/chain-events", headers=AUTH,
                    json={"event_type": "acknowledged", "alert_id": "alr-0001", "payload": {"n\u0000": 1}})
    assert r.status_code == 422 and "contains a NUL byte" in r.json()["detail"]
    r = client.post("/api/v1/feedback", headers=AUTH,
                    json={"source": "review", "text": "old", "event_time": "1899-12-31T00:00:00Z"})
    assert r.status_code == 422 and "outside 1990-01-01 to 2100-12-31" in r.json()["detail"]


# ---- chain events checked against the store and each other ---------------------------------------
def test_outcome_for_an_unknown_alert_is_422(client, server):
    r = client.post("/api/v1/chain-events", headers=AUTH,
                    json={"id": "ev-ghost-1", "event_type": "outcome", "alert_id": "alr-ghost",
                          "event_time": "2026-03-20T10:00:00Z"})
    assert r.status_code == 422
    assert r.json()["detail"] == ("outcome 'ev-ghost-1' at 2026-03-20 10:00:00 UTC names alert 'alr-ghost', which no "
                                  "alert_delivered event records and the insight stage did not raise: record its "
                                  "delivery first")
    assert _events(server, "alr-ghost") == []
    # alr-0007 was raised by the insight stage (in the bundle) and not delivered: follow-ups are fine.
    ok = client.post("/api/v1/chain-events", headers=AUTH, json={"event_type": "acknowledged", "alert_id": "alr-0007"})
    assert ok.status_code == 201


def test_fix_dated_before_its_delivery_is_422_naming_both_events(client, server):
    # seed: alr-0003 delivered 2026-03-03 10:00 (event seed-alr-0003-0)
    r = client.post("/api/v1/chain-events", headers=AUTH,
                    json={"id": "ev-early-fix", "event_type": "fix_deployed", "alert_id": "alr-0003",
                          "event_time": "2025-03-03T10:00:00+00:00"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith(
        "fix_deployed 'ev-early-fix' at 2025-03-03 10:00:00 UTC is dated before alert_delivered 'seed-alr-0003-0' at "
        "2026-03-03 10:00:00 UTC of alert 'alr-0003': the chain's stages go alert_delivered -> acknowledged -> ")
    assert "ev-early-fix" not in {e["id"] for e in _events(server, "alr-0003")}


def test_acknowledgement_far_in_the_future_is_422(client):
    r = client.post("/api/v1/chain-events", headers=AUTH,
                    json={"id": "ev-2099", "event_type": "acknowledged", "alert_id": "alr-0001",
                          "event_time": "2099-01-01T00:00:00Z"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("acknowledged 'ev-2099' at 2099-01-01 00:00:00 UTC is dated ")
    assert "after the server's clock" in detail and "events may be at most 0:05:00 ahead" in detail


def test_clock_skew_bound_is_configurable(store_url):
    ahead = (datetime.now(timezone.utc) + timedelta(minutes=20)).isoformat()
    body = {"event_type": "acknowledged", "alert_id": "alr-0002", "event_time": ahead}
    with LiveServer(create_app(store_url, token=TOKEN, max_future=timedelta(hours=1))) as srv, \
            httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
        assert c.post("/api/v1/chain-events", json=body).status_code == 201
    with LiveServer(create_app(store_url, token=TOKEN)) as srv, \
            httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
        assert c.post("/api/v1/chain-events", json={**body, "id": "ev-ahead-2"}).status_code == 422


def test_events_of_one_batch_are_checked_against_each_other(server):
    from insightroi.server._data import _Pending

    backend = server.server.config.app.state.backend()
    t = datetime(2026, 4, 1, 12)
    rows = [{"id": "ev-b-deliver", "event_type": "alert_delivered", "alert_id": "alr-batch", "event_time": t},
            {"id": "ev-b-fix", "event_type": "fix_deployed", "alert_id": "alr-batch", "event_time": t - timedelta(days=1)},
            {"id": "ev-b-ack", "event_type": "acknowledged", "alert_id": "alr-batch", "event_time": t + timedelta(hours=1)}]
    batch = [_Pending("chain_events", r, f"api:test-{r['id']}", False) for r in rows]
    with backend.lock:  # one group commit holding all three, as concurrent requests would be
        backend._commit(batch)
    assert batch[0].future.result()[1] is False and batch[2].future.result()[1] is False
    with pytest.raises(Exception, match="fix_deployed 'ev-b-fix' .* before alert_delivered 'ev-b-deliver'"):
        batch[1].future.result()
    assert sorted(e["id"] for e in _events(server, "alr-batch")) == ["ev-b-ack", "ev-b-deliver"]


# ---- the token ------------------------------------------------------------------------------------
def test_a_token_shorter_than_32_characters_is_refused(store_url):
    with pytest.raises(ValueError, match="the API token is 31 characters long; use at least 32"):
        create_app(store_url, token="x" * 31)
    env = {**os.environ, "INSIGHTROI_API_TOKEN": "short-token"}
    got = subprocess.run([sys.executable, "-m", "insightroi", "serve", "--store", store_url, "--port", "1"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 1 and "Traceback" not in got.stderr
    assert "INSIGHTROI_API_TOKEN is 11 characters long; use at least 32" in got.stderr + got.stdout


def test_serve_without_a_token_keeps_it_in_a_0600_file_and_never_prints_it(tmp_path):
    url = f"duckdb:///{tmp_path}/t.duckdb"
    open_store(url).close()
    token_file = tmp_path / "token"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "INSIGHTROI_API_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "insightroi", "serve", "--store", url, "--port", str(port),
                             "--token-file", str(token_file)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{port}", timeout_s=120)
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token) >= 32
        ok = httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert token not in out and str(token_file) in out

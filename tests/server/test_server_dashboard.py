"""Dashboard pages and the inbox forms over real HTTP (auth, CSRF, redirects, empty store)."""

from __future__ import annotations

import re

import httpx
import pytest
from _srv_helpers import TOKEN, LiveServer, seed_store

from insightroi.server import create_app


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('dash')}/dash.duckdb"
    seed_store(url)
    with LiveServer(create_app(url, token=TOKEN)) as srv:
        yield srv


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _events(server, alert_id):
    backend = server.server.config.app.state.backend()
    return backend.store.sql("SELECT event_type, actor, payload FROM chain_events WHERE alert_id = ? "
                             "ORDER BY event_time", [alert_id]).to_pylist()


@pytest.mark.parametrize("path,expect", [
    ("/", ["Headline ROI", "129%", "KPI effects", "From insight to fix"]),
    ("/themes", ["Themes", "Alerts with evidence", "...product defect mentioned...", "alr-0007"]),
    ("/inbox", ["Owner's inbox", "alr-0001", "Acknowledge"]),
    ("/experiment", ["Experiment design", "sample ratio mismatch", "pre trends"]),
    ("/monitoring", ["Retrain or retire?", "topic mix", "Retraining policy"]),
    ("/trace/alr-0004", ["fix deployed", "Customer feedback"]),
    ("/login", ["Sign in", 'name="token"']),
])
def test_pages_render(client, path, expect):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for text in expect:
        assert text in r.text, text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script" not in r.text  # pages need no JavaScript


def test_inbox_filters_by_team(client):
    r = client.get("/inbox", params={"team": "logistics", "show": "all"})
    cards = re.findall(r'data-alert="([^"]+)"', r.text)
    assert cards == ["alr-0003"]


def test_form_post_needs_auth(client, server):
    before = len(_events(server, "alr-0001"))
    r = client.post("/inbox/alr-0001", data={"event_type": "acknowledged", "form_id": "f1"})
    assert r.status_code == 401
    r = client.post("/inbox/alr-0001", data={"event_type": "acknowledged", "form_id": "f1", "token": "nope"})
    assert r.status_code == 401 and "nope" not in r.text
    assert len(_events(server, "alr-0001")) == before


def test_form_with_typed_token_records_once(client, server):
    form = {"event_type": "acknowledged", "form_id": "typed-1", "token": TOKEN, "actor": "kim", "team": ""}
    r = client.post("/inbox/alr-0002", data={**form, "event_type": "action_taken", "note": "recall batch 12"})
    assert r.status_code == 303 and r.headers["location"].startswith("/inbox?done=alr-0002%3Aaction_taken")
    # A double-submit of the same rendered form stores once.
    client.post("/inbox/alr-0002", data={**form, "event_type": "action_taken", "note": "recall batch 12"})
    acted = [e for e in _events(server, "alr-0002") if e["event_type"] == "action_taken"]
    assert len(acted) == 1 and acted[0]["actor"] == "kim" and "recall batch 12" in acted[0]["payload"]


def test_session_login_csrf_and_redirects(client, server):
    bad = client.post("/login", data={"token": "wrong", "next": "/inbox"})
    assert bad.status_code == 401 and "not valid" in bad.text and "set-cookie" not in bad.headers
    evil = client.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert evil.status_code == 303 and evil.headers["location"] == "/inbox"
    cookie = evil.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    page = client.get("/inbox")
    assert "Sign out" in page.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    r = client.post("/inbox/alr-0005", data={"event_type": "acknowledged", "form_id": "s1", "csrf": "0" * 40})
    assert r.status_code == 403
    r = client.post("/inbox/alr-0005", data={"event_type": "acknowledged", "form_id": "s1", "csrf": csrf})
    assert r.status_code == 303
    assert [e["event_type"] for e in _events(server, "alr-0005")][-1] == "acknowledged"
    forged = httpx.Client(base_url=server.url, cookies={"insightroi_session": "abc.def"})
    assert forged.post("/inbox/alr-0005", data={"event_type": "acknowledged", "form_id": "s2"}).status_code == 401
    out = client.post("/logout")
    assert out.status_code == 303
    client.cookies.clear()
    assert "Sign out" not in client.get("/inbox").text


def test_form_errors_are_clear(client):
    r = client.post("/inbox/alr-0001", data={"event_type": "teleported", "token": TOKEN})
    assert r.status_code == 422 and "event_type must be one of" in r.text
    r = client.post("/inbox/nope", data={"event_type": "acknowledged", "token": TOKEN})
    assert r.status_code == 404 and "no alert" in r.text
    r = client.post("/inbox/alr-0001", json={"event_type": "acknowledged"})
    assert r.status_code == 415
    assert client.get("/trace/nothing-here").status_code == 404


def test_pages_on_an_empty_store_say_what_to_do(tmp_path):
    with LiveServer(create_app(f"duckdb:///{tmp_path}/e.duckdb", token=TOKEN)) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as c:
        for path in ("/", "/themes", "/experiment", "/monitoring"):
            r = c.get(path)
            assert r.status_code == 200 and "run <code>insightroi demo</code> or the stages first" in r.text, path
        assert "No open alerts" in c.get("/inbox").text

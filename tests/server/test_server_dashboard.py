"""Dashboard pages and the inbox forms over real HTTP (auth, CSRF, redirects, empty store)."""

from __future__ import annotations

import re

import httpx
import pytest
from _srv_helpers import TOKEN, LiveServer, seed_store

from insightroi.bundle import assemble_bundle, migrate_bundle, program_hash
from insightroi.errors import ProgramError
from insightroi.program import parse_program, starter_program_text
from helpers.report_sample import sample_bundle, sample_sections
from insightroi.server import create_app
from insightroi.store import open_store

# Pages need the token too (or a session): the clients send it as a bearer header.
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, live_server):
    url = f"duckdb:///{tmp_path_factory.mktemp('dash')}/dash.duckdb"
    seed_store(url)
    return live_server(create_app(url, token=TOKEN))


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as c:
        yield c


def _events(server, alert_id):
    backend = server.server.config.app.state.backend()
    return backend.store.sql("SELECT event_type, actor, payload FROM chain_events WHERE alert_id = ? "
                             "ORDER BY event_time", [alert_id]).to_pylist()


@pytest.mark.parametrize("path,expect", [
    ("/", ["Headline ROI", "129%", "KPI effects", "From insight to fix", "Primary KPI moved", "Decision rules"]),
    ("/themes", ["Themes", "Alerts with evidence", "...product defect mentioned...", "alr-0007"]),
    ("/inbox", ["Owner's inbox", "alr-0001", "Acknowledge"]),
    ("/experiment", ["Experiment design", "sample ratio mismatch", "pre trends", "Decision rules",
                     "Quasi-experimental cross-checks"]),
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
    assert client.post("/logout", data={"csrf": "0" * 40}).status_code == 403  # a cross-site sign-out
    out = client.post("/logout", data={"csrf": csrf})
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
            httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
        for path in ("/", "/themes", "/experiment", "/monitoring"):
            r = c.get(path)
            assert r.status_code == 200 and "run <code>insightroi demo</code> or the stages first" in r.text, path
        assert "No open alerts" in c.get("/inbox").text
        assert c.get("/api/bundle").status_code == 404


# ---- the bundle: the stages' saved sections, read with the program file -------------------------
def _without_time(b: dict) -> dict:
    return {k: v for k, v in b.items() if k != "generated_at"}


@pytest.fixture(scope="module")
def sections_server(tmp_path_factory):
    """A store the stages filled (their saved sections, no legacy bundle) and its program file."""
    root = tmp_path_factory.mktemp("sections")
    prog_path = root / "insightroi.toml"
    prog_path.write_text(starter_program_text(), encoding="utf-8")
    program = parse_program(starter_program_text())
    url = f"duckdb:///{root}/sections.duckdb"
    seed_store(url, bundle=False)
    with open_store(url) as st:
        for stage, payload in sample_sections(program_hash(program)).items():
            st.save_result("section", stage, payload)
        saved = next(c for c in sample_bundle()["claims"] if c["label"] == "saved")
        st.save_result("claim", "tickets_per_1000_orders", saved)
    with LiveServer(create_app(url, program=prog_path, token=TOKEN)) as srv:
        srv.program = program
        yield srv


def _assembled(server) -> dict:
    backend = server.server.config.app.state.backend()
    with backend.lock:
        return assemble_bundle(backend.store, server.program).to_report()


def test_api_bundle_is_the_assembled_bundle(sections_server):
    with httpx.Client(base_url=sections_server.url, timeout=60, headers=AUTH) as c:
        got = c.get("/api/bundle")
    assert got.status_code == 200
    body = got.json()
    assert _without_time(body) == _without_time(_assembled(sections_server))
    assert body["schema_version"] == 2 and body["program"]["primary_kpi"] == "negative_reviews_per_1000_orders"
    assert {"analyze", "roi", "quasi", "monitor"} <= set(body["provenance"])
    assert any(cl["label"] == "saved" for cl in body["claims"]) and body["decision_rules"]


def test_pages_show_the_saved_sections(sections_server):
    with httpx.Client(base_url=sections_server.url, timeout=60, headers=AUTH) as c:
        home = c.get("/").text
        exp = c.get("/experiment").text
        monitoring = c.get("/monitoring").text
    assert "No results in this store yet" not in home and "No results in this store yet" not in exp
    card = home.split('id="primary-kpi"')[1].split('<div class="stat"')[0]
    assert "negative reviews per 1000 orders" in card and "−15.0%" in card
    assert "Headline ROI" in home and "129%" in home and 'id="provenance"' in home
    # Badges rest on the Holm-adjusted result and say so.
    row = home.split('<tr data-kpi="conversion_rate">')[1].split("</tr>")[0]
    assert ">inconclusive<" in row and "adjusted (Holm)" in row
    rules = exp.split('id="decision-rules"')[1].split("</section>")[0]
    assert 'data-status="pass"' in rules and 'data-status="inconclusive"' in rules
    assert "causal impact" in exp and "Retrain or retire?" in monitoring


def test_primary_kpi_card_is_the_programs_even_when_another_kpi_has_a_lower_p_value(tmp_path):
    text = starter_program_text().replace('primary_kpi = "negative_reviews_per_1000_orders"',
                                          'primary_kpi = "refunds_per_1000_orders"')
    assert text != starter_program_text()
    (tmp_path / "p.toml").write_text(text, encoding="utf-8")
    program = parse_program(text)
    url = f"duckdb:///{tmp_path}/p.duckdb"
    with open_store(url) as st:
        for stage, payload in sample_sections(program_hash(program)).items():
            st.save_result("section", stage, payload)
    with LiveServer(create_app(url, program=tmp_path / "p.toml", token=TOKEN)) as srv, \
            httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
        card = c.get("/").text.split('id="primary-kpi"')[1].split('<div class="stat"')[0]
    assert "refunds per 1000 orders" in card and "−8.0%" in card and "negative reviews" not in card


def test_legacy_bundle_without_a_program_is_migrated(client):
    got = client.get("/api/bundle")
    assert got.status_code == 200
    assert got.json() == migrate_bundle(sample_bundle()).to_report()


def test_sections_of_another_program_are_not_shown(tmp_path):
    other = parse_program(starter_program_text().replace("Acme Commerce", "Other Co"))
    (tmp_path / "p.toml").write_text(starter_program_text(), encoding="utf-8")
    url = f"duckdb:///{tmp_path}/o.duckdb"
    with open_store(url) as st:
        for stage, payload in sample_sections(program_hash(other)).items():
            st.save_result("section", stage, payload)
    with LiveServer(create_app(url, program=tmp_path / "p.toml", token=TOKEN)) as srv, \
            httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
        body = c.get("/api/bundle").json()
        home = c.get("/").text
    assert "kpis" not in body or not body["kpis"]
    assert {f["stage"] for f in body["failures"] if f["status"] == "stale"} >= {"analyze", "roi"}
    assert "run <code>insightroi demo</code> or the stages first" in home


def test_program_file_is_found_and_checked(tmp_path, monkeypatch):
    (tmp_path / "insightroi.toml").write_text(starter_program_text(), encoding="utf-8")
    monkeypatch.delenv("INSIGHTROI_PROGRAM", raising=False)
    monkeypatch.chdir(tmp_path)
    assert create_app("duckdb:///x.duckdb", token=TOKEN).state.program.experiment.primary_kpi
    monkeypatch.chdir(tmp_path.parent)
    assert create_app("duckdb:///x.duckdb", token=TOKEN).state.program is None
    monkeypatch.setenv("INSIGHTROI_PROGRAM", str(tmp_path / "insightroi.toml"))
    assert create_app("duckdb:///x.duckdb", token=TOKEN).state.program is not None
    with pytest.raises(ProgramError, match="no program file"):
        create_app("duckdb:///x.duckdb", program=tmp_path / "missing.toml", token=TOKEN)

"""Event and read API against a real uvicorn server on loopback (httpx), over a real DuckDB file."""

from __future__ import annotations

import json

import httpx
import pytest
from _srv_helpers import TOKEN, LiveServer, seed_store

from insightroi.errors import StoreError
from insightroi.ingest import pseudonymize
from insightroi.server import create_app
from insightroi.store import open_store

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEEDBACK = {"source": "review", "text": "Hinge cracked, mail me at jo.doe@example.com or +44 20 7946 0958",
            "event_time": "2026-03-10T12:00:00+01:00", "rating": 1, "sku_family": "fam-017"}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('api')}/api.duckdb"
    seed_store(url)
    return url


@pytest.fixture(scope="module")
def server(store_url, live_server):
    return live_server(create_app(store_url, token=TOKEN, max_body_bytes=50_000))


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture()
def reader(server):
    """A client that sends the token: reads need it too."""
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as c:
        yield c


@pytest.fixture()
def backend(server):
    return server.server.config.app.state.backend()


def test_health_and_openapi(client):
    assert client.get("/api/v1/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/feedback", "/api/v1/chain-events", "/api/v1/insights", "/api/v1/alerts",
                 "/api/v1/results", "/api/v1/trace/{item_id}"):
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert spec["paths"]["/api/v1/feedback"]["post"]["security"] == [{"HTTPBearer": []}]
    assert client.get("/docs").status_code == 404  # Swagger UI loads from a CDN: not served


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN}x"}])
def test_unauthorized_writes_are_refused(client, backend, headers):
    before = backend.count("feedback")
    r = client.post("/api/v1/feedback", json=FEEDBACK, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in r.text
    r = client.post("/api/v1/chain-events", json={"event_type": "acknowledged", "alert_id": "alr-0001"}, headers=headers)
    assert r.status_code == 401
    assert backend.count("feedback") == before


def test_server_without_token_refuses_every_write(tmp_path):
    app = create_app(f"duckdb:///{tmp_path}/n.duckdb", token=None)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/api/v1/feedback", json=FEEDBACK, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 401 and "no API token" in r.json()["detail"]
        assert c.get("/api/v1/health").json()["writes_enabled"] is False


@pytest.mark.parametrize("body,fields", [
    ({**FEEDBACK, "source": "email"}, ["source"]),
    ({k: v for k, v in FEEDBACK.items() if k != "text"}, ["text"]),
    ({**FEEDBACK, "event_time": "2026-03-10T12:00:00"}, ["event_time"]),  # no offset: ambiguous
    ({**FEEDBACK, "rating": "great"}, ["rating"]),
    ({**FEEDBACK, "txt": "typo"}, ["txt"]),
    ({**FEEDBACK, "text": ""}, ["text"]),
    ({**FEEDBACK, "id": "has spaces/slash"}, ["id"]),
])
def test_malformed_feedback_is_422_naming_the_fields(client, body, fields):
    r = client.post("/api/v1/feedback", json=body, headers=AUTH)
    assert r.status_code == 422
    got = r.json()
    assert got["fields"] == fields
    for f in fields:
        assert f in got["detail"]


def test_malformed_chain_events_are_422(client):
    r = client.post("/api/v1/chain-events", json={"event_type": "shipped", "alert_id": "a"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["fields"] == ["event_type"]
    r = client.post("/api/v1/chain-events", json={"event_type": "acknowledged"}, headers=AUTH)
    assert r.status_code == 422 and "alert_id or insight_id is required" in r.json()["detail"]
    r = client.post("/api/v1/chain-events", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = client.post("/api/v1/chain-events", json=[1, 2], headers=AUTH)
    assert r.status_code == 422


def test_feedback_is_stored_with_pii_redacted_and_utc_time(client, backend):
    r = client.post("/api/v1/feedback", json=FEEDBACK, headers=AUTH)
    assert r.status_code == 201
    stored = r.json()["event"]
    assert "jo.doe@example.com" not in stored["text"] and "[EMAIL]" in stored["text"]
    assert "7946" not in stored["text"] and "[PHONE]" in stored["text"]
    assert stored["event_time"] == "2026-03-10T11:00:00"  # +01:00 converted to naive UTC
    row = backend.store.sql("SELECT text, event_time FROM feedback WHERE id = ?", [stored["id"]]).to_pylist()[0]
    assert "example.com" not in row["text"] and row["event_time"].hour == 11


def test_replayed_idempotency_key_stores_once_and_answers_the_same(client, backend):
    key = {"Idempotency-Key": "order-4711-fb"}
    before = backend.count("feedback")
    first = client.post("/api/v1/feedback", json=FEEDBACK, headers={**AUTH, **key})
    again = client.post("/api/v1/feedback", json=FEEDBACK, headers={**AUTH, **key})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"
    assert backend.count("feedback") == before + 1
    # Same key, different body: refused, nothing stored (IETF idempotency-key draft: 422).
    other = client.post("/api/v1/feedback", json={**FEEDBACK, "text": "different"}, headers={**AUTH, **key})
    assert other.status_code == 422 and "different request body" in other.json()["detail"]
    assert backend.count("feedback") == before + 1


def test_chain_event_replay_without_event_time_still_matches(client, backend):
    body = {"event_type": "acknowledged", "alert_id": "alr-0005", "actor": "sam", "team": "support"}
    key = {"Idempotency-Key": "ack-alr-0005"}
    before = backend.count("chain_events")
    a = client.post("/api/v1/chain-events", json=body, headers={**AUTH, **key})
    b = client.post("/api/v1/chain-events", json=body, headers={**AUTH, **key})
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    assert backend.count("chain_events") == before + 1
    assert a.headers["location"] == f"/api/v1/trace/{a.json()['id']}"


def test_client_ids_dedupe_and_conflict(client, backend):
    body = {**FEEDBACK, "id": "crm-ticket-991"}
    assert client.post("/api/v1/feedback", json=body, headers=AUTH).status_code == 201
    assert client.post("/api/v1/feedback", json=body, headers=AUTH).status_code == 201
    assert backend.store.sql("SELECT count(*) AS n FROM feedback WHERE id = 'crm-ticket-991'").to_pylist()[0]["n"] == 1
    r = client.post("/api/v1/feedback", json={**body, "text": "edited"}, headers=AUTH)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_idempotency_survives_a_restart(tmp_path):
    url = f"duckdb:///{tmp_path}/restart.duckdb"
    key = {**AUTH, "Idempotency-Key": "restart-key-1"}
    with LiveServer(create_app(url, token=TOKEN)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        first = c.post("/api/v1/feedback", json=FEEDBACK, headers=key)
    with LiveServer(create_app(url, token=TOKEN)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        again = c.post("/api/v1/feedback", json=FEEDBACK, headers=key)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    with open_store(url) as st:
        assert st.count("feedback") == 1


def test_body_over_the_cap_is_413(client, backend):
    before = backend.count("feedback")
    big = {**FEEDBACK, "text": "x" * 60_000}
    r = client.post("/api/v1/feedback", json=big, headers=AUTH)
    assert r.status_code == 413 and "50,000-byte limit" in r.json()["detail"]

    def chunks():  # no Content-Length: chunked transfer, counted while streaming
        payload = json.dumps(big).encode()
        for i in range(0, len(payload), 8192):
            yield payload[i:i + 8192]

    r = client.post("/api/v1/feedback", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert backend.count("feedback") == before


def test_bad_idempotency_key_is_422(client):
    r = client.post("/api/v1/feedback", json=FEEDBACK, headers={**AUTH, "Idempotency-Key": "x" * 300})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["fields"]


def test_read_endpoints(reader):
    client = reader
    alerts = client.get("/api/v1/alerts").json()["items"]
    by_id = {a["alert_id"]: a for a in alerts}
    assert by_id["alr-0004"]["status"] == "fixed" and by_id["alr-0007"]["status"] == "new"
    assert by_id["alr-0001"]["observed"] == 41 and by_id["alr-0001"]["team"] == "product_quality"
    assert {a["alert_id"] for a in client.get("/api/v1/alerts", params={"status": "open"}).json()["items"]} \
        .isdisjoint({"alr-0004"})
    assert all(a["team"] == "logistics" for a in client.get("/api/v1/alerts", params={"team": "logistics"}).json()["items"])
    ins = client.get("/api/v1/insights", params={"label": "product_defect"}).json()
    assert ins["total"] == 1 and ins["items"][0]["label"] == "product_defect"
    assert client.get("/api/v1/insights", params={"limit": 0}).status_code == 422
    results = client.get("/api/v1/results").json()["items"]
    assert any(r["id"] == "bundle:latest" for r in results)
    bundle = client.get("/api/v1/results/bundle:latest").json()
    assert bundle["program"]["name"].startswith("Acme")
    assert client.get("/api/v1/results/nope").status_code == 404
    assert client.get("/api/v1/trace/no-such-id").status_code == 404


def test_posted_chain_events_appear_in_trace_and_alert_status(reader):
    client = reader
    for step in ("acknowledged", "action_taken"):
        r = client.post("/api/v1/chain-events", headers=AUTH, json={
            "event_type": step, "alert_id": "alr-0006", "actor": "lee", "team": "merchandising",
            "event_time": f"2026-03-16T{10 if step == 'acknowledged' else 15}:00:00Z",
            "payload": {"note": "size chart fixed; call me on +1 415 555 0100",
                        "contacts": [{"email": "lee@acme.example"}]}})
        assert r.status_code == 201
    tr = client.get("/api/v1/trace/alr-0006").json()
    stages = [e["event_type"] for e in tr["events"]]
    assert stages[:3] == ["alert_delivered", "acknowledged", "action_taken"]
    notes = json.dumps(tr)
    assert "size chart fixed" in notes and "555 0100" not in notes and "lee@acme.example" not in notes
    status = {a["alert_id"]: a["status"] for a in client.get("/api/v1/alerts").json()["items"]}
    assert status["alr-0006"] == "acted"


def test_concurrent_writes_all_land_and_concurrent_replays_store_once(server, backend):
    from concurrent.futures import ThreadPoolExecutor

    before = backend.count("chain_events")

    def post(i):
        key = f"conc-{i % 10}"  # 40 requests, 10 distinct keys, sent 4 times each at once
        # Deliveries: they need no earlier event of their alert (an outcome for an undelivered alert is 422).
        body = {"event_type": "alert_delivered", "alert_id": f"conc-{i % 10}", "payload": {"k": i % 10}}
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/api/v1/chain-events", json=body, headers={**AUTH, "Idempotency-Key": key})
        return i % 10, r.status_code, r.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(40)))
    assert all(status == 201 for _, status, _ in results)
    by_key: dict[int, list] = {}
    for k, _, body in results:
        by_key.setdefault(k, []).append(body)
    assert all(len({json.dumps(b, sort_keys=True) for b in bodies}) == 1 for bodies in by_key.values())
    assert backend.count("chain_events") == before + 10


def test_insightroi_serve_cli_serves_the_cli_store(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from _srv_helpers import free_port

    url = f"duckdb:///{tmp_path}/cli.duckdb"
    seed_store(url)
    port = free_port()
    env = {**os.environ, "INSIGHTROI_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "insightroi", "serve", "--store", url, "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts", headers=AUTH, timeout=5)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        assert r.status_code == 200 and len(r.json()["items"]) == 7
        w = httpx.post(f"http://127.0.0.1:{port}/api/v1/chain-events", headers=AUTH, timeout=30,
                       json={"event_type": "acknowledged", "alert_id": "alr-0001"})
        assert w.status_code == 201
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert TOKEN not in out  # a configured token is never printed
    with open_store(url) as st:
        assert st.sql("SELECT count(*) AS n FROM chain_events WHERE batch_id LIKE 'api:%'").to_pylist()[0]["n"] == 1


def test_an_email_as_customer_id_gets_ingestions_pseudonym(client, backend, monkeypatch):
    # The API and a file ingest must store the same pseudonym for the same customer, or joins break.
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "k" * 32)
    body = {**FEEDBACK, "id": "fb-pii-id", "customer_id": "Jo.Doe@Example.com"}
    r = client.post("/api/v1/feedback", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    stored = backend.store.sql("SELECT customer_id FROM feedback WHERE id = ?", ["fb-pii-id"]).to_pylist()[0]
    assert stored["customer_id"] == pseudonymize("jo.doe@example.com")
    assert stored["customer_id"].startswith("pii_") and len(stored["customer_id"]) == 36


def test_an_email_as_actor_gets_the_pseudonym_and_the_payload_stays_redacted(client, backend, monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "k" * 32)
    body = {"event_type": "acknowledged", "alert_id": "alr-0002", "actor": "Sam.Lee@Example.com", "team": "support",
            "payload": {"note": "call me on +44 20 7946 0958"}}
    r = client.post("/api/v1/chain-events", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    row = backend.store.sql("SELECT actor, payload FROM chain_events WHERE id = ?", [r.json()["id"]]).to_pylist()[0]
    assert row["actor"] == pseudonymize("sam.lee@example.com")
    assert json.loads(row["payload"]) == {"note": "call me on [PHONE]"}


def test_chain_event_batch_applies_in_order_refuses_per_event_and_replays(client, backend):
    before = backend.count("chain_events")
    events = [
        {"event_type": "alert_delivered", "alert_id": "batch-alr-1", "team": "support"},
        {"event_type": "acknowledged", "alert_id": "batch-alr-1", "actor": "sam"},  # follows the delivery above
        {"event_type": "fix_deployed", "alert_id": "batch-alr-1",
         "event_time": "2001-01-01T00:00:00+00:00"},  # before its delivery: refused alone
        {"event_type": "acknowledged", "alert_id": "never-delivered-batch-alr"},  # unknown alert: refused alone
        {"event_type": "outcome", "insight_id": "ins-batch-1", "payload": {"note": "call +44 20 7946 0958"}},
    ]
    headers = {**AUTH, "Idempotency-Key": "batch-key-1"}
    r = client.post("/api/v1/chain-events/batch", json={"events": events}, headers=headers)
    assert r.status_code == 207, r.text
    body = r.json()
    assert (body["stored"], body["replayed"], body["rejected"]) == (3, 0, 2)
    assert [x["status"] for x in body["results"]] == [201, 201, 422, 422, 201]
    assert "before" in body["results"][2]["detail"] and "never-delivered-batch-alr" in body["results"][3]["detail"]
    assert backend.count("chain_events") == before + 3
    payload = backend.store.sql("SELECT payload FROM chain_events WHERE id = ?",
                                [body["results"][4]["id"]]).to_pylist()[0]["payload"]
    assert "7946" not in payload and "[PHONE]" in payload
    # The same batch again: every stored event is a replay, nothing lands twice.
    again = client.post("/api/v1/chain-events/batch", json={"events": events}, headers=headers).json()
    assert [x["status"] for x in again["results"]] == [200, 200, 422, 422, 200]
    assert [x["id"] for x in again["results"]] == [x["id"] for x in body["results"]]
    assert backend.count("chain_events") == before + 3


def test_batches_all_stored_are_201_and_malformed_batches_are_422_naming_the_event(client, backend):
    before = backend.count("feedback")
    items = [{**FEEDBACK, "id": f"batch-fb-{i}", "text": f"Item {i}: write to jo{i}@example.com"} for i in range(3)]
    r = client.post("/api/v1/feedback/batch", json={"items": items}, headers=AUTH)
    assert r.status_code == 201 and r.json()["stored"] == 3
    texts = backend.store.sql("SELECT text FROM feedback WHERE id LIKE 'batch-fb-%' ORDER BY id").to_pylist()
    assert [t["text"] for t in texts] == [f"Item {i}: write to [EMAIL]" for i in range(3)]
    assert backend.count("feedback") == before + 3
    # A reused id with other content refuses that item only.
    r = client.post("/api/v1/feedback/batch", json={"items": [{**items[0], "text": "edited"}, {**items[1]}]}, headers=AUTH)
    assert r.status_code == 207 and [x["status"] for x in r.json()["results"]] == [409, 200]
    # A malformed item refuses the whole request, naming it; nothing lands.
    bad = [items[0], {**items[1], "id": "batch-fb-new", "source": "carrier-pigeon"}]
    r = client.post("/api/v1/feedback/batch", json={"items": bad}, headers=AUTH)
    assert r.status_code == 422 and "items.1.source" in r.json()["fields"]
    too_many = {"events": [{"event_type": "outcome", "insight_id": f"i-{i}"} for i in range(501)]}
    r = client.post("/api/v1/chain-events/batch", json=too_many, headers=AUTH)
    assert r.status_code == 422 and "events" in r.json()["fields"]
    assert backend.count("feedback") == before + 3
    assert client.post("/api/v1/chain-events/batch", json={"events": []}, headers={}).status_code == 401


def test_erasure_endpoint_removes_the_customer_and_answers_counts_only(client, backend):
    email = "erase.me@example.org"
    items = [{**FEEDBACK, "id": f"erase-fb-{i}", "customer_id": email, "text": f"Order {i} arrived broken, sadly"}
             for i in range(2)]
    assert client.post("/api/v1/feedback/batch", json={"items": items}, headers=AUTH).status_code == 201
    before = backend.count("feedback")
    assert client.post("/api/v1/erasures", json={"customer": email}).status_code == 401  # needs the token
    r = client.post("/api/v1/erasures", json={"customer": email, "reason": "ticket PRIV-1"}, headers=AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["deleted"]["feedback"] == 2 and body["subject"].startswith("erased_")
    assert email not in r.text and pseudonymize(email) not in r.text
    assert backend.count("feedback") == before - 2
    left = backend.store.sql("SELECT count(*) AS n FROM feedback WHERE customer_id = ? OR id LIKE 'erase-fb-%'",
                             [pseudonymize(email)]).to_pylist()[0]["n"]
    assert left == 0
    kinds = {r["kind"] for r in backend.results(None)}
    assert "erasure" in kinds


def test_erasure_on_a_store_that_cannot_delete_rows_is_501_not_500(client, backend, monkeypatch):
    def refuse(customer, reason):
        raise StoreError("erasure needs the embedded DuckDB store (rows are deleted in place); this store is pyspark")

    monkeypatch.setattr(backend, "erase", refuse)
    r = client.post("/api/v1/erasures", json={"customer": "someone@example.org"}, headers=AUTH)
    assert r.status_code == 501 and "DuckDB" in r.json()["detail"]

"""Id columns that carry PII get a keyed pseudonym; phone region is configurable."""

from __future__ import annotations

import hashlib
import hmac
import re
import stat

import pyarrow as pa
import pytest

from insightroi.ingest import ingest_frame, pseudonymize, redact_pii, redact_row, redact_table
from insightroi.store import open_store

PSEUDO = re.compile(r"pii_[0-9a-f]{32}")


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    monkeypatch.delenv("INSIGHTROI_PII_KEY", raising=False)
    path = tmp_path / "cfg" / "insightroi" / "pii.key"
    monkeypatch.setenv("INSIGHTROI_PII_KEY_FILE", str(path))
    return path


def test_pii_ids_get_the_same_pseudonym_in_every_table_and_plain_ids_stay(key_file):
    assert not key_file.exists()
    ids = ["jane.doe@example.com", "C000123", None, "Jane.Doe@Example.COM", "(415) 555-2671", "+14155552671"]
    fb = redact_table(pa.table({"customer_id": pa.array(ids, pa.string()), "text": ["ok"] * 6}), "feedback")
    orders = redact_table(pa.table({"customer_id": pa.array(ids[:1], pa.string())}), "orders")
    chain = redact_table(pa.table({"actor": ["jane.doe@example.com", "logistics.ana", "router"]}), "chain_events")
    got = fb.column("customer_id").to_pylist()
    assert PSEUDO.fullmatch(got[0]) and PSEUDO.fullmatch(got[4])
    # Deterministic and canonical: e-mails by lower case, phones by E.164, so joins still match.
    assert got[1:4] == ["C000123", None, got[0]]
    assert got[5] == got[4] != got[0]
    assert orders.column("customer_id").to_pylist() == [got[0]]
    assert chain.column("actor").to_pylist() == [got[0], "logistics.ana", "router"]
    assert fb.column("text").to_pylist() == ["ok"] * 6
    # The key file was created on first use, readable by its owner only, and is reused.
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip().encode()
    assert got[0] == "pii_" + hmac.new(key, b"jane.doe@example.com", hashlib.sha256).hexdigest()[:32]
    assert pseudonymize("jane.doe@example.com") == got[0]


def test_env_key_wins_and_changes_every_pseudonym(key_file, monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "k1-0123456789abcdef")
    a = pseudonymize("jane.doe@example.com")
    assert a == "pii_" + hmac.new(b"k1-0123456789abcdef", b"jane.doe@example.com", hashlib.sha256).hexdigest()[:32]
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "k2-0123456789abcdef")
    assert pseudonymize("jane.doe@example.com") != a
    assert not key_file.exists()


def test_ingested_customer_ids_are_pseudonymised(key_file, tmp_path):
    rows = [
        {"id": "fb-1", "source": "review", "event_time": "2025-01-01T00:00:00Z", "text": "mail me: jane@example.com",
         "customer_id": "jane@example.com"},
        {"id": "fb-2", "source": "review", "event_time": "2025-01-01T00:00:00Z", "text": "fine", "customer_id": "C000123"},
    ]
    with open_store(f"duckdb:///{tmp_path}/s.duckdb") as store:
        report = ingest_frame(store, "feedback", rows, source="pii-ids")
        assert report.files[0].landed == 2
        got = store.sql("SELECT customer_id, text FROM feedback ORDER BY id").to_pylist()
    assert got == [{"customer_id": pseudonymize("jane@example.com"), "text": "mail me: [EMAIL]"},
                   {"customer_id": "C000123", "text": "fine"}]


def test_phone_region_is_configurable(monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PHONE_FALLBACK", "")
    text = "ring 020 7946 0958 tomorrow"
    assert redact_pii(text) == text  # not a US number, and no fallback regions
    assert redact_pii(text, region="GB") == "ring [PHONE] tomorrow"
    monkeypatch.setenv("INSIGHTROI_PHONE_REGION", "GB")
    assert redact_pii(text) == "ring [PHONE] tomorrow"
    monkeypatch.delenv("INSIGHTROI_PHONE_FALLBACK")
    monkeypatch.delenv("INSIGHTROI_PHONE_REGION")
    assert redact_pii(text) == "ring [PHONE] tomorrow"  # GB is among the default fallback regions


def test_redact_row_is_redact_table_for_one_event(key_file):
    event = {"id": "ce-1", "event_type": "acknowledged", "actor": "+1 (415) 555-2671", "team": "ops",
             "payload": '{"note": "mail jane@example.com", "n": 4111111111111111}', "sku": None}
    got = redact_row(event, "chain_events")
    table = redact_table(pa.Table.from_pylist([event]), "chain_events").to_pylist()[0]
    assert got == table
    assert got["payload"] == '{"note": "mail [EMAIL]", "n": [CARD]}'
    assert got["actor"] == pseudonymize("+14155552671") and got["team"] == "ops" and got["sku"] is None
    assert event["actor"] == "+1 (415) 555-2671"  # the caller's dict is not changed
    assert redact_row({"actor": "router"}, "chain_events") == {"actor": "router"}

"""The library calls: phone spellings of one id, refusals on engines without row deletes, and the
results that predate an erasure."""

from __future__ import annotations

import pandas as pd
import pytest

from insightroi.errors import StoreError
from insightroi.ingest import ingest_frame, pseudonymize
from insightroi.privacy import apply_retention, erase_customer, results_before_erasure
from insightroi.program import parse_program, starter_program_text
from insightroi.store import UnboundStore


@pytest.fixture
def program():
    return parse_program(starter_program_text() + "\n[retention]\nfeedback = 30\n")


def _feedback(ids_and_customers: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"id": i, "source": "review", "customer_id": c, "event_time": "2025-03-01T10:00:00Z",
                          "text": f"Parcel {i} came late and the box was torn open on arrival"}
                         for i, c in ids_and_customers])


def test_a_phone_id_is_found_by_any_spelling(store, program, monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "api-test-key-0123456789")
    ingest_frame(store, "feedback", _feedback([("f1", "(415) 555-2671"), ("f2", "+1 415 555 2671"), ("f3", "C0042")]))
    # Stored pseudonymised, one pseudonym for both spellings.
    assert store.sql("SELECT DISTINCT customer_id FROM feedback WHERE id IN ('f1', 'f2')").column(0).to_pylist() == [
        pseudonymize("+14155552671")]
    rep = erase_customer(store, program, "+14155552671")
    assert rep.deleted["feedback"] == 2
    assert store.sql("SELECT id FROM feedback").column(0).to_pylist() == ["f3"]


def test_ids_in_free_text_are_scrubbed_by_whole_word_and_short_ids_by_whole_value(store, program, monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "api-test-key-0123456789")
    notes = {"a1": "C0042", "a2": "call C00421 back", "a3": "call C004200 back, not C0042001 or XC004200",
             "a4": "C0042,C004200"}
    ingest_frame(store, "annotations", pd.DataFrame([
        {"id": k, "kind": "other", "start_time": "2025-03-01T00:00:00Z", "description": v} for k, v in notes.items()]))
    assert erase_customer(store, program, "C0042").scrubbed == {"annotations": 2}
    assert erase_customer(store, program, "C004200").scrubbed == {"annotations": 2}
    got = {r["id"]: r["description"] for r in store.sql("SELECT id, description FROM annotations").to_pylist()}
    assert got == {"a1": "[ERASED]", "a2": "call C00421 back", "a3": "call [ERASED] back, not C0042001 or XC004200",
                   "a4": "[ERASED],[ERASED]"}


def test_results_computed_before_the_last_erasure_are_listed(store, program, monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "api-test-key-0123456789")
    assert results_before_erasure(store) is None
    store.save_result("section", "analyze", {"n": 1})
    store.save_result("section", "roi", {"n": 2})
    rep = erase_customer(store, program, "C0001", reason="ticket 7")
    assert rep.predating == ["section:analyze", "section:roi"]
    assert results_before_erasure(store)["results"] == ["section:analyze", "section:roi"]
    store.save_result("section", "analyze", {"n": 3})  # the stage ran again
    after = results_before_erasure(store)
    assert after == {"record_id": rep.record_id, "erased_at": after["erased_at"], "results": ["section:roi"]}


def test_engines_without_row_deletes_are_refused(program):
    with pytest.raises(StoreError, match="erasing a customer .* only supported on the embedded DuckDB store, not unbound"):
        erase_customer(UnboundStore(), program, "C0001")
    with pytest.raises(StoreError, match="retention .* only supported on the embedded DuckDB store, not unbound"):
        apply_retention(UnboundStore(), program)


def test_an_empty_customer_is_refused(store, program):
    with pytest.raises(ValueError, match="customer"):
        erase_customer(store, program, "   ")

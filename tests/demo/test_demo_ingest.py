"""The demo world passes ingestion cleanly, and exactly the injected bad rows are quarantined."""

from __future__ import annotations

from insightroi.demo import generate_world
from insightroi.ingest import ingest_path
from insightroi.program import load_program
from insightroi.store import open_store


def _ingest_all(info, db):
    program = load_program(info.program_path)
    reports = {}
    with open_store(f"duckdb:///{db}") as store:
        for kind, path in info.paths.items():
            reports[kind] = ingest_path(store, kind, path, program=program)
        quarantine = store.table("quarantine").execute()
        landed = {k: int(store.table(k).count().execute()) for k in info.paths}
    return reports, quarantine, landed


def test_clean_world_ingests_with_zero_quarantine(tmp_path):
    info = generate_world(tmp_path / "w", seed=8, scale="tiny")
    reports, quarantine, landed = _ingest_all(info, tmp_path / "s.duckdb")
    assert len(quarantine) == 0, quarantine[["target_table", "field", "reason"]].head().to_string()
    for kind, rep in reports.items():
        assert rep.quarantined == 0 and rep.duplicates == 0, kind
        assert landed[kind] == info.rows[kind], kind


def test_exactly_the_injected_bad_rows_are_quarantined(tmp_path):
    n_bad = 17
    info = generate_world(tmp_path / "w", seed=8, scale="tiny", bad_rows=n_bad)
    assert sum(info.bad_rows.values()) == n_bad
    assert len(info.bad_rows) >= 5, "spread over kinds"
    reports, quarantine, landed = _ingest_all(info, tmp_path / "s.duckdb")
    assert len(quarantine) == n_bad
    per_kind = quarantine.target_table.value_counts().to_dict()
    assert per_kind == info.bad_rows
    # every fault kind shows up: missing values, unparseable timestamps, wrong types, unknown enums
    reasons = " | ".join(quarantine.reason.astype(str))
    assert "missing" in reasons and "timestamp" in reasons and "number" in reasons and "not one of" in reasons
    for kind in info.paths:
        assert landed[kind] == info.rows[kind] - info.bad_rows.get(kind, 0), kind

"""How classify_store writes: few large transactions, not one per batch.

Speed itself is measured in benchmarks/bench_insights.py (200k distinct real documents, ours and
the per-model path alternating, CPU time), never asserted here: a timed assertion fails on a busy
machine and proves nothing on a quiet one. Row equality with the per-model path is in
test_fast_classify.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd

from insightroi.insights import classify_store
from insightroi.insights import _classify
from insightroi.insights._fast_corpus import shuffled_documents
from insightroi.program import parse_program, starter_program_text
from insightroi.store import open_store

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "sentiment"
PROGRAM = parse_program(starter_program_text())


def test_classify_store_commits_once_per_write_rows_not_per_batch(tmp_path, monkeypatch):
    n = 2500
    texts = shuffled_documents(REF, n, seed=4)
    store = open_store(f"duckdb:///{tmp_path / 's.duckdb'}")
    store.migrate()
    fb = pd.DataFrame({"id": [f"fb-{i:05d}" for i in range(n)], "text": texts, "rating": 3.0,
                       "event_time": pd.Timestamp("2025-01-01")})
    with store.transaction():
        store.append("feedback", fb)
    writes = []  # rows of insights appended per committed transaction
    real_tx, real_append = store.transaction, store.append

    @contextlib.contextmanager
    def counted():
        writes.append(0)
        with real_tx() as s:
            yield s

    def append(name, data):
        got = real_append(name, data)
        if name == "insights":
            writes[-1] += got
        return got

    monkeypatch.setattr(store, "transaction", counted)
    monkeypatch.setattr(store, "append", append)
    monkeypatch.setattr(_classify, "WRITE_ROWS", 3000)
    rep = classify_store(store, PROGRAM, batch_size=500)
    # 5 batches of 1,500 rows: written after batches 2 and 4 and at the end, not 5 times.
    assert [w for w in writes if w] == [3000, 3000, 1500]
    assert rep.n_rows_written == 3 * n == store.count("insights")
    assert rep.n_unclassifiable + sum(v for k, v in rep.topic_counts.items() if k != "unclassifiable") == n
    store.close()

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

from insightroi.insights import build_models, classify_store
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


def test_classify_store_reads_the_to_do_set_in_pages_with_the_rows_of_one_read(tmp_path, monkeypatch):
    # At 100M orders the to-do set is ~15.5M texts: read whole, it sat in the parent (and in the
    # forked workers' resident sets) for the whole stage. Pages of READ_ROWS must hold the same
    # rows in the same order, skip what an earlier run classified, and write the same insights.
    n = 2300
    texts = shuffled_documents(REF, n, seed=5)
    fb = pd.DataFrame({"id": [f"fb-{(i * 7919) % n:05d}" for i in range(n)], "text": texts,
                       "rating": 3.0, "event_time": pd.Timestamp("2025-01-01")})
    stores = {}
    for name, read_rows in (("whole", 10**9), ("paged", 1000)):
        monkeypatch.setattr(_classify, "READ_ROWS", read_rows)
        store = open_store(f"duckdb:///{tmp_path / (name + '.duckdb')}")
        store.migrate()
        with store.transaction():
            store.append("feedback", fb.iloc[: n // 2])
        classify_store(store, PROGRAM, batch_size=300)  # an earlier run: the first half is done
        with store.transaction():
            store.append("feedback", fb.iloc[n // 2:])
        if name == "paged":
            version = build_models(PROGRAM).versions["severity"]
            total, n_feedback, pages = _classify._todo_pages(store, version, 900)
            pages = list(pages)
            # 1,150 to-do rows spread between the done ones: pages of 900 (3 batches of 300) + 250.
            assert (total, n_feedback) == (n - n // 2, n) and [p.num_rows for p in pages] == [900, 250]
            ids = [i for p in pages for i in p.column("id").to_pylist()]
            assert ids == sorted(fb.id.iloc[n // 2:])
        rep = classify_store(store, PROGRAM, batch_size=300)
        assert rep.n_todo == n - n // 2 and rep.n_rows_written == 3 * (n - n // 2)
        stores[name] = store.table("insights").drop("created_at").order_by("id").to_pandas()
        store.close()
    pd.testing.assert_frame_equal(stores["whole"], stores["paged"])

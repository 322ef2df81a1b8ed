"""The insight layer on the demo world (insightroi.demo): topic macro-F1 against the hidden labels
and spike detection against truth.json's defect episodes. Figures measured at scale "demo"
(62,747 feedback rows, 86 defect episodes): topic macro-F1 0.80 (multi-label, 8 taxonomy
topics); spikes with the default 1/3/7/14-day scan: recall 0.26, precision 0.40, median 10 days
from defect start to alert (a single 3-day window: 0.14, 0.27, 7 days). Here the "small" world keeps the test quick."""

import pytest

demo = pytest.importorskip("insightroi.demo")

from insightroi.insights._world_eval import evaluate_world  # noqa: E402
from insightroi.store import open_store  # noqa: E402


@pytest.mark.slow
def test_topic_f1_and_spike_scoring_on_demo_world(tmp_path):
    info = demo.generate_world(tmp_path / "world", seed=1, scale="small")
    st = open_store(f"duckdb:///{tmp_path / 'w.duckdb'}")
    r = evaluate_world(info.out_dir, st)
    assert r["classify"]["n_feedback"] > 1000
    assert r["topics"]["macro_f1"] > 0.7, r["topics"]
    # keyword rules are precise: every complaint topic keeps precision above 0.8
    for t, v in r["topics"]["per_topic"].items():
        if v["support"] >= 50 and t != "praise":
            assert v["precision"] > 0.8, (t, v)
    sp = r["spikes"]
    assert sp["episodes"] > 0 and 0 <= (sp["recall"] or 0) <= 1
    st.close()


@pytest.mark.slow
def test_new_theme_surfaces_first_on_demo_world(tmp_path):
    # The demo's "counterfeit" theme is outside the taxonomy and starts late in the world.
    import numpy as np

    from insightroi.insights import discover_themes
    from insightroi.program import load_program

    info = demo.generate_world(tmp_path / "world", seed=0, scale="demo")
    st = open_store(f"duckdb:///{tmp_path / 'w.duckdb'}")
    evaluate_world(info.out_dir, st)
    themes = discover_themes(st, load_program(info.out_dir / "insightroi.toml"), rng=np.random.default_rng(0))
    top_terms = " ".join(" ".join(t.terms) for t in themes[:2])
    assert any(w in top_terms for w in ("knockoff", "fake", "counterfeit", "authentic", "genuine", "hologram")), themes[:2]
    st.close()

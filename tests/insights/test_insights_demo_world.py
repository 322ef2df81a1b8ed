"""The insight layer on the demo world (insightroi.demo): topic macro-F1 against the hidden labels
and spike detection against truth.json's defect episodes, at the README's scale and seed ("demo",
seed 0: 62,747 feedback rows, 86 defect episodes).

Measured here (and in the README's table): topic macro-F1 0.804 (multi-label, 8 taxonomy
topics); spikes with the default 1/3/7/14-day scan: 27 of 86 episodes found, recall 0.314,
precision 0.382 (26 of 68 alerts), median 10 days from defect start to alert. A single 3-day
window gives recall 0.14 and precision 0.27, and counting only days with feedback as a family's
history (a sparse family then never qualifies) gave 22 of 86 (0.256) at precision 0.362, so the
thresholds below fail if the scan regresses to either. The world is the session's shared ``demo_world("demo", 0)`` (read only); the store is ours.
"""

import numpy as np
import pytest

pytest.importorskip("insightroi.demo")

from insightroi.insights import discover_themes  # noqa: E402
from helpers.world_eval import evaluate_world  # noqa: E402
from insightroi.program import load_program  # noqa: E402
from insightroi.store import open_store  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluated(demo_world, tmp_path_factory):
    info = demo_world("demo", 0)
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('insights_demo') / 'w.duckdb'}")
    yield info, st, evaluate_world(info.out_dir, st)
    st.close()


def test_topic_f1_and_spike_recall_on_demo_world(evaluated):
    _, _, r = evaluated
    assert r["classify"]["n_feedback"] == 62_747
    assert r["topics"]["macro_f1"] > 0.78, r["topics"]  # measured 0.804
    # keyword rules are precise: every complaint topic keeps precision above 0.8 (lowest:
    # battery_power 0.823)
    for t, v in r["topics"]["per_topic"].items():
        if v["support"] >= 50 and t != "praise":
            assert v["precision"] > 0.8, (t, v)
    sp = r["spikes"]
    assert sp["episodes"] == 86
    assert sp["recall"] >= 0.28, sp  # measured 0.314 (27 / 86); feedback days as history 0.256; one 3-day window 0.14
    assert sp["precision"] >= 0.33, sp  # measured 0.382 (26 / 68); one 3-day window: 0.27
    assert sp["median_days_to_alert"] <= 14, sp  # measured 10


def test_new_theme_surfaces_first_on_demo_world(evaluated):
    # The demo's "counterfeit" theme is outside the taxonomy and starts late in the world.
    info, st, _ = evaluated
    themes = discover_themes(st, load_program(info.out_dir / "insightroi.toml"), rng=np.random.default_rng(0))
    top_terms = " ".join(" ".join(t.terms) for t in themes[:2])
    assert any(w in top_terms for w in ("knockoff", "fake", "counterfeit", "authentic", "genuine", "hologram")), themes[:2]

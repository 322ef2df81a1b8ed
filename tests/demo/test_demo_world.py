"""The demo world: determinism, schemas, truth vs a brute-force recomputation from the files, text."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from insightroi.demo import TABLE_KINDS, family_sums, generate_world, kpi_truth, world_cells
from insightroi.program import load_program
from insightroi.store import ANNOTATION_KINDS, CHAIN_EVENT_TYPES, FEEDBACK_SOURCES, TABLES


def _read(path: Path) -> pa.Table:
    """A kind's Parquet file, or every part in its folder (JSONL bad-row files are not Parquet)."""
    if path.is_dir():
        return pa.concat_tables([pq.read_table(p) for p in sorted(path.glob("*.parquet"))])
    return pq.read_table(path)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(demo_world):
    return demo_world("tiny", 11)


def test_same_seed_same_bytes_different_seed_different_world(tmp_path, tiny):
    again = generate_world(tmp_path / "again", seed=11, scale="tiny")
    other = generate_world(tmp_path / "other", seed=12, scale="tiny")
    assert _digest(tiny.out_dir) == _digest(again.out_dir)
    d_other = _digest(other.out_dir)
    assert set(d_other) == set(_digest(tiny.out_dir))
    # every data file differs for another seed (the program file does not: same scale)
    for name, digest in _digest(tiny.out_dir).items():
        if name != "insightroi.toml":
            assert d_other[name] != digest, name


def test_files_have_the_store_schemas_and_sane_rows(tiny):
    # The CX block's user tables come last (tests/demo/test_demo_cx_kpis.py checks their truth).
    assert list(tiny.paths) == [*TABLE_KINDS, "user_surveys", "user_customers"]
    prog = load_program(tiny.program_path)
    for name in ("surveys", "customers"):
        tab = _read(tiny.paths[f"user_{name}"])
        declared = prog.user_table(name)
        assert tab.column_names == list(declared.columns), name
        assert tab.num_rows == tiny.rows[f"user_{name}"] > 0, name
        assert pc.count_distinct(tab[declared.key]).as_py() == tab.num_rows, name
    for kind in TABLE_KINDS:
        path = tiny.paths[kind]
        tab = _read(path)
        expected = [c for c in TABLES[kind].columns if c not in ("ingested_at", "batch_id")]
        assert tab.column_names == expected, kind
        assert tab.num_rows == tiny.rows[kind] > 0, kind
        key = TABLES[kind].key
        assert pc.count_distinct(tab[key]).as_py() == tab.num_rows, f"{kind}.{key} not unique"
        for col in TABLES[kind].required:
            assert tab[col].null_count == 0, f"{kind}.{col}"
    orders = _read(tiny.paths["orders"])
    assert 0.8 * 4000 < orders.num_rows < 1.2 * 4000
    assert tiny.n_orders == orders.num_rows == tiny.truth["n_orders"]
    fb = _read(tiny.paths["feedback"])
    assert set(fb["source"].to_pylist()) <= set(FEEDBACK_SOURCES)
    assert {"review", "ticket", "chat", "return"} <= set(fb["source"].to_pylist())
    reviews = fb.filter(pc.equal(fb["source"], "review"))
    assert reviews["rating"].null_count == 0
    assert set(reviews["rating"].to_pylist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert fb.filter(pc.not_equal(fb["source"], "review"))["rating"].null_count == fb.num_rows - reviews.num_rows
    # tickets and refunds point at real orders placed no later than the event
    o_time = dict(zip(orders["id"].to_pylist(), orders["order_time"].to_pylist()))
    for kind, tcol in (("tickets", "opened_at"), ("refunds", "event_time")):
        tab = _read(tiny.paths[kind])
        for oid, t in zip(tab["order_id"].to_pylist(), tab[tcol].to_pylist()):
            assert oid in o_time and o_time[oid] <= t
    refunds = _read(tiny.paths["refunds"])
    assert set(refunds["kind"].to_pylist()) <= {"refund", "return"}
    # the return reasons are the return feedback texts
    assert set(refunds["reason"].to_pylist()) <= set(fb.filter(pc.equal(fb["source"], "return"))["text"].to_pylist())
    traffic = _read(tiny.paths["traffic"])
    assert pc.sum(traffic["conversions"]).as_py() == orders.num_rows
    assert pc.all(pc.less_equal(traffic["conversions"], traffic["sessions"])).as_py()
    # 15+ months of daily data
    t0, t1 = pc.min_max(orders["order_time"]).values()
    months = (t1.as_py().year - t0.as_py().year) * 12 + t1.as_py().month - t0.as_py().month + 1
    assert months >= 15


def test_program_assignments_annotations_and_chain(tiny):
    prog = load_program(tiny.program_path)
    w = tiny.truth["window"]
    assert (w["start"], w["end"]) == (prog.experiment.start.isoformat(), prog.experiment.end.isoformat())
    asg = _read(tiny.paths["assignments"])
    assert set(asg["experiment"].to_pylist()) == {prog.experiment.name}
    assert set(asg["unit_type"].to_pylist()) == {"sku_family"}
    assert set(asg["arm"].to_pylist()) == {"treatment", "control"}
    products = _read(tiny.paths["products"])
    assert sorted(asg["unit_id"].to_pylist()) == sorted(set(products["sku_family"].to_pylist()))
    assert len(set(products["sku_family"].to_pylist())) >= 40
    assert pc.all(pc.less(products["unit_cost"], products["price"])).as_py()
    ann = _read(tiny.paths["annotations"])
    kinds = ann["kind"].to_pylist()
    assert set(kinds) <= set(ANNOTATION_KINDS) and {"promotion", "stockout", "outage"} <= set(kinds)
    ce = _read(tiny.paths["chain_events"])
    types = ce["event_type"].to_pylist()
    assert set(types) <= set(CHAIN_EVENT_TYPES)
    assert {"insight", "alert_delivered", "acknowledged", "action_taken", "fix_deployed", "ignored",
            "overridden"} <= set(types)
    treated = set(tiny.truth["assignment"]["treatment"])
    alerted = ce.filter(pc.equal(ce["event_type"], "alert_delivered"))
    fams = {f for f in alerted["sku_family"].to_pylist() if f is not None}
    assert fams and fams <= treated, "alerts only reach treated families (persistent holdout)"
    for row in alerted.to_pylist():
        assert row["team"] in {t.owner for t in prog.taxonomy} and row["alert_id"]


def _window_mask(ts: pa.Array, truth: dict) -> np.ndarray:
    lo = datetime.fromisoformat(truth["window"]["start"]).replace(tzinfo=timezone.utc)
    hi = datetime.fromisoformat(truth["window"]["end"]).replace(tzinfo=timezone.utc) + timedelta(days=1)
    if pa.types.is_date(ts.type):
        lo_d, hi_d = lo.date(), hi.date()
        return np.array([lo_d <= d < hi_d for d in ts.to_pylist()])
    return np.asarray(pc.and_(pc.greater_equal(ts, pa.scalar(lo)), pc.less(ts, pa.scalar(hi))))


def _family_measures_from_files(info) -> dict[str, dict[str, float]]:
    """Per-family measure sums over the window, recomputed from the written rows only."""
    truth = info.truth
    out: dict[str, dict[str, float]] = {}

    def add(measure, fams, weights=None):
        d = out.setdefault(measure, {})
        weights = np.ones(len(fams)) if weights is None else weights
        for f, v in zip(fams, weights):
            d[f] = d.get(f, 0.0) + float(v)

    orders = _read(info.paths["orders"])
    m = _window_mask(orders["order_time"], truth)
    fam = np.asarray(orders["sku_family"].to_pylist(), dtype=object)[m]
    add("orders", fam)
    add("revenue", fam, np.asarray(orders["revenue"])[m])
    traffic = _read(info.paths["traffic"])
    m = _window_mask(traffic["date"], truth)
    fam = np.asarray(traffic["sku_family"].to_pylist(), dtype=object)[m]
    add("sessions", fam, np.asarray(traffic["sessions"])[m])
    add("conversions", fam, np.asarray(traffic["conversions"])[m])
    fb = _read(info.paths["feedback"])
    labels = _read(info.labels_path)
    pd_ids = {i for i, t in zip(labels["id"].to_pylist(), labels["true_topics"].to_pylist()) if "product_defect" in t}
    m = _window_mask(fb["event_time"], truth)
    fam = np.asarray(fb["sku_family"].to_pylist(), dtype=object)
    src = np.asarray(fb["source"].to_pylist(), dtype=object)
    rating = np.asarray(fb["rating"].fill_null(99).to_pylist())
    ids = fb["id"].to_pylist()
    add("feedback", fam[m])
    add("negative_reviews", fam[m & (src == "review") & (rating <= 2)])
    add("defect_mentions", fam[m & np.array([i in pd_ids for i in ids])])
    for kind, tcol, measure in (("tickets", "opened_at", "tickets"), ("refunds", "event_time", "refunds")):
        tab = _read(info.paths[kind])
        mm = _window_mask(tab[tcol], truth)
        add(measure, np.asarray(tab["sku_family"].to_pylist(), dtype=object)[mm])
    return out


def _kpi(sums, kpi, fams) -> float:
    num = sum(sums.get(kpi.numerator, {}).get(f, 0.0) for f in fams)
    den = len(fams) if kpi.denominator == "units" else sum(sums.get(kpi.denominator, {}).get(f, 0.0) for f in fams)
    return kpi.scale * num / den


def test_truth_matches_brute_force_recomputation_from_both_policies_files(tmp_path):
    """Write the same world with every family under each policy, recompute every KPI from the rows."""
    seed = 5
    obs = generate_world(tmp_path / "obs", seed=seed, scale="tiny")
    all_t = generate_world(tmp_path / "t", seed=seed, scale="tiny", policy="treatment")
    all_c = generate_world(tmp_path / "c", seed=seed, scale="tiny", policy="control")
    prog = load_program(obs.program_path)
    s_t, s_c = _family_measures_from_files(all_t), _family_measures_from_files(all_c)
    fams = obs.truth["family_sums"]["families"]
    treated = obs.truth["assignment"]["treatment"]
    checked = 0
    for kpi in prog.kpis:
        truth = obs.truth["kpis"][kpi.name]
        if truth["ate"] is None:
            assert kpi.layer == "workflow"
            continue
        if "planted" in truth:
            continue  # a CX KPI: recounted in tests/demo/test_demo_cx_kpis.py
        ate = _kpi(s_t, kpi, fams) - _kpi(s_c, kpi, fams)
        att = _kpi(s_t, kpi, treated) - _kpi(s_c, kpi, treated)
        avoided = sum(s_c.get(kpi.numerator, {}).get(f, 0) - s_t.get(kpi.numerator, {}).get(f, 0) for f in treated)
        assert truth["ate"] == pytest.approx(ate, rel=1e-9, abs=1e-9), kpi.name
        assert truth["att"] == pytest.approx(att, rel=1e-9, abs=1e-9), kpi.name
        assert truth["avoided_events_treated"] == pytest.approx(avoided, rel=1e-9, abs=1e-6), kpi.name
        assert truth["ate_relative"] == pytest.approx(ate / _kpi(s_c, kpi, fams), rel=1e-9, abs=1e-12)
        checked += 1
    assert checked == 6
    # the program helps: fewer negative reviews, tickets and refunds under the treatment policy
    for name in ("negative_reviews_per_1000_orders", "tickets_per_1000_orders", "refunds_per_1000_orders",
                 "defect_mentions_per_1000_feedback"):
        assert obs.truth["kpis"][name]["ate"] < 0, name
    # the observed files are the treated families from one world and the control ones from the other
    s_o = _family_measures_from_files(obs)
    for measure in ("orders", "negative_reviews", "tickets", "refunds", "sessions", "conversions"):
        for f in fams:
            src = s_t if f in treated else s_c
            assert s_o.get(measure, {}).get(f, 0) == src.get(measure, {}).get(f, 0), (measure, f)
    # ROI truth follows the contract's formula
    roi = obs.truth["roi"]
    hard = sum(obs.truth["kpis"][p.kpi]["avoided_events_treated"] * p.unit_value.mode for p in prog.value_pools if p.hard)
    months = obs.truth["window"]["days"] / 30.4375
    fb_treated = sum(s_o["feedback"].get(f, 0) for f in treated)
    cost = sum(c.amount.mode * (1 if c.per == "total" else months if c.per == "month" else fb_treated / 1000)
               for c in prog.costs)
    assert roi["benefit_hard"] == pytest.approx(hard)
    assert roi["cost"] == pytest.approx(cost)
    assert roi["roi"] == pytest.approx((hard - cost) / cost)
    assert roi["bcr"] == pytest.approx(hard / cost)
    assert roi["months"] == pytest.approx(months)


def test_truth_file_contract_keys(tiny):
    t = json.loads(tiny.truth_path.read_text())
    assert {"seed", "scale", "n_orders", "window", "kpis", "roi", "defects", "shocks", "new_theme"} <= set(t)
    for k in t["kpis"].values():
        assert {"ate", "ate_relative", "att", "avoided_events_treated"} <= set(k)
    assert {"benefit_hard", "benefit_soft", "cost", "roi", "bcr", "months"} <= set(t["roi"])
    assert t["shocks"][0]["kind"] == "outage"
    assert t["new_theme"]["topic"] == "counterfeit"
    for d in t["defects"]:
        assert d["end_treatment_policy"] <= d["end_control_policy"]
        assert d["start"] < d["end_control_policy"]
    outcomes = {d["alert_outcome"] for d in t["defects"]}
    assert "fixed" in outcomes


def test_cell_world_is_the_generator_code_path(tiny):
    """world_cells + family_sums (used by simulation studies) give exactly the written truth."""
    w = world_cells(seed=11, scale="tiny")
    prog = load_program(tiny.program_path)
    for name, v in kpi_truth(w, prog).items():
        if v["ate"] is not None:
            assert v["ate"] == pytest.approx(tiny.truth["kpis"][name]["ate"], rel=1e-12, abs=1e-12)
    obs = family_sums(w, "observed")
    assert np.allclose(obs["orders"], tiny.truth["family_sums"]["observed"]["orders"])


# ---- text ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_text(tmp_path_factory):
    info = generate_world(tmp_path_factory.mktemp("small"), seed=2, scale="small")
    fb = _read(info.paths["feedback"])
    labels = _read(info.labels_path)
    return info, fb, labels


def test_text_is_varied_and_not_templated(small_text):
    info, fb, labels = small_text
    texts = fb["text"].to_pylist()
    assert len(texts) > 3000
    assert len(set(texts)) / len(texts) > 0.8
    lower = [t.lower() for t in texts]
    share = lambda pat: np.mean([re.search(pat, t) is not None for t in lower])  # noqa: E731
    assert share(r"\bnot\b|n'?t\b|\bnever\b|\bno\b") > 0.15, "negation is common"
    assert share(r"wasn'?t late|not bad at all|isn'?t bad|wasn'?t damaged") > 0.005, "negated compliments"
    lengths = np.array([len(t.split()) for t in texts])
    assert lengths.min() <= 3 and lengths.max() >= 25 and lengths.std() > 4
    topics = labels["true_topics"].to_pylist()
    n_topics = np.array([len(t) for t in topics])
    assert 0.05 < np.mean(n_topics >= 2) < 0.5, "mixed-topic messages"
    assert 0.02 < np.mean(n_topics == 0) < 0.3, "ambiguous / off-topic messages"
    # a keyword classifier built from the taxonomy is far from perfect on this text
    prog = load_program(info.program_path)
    kw = {t.topic: t.keywords for t in prog.taxonomy}
    hits = []
    for text, true in zip(lower, topics):
        pred = {t for t, words in kw.items() if any(w in text for w in words)}
        hits.append(pred == set(true))
    assert 0.1 < np.mean(hits) < 0.8
    sentiments = set(labels["true_sentiment"].to_pylist())
    assert sentiments == {"positive", "negative", "neutral"}
    assert labels["id"].to_pylist() == fb["id"].to_pylist()
    assert "true_topics" not in fb.column_names


def test_new_theme_appears_late_and_outage_raises_shipping_complaints(small_text):
    info, fb, labels = small_text
    t = info.truth
    times = fb["event_time"].to_pylist()
    topics = labels["true_topics"].to_pylist()
    nt_start = datetime.fromisoformat(t["new_theme"]["start"]).replace(tzinfo=timezone.utc)
    cf = [tm for tm, tp in zip(times, topics) if "counterfeit" in tp]
    assert len(cf) > 10 and min(cf) >= nt_start
    prog = load_program(info.program_path)
    assert "counterfeit" not in {x.topic for x in prog.taxonomy}
    o = t["shocks"][0]
    lo = datetime.fromisoformat(o["start"]).replace(tzinfo=timezone.utc)
    hi = datetime.fromisoformat(o["end"]).replace(tzinfo=timezone.utc)
    during = [("shipping_delay" in tp) for tm, tp in zip(times, topics) if lo <= tm < hi]
    before = [("shipping_delay" in tp) for tm, tp in zip(times, topics) if lo - timedelta(days=60) <= tm < lo]
    assert np.mean(during) > 2 * np.mean(before)


def test_defects_raise_complaints_until_fixed(small_text):
    """In the observed data, a defective SKU's defect mentions are higher while the defect is active."""
    info, fb, labels = small_text
    sku = np.asarray(fb["sku"].to_pylist(), dtype=object)
    times = np.asarray(fb["event_time"].to_pylist(), dtype=object)
    is_pd = np.array(["product_defect" in tp for tp in labels["true_topics"].to_pylist()])
    active = np.zeros(len(sku), bool)
    for d in info.truth["defects"]:
        if d["topic"] != "product_defect":
            continue
        end = d["end_treatment_policy"] if d["arm"] == "treatment" else d["end_control_policy"]
        lo = datetime.fromisoformat(d["start"]).replace(tzinfo=timezone.utc)
        hi = datetime.fromisoformat(end).replace(tzinfo=timezone.utc)
        active |= (sku == d["sku"]) & np.array([lo <= x < hi for x in times])
    assert is_pd[active].mean() > 3 * is_pd[~active].mean()


def test_options_are_validated(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        generate_world(tmp_path, scale="huge")
    with pytest.raises(ValueError, match="scale"):
        generate_world(tmp_path, scale=10)
    with pytest.raises(ValueError, match="policy"):
        generate_world(tmp_path, scale="tiny", policy="both")
    with pytest.raises(ValueError, match="bad_rows"):
        generate_world(tmp_path, scale="tiny", bad_rows=-1)


def test_bad_assignment_breaks_the_sample_ratio(tmp_path):
    from scipy import stats

    info = generate_world(tmp_path, seed=4, scale="tiny", bad_assignment=True)
    asg = _read(info.paths["assignments"])
    arms = asg["arm"].to_pylist()
    n_t, n = arms.count("treatment"), len(arms)
    chi2 = stats.chisquare([n_t, n - n_t], [n / 2, n / 2])
    assert chi2.pvalue < 1e-4
    flipped = set(info.truth["bad_assignment"]["reassigned_to_treatment"])
    assert flipped and flipped <= set(info.truth["assignment"]["control"])
    recorded = dict(zip(asg["unit_id"].to_pylist(), arms))
    assert all(recorded[f] == "treatment" for f in flipped)

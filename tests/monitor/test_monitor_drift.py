"""Drift statistics against scipy, Evidently (when its files are present) and simulation.

Reference values: scipy 1.17 (chi2_contingency, ks_2samp method="asymp", jensenshannon) and
Evidently 0.7.23's own ``_psi`` (evidently/legacy/calculations/stattests/psi.py) run on the same
data with its binning; tolerance 1e-9 (float64 summation order is the only difference).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as ss
from scipy.spatial.distance import jensenshannon

from insightroi.monitor import (
    categorical_drift,
    chi_square_counts,
    confusion_matrix,
    expected_calibration_error,
    js_distance,
    ks_two_sample,
    numeric_drift,
    oov_rate,
    per_label_f1,
    psi_categorical,
    psi_from_counts,
    psi_numeric,
    quality_by_slice,
    quantile_edges,
    ratio_difference,
    text_drift,
    token_counts,
)
from insightroi.program import MonitoringThresholds

PEERS = Path(os.environ.get("INSIGHTROI_PEERS", Path(__file__).resolve().parents[2] / ".bench-peers"))


def _evidently():
    """Import Evidently's stat tests from a --target install (see benchmarks/bench_monitor.py).

    Evidently 0.7.23 pins plotly<6 and numpy/pandas versions older than the project's, so it is
    installed with --no-deps into .bench-peers and imported without its UI package (the package
    root is stubbed); one pandas-3 rename used only by its data-integrity tests is shimmed.
    """
    if not (PEERS / "evidently").is_dir():
        return None
    if str(PEERS) not in sys.path:
        sys.path.append(str(PEERS))
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda t: t
    if "evidently" not in sys.modules:
        root = types.ModuleType("evidently")
        root.__path__ = [str(PEERS / "evidently")]
        sys.modules["evidently"] = root
    try:
        from evidently.legacy.calculations.stattests.psi import _psi
        from evidently.legacy.core import ColumnType
    except Exception:  # noqa: BLE001 - any import failure means "peer not available"
        return None
    return _psi, ColumnType


# ---------------------------------------------------------------- reference: scipy -------------
def test_chi_square_equals_scipy_contingency():
    rng = np.random.default_rng(1)
    for _ in range(20):
        k = rng.integers(2, 12)
        r = rng.integers(0, 400, size=k).astype(float)
        c = rng.integers(0, 400, size=k).astype(float)
        r[0] += 1
        c[1] += 1
        stat, p, dof = chi_square_counts(r, c)
        table = np.vstack([r, c])
        table = table[:, table.sum(0) > 0]
        ref = ss.chi2_contingency(table, correction=False)
        assert stat == pytest.approx(ref.statistic, rel=1e-12, abs=1e-9)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
        assert dof == ref.dof


def test_chi_square_equals_scipy_chisquare_for_fixed_reference():
    # When the reference is huge the homogeneity test tends to the goodness-of-fit test of the
    # current counts against the reference shares (scipy.stats.chisquare).
    cur = np.array([120.0, 80, 40, 60])
    shares = np.array([0.4, 0.3, 0.1, 0.2])
    ref = shares * 1e12
    stat, p, _ = chi_square_counts(ref, cur)
    gof = ss.chisquare(cur, shares * cur.sum())
    assert stat == pytest.approx(gof.statistic, rel=1e-6)
    assert p == pytest.approx(gof.pvalue, rel=1e-5)


@pytest.mark.parametrize("n,m", [(50, 70), (1000, 300), (5000, 5000)])
def test_ks_equals_scipy(n, m):
    rng = np.random.default_rng(n + m)
    a = rng.normal(size=n)
    b = rng.normal(0.1, 1.2, size=m)
    a[:10] = np.round(a[:10], 1)  # some ties
    b[:10] = np.round(b[:10], 1)
    d, p = ks_two_sample(a, b)
    ref = ss.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_js_equals_scipy():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.integers(0, 50, size=30).astype(float)
        q = rng.integers(0, 50, size=30).astype(float)
        p[:3] = 0  # zero cells on one side only
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
        assert js_distance(p, q, base=np.e) == pytest.approx(jensenshannon(p, q), abs=1e-12)


def _psi_by_hand(r_counts, c_counts, eps):
    # Independent, deliberately plain implementation of the textbook formula.
    total_r, total_c = sum(r_counts), sum(c_counts)
    out = 0.0
    for r, c in zip(r_counts, c_counts):
        pr = r / total_r if r else eps
        pc = c / total_c if c else eps
        out += (pc - pr) * np.log(pc / pr)
    return out


def test_psi_equals_textbook_formula_with_quantile_bins():
    rng = np.random.default_rng(4)
    ref = rng.lognormal(size=5000)
    cur = rng.lognormal(0.2, 1.1, size=3000)
    edges = quantile_edges(ref, 10)
    assert len(edges) == 11
    rc = [int(((ref > lo) & (ref <= hi)).sum()) for lo, hi in zip(edges[:-1], edges[1:])]
    cc = [int(((cur > lo) & (cur <= hi)).sum()) for lo, hi in zip(edges[:-1], edges[1:])]
    assert sum(rc) == 5000 and sum(cc) == 3000
    assert max(rc) - min(rc) <= 2  # deciles of the reference
    assert psi_numeric(ref, cur) == pytest.approx(_psi_by_hand(rc, cc, 1e-4), abs=1e-12)


def test_psi_empty_bins_use_eps_and_new_categories_count():
    ref = ["a"] * 60 + ["b"] * 40
    cur = ["a"] * 50 + ["b"] * 30 + ["new_theme"] * 20
    expected = _psi_by_hand([60, 40, 0], [50, 30, 20], 1e-4)
    assert psi_categorical(ref, cur) == pytest.approx(expected, abs=1e-12)
    assert psi_categorical(ref, cur, eps=1e-3) == pytest.approx(_psi_by_hand([60, 40, 0], [50, 30, 20], 1e-3))
    row = categorical_drift("topic", {"a": 60, "b": 40}, {"a": 50, "b": 30, "new_theme": 20})
    assert row["top_category"] == "new_theme" and row["status"] == "alert"


def test_psi_equals_evidently_on_same_binning():
    peer = _evidently()
    if peer is None:
        pytest.skip("Evidently not installed in .bench-peers (pip install --target .bench-peers --no-deps evidently==0.7.23 ...)")
    import pandas as pd

    _psi, ColumnType = peer
    rng = np.random.default_rng(5)
    # Categorical with a category missing from each side; every non-empty share is > 1e-4, so
    # Evidently fills empty shares with 1e-4, the same eps as ours.
    ref = pd.Series(rng.choice(list("abcdefg"), size=4000, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.0]))
    cur = pd.Series(rng.choice(list("abcdefg"), size=2500, p=[0.2, 0.2, 0.2, 0.1, 0.1, 0.0, 0.2]))
    theirs, _ = _psi(ref, cur, ColumnType.Categorical, 0.1)
    assert psi_categorical(ref, cur) == pytest.approx(float(theirs), abs=1e-9)
    # Numeric: Evidently bins numeric features (> 20 distinct values) with Sturges edges on the
    # pooled data; pass the same edges to ours. Shifted uniforms leave empty bins on each side
    # while every non-empty share stays > 1e-4 (Evidently then fills with 1e-4, like ours; with
    # a non-empty share <= 1e-4 it fills with that share / 1e6 instead, which we do not copy).
    a = pd.Series(rng.uniform(0, 1, size=20000))
    b = pd.Series(rng.uniform(0.15, 1.15, size=15000))
    theirs, _ = _psi(a, b, ColumnType.Numerical, 0.1)
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    assert psi_numeric(a, b, edges=edges) == pytest.approx(float(theirs), abs=1e-9)


# ---------------------------------------------------------------- simulation: no drift ---------
def test_false_alarm_rates_under_no_drift_500_simulations():
    rng = np.random.default_rng(2024)
    sims, n_ref, n_cur = 500, 2000, 500
    th = MonitoringThresholds()
    shares = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.06, 0.05, 0.04])
    r = rng.multinomial(n_ref, shares, size=sims)
    c = rng.multinomial(n_cur, shares, size=sims)
    psi_cat = psi_from_counts(r, c)  # vectorised over the 500 simulations
    # Numeric: deciles of a fresh reference each time, current from the same distribution.
    ref = rng.gamma(2.0, size=(sims, n_ref))
    cur = rng.gamma(2.0, size=(sims, n_cur))
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1], axis=1).T  # (sims, 9)
    rb = np.stack([np.bincount(np.searchsorted(e, x), minlength=10) for e, x in zip(edges, ref)])
    cb = np.stack([np.bincount(np.searchsorted(e, x), minlength=10) for e, x in zip(edges, cur)])
    psi_num = psi_from_counts(rb, cb)
    p_chi = np.array([chi_square_counts(a, b)[1] for a, b in zip(r, c)])
    p_ks = np.array([ks_two_sample(a, b)[1] for a, b in zip(ref[:, :500], cur)])
    rates = {
        "psi_cat_warn": float(np.mean(psi_cat >= th.psi_warn)),
        "psi_cat_alert": float(np.mean(psi_cat >= th.psi_alert)),
        "psi_num_warn": float(np.mean(psi_num >= th.psi_warn)),
        "psi_num_alert": float(np.mean(psi_num >= th.psi_alert)),
        "chi2_p_below_0.05": float(np.mean(p_chi < 0.05)),
        "ks_p_below_0.05": float(np.mean(p_ks < 0.05)),
    }
    print("false-alarm rates over 500 no-drift simulations:", rates)
    # PSI's null mean is ~ (K-1)(1/n_ref + 1/n_cur) = 0.0175 / 0.0225 here: alarms must be rare.
    assert rates["psi_cat_alert"] == 0.0 and rates["psi_num_alert"] == 0.0
    assert rates["psi_cat_warn"] <= 0.01 and rates["psi_num_warn"] <= 0.01
    assert psi_cat.mean() == pytest.approx(7 * (1 / n_ref + 1 / n_cur), rel=0.15)
    # Tests at alpha = 0.05 reject ~5% (binomial sd over 500 is ~1%; band is ~3 sd).
    assert 0.02 <= rates["chi2_p_below_0.05"] <= 0.085
    assert 0.015 <= rates["ks_p_below_0.05"] <= 0.085


def test_drift_is_detected_when_present():
    rng = np.random.default_rng(7)
    ref = rng.normal(size=4000)
    row = numeric_drift("x", ref, rng.normal(0.8, 1.0, size=2000))
    assert row["status"] == "alert" and row["p_value"] < 1e-10
    assert numeric_drift("x", ref, rng.normal(size=2000))["status"] == "ok"


# ---------------------------------------------------------------- text --------------------------
def test_text_drift_oov_and_js():
    ref = ["my parcel arrived late again", "late delivery and no tracking"] * 50
    cur = ["drone dropped parcel on the roof", "locker code never arrived"] * 50
    t = text_drift(ref, cur)
    rc, cc = token_counts(ref), token_counts(cur)
    assert t["oov_rate"] == pytest.approx(oov_rate(rc, cc))
    unseen = sum(k for w, k in cc.items() if w not in rc)
    assert t["oov_rate"] == pytest.approx(unseen / sum(cc.values()))
    vocab = sorted(set(rc) | set(cc))
    assert t["js_distance"] == pytest.approx(
        jensenshannon([rc[w] for w in vocab], [cc[w] for w in vocab], base=2), abs=1e-12
    )
    same = text_drift(ref, ref)
    assert same["oov_rate"] == 0 and same["js_distance"] == pytest.approx(0, abs=1e-7)
    emb = np.random.default_rng(0).normal(size=(100, 8))
    t2 = text_drift(ref, cur, reference_embeddings=emb + 1, current_embeddings=emb + 1)
    assert t2["centroid_distance"] == pytest.approx(0, abs=1e-12)


# ---------------------------------------------------------------- quality ----------------------
def test_confusion_f1_equal_sklearn_and_ece_by_hand():
    from sklearn.metrics import confusion_matrix as sk_cm
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(8)
    labels = ["a", "b", "c", "other"]
    y = rng.choice(labels, size=500)
    pred = np.where(rng.random(500) < 0.7, y, rng.choice(labels, size=500))
    cm = confusion_matrix(y, pred, labels)
    np.testing.assert_array_equal(cm, sk_cm(y, pred, labels=labels))
    np.testing.assert_allclose(per_label_f1(cm), f1_score(y, pred, labels=labels, average=None), atol=1e-12)
    # ECE by hand on 4 items: bins (0.5,0.6] and (0.9,1.0].
    conf = np.array([0.55, 0.6, 0.95, 1.0])
    hit = np.array([1, 0, 1, 1])
    expected = (2 / 4) * abs(0.5 - 0.575) + (2 / 4) * abs(1.0 - 0.975)
    assert expected_calibration_error(conf, hit) == pytest.approx(expected)


def test_ece_simulation_calibrated_vs_overconfident():
    rng = np.random.default_rng(9)
    conf = rng.uniform(0.3, 1.0, size=20000)
    calibrated = rng.random(20000) < conf
    overconfident = rng.random(20000) < conf - 0.15
    assert expected_calibration_error(conf, calibrated) < 0.02
    assert expected_calibration_error(conf, overconfident) == pytest.approx(0.15, abs=0.02)


def test_quality_by_slice_flags_the_degraded_slice():
    rng = np.random.default_rng(10)
    labels = np.array(["shipping_delay", "sizing", "product_defect", "other"])
    n = 600
    y = rng.choice(labels, size=2 * n)
    acc = np.r_[np.full(n, 0.9), np.full(n, 0.6)]
    right = rng.random(2 * n) < acc
    pred = np.where(right, y, "other")
    conf = np.full(2 * n, 0.9)
    rows = quality_by_slice(np.r_[np.full(n, "2025-01"), np.full(n, "2025-02")], y, pred, confidence=conf)
    assert [r["status"] for r in rows] == ["ok", "alert"]
    # accuracy is 0.6 + 0.4 x 1/4 (true "other" stays right) = 0.7 against confidence 0.9
    assert rows[1]["ece"] == pytest.approx(0.2, abs=0.03)
    assert rows[1]["macro_f1"] < rows[0]["macro_f1"] - 0.1
    assert rows[1]["confusion_shift"] > 0.2 and rows[1]["confusion_chi2_p"] < 1e-6


# ---------------------------------------------------------------- outcome decay ----------------
def test_ratio_difference_delta_method_coverage_and_aa():
    """CIs cover the true ratio difference ~95%; an A/A comparison rejects ~5%."""
    rng = np.random.default_rng(11)
    sims, units = 400, 60
    true_t, true_c = 0.018, 0.020
    cover = reject_aa = 0
    for _ in range(sims):
        den_t = rng.poisson(400, units) + 1
        den_c = rng.poisson(400, units) + 1
        rate_t = rng.gamma(20, true_t / 20, units)  # unit heterogeneity
        rate_c = rng.gamma(20, true_c / 20, units)
        res = ratio_difference(rng.poisson(rate_t * den_t), den_t, rng.poisson(rate_c * den_c), den_c, scale=1000)
        cover += res.ci_low <= 1000 * (true_t - true_c) <= res.ci_high
        rate_aa = rng.gamma(20, true_c / 20, units)  # A/A: same distribution, independent units
        aa = ratio_difference(rng.poisson(rate_aa * den_t), den_t, rng.poisson(rate_c * den_c), den_c)
        reject_aa += aa.p_value < 0.05
    print("ratio difference coverage", cover / sims, "A/A rejection", reject_aa / sims)
    assert 0.91 <= cover / sims <= 0.98
    assert 0.02 <= reject_aa / sims <= 0.09


def test_ratio_difference_point_estimate_by_hand():
    res = ratio_difference([1, 2, 3], [10, 10, 20], [4, 4], [10, 30], scale=1000)
    assert res.estimate == pytest.approx(1000 * (6 / 40 - 8 / 40))
    assert res.extra["treatment_mean"] == pytest.approx(150.0)


def test_high_cardinality_noise_is_not_an_alert():
    # 80 SKU families, one week of 300 rows vs four weeks: PSI's null mean is ~ 79 (1/1200 + 1/300)
    # = 0.33, above psi_alert, but the chi-square says it is sampling noise -> "warn", not "alert".
    rng = np.random.default_rng(16)
    shares = rng.dirichlet(np.full(80, 5.0))
    ref = dict(enumerate(rng.multinomial(1200, shares)))
    cur = dict(enumerate(rng.multinomial(300, shares)))
    row = categorical_drift("sku_family", ref, cur)
    assert row["psi"] >= 0.25 and row["p_value"] > 0.001
    assert row["status"] == "warn"
    moved = dict(cur)
    moved[0] += 150  # a real surge in one family
    assert categorical_drift("sku_family", ref, moved)["status"] == "alert"


def _columns(rng, n, shift=0.0):
    cols = {f"x{j}": rng.normal(shift if j == 0 else 0.0, 1.0, n) for j in range(15)}
    cols.update({f"c{j}": rng.integers(0, 6, n) for j in range(5)})
    return cols


def test_the_default_detector_keeps_a_runs_false_alarms_at_alpha_over_20_columns():
    # 400 undrifted runs x 20 columns: with Holm at alpha = 0.01 a run raises any alert ~1% of the
    # time; testing each column at 0.01 without the adjustment would do so ~18% of the time.
    from insightroi.monitor import detect_drift

    rng = np.random.default_rng(21)
    cats = [f"c{j}" for j in range(5)]
    any_alert, raw_any = 0, 0
    for _ in range(400):
        rows = detect_drift(_columns(rng, 800), _columns(rng, 600), categorical=cats)
        any_alert += any(r["status"] == "alert" for r in rows)
        raw_any += any(r["p_value"] < 0.01 for r in rows)
        assert all(r["p_adjusted"] >= r["p_value"] for r in rows)
    assert any_alert / 400 <= 0.025
    assert raw_any / 400 >= 0.12  # the adjustment is what keeps the rate: without it, many more


def test_the_default_detector_finds_a_small_shift_psi_misses_and_dates_it_by_chunk():
    from insightroi.monitor import detect_drift

    rng = np.random.default_rng(22)
    cats = [f"c{j}" for j in range(5)]
    ref = _columns(rng, 200_000)
    cur = _columns(rng, 200_000)
    cur["x0"][100_000:] += 0.04  # the second half of the window moved by 0.04 SD
    rows = detect_drift(ref, cur, categorical=cats, chunks=2)
    by = {(r["feature"], r["chunk"]): r for r in rows}
    assert by[("x0", 1)]["status"] == "alert" and by[("x0", 1)]["psi"] < 0.01  # PSI >= 0.1 would never see it
    assert by[("x0", 0)]["status"] == "ok"
    assert [k for k, r in by.items() if r["status"] == "alert"] == [("x0", 1)]
    assert by[("x0", 1)]["p_adjusted"] == pytest.approx(min(1.0, 40 * by[("x0", 1)]["p_value"]))  # smallest of 40

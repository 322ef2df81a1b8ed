"""The shared pieces of every estimator: the "not estimable" shape, plain JSON, intervals, panel fits.

References: scipy ``stats.t`` / ``stats.norm`` for the intervals (same run, 1e-12); the
switchback relative effect against :func:`two_arm` on the same block KPIs (it is computed by
it, so equal to 1e-12); the two-way demeaning against the closed form of a balanced panel.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from insightroi.stats import (
    NOT_ESTIMABLE,
    TOO_FEW_UNITS,
    Check,
    Result,
    SampleMean,
    jsonable,
    se_from_interval,
    segment_breakdown,
    switchback_carryover,
    switchback_ratio_effect,
    two_arm,
    wald_interval,
    welch_df,
    within_demean,
)


def test_not_estimable_has_one_shape():
    prior = Check("srm", "pass", "ok")
    r = Result.not_estimable("too few", method="welch_t", metric="m", n=3, unit="relative", alpha=0.1,
                             diagnostics=(prior,), extra={"treatment_mean": 2.0})
    assert r.method == NOT_ESTIMABLE and not r.estimable
    assert all(math.isnan(v) for v in (r.estimate, r.se, r.p_value, *r.ci))
    assert (r.metric, r.n, r.unit, r.alpha) == ("m", 3, "relative", 0.1)
    assert r.diagnostics[0] is prior
    last = r.diagnostics[-1]
    assert (last.name, last.status, last.message, last.details) == ("estimable", "skip", "too few", {"method": "welch_t"})
    assert r.extra == {"treatment_mean": 2.0}
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert Result.from_dict(d).diagnostics == r.diagnostics
    assert Result(estimate=1.0, se=0.1, ci=(0.8, 1.2), p_value=0.01, method="welch_t", n=10).estimable


def test_result_is_keyword_only_and_reads_saved_results():
    # Positional construction would let two floats (se, p_value) swap silently.
    with pytest.raises(TypeError):
        Result(1.0, 0.1, (0.8, 1.2), 0.01, "welch_t", 10)  # type: ignore[misc]
    # A result as saved in a store by to_dict (NaN written as None, unit/alpha/extra optional).
    saved = {"estimate": -8.0, "se": None, "ci": [-11.92, -4.08], "p_value": 0.002, "method": "perm", "n": 10,
             "diagnostics": [{"name": "srm", "status": "pass", "message": "ok", "statistic": None,
                              "p_value": 0.4, "threshold": 0.001, "details": {}}], "metric": "m"}
    r = Result.from_dict(saved)
    assert (r.estimate, r.ci, r.p_value, r.method, r.n, r.unit, r.alpha, r.metric) == (
        -8.0, (-11.92, -4.08), 0.002, "perm", 10, "absolute", 0.05, "m")
    assert math.isnan(r.se) and r.diagnostics == (Check("srm", "pass", "ok", p_value=0.4, threshold=0.001),)
    assert Result.from_dict(r.to_dict()).to_dict() == r.to_dict()


def test_segment_breakdown_keeps_a_not_estimable_segment():
    a = SampleMean.from_array([1.0, 2.0, 3.0])
    out = segment_breakdown({"ok": (a, SampleMean.from_array([2.0, 3.0, 5.0])), "one": (a, SampleMean.from_array([1.0]))})
    assert out["ok"].estimable and not out["one"].estimable
    assert out["one"].diagnostics[-1].message == TOO_FEW_UNITS.format(arm="treatment", n=1)
    assert out["one"].n == 4 and out["one"].extra["segment"] == "one"


def test_jsonable_is_strict_json():
    x = {1: (np.float64("nan"), np.int64(3), [math.inf, 0.5]), "s": "t"}
    assert jsonable(x) == {"1": [None, 3, [None, 0.5]], "s": "t"}
    json.dumps(jsonable(x), allow_nan=False)


@pytest.mark.parametrize("df", [None, math.inf, 7.0, 2.5])
def test_wald_interval_equals_scipy(df):
    ci, p = wald_interval(1.3, 0.6, alpha=0.1, df=df)
    dist = sps.norm() if df is None or not math.isfinite(df) else sps.t(df)
    q = dist.ppf(0.95)
    assert ci == pytest.approx((1.3 - q * 0.6, 1.3 + q * 0.6), abs=1e-12)
    assert p == pytest.approx(2 * dist.sf(1.3 / 0.6), abs=1e-12)
    assert all(math.isnan(v) for v in (*wald_interval(1.0, 0.0)[0], wald_interval(1.0, math.nan)[1]))
    assert se_from_interval(*ci, alpha=0.1) == pytest.approx(0.6 if dist.dist.name == "norm" else q * 0.6 / sps.norm.ppf(0.95))


def test_welch_df_is_two_arm_df():
    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, 12), rng.normal(0, 3, 30)
    r = two_arm(SampleMean.from_array(x), SampleMean.from_array(y))
    assert welch_df([y.var(ddof=1) / 30, x.var(ddof=1) / 12], [30, 12]) == pytest.approx(r.extra["df"], rel=1e-12)
    assert welch_df([0.0, 0.0], [3, 3]) == math.inf


def test_switchback_relative_is_two_arm_on_block_kpis():
    rng = np.random.default_rng(9)
    z = rng.random(40) < 0.5
    den = rng.poisson(500, 40).astype(float)
    num = rng.binomial(den.astype(int), np.where(z, 0.035, 0.05)).astype(float)
    ab, rel = switchback_ratio_effect(num, den, z, scale=1000, n_permutations=200, seed=1)
    y = num / den * 1000
    ref = two_arm(SampleMean.from_array(y[~z]), SampleMean.from_array(y[z]), relative=True)
    assert (rel.estimate, rel.se) == pytest.approx((ref.estimate, ref.se), rel=1e-12)
    assert rel.ci == pytest.approx(ref.ci, rel=1e-12)
    assert rel.p_value == ab.p_value  # randomization inference for both
    assert ab.extra["relative_ci_low"] == rel.ci[0]
    bad_ab, bad_rel = switchback_ratio_effect(num[:3], den[:3], [True, False, False])
    assert not bad_ab.estimable and not bad_rel.estimable and bad_ab.diagnostics[-1].details["method"] == "switchback_ri"


def test_switchback_carryover_is_a_four_cell_welch_contrast():
    rng = np.random.default_rng(4)
    z = rng.random(60) < 0.5
    after = np.r_[False, z[1:] != z[:-1]]
    y = rng.normal(0, 1, 60) + 3 * z - 2 * (z & after)
    chk = switchback_carryover(y, z, metric="m")
    cells = [y[1:][(z[1:] == t) & (after[1:] == s)] for t in (True, False) for s in (True, False)]
    v = [c.var(ddof=1) / c.size for c in cells]
    inter = (cells[0].mean() - cells[2].mean()) - (cells[1].mean() - cells[3].mean())
    df = sum(v) ** 2 / sum(vi**2 / (c.size - 1) for vi, c in zip(v, cells))
    assert chk.statistic == pytest.approx(inter, rel=1e-12)
    assert chk.p_value == pytest.approx(2 * sps.t.sf(abs(inter) / math.sqrt(sum(v)), df), rel=1e-9)
    assert chk.status == "warn" and chk.message.startswith("m: ")


def test_within_demean_balanced_panel_is_one_pass():
    rng = np.random.default_rng(2)
    u, t = np.repeat(np.arange(5), 4), np.tile(np.arange(4), 5)
    y = rng.normal(size=20)
    got = within_demean(y, [u, t])
    Y = y.reshape(5, 4)
    want = Y - Y.mean(1, keepdims=True) - Y.mean(0, keepdims=True) + Y.mean()
    assert got == pytest.approx(want.ravel(), abs=1e-12)


def test_summary_of_a_result_that_could_not_be_estimated_shows_dashes():
    r = Result(estimate=float("nan"), se=float("nan"), ci=(float("nan"), float("nan")), p_value=float("nan"),
               method="welch", n=0, metric="alert_adoption_rate")
    for fmt in ("text", "html"):
        out = r.summary(fmt)
        assert "nan" not in out.lower(), out
        assert "[-, -]" in out and "- (absolute)" in out
    ok = Result(estimate=-1.5, se=0.5, ci=(-2.48, -0.52), p_value=0.0027, method="welch", n=80)
    assert "-1.5 (absolute)" in ok.summary() and "[-2.48, -0.52]" in ok.summary() and "0.0027" in ok.summary()

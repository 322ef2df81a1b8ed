"""Reference tests for the two-arm estimators, power and multiplicity.

Sources and tolerances
----------------------
Stored figures (gbstats 0.8.0, R ``pwr``, statsmodels' sample sizes, the NSW experiment's ATE)
are read from ``reference_values.toml`` beside this file, each with its source, the call that
produced it and its tolerance. Peer libraries run on the same data in the same run (scipy
``ttest_ind(equal_var=False)``, statsmodels ``test_proportions_2indep``,
``NormalIndPower``/``TTestIndPower``, ``multipletests``, ``OLS(cov_type="cluster")``) are compared
inline: agreement to 1e-9 where the formula is the same, looser where stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from insightroi.errors import DataError
from insightroi.stats import (
    Proportion,
    Ratio,
    RatioRegressionAdjusted,
    RegressionAdjusted,
    SampleMean,
    adjust_pvalues,
    benjamini_hochberg,
    cluster_randomized,
    cohens_h,
    cuped,
    design_effect,
    holdout,
    holm,
    icc_anova,
    minimum_detectable_effect,
    power,
    proportions_test,
    ratio_test,
    ratio_unit_variance,
    sample_size,
    sample_size_proportions,
    sample_size_ratio,
    segment_breakdown,
    two_arm,
    welch_t,
)

from reference_values import approx, value

A = SampleMean(n=1000, sum=10000.0, sum_sq=124975.0)  # mean 10, var 25
B = SampleMean(n=1000, sum=10500.0, sum_sq=135225.0)  # mean 10.5, var 25


def _ra(n, post_mean, post_var, pre_mean, pre_var, cov):
    return RegressionAdjusted(n, n * post_mean, (n - 1) * post_var + n * post_mean**2, n * pre_mean,
                              (n - 1) * pre_var + n * pre_mean**2, (n - 1) * cov + n * post_mean * pre_mean)


def test_gbstats_absolute():
    r = two_arm(A, B)
    assert r.estimate == approx("gbstats_absolute", "estimate")
    assert r.ci == approx("gbstats_absolute", "ci")
    assert r.se == approx("gbstats_absolute", "se")
    assert r.p_value == approx("gbstats_absolute", "p_value")
    assert r.extra["control_mean"] == 10.0 and r.extra["treatment_mean"] == 10.5


def test_gbstats_relative_delta_method():
    r = two_arm(A, B, relative=True)
    assert r.estimate == approx("gbstats_relative", "estimate")
    assert r.ci == approx("gbstats_relative", "ci")
    assert r.se == approx("gbstats_relative", "se")
    assert r.p_value == approx("gbstats_relative", "p_value")
    assert r.unit == "relative"


def test_gbstats_sequential_interval():
    r = two_arm(A, B, sequential_tuning=5000)
    assert r.ci == approx("gbstats_sequential", "ci")
    assert r.p_value == approx("gbstats_sequential", "p_value")
    rel = two_arm(A, B, relative=True, sequential_tuning=5000)
    assert rel.ci == approx("gbstats_sequential", "relative_ci")
    assert rel.p_value == approx("gbstats_sequential", "relative_p_value")


def test_sequential_p_below_alpha_exactly_when_the_sequence_excludes_zero():
    # The e-value and the interval use the same rho, so the two decisions cannot disagree.
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(50, 5000))
        c = SampleMean.from_array(rng.normal(10, 5, n))
        t = SampleMean.from_array(rng.normal(10 + rng.normal(0, 0.6), 5, n))
        r = two_arm(c, t, sequential_tuning=float(rng.choice([500, 5000, 50000])))
        assert (r.p_value < 0.05) == (r.ci[0] > 0 or r.ci[1] < 0)


def test_gbstats_proportions_t_and_statsmodels_z():
    c, t = Proportion(1000, 100), Proportion(1000, 120)
    r = proportions_test(c, t, test="t")
    assert r.estimate == approx("gbstats_proportions", "estimate")
    assert r.ci == approx("gbstats_proportions", "ci")
    assert r.p_value == approx("gbstats_proportions", "p_value")
    from statsmodels.stats.proportion import test_proportions_2indep

    z = proportions_test(c, t, test="z")
    ref = test_proportions_2indep(120, 1000, 100, 1000, method="wald", compare="diff")
    assert z.p_value == pytest.approx(ref.pvalue, abs=1e-9)


def test_gbstats_cuped():
    c = _ra(1000, 10.0, 25.0, 10.0, 25.0, 20.0)  # corr(post, pre) = 0.8
    t = _ra(1000, 10.5, 25.0, 10.0, 25.0, 20.0)
    r = cuped(c, t)
    assert r.extra["theta"] == approx("gbstats_cuped", "theta")
    assert r.se == pytest.approx(0.2236068 * math.sqrt(1 - 0.64), abs=1e-6)  # SE x sqrt(1 - rho^2)
    assert r.se == approx("gbstats_cuped", "se")
    assert r.p_value == approx("gbstats_cuped", "p_value")
    assert r.extra["variance_reduction"] == approx("gbstats_cuped", "variance_reduction")
    # Without the covariate the result is the plain two-arm one.
    plain = two_arm(c, t, cuped=False)
    assert plain.se == approx("gbstats_cuped", "se_without_covariate")


def test_nsw_experiment_ate():
    causaldata = pytest.importorskip("causaldata")
    d = causaldata.nsw_mixtape.load_pandas().data
    d = d[d.data_id == "Dehejia-Wahba Sample"]
    r = welch_t(d.re78[d.treat == 0], d.re78[d.treat == 1])
    assert r.estimate == approx("nsw_experiment", "ate")
    ref = sps.ttest_ind(d.re78[d.treat == 1].astype(float), d.re78[d.treat == 0].astype(float), equal_var=False)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    lo, hi = ref.confidence_interval()
    assert r.ci == pytest.approx((lo, hi), rel=1e-9)


def test_welch_equals_scipy_on_random_data():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, 37), rng.normal(0.4, 2.5, 55)
    r = welch_t(x, y)
    ref = sps.ttest_ind(y, x, equal_var=False)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.extra["df"] == pytest.approx(ref.df, rel=1e-10)


def test_statistics_add_to_pool_strata():
    rng = np.random.default_rng(0)
    x = rng.normal(size=100)
    s = SampleMean.from_array(x[:40]) + SampleMean.from_array(x[40:])
    full = SampleMean.from_array(x)
    assert (s.n, s.sum, s.sum_sq) == pytest.approx((full.n, full.sum, full.sum_sq))
    num, den = rng.poisson(3, 50).astype(float), rng.poisson(30, 50).astype(float) + 1
    r = Ratio.from_arrays(num[:20], den[:20]) + Ratio.from_arrays(num[20:], den[20:])
    assert r.mean == pytest.approx(num.sum() / den.sum())
    pre = rng.poisson(3, 50).astype(float)
    rr = RatioRegressionAdjusted.from_arrays(num[:20], den[:20], pre[:20], den[:20]) + \
        RatioRegressionAdjusted.from_arrays(num[20:], den[20:], pre[20:], den[20:])
    assert rr.post.mean == pytest.approx(r.mean) and rr.pre.mean == pytest.approx(pre.sum() / den.sum())


def test_ratio_delta_variance_equals_linearisation():
    rng = np.random.default_rng(1)
    nc, dc = rng.poisson(4, 80).astype(float), rng.poisson(50, 80).astype(float) + 1
    nt, dt = rng.poisson(5, 70).astype(float), rng.poisson(50, 70).astype(float) + 1
    r = ratio_test(Ratio.from_arrays(nc, dc), Ratio.from_arrays(nt, dt))

    def lin_var(n, d):  # Deng, Knoblich & Lu (2018) eq. for Var(sum n / sum d)
        rr = n.sum() / d.sum()
        return np.var(n - rr * d, ddof=1) / d.mean() ** 2 / n.size

    assert r.estimate == pytest.approx(nt.sum() / dt.sum() - nc.sum() / dc.sum())
    assert r.se**2 == pytest.approx(lin_var(nc, dc) + lin_var(nt, dt), rel=1e-10)
    assert ratio_unit_variance(Ratio.from_arrays(nc, dc)) == pytest.approx(lin_var(nc, dc) * nc.size, rel=1e-10)


def test_cluster_randomized_matches_cluster_robust_ols():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    g = 40
    sizes = rng.integers(5, 30, g)
    cl = np.repeat(np.arange(g), sizes)
    arm = np.repeat(rng.random(g) < 0.5, sizes)
    y = rng.normal(0, 1, g)[cl] + rng.normal(0, 2, cl.size) + 0.3 * arm
    r = cluster_randomized(y, arm, cl)
    fit = sm.OLS(y, sm.add_constant(arm.astype(float))).fit(cov_type="cluster", cov_kwds={"groups": cl})
    assert r.estimate == pytest.approx(fit.params[1], rel=1e-10)
    # Same sandwich, different small-sample factors: ours G_k/(G_k-1) per arm, statsmodels'
    # G/(G-1) x (N-1)/(N-K) overall; with 40 clusters they agree within a few percent.
    assert r.se == pytest.approx(fit.bse[1], rel=0.05)
    assert r.extra["n_clusters"] == g
    with pytest.raises(DataError):
        cluster_randomized(y, rng.random(y.size) < 0.5, cl)


def test_holdout_and_segments():
    rng = np.random.default_rng(2)
    h = SampleMean.from_array(rng.normal(10, 2, 100))
    x = SampleMean.from_array(rng.normal(11, 2, 1900))
    r = holdout(h, x)
    assert r.unit == "relative" and r.extra["holdout_share"] == pytest.approx(0.05)
    assert r.estimate == pytest.approx(x.mean / h.mean - 1)
    cells = {"a": (h, x), "b": (SampleMean(1, 1.0, 1.0), x)}
    seg = segment_breakdown(cells, correction="bh")
    assert seg["a"].extra["p_adjusted"] == pytest.approx(seg["a"].p_value)  # the only finite p in the family
    assert math.isnan(seg["b"].estimate) and seg["b"].diagnostics[0].status == "skip"


def test_multiple_testing_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(7)
    p = rng.uniform(0, 0.2, 25) ** 2
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)
    assert benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1], abs=1e-12)
    with_nan = np.append(p, np.nan)
    adj = adjust_pvalues(with_nan, "holm")
    assert np.isnan(adj[-1]) and adj[:-1] == pytest.approx(holm(p))
    with pytest.raises(ValueError, match="'method' parameter"):
        adjust_pvalues(p, "bonf")


@pytest.mark.parametrize(
    ("d", "n", "test", "figure"),
    [(1.0, 30, "t", "t_d1_n30"), (0.1, 20, "t", "t_d01_n20"), (0.3, 80, "normal", "normal_d03_n80")],
)
def test_power_matches_pwr(d, n, test, figure):
    assert power(d, n, test=test) == approx("pwr_power", figure)


def test_power_and_sample_size_match_statsmodels():
    from statsmodels.stats.power import NormalIndPower, TTestIndPower

    for d, n, ratio in [(0.2, 150, 1.0), (0.5, 40, 2.0), (0.05, 3000, 0.5)]:
        assert power(d, n, ratio=ratio) == pytest.approx(NormalIndPower().power(d, n, 0.05, ratio=ratio), abs=1e-10)
        assert power(d, n, ratio=ratio, test="t") == pytest.approx(TTestIndPower().power(d, n, 0.05, ratio=ratio), abs=1e-10)
    for d in (0.1, 0.3, 0.8):
        assert sample_size(d) == pytest.approx(NormalIndPower().solve_power(d, power=0.8, alpha=0.05), rel=1e-6)
        assert sample_size(d, test="t") == pytest.approx(TTestIndPower().solve_power(d, power=0.8, alpha=0.05), rel=1e-6)
        n = sample_size(d)
        assert minimum_detectable_effect(n) == pytest.approx(d, rel=1e-6)


@pytest.mark.parametrize(
    ("p1", "p2", "figure"),
    [(0.10, 0.11, "p10_p11"), (0.05, 0.055, "p05_p055"), (0.20, 0.22, "p20_p22"), (0.50, 0.55, "p50_p55")],
)
def test_sample_size_proportions_reference(p1, p2, figure):
    from statsmodels.stats.proportion import proportion_effectsize

    assert cohens_h(p1, p2) == pytest.approx(proportion_effectsize(p2, p1), abs=1e-12)
    # The stored figures are statsmodels' solutions (14744.10 ...) truncated; ours rounds up to whole units.
    n = value("sample_size_proportions", figure)
    assert sample_size_proportions(p1, p2) in (n, n + 1)


def test_sample_size_ratio_and_design_effect():
    rng = np.random.default_rng(4)
    num, den = rng.poisson(5, 200).astype(float), rng.poisson(100, 200).astype(float)
    st = Ratio.from_arrays(num, den)
    n = sample_size_ratio(st, 0.1)
    d = 0.1 * st.mean / math.sqrt(ratio_unit_variance(st))
    assert n == math.ceil(sample_size(d))
    assert design_effect(20, 0.05) == pytest.approx(1.95)
    assert design_effect(20, 0.05, cv_cluster_size=0.5) == pytest.approx(1 + (1.25 * 20 - 1) * 0.05)


def test_icc_anova_balanced_matches_variance_components():
    rng = np.random.default_rng(11)
    k, m = 400, 25
    cl = np.repeat(np.arange(k), m)
    y = rng.normal(0, math.sqrt(0.2), k)[cl] + rng.normal(0, math.sqrt(0.8), k * m)
    assert icc_anova(y, cl) == pytest.approx(0.2, abs=0.03)
    # Balanced case: the ANOVA formula by hand.
    means = y.reshape(k, m).mean(axis=1)
    msb = m * means.var(ddof=1)
    msw = ((y.reshape(k, m) - means[:, None]) ** 2).sum() / (k * (m - 1))
    assert icc_anova(y, cl) == pytest.approx((msb - msw) / (msb + (m - 1) * msw), rel=1e-10)


def test_errors_name_the_problem():
    with pytest.raises(DataError, match="at least 2"):
        two_arm(SampleMean(1, 1.0, 1.0), B)
    with pytest.raises(DataError, match="same statistic type"):
        two_arm(A, Proportion(10, 3))
    with pytest.raises(ValueError, match="'test' parameter"):
        two_arm(A, B, test="wald")
    r = two_arm(A, B)
    assert r.to_dict()["extra"]["control_mean"] == 10.0

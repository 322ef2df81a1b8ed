"""The tests behind checks, spikes and drift, against stored and peer figures.

Stored: gbstats 0.8.0 ``check_srm`` (``reference_values.toml``, case ``gbstats_srm``). Peers on
the same data (same run, so equal to rounding): scipy 1.17 ``stats.chisquare`` (SRM), statsmodels
0.15 ``WLS(...).fit(cov_type="fixed scale")`` (the weekly-effect trend with known variances),
scipy ``stats.nbinom`` / ``stats.poisson`` (spike tails), ``stats.chi2_contingency``,
``stats.ks_2samp(method="asymp")`` and ``spatial.distance.jensenshannon`` (drift).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import spatial
from scipy import stats as sps

from insightroi.errors import DataError
from insightroi.stats import (
    chi_square_counts,
    count_dispersion,
    count_tail_pvalue,
    critical_value,
    js_distance,
    ks_two_sample,
    psi_from_counts,
    psi_terms,
    srm_test,
    trend_test,
    unseen_category_pvalue,
)

from reference_values import approx


def test_srm_test_matches_gbstats():
    _, p, _ = srm_test([1000, 1100], [0.5, 0.5])
    assert p == approx("gbstats_srm", "p_value_1000_1100")
    chi2, p, _ = srm_test([600, 400], [0.5, 0.5])
    assert chi2 == approx("gbstats_srm", "statistic_600_400")
    assert p == approx("gbstats_srm", "p_value_600_400")


def test_srm_test_equals_scipy_chisquare():
    counts, shares = [5_120, 4_880, 10_400], [1, 1, 2]
    chi2, p, expected = srm_test(counts, shares)
    ref = sps.chisquare(counts, np.array(shares) / 4 * sum(counts))
    assert chi2 == pytest.approx(ref.statistic, rel=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-10)
    assert expected.tolist() == [5_100.0, 5_100.0, 10_200.0]
    with pytest.raises(DataError):
        srm_test([0, 0], [0.5, 0.5])
    with pytest.raises(DataError):
        srm_test([10], [1.0])


def test_trend_test_equals_statsmodels_wls_with_known_variances():
    sm = pytest.importorskip("statsmodels.api")
    x = np.arange(8.0)
    est = np.array([0.30, 0.27, 0.25, 0.26, 0.20, 0.18, 0.19, 0.15])
    se = np.array([0.04, 0.05, 0.03, 0.05, 0.04, 0.06, 0.05, 0.04])
    t = trend_test(x, est, se)
    fit = sm.WLS(est, sm.add_constant(x), weights=1 / se**2).fit(cov_type="fixed scale")
    assert t.slope == pytest.approx(fit.params[1], rel=1e-10)
    assert t.se == pytest.approx(fit.bse[1], rel=1e-10)
    assert t.p_value == pytest.approx(fit.pvalues[1], rel=1e-8)
    assert t.weighted_mean == pytest.approx(np.average(est, weights=1 / se**2), rel=1e-12)
    assert t.z == pytest.approx(t.slope / t.se, rel=1e-12)


def test_count_tail_is_negative_binomial_and_poisson_without_dispersion():
    obs, mu = np.array([3, 12, 40]), np.array([2.5, 4.0, 20.0])
    phi = 0.3
    p = count_tail_pvalue(obs, mu, phi)
    ref = sps.nbinom.sf(obs - 1, 1 / phi, 1 / (1 + phi * mu))
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    # Variance mu + phi mu^2: the NB parametrisation the dispersion estimate assumes.
    assert sps.nbinom.var(1 / phi, 1 / (1 + phi * 20.0)) == pytest.approx(20.0 + phi * 400.0, rel=1e-12)
    np.testing.assert_allclose(count_tail_pvalue(obs, mu, 0.0), sps.poisson.sf(obs - 1, mu), rtol=1e-12)


def test_count_dispersion_recovers_the_simulated_phi():
    rng = np.random.default_rng(5)
    mu = rng.uniform(2.0, 30.0, 20_000)
    phi = 0.25
    counts = rng.negative_binomial(1 / phi, 1 / (1 + phi * mu))
    assert count_dispersion(counts, mu, winsorize=False) == pytest.approx(phi, abs=0.02)
    assert count_dispersion(rng.poisson(mu), mu, winsorize=False) < 0.01
    # A few planted spikes barely move the winsorised estimate.
    spiked = counts.copy()
    spiked[:40] += 200
    assert count_dispersion(spiked, mu) < 0.3 < count_dispersion(spiked, mu, winsorize=False)


def test_drift_statistics_equal_scipy():
    ref, cur = np.array([50.0, 30.0, 20.0, 0.0]), np.array([40.0, 30.0, 25.0, 5.0])
    terms = psi_terms(ref, cur)
    assert terms.sum() == pytest.approx(psi_from_counts(ref, cur), rel=1e-15)
    assert int(np.argmax(terms)) == 3 and np.all(terms >= 0)  # the new category moves PSI most
    chi2, p, dof = chi_square_counts(ref, cur)
    c = sps.chi2_contingency(np.vstack([ref, cur])[:, :], correction=False)
    assert (chi2, dof) == (pytest.approx(c.statistic, rel=1e-12), c.dof)
    assert p == pytest.approx(c.pvalue, rel=1e-10)
    assert js_distance(ref, cur) == pytest.approx(spatial.distance.jensenshannon(ref, cur, base=2), rel=1e-12)
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 400), rng.normal(0.2, 1, 300)
    d, pk = ks_two_sample(a, b)
    k = sps.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(k.statistic, rel=1e-12) and pk == pytest.approx(k.pvalue, rel=1e-9)


def test_unseen_category_and_critical_value():
    # 3 / 1000 rule-of-three rate over 500 current rows: Poisson(1.5).
    assert unseen_category_pvalue(6, 500, 1000) == pytest.approx(sps.poisson.sf(5, 1.5), rel=1e-12)
    assert critical_value(0.05) == pytest.approx(1.959963984540054, rel=1e-15)
    assert critical_value(0.05, df=10) == pytest.approx(sps.t.ppf(0.975, 10), rel=1e-15)
    assert critical_value(0.05, df=math.inf) == critical_value(0.05)


def test_ks_at_monitoring_sizes_uses_kolmogorovs_limit_within_a_fraction_of_a_percent_of_scipy():
    from insightroi.stats._drift import KS_LIMIT_N

    rng = np.random.default_rng(11)
    for shift in (0.0, 0.004, 0.008, 0.012):
        a, b = rng.normal(size=260_000), rng.normal(shift, 1.0, size=240_000)
        a[:1000] = np.round(a[:1000], 2)  # ties
        d, p = ks_two_sample(a, b)
        ref = sps.ks_2samp(a, b, method="asymp")
        assert d == pytest.approx(ref.statistic, abs=1e-15)
        assert 260_000 * 240_000 / 500_000 > KS_LIMIT_N
        assert p == pytest.approx(ref.pvalue, rel=6e-3)

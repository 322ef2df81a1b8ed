"""A/B/n: several arms against one control (Holm, Dunnett, SRM across arms, per-arm MDE).

Sources and tolerances
----------------------
* ``scipy.stats.dunnett`` on the raw values (run here) for :func:`dunnett` from sufficient
  statistics: statistic to 1e-10, p-values to 1e-3 (scipy's multivariate t is quasi-Monte Carlo;
  the observed difference is about 1e-5).
* ``scipy.stats.multivariate_normal.cdf`` at its tightest tolerance for the one-factor integral.
* Dunnett (1955), Table 1a/1b as reprinted in every textbook table of "Dunnett's critical values"
  (two decimals): two-sided, 3 treatments, equal n, df = inf: 2.35; df = 20: 2.54; one-sided,
  df = inf: 2.06.
* ``scipy.stats.chisquare`` for the SRM test across three arms.
* Simulations from sufficient statistics (4,000 A/A/A/A runs): the family-wise error rate of each
  correction lies in the 99.9% binomial band around its exact value (computed with scipy's
  multivariate normal) and below 0.05 + 3 SE; uncorrected testing exceeds it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from insightroi.errors import DataError
from insightroi.stats import (
    NOT_ESTIMABLE,
    MultiArmResult,
    Proportion,
    RegressionAdjusted,
    SampleMean,
    dunnett,
    dunnett_critical_value,
    dunnett_pvalues,
    holm,
    mde_from_se,
    minimum_detectable_effect,
    multi_arm,
    multi_arm_mde,
    power_from_se,
    srm_test,
    two_arm,
)

REPS = 4000


def _binomial_band(n, p, level=0.999):
    return sps.binom.ppf((1 - level) / 2, n, p) / n, sps.binom.ppf(1 - (1 - level) / 2, n, p) / n


def _simulate_arms(rng, reps, n, mus, sigma):
    """Sufficient statistics (sum, sum of squares) of normal arms: ``mean ~ N(mu, sigma^2 / n)``
    and ``(n - 1) s^2 ~ sigma^2 chi2_{n-1}``, independent."""
    out = []
    for mu in mus:
        mean = rng.normal(mu, sigma / math.sqrt(n), reps)
        s2 = sigma**2 * rng.chisquare(n - 1, reps) / (n - 1)
        out.append((n * mean, (n - 1) * s2 + n * mean**2))
    return out


def _equicorrelated_fwer(k, rho, crit):
    """P(max_i |Z_i| > crit) for k standard normals with common correlation rho (scipy, tight)."""
    cov = np.full((k, k), rho) + (1 - rho) * np.eye(k)
    inside = sps.multivariate_normal.cdf(np.full(k, crit), np.zeros(k), cov, lower_limit=np.full(k, -crit),
                                         abseps=1e-10, releps=1e-10, maxpts=2_000_000)
    return 1 - inside


# ------------------------------------------------------------------------------------ Dunnett


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_dunnett_from_sufficient_statistics_equals_scipy_on_raw_data(alternative):
    rng = np.random.default_rng(11)
    ctrl = rng.normal(10, 3, 50)
    groups = [rng.normal(10.5, 3, 40), rng.normal(11.6, 3, 60), rng.normal(9.8, 3, 45)]
    ref = sps.dunnett(*groups, control=ctrl, alternative=alternative, random_state=0)
    ours = dunnett(SampleMean.from_array(ctrl), [SampleMean.from_array(g) for g in groups], alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-3)
    assert ours.df == 50 + 40 + 60 + 45 - 4


def test_one_factor_integral_equals_multivariate_normal():
    # the correlation of three comparisons against a control of 50 with arms of 40, 60, 45
    n0, ni = 50, np.array([40, 60, 45])
    rho = 1 / np.sqrt((n0 / ni + 1)[:, None] * (n0 / ni + 1)[None, :])
    np.fill_diagonal(rho, 1)
    z = np.array([2.1, 1.0, -2.5])
    ours = dunnett_pvalues(z, rho)
    ref = [1 - sps.multivariate_normal.cdf(np.full(3, abs(x)), np.zeros(3), rho, lower_limit=np.full(3, -abs(x)),
                                           abseps=1e-10, releps=1e-10, maxpts=2_000_000) for x in z]
    assert ours == pytest.approx(ref, abs=1e-7)
    # one comparison: the plain two-sided normal p-value
    assert dunnett_pvalues([1.7], [[1.0]])[0] == pytest.approx(2 * special.ndtr(-1.7), abs=1e-9)


def test_general_correlation_falls_back_to_quasi_monte_carlo():
    # no loadings l with corr_ij = l_i l_j exist for this matrix (CUPED arms with different thetas)
    corr = np.array([[1, .5, .3, .1], [.5, 1, .2, .6], [.3, .2, 1., .3], [.1, .6, .3, 1]])
    z = np.array([2.4, 0.3, -1.1, 1.5])
    ours = dunnett_pvalues(z, corr)
    ref = [1 - sps.multivariate_normal.cdf(np.full(4, abs(x)), np.zeros(4), corr, lower_limit=np.full(4, -abs(x)),
                                           abseps=1e-8, releps=1e-8, maxpts=2_000_000) for x in z]
    assert ours == pytest.approx(ref, abs=1e-4)


@pytest.mark.parametrize("df, alternative, table", [(None, "two-sided", 2.35), (20, "two-sided", 2.54),
                                                    (None, "greater", 2.06)])
def test_dunnett_critical_values_reproduce_dunnetts_table(df, alternative, table):
    corr = np.full((3, 3), 0.5) + 0.5 * np.eye(3)  # three arms of equal size
    assert dunnett_critical_value(corr, df=df, alternative=alternative) == pytest.approx(table, abs=0.005)


# --------------------------------------------------------------------------------- A/B/n FWER


def _run_aa(correction, *, relative=False, seed=0):
    rng = np.random.default_rng(seed)
    n, sigma = 1000, 5.0
    arms = _simulate_arms(rng, REPS, n, [10.0] * 4, sigma)
    reject = np.zeros(REPS, dtype=bool)
    est = np.empty((REPS, 3))
    corr = np.empty((REPS, 3, 3))
    for r in range(REPS):
        c = SampleMean(n, arms[0][0][r], arms[0][1][r])
        t = {f"t{j}": SampleMean(n, arms[j][0][r], arms[j][1][r]) for j in (1, 2, 3)}
        res = multi_arm(c, t, correction=correction, relative=relative, test="z", simultaneous_ci=False)
        reject[r] = bool(res.rejected)
        est[r] = [a.estimate for a in res.arms.values()]
        corr[r] = res.correlation
    return reject, est, corr


def test_holm_controls_the_familywise_error_across_three_arms():
    reject, est, corr = _run_aa("holm", seed=1)
    fwer = reject.mean()
    # Holm rejects anything exactly when min p < alpha / 3 (Bonferroni's first step); the three
    # comparisons share the control, so they are correlated 0.5 and the exact FWER is below 0.05
    expected = _equicorrelated_fwer(3, 0.5, special.ndtri(1 - 0.05 / 6))
    lo, hi = _binomial_band(REPS, expected)
    assert lo <= fwer <= hi, f"FWER {fwer:.4f}, expected {expected:.4f}, band [{lo:.4f}, {hi:.4f}]"
    assert fwer <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / REPS)
    # the reported correlation is the one the estimates show across runs (Fisher-z band)
    emp = np.corrcoef(est.T)[np.triu_indices(3, 1)]
    rep = corr.mean(axis=0)[np.triu_indices(3, 1)]
    assert np.abs(np.arctanh(emp) - np.arctanh(rep)).max() < 4 / math.sqrt(REPS - 3)


def test_dunnett_familywise_error_is_alpha_and_uncorrected_is_not():
    reject, est, corr = _run_aa("dunnett", relative=True, seed=2)
    fwer = reject.mean()
    lo, hi = _binomial_band(REPS, 0.05)
    assert lo <= fwer <= hi, f"Dunnett FWER {fwer:.4f}, band [{lo:.4f}, {hi:.4f}]"
    assert fwer <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / REPS)
    # relative lifts: the delta-method correlation of the shared control still matches the runs
    emp = np.corrcoef(est.T)[np.triu_indices(3, 1)]
    rep = corr.mean(axis=0)[np.triu_indices(3, 1)]
    assert np.abs(np.arctanh(emp) - np.arctanh(rep)).max() < 4 / math.sqrt(REPS - 3)
    # the same harness detects an inflated FWER: three unadjusted tests at 5% each
    raw, _, _ = _run_aa("none", relative=True, seed=2)
    expected_raw = _equicorrelated_fwer(3, 0.5, special.ndtri(0.975))
    lo_r, hi_r = _binomial_band(REPS, expected_raw)
    assert lo_r <= raw.mean() <= hi_r
    assert raw.mean() > 0.05 + 3 * math.sqrt(0.05 * 0.95 / REPS)


def test_dunnett_is_between_unadjusted_and_bonferroni():
    c = SampleMean(1000, 10000.0, 124975.0)
    t = {"b": SampleMean(1000, 10500.0, 135225.0), "c": SampleMean(1000, 10100.0, 127000.0),
         "d": SampleMean(900, 9050.0, 113000.0)}
    d = multi_arm(c, t, correction="dunnett")
    b = multi_arm(c, t, correction="bonferroni")
    h = multi_arm(c, t, correction="holm")
    for k in t:
        raw = d.arms[k].p_value
        assert raw < d.arms[k].extra["p_adjusted"] <= b.arms[k].extra["p_adjusted"]  # Bonferroni caps at 1
        ci_d, ci_b = d.arms[k].extra["ci_adjusted"], b.arms[k].extra["ci_adjusted"]
        assert ci_b[0] < ci_d[0] < d.arms[k].ci[0] and d.arms[k].ci[1] < ci_d[1] < ci_b[1]
        assert d.arms[k].estimate == two_arm(c, t[k]).estimate
    assert [h.arms[k].extra["p_adjusted"] for k in t] == pytest.approx(holm([h.arms[k].p_value for k in t]))
    # arm b: raw 0.0255; Bonferroni 0.076; Dunnett (correlation ~0.5, t on ~2000 df) lower
    assert d.arms["b"].extra["p_adjusted"] == pytest.approx(0.0668, abs=5e-4)


def test_cuped_arms_use_their_own_thetas():
    def ra(n, post_mean, pre_mean, cov):
        return RegressionAdjusted(n, n * post_mean, 999 * 25 + n * post_mean**2, n * pre_mean,
                                  999 * 25 + n * pre_mean**2, 999 * cov + n * post_mean * pre_mean)
    c = ra(1000, 10.0, 10.0, 20.0)
    t = {"b": ra(1000, 10.4, 10.0, 15.0), "c": ra(1000, 10.1, 10.1, 22.0), "d": ra(1000, 9.9, 9.9, 5.0)}
    res = multi_arm(c, t, correction="dunnett", test="z")
    thetas = [res.arms[k].extra["theta"] for k in t]
    assert len(set(np.round(thetas, 6))) == 3
    for k in t:
        a = res.arms[k]
        assert a.p_value < a.extra["p_adjusted"] < min(1.0, 3 * a.p_value)


# ------------------------------------------------------------------------------- SRM, power


def test_srm_across_three_arms_equals_scipy_chisquare():
    counts = [1000, 1100, 950]
    for shares in ([1, 1, 1], [0.5, 0.25, 0.25]):
        ours = srm_test(counts, shares)
        exp = np.asarray(shares) / sum(shares) * sum(counts)
        ref = sps.chisquare(counts, exp)
        assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    arms = {"b": Proportion(1100, 120), "c": Proportion(950, 95)}
    res = multi_arm(Proportion(1000, 100), arms, planned_shares=[1, 1, 1])
    ref = sps.chisquare(counts)
    assert res.srm.status == "pass" and res.srm.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert all(a.diagnostics[-1] is res.srm for a in res.arms.values())
    bad = multi_arm(Proportion(1000, 100), {"b": Proportion(1200, 120), "c": Proportion(900, 95)},
                    planned_shares=[1, 1, 1])
    assert bad.srm.status == "fail" and bad.srm.p_value < 1e-6


def test_per_arm_mde_is_at_the_bonferroni_level_and_has_its_power():
    n, sigma, m = 1000, 5.0, 3
    mde = multi_arm_mde(n, [n] * m, sd=sigma)
    assert mde == pytest.approx(minimum_detectable_effect(n, alpha=0.05 / m) * sigma, rel=1e-12)
    assert mde[0] > minimum_detectable_effect(n) * sigma * 1.1
    assert multi_arm_mde(n, [n] * m, sd=sigma, correction="none")[0] == pytest.approx(
        minimum_detectable_effect(n) * sigma, rel=1e-12)
    # simulate the plan: arm t1 has an effect equal to its MDE, the others none
    rng = np.random.default_rng(5)
    arms = _simulate_arms(rng, REPS, n, [10.0, 10.0 + mde[0], 10.0, 10.0], sigma)
    bonf = np.empty(REPS, dtype=bool)
    holm_hit = np.empty(REPS, dtype=bool)
    for r in range(REPS):
        c = SampleMean(n, arms[0][0][r], arms[0][1][r])
        t = {f"t{j}": SampleMean(n, arms[j][0][r], arms[j][1][r]) for j in (1, 2, 3)}
        res = multi_arm(c, t, test="z", simultaneous_ci=False)
        a = res.arms["t1"]
        bonf[r] = a.p_value * m < 0.05
        holm_hit[r] = a.extra["p_adjusted"] < 0.05
        if r == 0:
            assert a.extra["mde"] == pytest.approx(mde_from_se(a.se, alpha=0.05 / m), rel=1e-12)
    lo, hi = _binomial_band(REPS, 0.8)
    assert lo <= bonf.mean() <= hi, f"power at the MDE {bonf.mean():.4f}, band [{lo:.4f}, {hi:.4f}]"
    assert holm_hit.mean() >= bonf.mean()


def test_result_shape_and_errors():
    c = SampleMean(1000, 10000.0, 124975.0)
    t = {"b": SampleMean(1000, 10500.0, 135225.0), "c": SampleMean(1000, 10100.0, 127000.0)}
    res = multi_arm(c, t, correction="dunnett", target_effect=0.5, planned_shares=[2, 1, 1])
    assert isinstance(res, MultiArmResult)
    # two arms: Dunnett's 0.047 for b is below Bonferroni's 2 x 0.0255 and rejects at 5%
    assert res.rejected == ("b",)
    assert res.arms["b"].extra["p_adjusted"] == pytest.approx(0.0470, abs=1e-3)
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d["arms"]) == {"b", "c"} and d["arms"]["b"]["extra"]["correction"] == "dunnett"
    assert res.srm.status == "fail"  # 1000 / 1000 / 1000 against a 2:1:1 plan
    b = res.arms["b"]
    assert b.extra["power_at_target"] == pytest.approx(power_from_se(0.5, b.se, alpha=0.05 / 2, df=b.extra["df"]))
    with pytest.raises(DataError, match="at least one treatment"):
        multi_arm(c, {})
    with pytest.raises(DataError, match="planned_shares needs 3"):
        multi_arm(c, t, planned_shares=[1, 1])
    with pytest.raises(ValueError, match="correction"):
        multi_arm(c, t, correction="sidak")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="SampleMean"):
        dunnett(Proportion(10, 2), [Proportion(10, 3)])  # type: ignore[list-item]


def test_an_arm_without_data_is_kept_and_left_out_of_the_family():
    c = SampleMean(1000, 10000.0, 124975.0)
    t = {"b": SampleMean(1000, 10500.0, 135225.0), "empty": SampleMean(1, 5.0, 25.0),
         "c": SampleMean(1000, 10100.0, 127000.0)}
    for correction in ("holm", "bonferroni", "dunnett"):
        res = multi_arm(c, t, correction=correction)
        assert res.arms["empty"].method == NOT_ESTIMABLE and "at least 2" in res.arms["empty"].diagnostics[-1].message
        two = multi_arm(c, {"b": t["b"], "c": t["c"]}, correction=correction)
        for k in ("b", "c"):
            assert res.arms[k].extra["p_adjusted"] == pytest.approx(two.arms[k].extra["p_adjusted"], abs=1e-12)
            assert res.arms[k].extra["ci_adjusted"] == pytest.approx(two.arms[k].extra["ci_adjusted"], abs=1e-9)

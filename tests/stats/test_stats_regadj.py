"""Regression adjustment on several covariates, CUPAC and post-stratification (``stats/_regadj.py``).

Sources and tolerances
----------------------
Peer library run on the same data in the same run: statsmodels ``OLS`` of ``y ~ 1 + treat + X``
(ANCOVA) and ``y ~ treat * (X - Xbar)`` (Lin 2013), ``fit()`` / ``fit(cov_type="HC0" | "HC1",
use_t=True)``, and for post-stratification ``y ~ treat * (D - Dbar)`` with ``cov_type="HC2"``.
The formulas are the same, so estimates, standard errors and interval ends agree to 1e-8
(relative for standard errors). The arm-wise default variance is checked against per-arm
statsmodels fits (interacted) and a direct residual computation (pooled). The one-covariate case
is compared with :func:`insightroi.stats.cuped` where the two coincide: equal arm sizes, where
gbstats' theta (arm covariances weighted by ``1 / n_a``) equals the pooled within-arm slope
(weighted by ``n_a - 1``). Simulations (fixed seeds) check coverage, A/A false positives and
variance reduction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from insightroi.errors import DataError
from insightroi.stats import RegressionAdjusted, SampleMean, cuped, welch_t
from insightroi.stats._regadj import MultiRegressionAdjusted, cupac, post_stratified, regression_adjusted

TOL = 1e-8


def _data(p, nc=700, nt=1300, effect=0.1, seed=0):
    """Unequal arms, correlated covariates, different slopes and noise per arm (Lin's setting)."""
    rng = np.random.default_rng(seed)
    cov = 0.5 * np.eye(p) + 0.5
    Xc = rng.multivariate_normal(np.full(p, 2.0), cov, nc)
    Xt = rng.multivariate_normal(np.full(p, 2.0), cov, nt)
    b = np.linspace(0.5, 1.0, p)
    yc = 5 + Xc @ b + rng.normal(0, 1, nc)
    yt = 5 + effect + Xt @ (b * 1.2) + rng.normal(0, 1.5, nt) - 0.2 * (b @ np.full(p, 2.0))
    return yc, Xc, yt, Xt


def _design(yc, Xc, yt, Xt, interacted):
    y = np.r_[yc, yt]
    X = np.r_[Xc, Xt]
    tr = np.r_[np.zeros(len(yc)), np.ones(len(yt))]
    if interacted:
        Xm = X - X.mean(axis=0)
        return y, np.column_stack([np.ones(y.size), tr, Xm, tr[:, None] * Xm])
    return y, np.column_stack([np.ones(y.size), tr, X])


@pytest.mark.parametrize("p", [1, 3, 5])
@pytest.mark.parametrize("interacted", [False, True])
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "HC1"])
def test_matches_statsmodels_ols(p, interacted, cov_type):
    yc, Xc, yt, Xt = _data(p, seed=p)
    c = MultiRegressionAdjusted.from_arrays(yc, Xc, fourth_moments=True)
    t = MultiRegressionAdjusted.from_arrays(yt, Xt, fourth_moments=True)
    res = regression_adjusted(c, t, interacted=interacted, cov_type=cov_type)
    y, Z = _design(yc, Xc, yt, Xt, interacted)
    fit = sm.OLS(y, Z).fit(cov_type=cov_type, use_t=True)
    assert abs(res.estimate - fit.params[1]) < TOL
    assert abs(res.se / fit.bse[1] - 1) < TOL
    lo, hi = fit.conf_int(alpha=0.05)[1]
    assert abs(res.ci[0] - lo) < TOL and abs(res.ci[1] - hi) < TOL
    assert abs(res.p_value - fit.pvalues[1]) < TOL
    assert 0.001 < res.p_value < 0.999  # a p-value comparison that can tell formulas apart
    assert res.extra["df"] == fit.df_resid
    assert res.n == len(y)


@pytest.mark.parametrize("p", [1, 3, 5])
def test_arm_variance_interacted_is_per_arm_ols(p):
    yc, Xc, yt, Xt = _data(p, seed=10 + p)
    res = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, Xc), MultiRegressionAdjusted.from_arrays(yt, Xt),
                              interacted=True)
    xbar = np.r_[Xc, Xt].mean(axis=0)
    fc = sm.OLS(yc, sm.add_constant(Xc - xbar)).fit()
    ft = sm.OLS(yt, sm.add_constant(Xt - xbar)).fit()
    assert abs(res.estimate - (ft.params[0] - fc.params[0])) < TOL
    vc, vt = fc.bse[0] ** 2, ft.bse[0] ** 2
    assert abs(res.se / math.sqrt(vc + vt) - 1) < TOL
    df = (vc + vt) ** 2 / (vc**2 / fc.df_resid + vt**2 / ft.df_resid)
    assert abs(res.extra["df"] - df) < 1e-6
    assert np.allclose(res.extra["theta_control"], fc.params[1:], rtol=0, atol=TOL)
    assert np.allclose(res.extra["theta_treatment"], ft.params[1:], rtol=0, atol=TOL)
    assert abs(res.extra["treatment_mean_adjusted"] - res.extra["control_mean_adjusted"] - res.estimate) < TOL


@pytest.mark.parametrize("p", [1, 3, 5])
def test_arm_variance_pooled_is_residual_welch(p):
    yc, Xc, yt, Xt = _data(p, seed=20 + p)
    res = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, Xc), MultiRegressionAdjusted.from_arrays(yt, Xt))
    theta = np.asarray(res.extra["theta"])
    y, Z = _design(yc, Xc, yt, Xt, False)
    assert np.allclose(theta, sm.OLS(y, Z).fit().params[2:], rtol=0, atol=TOL)
    rc, rt = yc - Xc @ theta, yt - Xt @ theta
    var = rc.var(ddof=1) / len(rc) + rt.var(ddof=1) / len(rt)
    assert abs(res.se / math.sqrt(var) - 1) < TOL
    assert abs(res.estimate - (rt.mean() - rc.mean())) < TOL


@pytest.mark.parametrize("relative", [False, True])
def test_one_covariate_equals_cuped_with_equal_arms(relative):
    # Equal arm sizes: gbstats' theta sum_a Cov_a / n_a over sum_a Var_a / n_a is then the pooled
    # within-arm slope, and both variances are Var_t(y - theta x)/n_t + Var_c(y - theta x)/n_c.
    yc, Xc, yt, Xt = _data(1, nc=900, nt=900, seed=3)
    ours = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, Xc), MultiRegressionAdjusted.from_arrays(yt, Xt),
                               relative=relative)
    ref = cuped(RegressionAdjusted.from_arrays(yc, Xc[:, 0]), RegressionAdjusted.from_arrays(yt, Xt[:, 0]),
                relative=relative)
    assert abs(ours.estimate - ref.estimate) < 1e-10
    assert abs(ours.se / ref.se - 1) < 1e-9
    assert abs(ours.ci[0] - ref.ci[0]) < 1e-9 and abs(ours.ci[1] - ref.ci[1]) < 1e-9
    assert abs(ours.p_value - ref.p_value) < 1e-9
    assert abs(ours.extra["theta"][0] - ref.extra["theta"]) < 1e-10
    assert abs(ours.extra["variance_reduction"] - ref.extra["variance_reduction"]) < 1e-9
    assert ours.unit == ("relative" if relative else "absolute")


def test_no_adjustment_when_covariates_are_useless_is_close_to_welch():
    # A covariate independent of y: the estimate moves by O(1/n) and the standard error stays
    # Welch's (reduction near zero), so the adjustment costs nothing when it cannot help.
    rng = np.random.default_rng(5)
    yc, yt = rng.normal(0, 1, 3000), rng.normal(0.1, 2, 1000)
    xc, xt = rng.normal(0, 1, (3000, 2)), rng.normal(0, 1, (1000, 2))
    res = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, xc), MultiRegressionAdjusted.from_arrays(yt, xt),
                              interacted=True)
    w = welch_t(yc, yt)
    assert abs(res.se / w.se - 1) < 0.01
    assert abs(res.extra["unadjusted_se"] - w.se) < 1e-12
    assert abs(res.estimate - w.estimate) < 0.1 * w.se


def test_statistics_of_two_halves_sum_to_the_whole():
    yc, Xc, _, _ = _data(3, seed=7)
    whole = MultiRegressionAdjusted.from_arrays(yc, Xc, fourth_moments=True)
    a = MultiRegressionAdjusted.from_arrays(yc[:250], Xc[:250], fourth_moments=True)
    b = MultiRegressionAdjusted.from_arrays(yc[250:], Xc[250:], fourth_moments=True)
    merged = a + b
    assert merged.n == whole.n
    assert np.allclose(merged.second(), whole.second(), rtol=1e-12, atol=0)
    assert np.allclose(merged.fourth_array(), whole.fourth_array(), rtol=1e-12, atol=0)
    _, _, yt, Xt = _data(3, seed=8)
    t = MultiRegressionAdjusted.from_arrays(yt, Xt, fourth_moments=True)
    for cov_type in ("arm", "HC1"):
        r1 = regression_adjusted(merged, t, interacted=True, cov_type=cov_type)
        r2 = regression_adjusted(whole, t, interacted=True, cov_type=cov_type)
        assert abs(r1.estimate - r2.estimate) < 1e-10 and abs(r1.se / r2.se - 1) < 1e-10
    # Exactly representable values make the sums exact, so the frozen statistics compare equal.
    yi, Xi = np.arange(10.0), np.arange(20.0).reshape(10, 2) % 7
    assert (MultiRegressionAdjusted.from_arrays(yi[:4], Xi[:4]) + MultiRegressionAdjusted.from_arrays(yi[4:], Xi[4:])
            == MultiRegressionAdjusted.from_arrays(yi, Xi))


def test_errors_name_the_problem():
    yc, Xc, yt, Xt = _data(2, seed=9)
    c2, t2 = MultiRegressionAdjusted.from_arrays(yc, Xc), MultiRegressionAdjusted.from_arrays(yt, Xt)
    c1 = MultiRegressionAdjusted.from_arrays(yc, Xc[:, 0])
    with pytest.raises(DataError, match="covariates"):
        regression_adjusted(c1, t2)
    with pytest.raises(DataError, match="covariates"):
        c1 + c2
    with pytest.raises(DataError, match="fourth moments"):
        c2 + MultiRegressionAdjusted.from_arrays(yc, Xc, fourth_moments=True)
    with pytest.raises(DataError, match="fourth_moments=True"):
        regression_adjusted(c2, t2, cov_type="HC1")
    with pytest.raises(ValueError, match="'cov_type' parameter must be one of"):
        regression_adjusted(c2, t2, cov_type="HC2")
    collinear = np.column_stack([Xc[:, 0], 2 * Xc[:, 0]])
    with pytest.raises(DataError, match="collinear"):
        regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, collinear),
                            MultiRegressionAdjusted.from_arrays(yt, np.column_stack([Xt[:, 0], 2 * Xt[:, 0]])))
    with pytest.raises(DataError, match="too few"):
        regression_adjusted(MultiRegressionAdjusted.from_arrays(yc[:3], Xc[:3]), t2, interacted=True)
    with pytest.raises(DataError, match="at least 2"):
        regression_adjusted(MultiRegressionAdjusted.from_arrays(yc[:1], Xc[:1]), t2)
    with pytest.raises(DataError, match="finite"):
        MultiRegressionAdjusted.from_arrays(np.r_[yc[:-1], np.nan], Xc)
    with pytest.raises(DataError, match="same n"):
        MultiRegressionAdjusted.from_arrays(yc[:-1], Xc)


def _simulate(reps, effect, seed):
    """Per replication: 3 correlated covariates, 150 control / 350 treatment units, arm-specific noise."""
    rng = np.random.default_rng(seed)
    nc, nt, p = 150, 350, 3
    L = np.linalg.cholesky(0.5 * np.eye(p) + 0.5)
    b = np.array([1.0, 0.5, -0.5])
    for _ in range(reps):
        Xc = rng.standard_normal((nc, p)) @ L.T + 1
        Xt = rng.standard_normal((nt, p)) @ L.T + 1
        yc = 10 + Xc @ b + rng.normal(0, 1, nc)
        # Heterogeneous slopes centred so the average effect stays ``effect`` at E[x] = 1.
        yt = 10 + effect + Xt @ (1.3 * b) - 0.3 * b.sum() + rng.normal(0, 1.5, nt)
        yield MultiRegressionAdjusted.from_arrays(yc, Xc), MultiRegressionAdjusted.from_arrays(yt, Xt)


def test_simulation_coverage_and_aa_false_positives():
    reps, effect = 2000, 0.3
    true_rel = effect / 11.0  # control mean 10 + b'E[x] = 11
    cover = {"pooled": 0, "interacted": 0, "relative": 0}
    for c, t in _simulate(reps, effect, seed=2024):
        for name, inter in (("pooled", False), ("interacted", True)):
            r = regression_adjusted(c, t, interacted=inter)
            cover[name] += r.ci[0] <= effect <= r.ci[1]
        r = regression_adjusted(c, t, interacted=True, relative=True)
        cover["relative"] += r.ci[0] <= true_rel <= r.ci[1]
    rates = {k: v / reps for k, v in cover.items()}
    reject = {"pooled": 0, "interacted": 0}
    for c, t in _simulate(reps, 0.0, seed=99):
        for name, inter in (("pooled", False), ("interacted", True)):
            reject[name] += regression_adjusted(c, t, interacted=inter).p_value < 0.05
    aa = {k: v / reps for k, v in reject.items()}
    print(f"coverage {rates}; A/A rejection {aa}")
    for k, v in rates.items():
        assert 0.93 <= v <= 0.97, (k, v)
    for k, v in aa.items():
        assert 0.035 <= v <= 0.065, (k, v)


def test_three_correlated_covariates_reduce_variance_more_than_the_best_one():
    # y = x1 + x2 + x3 + e, corr(x_j, x_k) = 0.5, Var e = 2: R^2 is 0.75 with all three and 0.5
    # with any one, so the expected reductions are 0.75 and 0.5.
    rng = np.random.default_rng(11)
    L = np.linalg.cholesky(0.5 * np.eye(3) + 0.5)
    Xc, Xt = rng.standard_normal((4000, 3)) @ L.T, rng.standard_normal((3000, 3)) @ L.T
    yc = Xc.sum(axis=1) + rng.normal(0, math.sqrt(2), 4000)
    yt = 0.05 + Xt.sum(axis=1) + rng.normal(0, math.sqrt(2), 3000)
    singles = [regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, Xc[:, j]),
                                   MultiRegressionAdjusted.from_arrays(yt, Xt[:, j])).extra["variance_reduction"]
               for j in range(3)]
    both = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, Xc), MultiRegressionAdjusted.from_arrays(yt, Xt))
    vr3 = both.extra["variance_reduction"]
    print(f"variance reduction: single covariates {np.round(singles, 3).tolist()}, all three {vr3:.3f}")
    assert all(0.45 < s < 0.55 for s in singles)
    assert 0.72 < vr3 < 0.78
    assert vr3 >= max(singles) + 0.15
    assert abs(both.se / both.extra["unadjusted_se"] - math.sqrt(1 - vr3)) < 1e-12


def _cupac_world(rng, n, effect=0.0):
    """Outcome driven by a nonlinear function of pre-period features; noise fixed so R^2(g) = 0.6."""
    F = rng.normal(0, 1, (n, 4))
    g = np.sin(2 * F[:, 0]) + F[:, 1] ** 2 + F[:, 2] * F[:, 3] + 0.5 * F[:, 0]
    # Var g in closed form: Var sin 2Z = (1 - e^-8)/2, Cov(sin 2Z, Z) = 2 e^-2 (Stein), Var Z^2 = 2.
    var_g = 0.5 * (1 - math.exp(-8)) + 0.25 + 2 * math.exp(-2) + 2 + 1
    sigma = math.sqrt(var_g * (1 - 0.6) / 0.6)
    y_pre = 5 + g + rng.normal(0, sigma, n)
    y_post = 5 + effect + g + rng.normal(0, sigma, n)
    return F, y_pre, y_post


def _basis(F):
    sq = F**2
    cross = np.column_stack([F[:, i] * F[:, j] for i in range(4) for j in range(i + 1, 4)])
    return np.column_stack([np.ones(len(F)), F, sq, cross, np.sin(2 * F)])


def test_cupac_prediction_beats_the_raw_pre_period_covariate():
    # Leakage rule in practice: the model is fitted on a *historical* sample's pre-period outcomes
    # and applied to the experiment's pre-period features; no treatment-period outcome enters it.
    rng = np.random.default_rng(17)
    F_hist, y_hist, _ = _cupac_world(rng, 20000)
    coef, *_ = np.linalg.lstsq(_basis(F_hist), y_hist, rcond=None)
    Fc, prec, yc = _cupac_world(rng, 5000)
    Ft, pret, yt = _cupac_world(rng, 3000, effect=0.2)
    predc, predt = _basis(Fc) @ coef, _basis(Ft) @ coef
    r2 = np.corrcoef(yc, predc)[0, 1] ** 2
    res = cupac(yc, predc, yt, predt)
    raw = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, prec),
                              MultiRegressionAdjusted.from_arrays(yt, pret))
    both = cupac(yc, predc, yt, predt, extra_covariates=(prec, pret))
    vr_cupac, vr_cuped, vr_both = (r.extra["variance_reduction"] for r in (res, raw, both))
    print(f"CUPAC: prediction R^2 {r2:.3f}; variance reduction CUPAC {vr_cupac:.3f}, raw pre-period "
          f"{vr_cuped:.3f}, CUPAC + raw {vr_both:.3f}")
    assert 0.55 < r2 < 0.65
    assert 0.55 < vr_cupac < 0.65
    assert 0.30 < vr_cuped < 0.42  # corr(y, y_pre) = 0.6, so about 0.36
    assert vr_cupac >= vr_cuped + 0.15
    assert vr_both >= vr_cupac - 0.01
    assert res.method == "cupac"
    same = regression_adjusted(MultiRegressionAdjusted.from_arrays(yc, predc),
                               MultiRegressionAdjusted.from_arrays(yt, predt))
    assert res.estimate == same.estimate and res.se == same.se
    assert abs(res.estimate - 0.2) < 4 * res.se  # unbiased: the prediction ignores treatment


def _strata_data(seed=4):
    rng = np.random.default_rng(seed)
    sizes = {"north": (120, 200), "south": (60, 45), "east": (300, 260), "west": (25, 40)}
    level = {"north": 3.0, "south": 6.0, "east": 1.0, "west": 9.0}
    lift = {"north": 0.2, "south": 0.6, "east": 0.0, "west": 1.0}
    data = {}
    for s, (nc, nt) in sizes.items():
        data[s] = (rng.normal(level[s], 1.0, nc), rng.normal(level[s] + lift[s], 1.8, nt))
    return data


def test_post_stratified_matches_direct_computation_and_lin_hc2():
    data = _strata_data()
    cells = {s: (SampleMean.from_array(c), SampleMean.from_array(t)) for s, (c, t) in data.items()}
    res = post_stratified(cells)
    n = sum(len(c) + len(t) for c, t in data.values())
    w = {s: (len(c) + len(t)) / n for s, (c, t) in data.items()}
    est = sum(w[s] * (t.mean() - c.mean()) for s, (c, t) in data.items())
    var = sum(w[s] ** 2 * (c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t)) for s, (c, t) in data.items())
    assert abs(res.estimate - est) < 1e-12
    assert abs(res.se / math.sqrt(var) - 1) < 1e-12
    # Lin (2013) with stratum indicators centred at their pooled shares: the saturated regression.
    keys = list(data)
    y = np.concatenate([np.r_[c, t] for c, t in data.values()])
    tr = np.concatenate([np.r_[np.zeros(len(c)), np.ones(len(t))] for c, t in data.values()])
    strat = np.concatenate([np.full(len(c) + len(t), i) for i, (c, t) in enumerate(data.values())])
    D = np.column_stack([(strat == i).astype(float) for i in range(1, len(keys))])
    Dm = D - D.mean(axis=0)
    fit = sm.OLS(y, np.column_stack([np.ones(y.size), tr, Dm, tr[:, None] * Dm])).fit(cov_type="HC2")
    assert abs(res.estimate - fit.params[1]) < TOL
    assert abs(res.se / fit.bse[1] - 1) < TOL
    # Post-stratification removes the between-stratum variance the plain difference carries.
    w_diff = welch_t(np.concatenate([c for c, _ in data.values()]), np.concatenate([t for _, t in data.values()]))
    assert abs(res.extra["unadjusted_se"] - w_diff.se) < 1e-12
    assert res.extra["variance_reduction"] > 0.5
    assert res.extra["weights"] == pytest.approx(w, abs=1e-15)


def test_post_stratified_given_weights_and_single_stratum():
    data = _strata_data(seed=6)
    cells = {s: (SampleMean.from_array(c), SampleMean.from_array(t)) for s, (c, t) in data.items()}
    pop = {"north": 4.0, "south": 3.0, "east": 2.0, "west": 1.0}  # normalised to 0.4, 0.3, 0.2, 0.1
    res = post_stratified(cells, weights=pop)
    est = sum(pop[s] / 10 * (t.mean() - c.mean()) for s, (c, t) in data.items())
    var = sum((pop[s] / 10) ** 2 * (c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t)) for s, (c, t) in data.items())
    assert abs(res.estimate - est) < 1e-12 and abs(res.se / math.sqrt(var) - 1) < 1e-12
    # One stratum: post-stratification is Welch's test, relative lift and its delta method included.
    c, t = data["north"]
    for relative in (False, True):
        one = post_stratified({"all": (SampleMean.from_array(c), SampleMean.from_array(t))}, relative=relative)
        ref = welch_t(c, t, relative=relative)
        assert abs(one.estimate - ref.estimate) < 1e-12
        assert abs(one.se / ref.se - 1) < 1e-10
        assert abs(one.ci[0] - ref.ci[0]) < 1e-10 and abs(one.p_value - ref.p_value) < 1e-10
    with pytest.raises(DataError, match="keys"):
        post_stratified(cells, weights={"north": 1.0})
    with pytest.raises(DataError, match="stratum 'west'"):
        post_stratified({**cells, "west": (SampleMean.from_array(c[:1]), cells["west"][1])})


def test_post_stratified_simulation_coverage():
    rng = np.random.default_rng(31)
    shares, level, lift = np.array([0.5, 0.3, 0.2]), np.array([1.0, 4.0, 8.0]), np.array([0.2, 0.5, 1.0])
    true = float(shares @ lift)
    covered, reps = 0, 2000
    for _ in range(reps):
        strata = rng.choice(3, size=600, p=shares)
        treat = rng.random(600) < 0.3
        y = level[strata] + treat * lift[strata] + rng.normal(0, 1 + strata, 600)
        cells = {s: (SampleMean.from_array(y[(strata == s) & ~treat]), SampleMean.from_array(y[(strata == s) & treat]))
                 for s in range(3)}
        r = post_stratified(cells)
        covered += r.ci[0] <= true <= r.ci[1]
    print(f"post-stratified coverage {covered / reps:.3f}")
    assert 0.93 <= covered / reps <= 0.97

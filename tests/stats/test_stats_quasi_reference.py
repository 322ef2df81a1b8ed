"""Reference reproductions for the quasi-experimental estimators.

Published figures (Card & Krueger 1994, Abadie & Gardeazabal 2003, Abadie, Diamond & Hainmueller
2010) and the tolerances on R CausalImpact's outputs are read from ``reference_values.toml`` beside
this file, each with its source, the call or data behind it, and the reason for its tolerance.
The data sets are in shared/reference (card_krueger, basque, prop99, causalimpact); R's
CausalImpact figures stay in their fixture files, with the R, CausalImpact and bsts versions.
Peer libraries run on the same data in the same run:

* TWFE vs pyfixest 0.60 ``feols("y ~ D + x | unit + time", vcov={"CRV1": "unit"})`` on an
  unbalanced simulated panel: coefficients, SEs, p-values and CIs to 1e-8 (same algebra).
* Our Kalman filter vs statsmodels ``UnobservedComponents`` (local level + regression in the
  state) at fixed variances: log-likelihood and forecasts to 1e-6 (diffuse initialisation
  approximated by 1e7 here and 1e6 there).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from insightroi.stats import causal_impact, did_2x2, did_ratio, event_study, synth_fit, synthetic_control, twfe

from helpers.paths import REFERENCE_DIR as REF
from reference_values import approx, high, tolerance, value, within

CK_COLS = (
    "SHEET CHAIN CO_OWNED STATE SOUTHJ CENTRALJ NORTHJ PA1 PA2 SHORE NCALLS EMPFT EMPPT NMGRS WAGE_ST INCTIME "
    "FIRSTINC BONUS PCTAFF MEALS OPEN HRSOPEN PSODA PFRY PENTREE NREGS NREGS11 TYPE2 STATUS2 DATE2 NCALLS2 EMPFT2 "
    "EMPPT2 NMGRS2 WAGE_ST2 INCTIME2 FIRSTIN2 SPECIAL2 MEALS2 OPEN2R HRSOPEN2 PSODA2 PFRY2 PENTREE2 NREGS2 NREGS112"
).split()


@pytest.fixture(scope="module")
def card_krueger():
    df = pd.read_csv(REF / "card_krueger/public.dat", sep=r"\s+", header=None, names=CK_COLS, na_values=".")
    pre = (df.EMPFT + df.NMGRS + 0.5 * df.EMPPT).to_numpy()
    post = (df.EMPFT2 + df.NMGRS2 + 0.5 * df.EMPPT2).to_numpy()
    return pre, post, (df.STATE == 1).to_numpy()


def test_card_krueger_all_stores(card_krueger):
    pre, post, nj = card_krueger
    r = did_2x2(pre, post, nj, metric="fte")
    ck = "card_krueger_all_stores"
    assert r.estimate == approx(ck, "estimate")
    assert r.extra["treated"]["mean_pre"] == approx(ck, "treated_mean_pre")
    assert r.extra["treated"]["mean_post"] == approx(ck, "treated_mean_post")
    assert r.extra["control"]["mean_pre"] == approx(ck, "control_mean_pre")
    assert r.extra["control"]["mean_post"] == approx(ck, "control_mean_post")
    assert r.se == approx(ck, "se")
    assert r.method == "did_2x2" and r.n == value(ck, "n")


def test_card_krueger_balanced_sample(card_krueger):
    pre, post, nj = card_krueger
    both = ~np.isnan(pre) & ~np.isnan(post)
    r = did_2x2(pre[both], post[both], nj[both])
    assert r.estimate == approx("card_krueger_balanced", "estimate")
    assert r.se == approx("card_krueger_balanced", "se")
    assert r.extra["treated"]["se_change"] == approx("card_krueger_balanced", "treated_se_change")
    assert r.extra["control"]["se_change"] == approx("card_krueger_balanced", "control_se_change")


def _basque():
    df = pd.read_csv(REF / "basque/basque.csv")
    df = df[df.regionno != 1]  # Spain as a whole is not a donor
    treated = "Basque Country (Pais Vasco)"
    units = [u for u in df.regionname.unique() if u != treated]

    def pred(u):
        d = df[df.regionname == u].set_index("year")
        row = [d.loc[1964:1969, c].mean() for c in ["school.illit", "school.prim", "school.med", "school.high", "school.post.high", "invest"]]
        row.append(d.loc[1960:1969, "gdpcap"].mean())
        for c in ["sec.agriculture", "sec.energy", "sec.industry", "sec.construction", "sec.services.venta", "sec.services.nonventa"]:
            row.append(d.loc[[1961, 1963, 1965, 1967, 1969], c].mean())
        row.append(d.loc[1969, "popdens"])
        return np.array(row)

    Y = df.pivot(index="year", columns="regionname", values="gdpcap")
    return treated, units, pred, Y


def test_basque_weights():
    treated, units, pred, Y = _basque()
    X1 = pred(treated)
    X0 = np.column_stack([pred(u) for u in units])
    f = synth_fit(Y.loc[1960:1969, treated].to_numpy(), Y.loc[1960:1969, units].to_numpy(), X1, X0)
    w = dict(zip(units, f["w"]))
    assert w["Cataluna"] == approx("basque_weights", "cataluna")
    assert w["Madrid (Comunidad De)"] == approx("basque_weights", "madrid")
    others = sum(v for k, v in w.items() if k not in ("Cataluna", "Madrid (Comunidad De)"))
    assert others < high("basque_weights", "others_total")
    assert f["w"].sum() == pytest.approx(1.0, abs=1e-9) and (f["w"] >= 0).all()
    # deterministic: the same data give the same weights
    f2 = synth_fit(Y.loc[1960:1969, treated].to_numpy(), Y.loc[1960:1969, units].to_numpy(), X1, X0)
    assert np.array_equal(f["w"], f2["w"])


def _prop99():
    df = pd.read_csv(REF / "prop99/smoking.csv")
    Y = df.pivot(index="year", columns="state", values="cigsale")
    units = [u for u in Y.columns if u != "California"]

    def pred(u):
        d = df[df.state == u].set_index("year")
        return np.array([
            d.loc[1980:1988, "lnincome"].mean(), d.loc[1980:1988, "retprice"].mean(), d.loc[1980:1988, "age15to24"].mean(),
            d.loc[1984:1988, "beer"].mean(), d.loc[1975, "cigsale"], d.loc[1980, "cigsale"], d.loc[1988, "cigsale"],
        ])

    return Y, units, pred


def test_prop99_gap_and_donors():
    Y, units, pred = _prop99()
    r = synthetic_control(
        Y["California"].to_numpy(), Y[units].to_numpy(), n_pre=19,
        predictors_treated=pred("California"), predictors_donors=np.column_stack([pred(u) for u in units]),
        donor_names=units, placebo=False, leave_one_out=False,
    )
    assert within("prop99", "gap_2000", r.extra["gap"][-1])  # year 2000
    top5 = list(r.extra["weights"])[:5]
    assert set(top5) == set(value("prop99", "top5_donors"))
    assert r.extra["pre_rmspe"] < high("prop99", "pre_rmspe")
    assert r.diagnostics[0].name == "pre_period_fit" and r.diagnostics[0].status == "pass"


@pytest.mark.slow
def test_prop99_placebo_inference():
    # ADH 2010 report California's post/pre RMSPE ratio as the largest of the 39 states (p = 1/39).
    Y, units, pred = _prop99()
    r = synthetic_control(
        Y["California"].to_numpy(), Y[units].to_numpy(), n_pre=19,
        predictors_treated=pred("California"), predictors_donors=np.column_stack([pred(u) for u in units]),
        donor_names=units, placebo=True, leave_one_out=True,
    )
    assert r.p_value == approx("prop99", "placebo_p_value")
    assert len(r.extra["placebos"]) == value("prop99", "n_placebos")
    loo = r.extra["leave_one_out"]
    assert len(loo) == 5 and all(row["estimate"] < -10 for row in loo)


@pytest.mark.parametrize("name", ["basic", "covariates", "no_effect"])
def test_causalimpact_r_fixtures(name):
    d = json.loads((REF / f"causalimpact/r_reference_{name}.json").read_text())
    y = np.array(d["data"]["y"])
    X = np.column_stack([d["data"]["x"][k] for k in d["data"]["x"]]) if d["data"]["x"] else None
    R = d["r_output"]
    # R's model: level SD fixed at its prior (the default, level="estimated", estimates it).
    r = causal_impact(y, d["n_pre"], X, seed=0, level="prior")
    if name == "no_effect":
        cf_level = float(np.mean(y[d["n_pre"]:])) - R["point_effect_mean"]
        assert abs(r.estimate - R["point_effect_mean"]) <= tolerance("causalimpact_r", "no_effect_point_effect")["rel"] * cf_level
    else:
        assert r.estimate == pytest.approx(R["point_effect_mean"], **tolerance("causalimpact_r", "point_effect"))
        assert r.extra["cumulative"]["estimate"] == pytest.approx(R["cumulative_effect_total"],
                                                                  **tolerance("causalimpact_r", "cumulative_effect"))
    assert r.ci[0] == pytest.approx(R["ci_lower"], **tolerance("causalimpact_r", "ci"))
    assert r.ci[1] == pytest.approx(R["ci_upper"], **tolerance("causalimpact_r", "ci"))
    # posterior tail probability: both tiny with an effect, both far from significance without
    if d["true_effect"]:
        assert r.p_value < 0.01 and R["p_value"] < 0.01
    else:
        assert r.p_value > 0.2 and R["p_value"] > 0.2


def test_twfe_equals_pyfixest():
    pf = pytest.importorskip("pyfixest")
    rng = np.random.default_rng(0)
    N, T = 200, 12
    u = np.repeat(np.arange(N), T)
    t = np.tile(np.arange(T), N)
    D = ((u < 100) & (t >= 6)).astype(float)
    x = rng.normal(size=N * T)
    y = rng.normal(size=N)[u] + np.sin(t) + 0.5 * D + 0.3 * x + rng.normal(size=N * T)
    keep = rng.random(N * T) > 0.1  # unbalanced
    df = pd.DataFrame(dict(y=y, unit=u, time=t, D=D, x=x))[keep]
    f = pf.feols("y ~ D + x | unit + time", data=df, vcov={"CRV1": "unit"})
    r = twfe(df.y.to_numpy(), df.unit.to_numpy(), df.time.to_numpy(), df.D.to_numpy(), covariates=df[["x"]].to_numpy(), covariate_names=["x"])
    np.testing.assert_allclose([r.estimate, r.extra["coefficients"]["x"]["estimate"]], f.coef().to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose([r.se, r.extra["coefficients"]["x"]["se"]], f.se().to_numpy(), rtol=0, atol=1e-8)
    assert r.p_value == pytest.approx(float(f.pvalue().iloc[0]), abs=1e-8)
    np.testing.assert_allclose(r.ci, f.confint().to_numpy()[0], atol=1e-8)


def test_event_study_equals_pyfixest_dummies():
    pf = pytest.importorskip("pyfixest")
    rng = np.random.default_rng(3)
    N, T = 120, 14
    u = np.repeat(np.arange(N), T)
    t = np.tile(np.arange(T), N)
    g = np.where(np.arange(N) < 60, 8.0, np.inf)[u]
    y = rng.normal(size=N)[u] + 0.1 * t + np.where(t >= g, 1.0, 0.0) + rng.normal(size=N * T)
    r = event_study(y, u, t, g, leads=4, lags=3)
    rel = np.where(np.isfinite(g), t - np.where(np.isfinite(g), g, 0), np.nan)
    df = pd.DataFrame(dict(y=y, unit=u, time=t))
    names = []
    for k in [-4, -3, -2, 0, 1, 2, 3]:
        c = (rel <= k) if k == -4 else ((rel >= k) if k == 3 else (rel == k))
        nm = f"e{'m' if k < 0 else ''}{abs(k)}"
        df[nm] = np.where(np.isnan(rel), 0.0, c.astype(float))
        names.append(nm)
    f = pf.feols("y ~ " + " + ".join(names) + " | unit + time", data=df, vcov={"CRV1": "unit"})
    ours = [row["estimate"] for row in r.extra["event_time"] if not row["reference"]]
    np.testing.assert_allclose(ours, f.coef().to_numpy(), atol=1e-8)
    ours_se = [row["se"] for row in r.extra["event_time"] if not row["reference"]]
    np.testing.assert_allclose(ours_se, f.se().to_numpy(), atol=1e-8)
    # joint pre-trend Wald statistic equals pyfixest's wald_test on the leads (pyfixest refers it
    # to chi2(3); we use F(3, G-1), so compare the statistic and pyfixest's chi2 p-value)
    w = f.wald_test(R=np.eye(7)[:3], distribution="chi2")
    pre = next(c for c in r.diagnostics if c.name == "pre_trends")
    from scipy import stats as sps

    assert sps.chi2.sf(pre.details["wald_chi2"], 3) == pytest.approx(float(w["pvalue"]), abs=1e-8)


def test_kalman_filter_matches_statsmodels():
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    from insightroi.stats._its import _kalman_end_state

    rng = np.random.default_rng(5)
    n = 80
    X = rng.normal(size=(n, 2))
    y = np.cumsum(rng.normal(0, 0.1, n)) + X @ [0.5, -0.3] + rng.normal(size=n)
    mod = UnobservedComponents(y, level="llevel", exog=X, mle_regression=False)
    params = np.array([0.8, 0.01])  # sigma2.irregular, sigma2.level
    res = mod.filter(params)
    a, P, Tm, Q, ll, m = _kalman_end_state(y, X, 0.01, 0.8, 0, 0.0)
    assert ll == pytest.approx(res.llf, abs=1e-4)
    # one-step-ahead state after the last observation
    np.testing.assert_allclose(a, res.predicted_state[:, -1], atol=1e-6)
    np.testing.assert_allclose(P, res.predicted_state_cov[:, :, -1], atol=1e-6)
    assert math.isfinite(ll)


def test_did_ratio_equals_paired_did_when_denominators_are_equal():
    # Identity: with one common denominator per unit, the ratio of sums is the mean of rates and
    # the delta-method SE is the paired-difference SE of did_2x2 (Card & Krueger's row 4 formula).
    rng = np.random.default_rng(8)
    n = 30
    d = np.arange(n) < 12
    b = np.full(n, 500.0)
    a0 = rng.poisson(10, n).astype(float)
    a1 = rng.poisson(12, n).astype(float)
    r = did_ratio(a0, b, a1, b, d, scale=1000)
    ref = did_2x2(a0 / b * 1000, a1 / b * 1000, d)
    assert r.estimate == pytest.approx(ref.estimate, rel=1e-12)
    assert r.se == pytest.approx(ref.se, rel=1e-12)

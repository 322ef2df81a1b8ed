"""Wild cluster bootstrap for few treated clusters (issue #20).

References: pyfixest 0.60 ``Feols.wildboottest(param="treat", weights_type=..., impose_null=True)``
(which runs the ``wildboottest`` package's WCR11 on the model with the fixed effects as dummies;
Roodman et al. 2019) on the same data. With full enumeration (Rademacher weights, 2^G <= B) both
p-values are exact and must agree; otherwise they must agree within Monte Carlo error. The
simulation follows MacKinnon & Webb (2017): with one treated cluster out of 30, CRV1 t-tests
reject a true null far above 5% and the restricted wild bootstrap does not.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from insightroi.stats._did import twfe
from insightroi.stats._panel import group_codes, treated_cluster_check
from insightroi.stats._wild import wild_cluster_bootstrap


def _panel(seed: int, N: int = 30, T: int = 10, n_treated: int = 3, effect: float = 0.0, rho: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(N), T)
    t = np.tile(np.arange(T), N)
    D = ((u < n_treated) & (t >= T // 2)).astype(float)
    e = rng.normal(size=(N, T))
    for s in range(1, T):  # serial correlation within a unit: why errors are clustered
        e[:, s] += rho * e[:, s - 1]
    y = rng.normal(size=N)[u] + 0.1 * t + effect * D + e.ravel()
    return pd.DataFrame({"y": y, "unit": u, "period": t, "treat": D, "x": rng.normal(size=N * T)})


def _reference(df: pd.DataFrame, weights: str, reps: int, formula: str = "y ~ treat | unit + period") -> pd.Series:
    pf = pytest.importorskip("pyfixest")
    pytest.importorskip("wildboottest")
    f = pf.feols(formula, data=df, vcov={"CRV1": "unit"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "2^G < the number of boot iterations": full enumeration, as intended
        return f.wildboottest(reps=reps, param="treat", weights_type=weights, impose_null=True, seed=11)


def test_full_enumeration_equals_pyfixest_exactly():
    # 12 clusters, Rademacher: 2^12 = 4096 < 9999 draws, so both enumerate every sign vector and
    # the p-values are exact; unbalanced panel and a covariate, so the fixed effects are not
    # swept out in one pass.
    df = _panel(1, N=12, T=8, n_treated=3, effect=0.4)
    df = df[np.random.default_rng(2).random(len(df)) > 0.1]
    ref = _reference(df, "rademacher", 9999, "y ~ treat + x | unit + period")
    uc, _ = group_codes(df.unit.to_numpy())
    tc, _ = group_codes(df.period.to_numpy())
    wb = wild_cluster_bootstrap(df.y.to_numpy(), df[["treat", "x"]].to_numpy(), [uc, tc], df.unit.to_numpy(),
                                weights="rademacher", n_boot=9999)
    assert wb.full_enumeration and wb.n_boot == 4096
    # Only a tie may differ: the all-ones sign vector reproduces |t| exactly, and so does its mirror
    # (all minus ones: every bootstrap t flips sign), so rounding in the matrix products puts those
    # two draws on either side together. A CI run counted neither here and both in pyfixest
    # (2,728 vs 2,730 of 4,096); any other difference is a real one.
    assert abs(wb.p_value - float(ref["Pr(>|t|)"])) <= 2 / 4096 + 1e-12
    assert wb.t_stat == pytest.approx(float(ref["t value"]), rel=1e-9)
    assert 0.05 < wb.p_value < 0.95  # a p-value that discriminates, not a boundary case


@pytest.mark.parametrize(("N", "n_treated", "weights", "seed"), [(30, 3, "rademacher", 5), (10, 3, "webb", 8)])
def test_monte_carlo_p_value_matches_pyfixest(N, n_treated, weights, seed):
    B = 9999
    df = _panel(seed, N=N, n_treated=n_treated, effect=0.5)
    ref = float(_reference(df, weights, B)["Pr(>|t|)"])
    r = twfe(df.y.to_numpy(), df.unit.to_numpy(), df.period.to_numpy(), df.treat.to_numpy(), inference="wild",
             weights=weights, n_boot=B)
    wb = r.extra["wild_bootstrap"]
    assert wb["weights"] == weights and not wb["full_enumeration"] and wb["n_boot"] == B
    # Independent draws on both sides: each p has MC SE sqrt(p (1 - p) / B) ~ 0.005, the difference
    # sqrt(2) times that. Measured: 0.5696 vs 0.5655 (Rademacher), 0.5670 vs 0.5592 (Webb).
    mc_se = np.sqrt(2 * ref * (1 - ref) / B)
    assert 0.02 < ref < 0.9
    assert abs(r.p_value - ref) < 4 * mc_se, (r.p_value, ref, mc_se)


def test_interval_is_the_inverted_test():
    df = _panel(4, N=20, n_treated=4, effect=0.7)
    uc, _ = group_codes(df.unit.to_numpy())
    tc, _ = group_codes(df.period.to_numpy())
    args = (df.y.to_numpy(), df[["treat"]].to_numpy(), [uc, tc], df.unit.to_numpy())
    wb = wild_cluster_bootstrap(*args, n_boot=1999)
    lo, hi = wb.ci
    assert lo < 0.7 < hi  # measured (-0.39, 1.57)
    width = hi - lo
    for end, outside in ((lo, lo - 1e-3 * width), (hi, hi + 1e-3 * width)):
        inside = end + (1e-3 * width if end == lo else -1e-3 * width)
        assert wild_cluster_bootstrap(*args, n_boot=1999, beta0=outside, ci=False).p_value <= 0.05
        assert wild_cluster_bootstrap(*args, n_boot=1999, beta0=inside, ci=False).p_value > 0.05


def test_twfe_switches_to_the_bootstrap_below_ten_treated_clusters():
    few = _panel(0, n_treated=1, effect=0.0)
    r = twfe(few.y.to_numpy(), few.unit.to_numpy(), few.period.to_numpy(), few.treat.to_numpy())
    assert r.extra["inference"] == "wild" and r.extra["wild_bootstrap"]["n_boot"] == 9999
    assert r.p_value == r.extra["wild_bootstrap"]["p_value"] != r.extra["p_value_crv1"]
    assert tuple(r.ci) == tuple(r.extra["wild_bootstrap"]["ci"])
    checks = {c.name: c for c in r.diagnostics}
    assert checks["treated_clusters"].status == "warn" and "1 treated" in checks["treated_clusters"].message
    assert "wild cluster bootstrap" in checks["inference"].message and "CRV1" in checks["inference"].message
    # same seed, same answer; a different seed moves a Monte Carlo p-value
    again = twfe(few.y.to_numpy(), few.unit.to_numpy(), few.period.to_numpy(), few.treat.to_numpy())
    assert again.p_value == r.p_value
    other = twfe(few.y.to_numpy(), few.unit.to_numpy(), few.period.to_numpy(), few.treat.to_numpy(), seed=1)
    assert other.p_value != r.p_value and abs(other.p_value - r.p_value) < 0.03
    many = _panel(0, n_treated=15)
    r2 = twfe(many.y.to_numpy(), many.unit.to_numpy(), many.period.to_numpy(), many.treat.to_numpy())
    assert r2.extra["inference"] == "cluster" and r2.p_value == r2.extra["p_value_crv1"]
    assert {c.name: c.status for c in r2.diagnostics}["treated_clusters"] == "pass"
    forced = twfe(few.y.to_numpy(), few.unit.to_numpy(), few.period.to_numpy(), few.treat.to_numpy(), inference="cluster")
    assert forced.p_value == r.extra["p_value_crv1"]
    assert 'inference="wild"' in {c.name: c for c in forced.diagnostics}["treated_clusters"].message
    with pytest.raises(ValueError, match="'inference' parameter"):
        twfe(few.y.to_numpy(), few.unit.to_numpy(), few.period.to_numpy(), few.treat.to_numpy(), inference="bootstrap")


def test_webb_weights_below_twelve_clusters():
    df = _panel(3, N=11, n_treated=2, effect=0.0)
    r = twfe(df.y.to_numpy(), df.unit.to_numpy(), df.period.to_numpy(), df.treat.to_numpy(), n_boot=999)
    assert r.extra["wild_bootstrap"]["weights"] == "webb"
    df = _panel(3, N=12, n_treated=2, effect=0.0)
    r = twfe(df.y.to_numpy(), df.unit.to_numpy(), df.period.to_numpy(), df.treat.to_numpy(), n_boot=999)
    assert r.extra["wild_bootstrap"]["weights"] == "rademacher"


def test_treated_cluster_check_thresholds():
    assert treated_cluster_check(9, 40).status == "warn"
    assert treated_cluster_check(10, 40).status == "pass"
    assert treated_cluster_check(40, 9).status == "warn"
    assert "untreated" in treated_cluster_check(40, 9).message


def _rejection_rates(n_treated: int, effect: float, reps: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    N, T = 30, 10
    u = np.repeat(np.arange(N), T)
    t = np.tile(np.arange(T), N)
    D = ((u < n_treated) & (t >= T // 2)).astype(float)
    wild = crv1 = 0
    for _ in range(reps):
        y = rng.normal(size=N)[u] + 0.1 * t + effect * D + rng.normal(size=N * T)
        r = twfe(y, u, t, D, inference="wild", n_boot=999, seed=rng)
        wild += r.p_value < 0.05
        crv1 += r.extra["p_value_crv1"] < 0.05
    return wild / reps, crv1 / reps


def test_one_treated_cluster_null_rejections_wild_versus_crv1():
    # MacKinnon & Webb (2017): one treated cluster of 30, true null. Measured: wild 0.000,
    # CRV1 ~0.68 (300 panels). The bootstrap test is conservative there, CRV1 wildly liberal.
    wild, crv1 = _rejection_rates(1, 0.0, 300, 7)
    assert wild < 0.10
    assert crv1 > wild
    assert crv1 > 0.3


def test_six_treated_clusters_size_and_power():
    # With 6 of 30 treated the restricted bootstrap is close to its nominal size and still has
    # power: measured size 0.043 (300 panels); binomial SD at 5% is 0.013.
    wild0, _ = _rejection_rates(6, 0.0, 300, 8)
    assert 0.01 <= wild0 <= 0.09
    wild1, _ = _rejection_rates(6, 1.0, 100, 9)
    assert wild1 > 0.6


def test_auto_stays_with_crv1_above_the_cluster_cap_and_says_so(monkeypatch):
    import insightroi.stats._did as did

    monkeypatch.setattr(did, "WILD_AUTO_MAX_CLUSTERS", 20)
    few = _panel(0, n_treated=1)
    r = twfe(few.y.to_numpy(), few.unit.to_numpy(), few.period.to_numpy(), few.treat.to_numpy())
    assert r.extra["inference"] == "cluster" and "wild_bootstrap" not in r.extra
    msg = {c.name: c for c in r.diagnostics}["treated_clusters"].message
    assert "Not run automatically: 30 clusters" in msg


def test_clusters_coarser_than_units_equal_pyfixest_exactly():
    # 36 units in 12 regions, clustered by region: the unit effects are nested in the clusters
    # but several units share one, so the bootstrap must re-project the fixed effects for every
    # draw (full enumeration again, 2^12 sign vectors on both sides). Measured: 0.0249 on both
    # sides, against CRV1 0.0055.
    pf = pytest.importorskip("pyfixest")
    pytest.importorskip("wildboottest")
    df = _panel(6, N=36, T=6, n_treated=9, effect=0.3).assign(region=lambda d: d.unit // 3)
    f = pf.feols("y ~ treat | unit + period", data=df, vcov={"CRV1": "region"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = f.wildboottest(reps=9999, param="treat", cluster="region", weights_type="rademacher", impose_null=True, seed=1)
    r = twfe(df.y.to_numpy(), df.unit.to_numpy(), df.period.to_numpy(), df.treat.to_numpy(), cluster=df.region.to_numpy(),
             weights="rademacher")
    assert r.extra["inference"] == "wild" and r.extra["n_treated_clusters"] == 3
    assert r.extra["wild_bootstrap"]["full_enumeration"]
    assert abs(r.p_value - float(ref["Pr(>|t|)"])) <= 1 / 4096 + 1e-12
    assert 0.02 < r.p_value < 0.98

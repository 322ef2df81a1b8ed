"""Claim validation: parsing, verdicts on simulated panels with known truth, and the CLI on a real store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from insightroi.errors import DataError
from insightroi.experiments import parse_claim, validate_claim
from insightroi.stats import ratio_ancova


@pytest.mark.parametrize(
    "text, direction, magnitude, kind",
    [
        ("negative reviews down 40%", "decrease", 0.40, "relative"),
        ("Tickets per 1000 orders fell by 2.5 points", "decrease", 2.5, "absolute"),
        ("refunds -12%", "decrease", 0.12, "relative"),
        ("conversion up 3 percent", "increase", 0.03, "relative"),
        ("complaints halved", "decrease", 0.50, "relative"),
        ("defect mentions per 1000 feedback were reduced by 7", "decrease", 7.0, "absolute"),
    ],
)
def test_parse_claim(text, direction, magnitude, kind):
    c = parse_claim(text)
    assert (c.direction, c.kind) == (direction, kind)
    assert c.magnitude == pytest.approx(magnitude)


@pytest.mark.parametrize("text", ["negative reviews 40%", "reviews went down a lot", "reviews down 140%"])
def test_parse_claim_refuses(text):
    with pytest.raises(DataError):
        parse_claim(text)


def sim_panel(seed, effect=0.0, spike=0.0, n_units=40, n_weeks=26, rollout=16, ticket_effect=None):
    """Unit x week panel: orders (den), negative reviews (num), tickets; seasonality common to all.

    ``effect``: relative change of the treated units' review rate from ``rollout`` on.
    ``spike``: relative jump of the treated units' rate in the 4 weeks just before ``rollout``.
    """
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(n_units), n_weeks)
    w = np.tile(np.arange(n_weeks), n_units)
    tr = u < n_units // 2
    den = rng.poisson(2000 * np.exp(rng.normal(0, 0.3, n_units))[u])
    season = 1 + 0.2 * np.sin(2 * np.pi * w / 26)
    base = 10 * np.exp(rng.normal(0, 0.2, n_units))[u] * season
    mult = np.where(tr & (w >= rollout), 1 + effect, 1.0) * np.where(tr & (w >= rollout - 4) & (w < rollout), 1 + spike, 1.0)
    num = rng.poisson(den * base * mult / 1000)
    te = 0.7 * effect if ticket_effect is None else ticket_effect
    tickets = rng.poisson(den * 30 * season * np.where(tr & (w >= rollout), 1 + te, 1.0) / 1000)
    return pd.DataFrame(dict(unit=u, period=w, num=num, den=den, treated=tr, tickets=tickets))


ADJ = {"tickets_per_order": ("tickets", "den", "decrease")}


def test_claim_from_a_spike_is_not_supported():
    # No true effect; the treated units spiked 60% in the 4 weeks before rollout, so a naive
    # 4-week before/after shows about -40%.
    df = sim_panel(1, effect=0.0, spike=0.6)
    rep = validate_claim("negative reviews down 40%", df, rollout=16, scale=1000, kpi="neg_per_1000", adjacent=ADJ)
    assert rep.relative_change < -0.3  # the naive before/after the claim came from
    assert rep.regression_to_mean.status == "fail"
    assert rep.verdict == "not supported"
    assert abs(rep.incremental_relative) < 0.15
    assert rep.denominator == "den" and rep.numerator == "num"
    assert any("spike" in r or "times the largest" in r for r in rep.reasons)
    json.dumps(rep.to_dict())  # JSON-able


def test_true_effect_claim_is_supported():
    df = sim_panel(2, effect=-0.2)
    rep = validate_claim("negative reviews down 20%", df, rollout=16, scale=1000, kpi="neg_per_1000", adjacent=ADJ)
    assert rep.verdict == "supported", rep.summary()
    lo, hi = rep.incremental_relative_ci
    assert lo <= -0.2 <= hi
    assert rep.persistence.status == "pass"
    assert rep.triangulation.status == "pass"
    assert rep.regression_to_mean.status == "pass"
    assert "SUPPORTED" in rep.summary()


def test_overstated_claim_of_a_real_effect():
    df = sim_panel(3, effect=-0.2)
    rep = validate_claim("negative reviews halved", df, rollout=16, scale=1000, adjacent=ADJ)
    assert rep.verdict == "not supported"  # -50% is more than 1.5 x the interval's largest effect
    rep2 = validate_claim("negative reviews down 28%", df, rollout=16, scale=1000, adjacent=ADJ)
    assert rep2.verdict in ("weak", "supported")


def test_fading_effect_and_contradicting_signals_downgrade():
    df = sim_panel(4, effect=-0.25, n_weeks=40, ticket_effect=0.3)
    # the effect vanishes after 8 weeks
    late = df.treated & (df.period >= 24)
    rng = np.random.default_rng(0)
    df.loc[late, "num"] = rng.poisson(df.loc[late, "num"] / 0.75)
    rep = validate_claim("negative reviews down 15%", df, rollout=16, scale=1000, window=8, adjacent=ADJ)
    assert rep.triangulation.status == "fail"  # tickets went up significantly
    assert rep.persistence.status in ("warn", "fail")
    assert rep.verdict != "supported"


def test_no_effect_claims_are_rarely_supported():
    # False-positive rate of the verdict under no effect and no spike: "supported" needs a
    # significant DiD, so it should happen at most ~alpha/2 of the time.
    supported = 0
    reps = 40
    for s in range(reps):
        df = sim_panel(100 + s, effect=0.0, n_units=30, n_weeks=20, rollout=12)
        rep = validate_claim("negative reviews down 10%", df, rollout=12, scale=1000)
        supported += rep.verdict == "supported"
    assert supported / reps <= 0.1


def test_validate_claim_input_errors():
    df = sim_panel(5)
    with pytest.raises(DataError):
        validate_claim("down 10%", df.drop(columns="den"), rollout=16)
    with pytest.raises(DataError):
        validate_claim("down 10%", df.assign(treated=True), rollout=16)


def test_validate_claim_cli_on_a_store(tmp_path):
    from insightroi.cli import app
    from helpers.simstore import simulate_experiment_tables, write_tables
    from insightroi.program import parse_program, starter_program_text
    from insightroi.store import open_store

    text = starter_program_text().replace("end = 2026-03-31", "end = 2025-10-27").replace("pre_period_days = 90", "pre_period_days = 84")
    prog_path = tmp_path / "insightroi.toml"
    prog_path.write_text(text)
    program = parse_program(text)
    url = f"duckdb:///{tmp_path / 'q.duckdb'}"
    st = open_store(url)
    write_tables(st, simulate_experiment_tables(program, n_units=40, orders_per_unit_day=4.0, negative_review_rate=0.08, effect=-0.3, seed=3))
    st.close()
    runner = CliRunner()
    res = runner.invoke(app, ["validate-claim", "negative reviews down 30%", "--kpi", "negative_reviews_per_1000_orders",
                              "--store", url, "--program", str(prog_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["verdict"] == "supported", out["reasons"]
    assert out["denominator"] == "orders"
    assert out["incremental"]["ci"][1] < 0
    # saved as a result for the report
    st = open_store(url)
    assert any(r["name"] == "negative_reviews_per_1000_orders" for r in st.load_results("claim"))
    st.close()
    bad = runner.invoke(app, ["validate-claim", "negative reviews down 30%", "--kpi", "no_such_kpi", "--store", url, "--program", str(prog_path)])
    assert bad.exit_code == 1


# ---- the validator's estimator: ratio_ancova ---------------------------------------------------


def _ancova_draws(rng, reps, n_units, effect):
    """Unit-level post/pre sums with transient bursts (the demo's product defects), in a batch.

    Counterfactual counts are Poisson; treated units' actual counts are a binomial thinning of
    them (common random numbers), so the finite-population effect on the treated is known
    exactly for each draw, as the demo world's truth is.
    """
    den_pre = rng.poisson(3000 * np.exp(rng.normal(0, 0.5, (reps, n_units))))
    den_post = rng.poisson(den_pre * 1.5)
    quality = np.exp(rng.normal(0, 0.3, (reps, n_units)))
    burst_pre = np.where(rng.random((reps, n_units)) < 0.3, rng.uniform(1, 4, (reps, n_units)), 0.0)
    burst_post = np.where(rng.random((reps, n_units)) < 0.3, rng.uniform(1, 4, (reps, n_units)), 0.0)
    num_pre = rng.poisson(den_pre * 0.01 * (quality + burst_pre))
    num0 = rng.poisson(den_post * 0.01 * (quality + burst_post))
    tickets_pre = rng.poisson(den_pre * 0.03 * quality)
    noise_cov = rng.normal(size=(reps, n_units))
    treated = np.zeros((reps, n_units), bool)
    treated[:, : n_units // 2] = True
    treated = np.take_along_axis(treated, rng.random((reps, n_units)).argsort(axis=1), axis=1)
    num1 = np.where(treated, rng.binomial(num0, 1 + effect), num0)
    att = ((num1 - num0) * treated).sum(axis=1) / (den_post * treated).sum(axis=1) * 1000
    cov = np.stack([num_pre / den_pre, tickets_pre / den_pre, noise_cov], axis=2)
    return num1, den_post, treated, cov, att


def test_ratio_ancova_equals_statsmodels_wls_hc2():
    # Reference: statsmodels WLS (weights = post denominators) with HC2 errors on the same
    # data; the same algebra, so equal to rounding (1e-9).
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(11)
    num, den, tr, cov, _ = _ancova_draws(rng, 1, 60, -0.15)
    num, den, tr, cov = num[0], den[0], tr[0], cov[0]
    r = ratio_ancova(num, den, tr, cov, scale=1000)
    y = num / den * 1000
    Xc = cov - np.average(cov[tr], axis=0, weights=den[tr])
    X = np.column_stack([np.ones_like(y), tr.astype(float), Xc])
    fit = sm.WLS(y, X, weights=den).fit(cov_type="HC2")
    assert r.estimate == pytest.approx(fit.params[1], rel=1e-9)
    assert r.se == pytest.approx(fit.bse[1], rel=1e-9)
    # Without covariates it is exactly the ratio-of-sums difference (the KPI as defined).
    r0 = ratio_ancova(num, den, tr, scale=1000)
    assert r0.estimate == pytest.approx((num[tr].sum() / den[tr].sum() - num[~tr].sum() / den[~tr].sum()) * 1000, rel=1e-12)
    assert r.extra["variance_reduction"] > 0.1  # the pre-period rate predicts the post level


@pytest.mark.parametrize("effect", [-0.15, 0.0])
def test_ratio_ancova_coverage_and_false_positives(effect):
    # 95% interval coverage of the effect on the treated, and A/A rejection rate, over 600
    # randomised panels of 80 units with bursty outcomes and one pure-noise covariate. The
    # target is the expected effect on the treated (mean over draws): against each draw's own
    # finite-population effect the usual variance misses the unobservable Var(Y0 - Y1) of the
    # treated (Imbens & Rubin 2015, ch. 6) and coverage is ~93%. Binomial SE of a 95% rate over
    # 600 draws is 0.9 pp, so 0.92-0.975 is about 3 SE either side.
    rng = np.random.default_rng(7 if effect else 8)
    reps = 600
    num, den, tr, cov, att = _ancova_draws(rng, reps, 80, effect)
    target = att.mean()
    cover = reject = 0
    for i in range(reps):
        r = ratio_ancova(num[i], den[i], tr[i], cov[i], scale=1000)
        cover += r.ci[0] <= target <= r.ci[1]
        reject += r.p_value < 0.05
    assert 0.92 <= cover / reps <= 0.975
    if effect == 0.0:
        assert reject / reps <= 0.075
    else:
        assert reject / reps > 0.1  # and it has some power at 15%


def test_claim_from_a_bad_month_long_before_rollout_is_found():
    # No effect: the treated units had a bad month (+30%) in weeks 6-9, at the seasonal peak,
    # and the claim is the before/after of that month against the first 4 weeks after rollout
    # (not the weeks just before rollout). The validator finds that window, flags it
    # (regression to the mean) and does not support the claim.
    df = sim_panel(22, effect=0.0, n_weeks=30, rollout=20)
    bad = df.treated & df.period.between(6, 9)
    df.loc[bad, "num"] = (df.loc[bad, "num"] * 1.3).round()
    t = df[df.treated].groupby("period")[["num", "den"]].sum()
    after = t.loc[20:23, "num"].sum() / t.loc[20:23, "den"].sum()
    before = t.loc[6:9, "num"].sum() / t.loc[6:9, "den"].sum()
    claim = f"negative reviews down {1 - after / before:.0%}"
    rep = validate_claim(claim, df, rollout=20, scale=1000, adjacent=ADJ)
    assert rep.windows["before"] == [6, 9]
    assert rep.windows["before_search"]["reproduced"]
    assert rep.regression_to_mean.status == "fail"
    assert rep.verdict == "not supported", rep.summary()
    assert any(r.startswith("Regression to the mean") for r in rep.reasons)
    lo, hi = rep.incremental_relative_ci
    assert lo <= 0.0 <= hi

"""Simulation tests: A/A false-positive rate, CI coverage, known-effect recovery, CUPED reduction.

Sizes and tolerances
--------------------
Data are generated vectorised (simulations x units matrices) and reduced to sufficient
statistics; only the estimator call loops. With S = 4,000 simulations the Monte Carlo standard
error of a 5% rate is 0.34 points, so the 4-6% (A/A) and 94-96% (coverage) bands required by
issue 5 are about 3 standard errors wide: a calibrated estimator passes, a miscalibrated one
(e.g. ignoring clustering, which gives ~15% false positives here) fails. Seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from insightroi.stats import (
    Proportion,
    Ratio,
    RatioRegressionAdjusted,
    RegressionAdjusted,
    SampleMean,
    switchback,
    switchback_blocks,
    switchback_power,
    two_arm,
)

S = 4000


def _rates(results, truth):
    cover = np.mean([r.ci[0] <= truth <= r.ci[1] for r in results])
    reject = np.mean([r.p_value < 0.05 for r in results])
    bias = np.mean([r.estimate for r in results]) - truth
    return cover, reject, bias


def _means(rng, effect):
    n_c, n_t = 150, 120
    xc = rng.gamma(2.0, 5.0, (S, n_c))  # skewed outcome, mean 10
    xt = rng.gamma(2.0, 5.0, (S, n_t)) + effect
    out = []
    for i in range(S):
        c = SampleMean(n_c, xc[i].sum(), (xc[i] ** 2).sum())
        t = SampleMean(n_t, xt[i].sum(), (xt[i] ** 2).sum())
        out.append((c, t))
    return out


def _props(rng, p_t):
    n = 800
    sc = rng.binomial(n, 0.1, S)
    st = rng.binomial(n, p_t, S)
    return [(Proportion(n, a), Proportion(n, b)) for a, b in zip(sc, st)]


def _cluster_ratio(rng, rel_effect, g=(40, 40)):
    """Cluster-level sums: cluster sizes vary, each cluster has its own rate (ICC > 0)."""
    pairs = []
    gc, gt = g
    mc = rng.poisson(60, (S, gc)) + 5
    mt = rng.poisson(60, (S, gt)) + 5
    rc = 0.1 * rng.gamma(8.0, 1 / 8.0, (S, gc))
    rt = 0.1 * (1 + rel_effect) * rng.gamma(8.0, 1 / 8.0, (S, gt))
    yc = rng.binomial(mc, np.minimum(rc, 1)).astype(float)
    yt = rng.binomial(mt, np.minimum(rt, 1)).astype(float)
    for i in range(S):
        pairs.append((Ratio.from_arrays(yc[i], mc[i]), Ratio.from_arrays(yt[i], mt[i])))
    return pairs


def test_means_welch_aa_and_coverage():
    rng = np.random.default_rng(10)
    aa = [two_arm(c, t) for c, t in _means(rng, 0.0)]
    _, fpr, _ = _rates(aa, 0.0)
    assert 0.04 <= fpr <= 0.06
    eff = [two_arm(c, t) for c, t in _means(rng, 1.5)]
    cover, power_, bias = _rates(eff, 1.5)
    assert 0.94 <= cover <= 0.96
    assert abs(bias) < 0.05  # SE of the mean estimate over 4,000 runs is ~0.016
    rel = [two_arm(c, t, relative=True) for c, t in _means(rng, 1.5)]
    cover_rel, _, _ = _rates(rel, 0.15)
    assert 0.94 <= cover_rel <= 0.96


def test_proportions_aa_and_coverage():
    rng = np.random.default_rng(11)
    aa = [two_arm(c, t, test="z") for c, t in _props(rng, 0.1)]
    assert 0.04 <= _rates(aa, 0.0)[1] <= 0.06
    eff = [two_arm(c, t, test="z") for c, t in _props(rng, 0.13)]
    cover, _, bias = _rates(eff, 0.03)
    assert 0.94 <= cover <= 0.96
    assert abs(bias) < 0.002


def test_cluster_ratio_aa_coverage_and_naive_comparison():
    rng = np.random.default_rng(12)
    aa_pairs = _cluster_ratio(rng, 0.0)
    aa = [two_arm(c, t) for c, t in aa_pairs]
    assert 0.04 <= _rates(aa, 0.0)[1] <= 0.06
    eff = [two_arm(c, t, relative=True) for c, t in _cluster_ratio(rng, -0.2)]
    cover, _, bias = _rates(eff, -0.2)
    assert 0.94 <= cover <= 0.96
    assert abs(bias) < 0.01
    # The test can fail: analysing the same A/A data as independent orders (binomial SE,
    # ignoring the clusters) rejects far more often than alpha.
    naive = []
    for c, t in aa_pairs[:1000]:
        pc, pt = c.num_sum / c.den_sum, t.num_sum / t.den_sum
        se = math.sqrt(pc * (1 - pc) / c.den_sum + pt * (1 - pt) / t.den_sum)
        naive.append(abs(pt - pc) / se > 1.96)
    assert np.mean(naive) > 0.08


def test_cluster_randomized_few_clusters_unbalanced():
    rng = np.random.default_rng(13)
    eff = [two_arm(c, t) for c, t in _cluster_ratio(rng, 0.0, g=(30, 20))]
    cover, fpr, _ = _rates(eff, 0.0)
    assert 0.04 <= fpr <= 0.06 and 0.94 <= cover <= 0.96


def _cuped_data(rng, rho, effect, n=400):
    pre = rng.standard_normal((S, 2 * n))
    post = rho * pre + math.sqrt(1 - rho**2) * rng.standard_normal((S, 2 * n)) + 5.0
    post[:, n:] += effect
    return pre, post, n


def test_cuped_variance_reduction_and_coverage():
    rng = np.random.default_rng(14)
    rho = 0.7
    pre, post, n = _cuped_data(rng, rho, 0.1)
    adj, raw, vr = [], [], []
    for i in range(S):
        c = RegressionAdjusted.from_arrays(post[i, :n], pre[i, :n])
        t = RegressionAdjusted.from_arrays(post[i, n:], pre[i, n:])
        r = two_arm(c, t)
        adj.append(r)
        vr.append(r.extra["variance_reduction"])
        raw.append(two_arm(c, t, cuped=False).estimate)
    est = np.array([r.estimate for r in adj])
    empirical = np.var(est) / np.var(raw)
    assert empirical == pytest.approx(1 - rho**2, rel=0.05)
    assert np.mean(vr) == pytest.approx(rho**2, rel=0.05)
    cover, _, bias = _rates(adj, 0.1)
    assert 0.94 <= cover <= 0.96
    assert abs(bias) < 0.005


def test_cuped_ratio_aa_and_coverage():
    rng = np.random.default_rng(15)
    g = 60
    m_pre = rng.poisson(80, (S, 2 * g)) + 5
    m_post = rng.poisson(80, (S, 2 * g)) + 5
    rate = 0.05 * rng.gamma(5.0, 1 / 5.0, (S, 2 * g))  # persistent cluster rate: pre predicts post
    y_pre = rng.binomial(m_pre, rate).astype(float)
    mult = np.ones((S, 2 * g))
    mult[:, g:] = 0.8
    y_post = rng.binomial(m_post, rate * mult).astype(float)
    res, vr = [], []
    for i in range(S):
        c = RatioRegressionAdjusted.from_arrays(y_post[i, :g], m_post[i, :g], y_pre[i, :g], m_pre[i, :g])
        t = RatioRegressionAdjusted.from_arrays(y_post[i, g:], m_post[i, g:], y_pre[i, g:], m_pre[i, g:])
        r = two_arm(c, t, relative=True)
        res.append(r)
        vr.append(r.extra["variance_reduction"])
    # The truth of the relative effect of ratio-of-sums is -0.2 up to the sampling of sizes.
    cover, _, bias = _rates(res, -0.2)
    assert 0.94 <= cover <= 0.96
    assert abs(bias) < 0.01
    assert np.mean(vr) > 0.1  # the pre-period helps


def test_switchback_randomization_inference_aa_under_autocorrelation():
    rng = np.random.default_rng(16)
    nb, sims = 40, 1000
    eps = rng.standard_normal((sims, nb))
    y = np.empty_like(eps)
    y[:, 0] = eps[:, 0]
    for b in range(1, nb):
        y[:, b] = 0.6 * y[:, b - 1] + 0.8 * eps[:, b]
    z = np.zeros(nb, dtype=bool)
    z[rng.permutation(nb)[: nb // 2]] = True
    ps = []
    for i in range(sims):
        zi = rng.permutation(z)  # one fresh block assignment per simulated experiment
        ps.append(switchback(y[i], zi, n_permutations=400, seed=i).p_value)
    fpr = np.mean(np.array(ps) < 0.05)
    # 1,000 runs: Monte Carlo SE 0.7 points; a band of about +-2.5 SE around 5%.
    assert 0.033 <= fpr <= 0.067
    eff = [switchback(y[i] + 1.0 * zi, zi, n_permutations=200, seed=i)
           for i, zi in enumerate(rng.permutation(z) for _ in range(300))]
    assert np.mean([r.p_value < 0.05 for r in eff]) > 0.5
    assert np.mean([r.estimate for r in eff]) == pytest.approx(1.0, abs=0.1)


def test_switchback_blocks_burn_in_and_power():
    t = np.arange(0, 96, 0.5)  # observations every half hour over 4 blocks of 24 h
    y = np.ones_like(t)
    arms = np.array([True, True, False, True])
    means, kept = switchback_blocks(t, y, arms, block_hours=24, burn_in_hours=6)
    # Block 0 starts the experiment (burn-in), block 1 continues the arm (no burn-in), blocks 2-3 switch.
    assert kept.tolist() == [36, 48, 36, 36]
    assert np.allclose(means, 1.0)
    p0 = switchback_power(0.0, n_blocks=40, block_sd=1.0, n_simulations=4000, seed=1)
    p1 = switchback_power(1.0, n_blocks=40, block_sd=1.0, n_simulations=4000, seed=1)
    assert 0.04 <= p0 <= 0.06
    # Independent blocks, 20 per arm, d = 1: the t-test power is about 0.87.
    assert 0.8 <= p1 <= 0.92
    p_carry = switchback_power(1.0, n_blocks=40, block_sd=1.0, carryover=0.5, n_simulations=4000, seed=1)
    assert p_carry < p1


def test_peeking_at_every_look_keeps_the_sequential_error_rate_below_alpha():
    """A/A, 20 looks as data accrue to 2,000 units per arm: reading the fixed-horizon t-test at every
    look rejects far more often than alpha (the reason to switch), the confidence sequence stays
    below it at every look together (Waudby-Smith et al.; gbstats' sequential engine)."""
    from insightroi.stats import SampleMean, two_arm

    rng = np.random.default_rng(20261202)
    sims, looks, per_look = 1000, 20, 100
    x = rng.normal(10.0, 3.0, size=(sims, 2, looks * per_look))
    s1 = x.reshape(sims, 2, looks, per_look).sum(axis=3).cumsum(axis=2)
    s2 = (x ** 2).reshape(sims, 2, looks, per_look).sum(axis=3).cumsum(axis=2)
    ever_fixed = ever_seq = 0
    for i in range(sims):
        hit_f = hit_s = False
        for j in range(looks):
            n = (j + 1) * per_look
            c, t = SampleMean(n, s1[i, 0, j], s2[i, 0, j]), SampleMean(n, s1[i, 1, j], s2[i, 1, j])
            hit_f = hit_f or two_arm(c, t).p_value < 0.05
            hit_s = hit_s or two_arm(c, t, sequential_tuning=4000).p_value < 0.05
        ever_fixed += hit_f
        ever_seq += hit_s
    print(f"ever rejected over 20 looks: fixed {ever_fixed / sims:.3f}, sequential {ever_seq / sims:.3f}")
    # Peeking 20 times at a fixed-horizon test: about 25% (Armitage et al. 1969); 3 SE below is 0.21.
    assert ever_fixed / sims > 0.18
    # Always valid: at most alpha over all looks (the sequence is conservative; 3 SE above 0.05 is 0.07).
    assert ever_seq / sims < 0.05

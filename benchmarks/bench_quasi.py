#!/usr/bin/env python
"""Quasi-experimental estimators vs peers, same data, same run.

* TWFE DiD with SEs clustered by unit: ours (numpy within-demeaning, ``insightroi.stats.twfe``)
  vs pyfixest ``feols("y ~ D | unit + time", vcov={"CRV1": "unit"})`` vs linearmodels
  ``PanelOLS(entity_effects, time_effects).fit(cov_type="clustered", cluster_entity=True)``.
  full: 10,000 units x 100 periods (1,000,000 rows); quick: 1,000 x 20.
* Synthetic control with predictor weights (V) chosen by Nelder-Mead: ours (``synth_fit``) vs
  pysyncon ``Synth.fit`` (Nelder-Mead, equal start: the same algorithm with an SLSQP inner solver).
  full: 40 units x 100 periods (70 pre-periods, 7 predictors); quick: 20 x 40.
* Synthetic control at a FIXED V (equal work): the donor-weight problem alone, matching the
  pre-period outcomes with V = I, ours (``simplex_weights``, an NNLS with a penalty row) vs
  pysyncon's ``Synth.w_optimize`` (SLSQP) with its objective tolerance tightened to 1e-15 so both
  reach the same optimum; the weights are asserted equal to 1e-5 (SLSQP's floor) and the
  peer's loss no lower than ours before any time is recorded.
  The outcomes, not the 7 predictors, because with fewer predictors than donors the weights are
  not unique (many simplex points share the optimal loss) and no equality could be asserted.

Every row alternates ours and the peer (5 pairs, A B B A ...), one native thread each
(``_interleave.pin_threads``), and reports CPU seconds as medians with the ratio's min and max.

Usage: ``python benchmarks/bench_quasi.py [quick|full]``.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd

from _interleave import interleave, pin_threads

SIZES = {"quick": {"twfe": (1_000, 20), "synth": (10, 30)}, "full": {"twfe": (10_000, 100), "synth": (40, 100)}}
# Nelder-Mead iteration budget for the V search, the same for both (pysyncon's SLSQP inner solve
# makes its default 1000-iteration search take minutes; ours does up to 2 runs of this budget).
SYNTH_MAXITER = 200


PAIRS = 5
# Fixed-V weight solves per timed call: one solve takes well under a millisecond.
FIXED_V_SOLVES = 200


def _twfe_rows(n_units: int, n_periods: int) -> list[dict]:
    from insightroi.stats import twfe

    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(n_units), n_periods)
    t = np.tile(np.arange(n_periods), n_units)
    D = ((u < n_units // 2) & (t >= n_periods // 2)).astype(float)
    y = rng.normal(size=n_units)[u] + rng.normal(size=n_periods)[t] + 0.3 * D + rng.normal(size=u.size)
    rows = []
    size = f"{n_units:,} units x {n_periods} periods"
    df = pd.DataFrame({"y": y, "D": D, "unit": u, "time": t})

    def ours():
        return twfe(y, u, t, D)

    try:
        import pyfixest as pf

        def peer():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pf.feols("y ~ D | unit + time", data=df, vcov={"CRV1": "unit"})

        # interleave's warm-up call also pays pyfixest's numba compilation outside the timing.
        pairs = interleave(ours, peer, pairs=PAIRS)
        fit, res = pairs.peer_out, pairs.ours_out
        diff = abs(float(fit.coef().iloc[0]) - res.estimate) + abs(float(fit.se().iloc[0]) - res.se)
        rows.append({"benchmark": f"twfe_did_cluster_se ({size}, CPU s, median)", "ours_s": pairs.ours_s,
                     "peer": "pyfixest", "peer_s": pairs.peer_s, "ratio": pairs.ratio,
                     "note": f"{pairs.describe()}; |coef diff| + |se diff| = {diff:.1e}"})
    except ImportError:
        rows.append({"benchmark": f"twfe_did_cluster_se ({size})", "ours_s": None, "peer": None, "peer_s": None,
                     "ratio": None, "note": "pyfixest not installed"})
    try:
        from linearmodels.panel import PanelOLS

        pdf = df.set_index(["unit", "time"])

        def lm():
            return PanelOLS(pdf.y, pdf[["D"]], entity_effects=True, time_effects=True).fit(
                cov_type="clustered", cluster_entity=True)

        pairs = interleave(ours, lm, pairs=PAIRS)
        diff = abs(float(pairs.peer_out.params.iloc[0]) - pairs.ours_out.estimate)
        rows.append({"benchmark": f"twfe_did_cluster_se ({size}, CPU s, median)", "ours_s": pairs.ours_s,
                     "peer": "linearmodels", "peer_s": pairs.peer_s, "ratio": pairs.ratio,
                     "note": f"{pairs.describe()}; |coef diff| = {diff:.1e} (linearmodels' SE uses its own "
                             "small-sample factor)"})
    except ImportError:
        rows.append({"benchmark": f"twfe_did_cluster_se ({size})", "ours_s": None, "peer": None, "peer_s": None,
                     "ratio": None, "note": "linearmodels not installed (bench-only peer)"})
    return rows


def _synth_rows(n_units: int, n_periods: int) -> list[dict]:
    from insightroi.stats import synth_fit

    rng = np.random.default_rng(1)
    n_pre = int(n_periods * 0.7)
    f = rng.normal(size=(3, n_units))
    lam = np.cumsum(rng.normal(size=(n_periods, 3)), axis=0)
    Y = 50 + lam @ f + rng.normal(0, 0.5, (n_periods, n_units))
    cov = rng.normal(size=(3, n_units)) + 0.3 * f
    # 7 predictors: 3 covariates, 4 pre-period outcome block means
    blocks = np.array_split(np.arange(n_pre), 4)
    P = np.vstack([cov] + [Y[b].mean(axis=0)[None, :] for b in blocks])
    X1, X0 = P[:, 0], P[:, 1:]
    Z1, Z0 = Y[:n_pre, 0], Y[:n_pre, 1:]
    size = f"{n_units} units x {n_periods} periods, 7 predictors"

    def ours():
        return synth_fit(Z1, Z0, X1, X0, maxiter=SYNTH_MAXITER)

    try:
        from pysyncon import Synth
    except ImportError:
        return [{"benchmark": f"synthetic_control_fit ({size})", "ours_s": None, "peer": None, "peer_s": None,
                 "ratio": None, "note": "pysyncon not installed (bench-only peer)"}]
    names = [f"d{j}" for j in range(1, n_units)]
    X0d = pd.DataFrame(X0, columns=names)
    X1s = pd.Series(X1, name="treated")
    Z0d = pd.DataFrame(Z0, columns=names)
    Z1s = pd.Series(Z1, name="treated")

    def peer():
        s = Synth()
        s.fit(X0=X0d, X1=X1s, Z0=Z0d, Z1=Z1s, optim_method="Nelder-Mead", optim_initial="equal",
              optim_options={"maxiter": SYNTH_MAXITER})
        return s

    pairs = interleave(ours, peer, pairs=PAIRS)
    fit, s = pairs.ours_out, pairs.peer_out
    rows = [{"benchmark": f"synthetic_control_fit, V search ({size}, CPU s, median)", "ours_s": pairs.ours_s,
             "peer": "pysyncon", "peer_s": pairs.peer_s, "ratio": pairs.ratio,
             "note": (f"{pairs.describe()}; Nelder-Mead budget {SYNTH_MAXITER} iterations each (different "
                      f"searches, so not equal work); pre-period MSPE ours {fit['loss_v']:.4g} vs pysyncon "
                      f"{s.loss_V:.4g}")}]
    rows.append(_fixed_v_row(Z1, Z0, f"{n_units} units, {n_pre} pre-periods matched"))
    return rows


def _fixed_v_row(Z1: np.ndarray, Z0: np.ndarray, size: str) -> dict:
    """The donor-weight QP alone at V = I on the pre-period outcomes: equal work, equal answers asserted."""
    from pysyncon import Synth

    from insightroi.stats import simplex_weights

    X1s, X0s = Z1, Z0
    v = np.ones(len(Z1))
    V = np.diag(v)
    opts = {"maxiter": 1000, "ftol": 1e-15}
    w_ours = simplex_weights(X1s, X0s, v)
    w_peer, _ = Synth.w_optimize(V, X0s, X1s, qp_options=opts)
    gap = float(np.max(np.abs(w_ours - w_peer)))
    loss = lambda w: float((X1s - X0s @ w) @ V @ (X1s - X0s @ w))  # noqa: E731
    # 1e-5: SLSQP stops there in the weights even at ftol 1e-15 (its loss is then above the NNLS
    # optimum in the 10th digit); a larger gap, or a peer loss below ours, means different answers.
    if gap > 1e-5 or loss(w_peer) < loss(w_ours) - 1e-12 * loss(w_ours):
        raise AssertionError(f"fixed-V weights differ by {gap:.2e} (loss ours {loss(w_ours):.12g}, "
                             f"pysyncon {loss(w_peer):.12g}): not the same answer, so no timing")

    def ours():
        for _ in range(FIXED_V_SOLVES):
            w = simplex_weights(X1s, X0s, v)
        return w

    def peer():
        for _ in range(FIXED_V_SOLVES):
            w, _ = Synth.w_optimize(V, X0s, X1s, qp_options=opts)
        return w

    pairs = interleave(ours, peer, pairs=PAIRS)
    return {"benchmark": f"synthetic_control weights at fixed V ({size}; {FIXED_V_SOLVES} solves, CPU s, median)",
            "ours_s": pairs.ours_s, "peer": "pysyncon w_optimize (SLSQP, ftol 1e-15)", "peer_s": pairs.peer_s,
            "ratio": pairs.ratio,
            "note": (f"{pairs.describe()}; V = I on the pre-period outcomes, same objective; max |w ours - w peer| = "
                     f"{gap:.1e} (asserted <= 1e-5, SLSQP's floor); loss ours {loss(w_ours):.12g}, peer {loss(w_peer):.12g}")}


def run(scale: str = "quick") -> list[dict]:
    """Benchmark rows for ``scale`` in {"quick", "full"}."""
    if scale not in SIZES:
        raise ValueError(f"The 'scale' parameter must be one of ['quick', 'full']. Got {scale!r} instead.")
    sz = SIZES[scale]
    pin_threads(1)
    return _twfe_rows(*sz["twfe"]) + _synth_rows(*sz["synth"])


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)

#!/usr/bin/env python
"""Quasi-experimental estimators vs peers, same data, same run.

* TWFE DiD with SEs clustered by unit: ours (numpy within-demeaning, ``insightroi.stats.twfe``)
  vs pyfixest ``feols("y ~ D | unit + time", vcov={"CRV1": "unit"})`` vs linearmodels
  ``PanelOLS(entity_effects, time_effects).fit(cov_type="clustered", cluster_entity=True)``.
  full: 10,000 units x 100 periods (1,000,000 rows); quick: 1,000 x 20.
* Synthetic control with predictor weights (V) chosen by Nelder-Mead: ours (``synth_fit``) vs
  pysyncon ``Synth.fit`` (Nelder-Mead, equal start: the same algorithm with an SLSQP inner solver).
  full: 40 units x 100 periods (70 pre-periods, 7 predictors); quick: 20 x 40.

Usage: ``python benchmarks/bench_quasi.py [quick|full]``.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pandas as pd

SIZES = {"quick": {"twfe": (1_000, 20), "synth": (10, 30)}, "full": {"twfe": (10_000, 100), "synth": (40, 100)}}
# Nelder-Mead iteration budget for the V search, the same for both (pysyncon's SLSQP inner solve
# makes its default 1000-iteration search take minutes; ours does up to 2 runs of this budget).
SYNTH_MAXITER = 200


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _twfe_rows(n_units: int, n_periods: int) -> list[dict]:
    from insightroi.stats import twfe

    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(n_units), n_periods)
    t = np.tile(np.arange(n_periods), n_units)
    D = ((u < n_units // 2) & (t >= n_periods // 2)).astype(float)
    y = rng.normal(size=n_units)[u] + rng.normal(size=n_periods)[t] + 0.3 * D + rng.normal(size=u.size)
    ours, ours_s = _timed(lambda: twfe(y, u, t, D))
    rows = []
    size = f"{n_units:,} units x {n_periods} periods"
    df = pd.DataFrame({"y": y, "D": D, "unit": u, "time": t})
    try:
        import pyfixest as pf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # warm-up: pyfixest JIT-compiles its demeaning (numba) on first use; time the warm call
            pf.feols("y ~ D | unit + time", data=df[(df.unit < 10) | (df.unit >= n_units - 10)], vcov={"CRV1": "unit"})
            fit, pf_s = _timed(lambda: pf.feols("y ~ D | unit + time", data=df, vcov={"CRV1": "unit"}))
        diff = abs(float(fit.coef().iloc[0]) - ours.estimate) + abs(float(fit.se().iloc[0]) - ours.se)
        rows.append({"benchmark": f"twfe_did_cluster_se ({size})", "ours_s": ours_s, "peer": "pyfixest", "peer_s": pf_s,
                     "ratio": pf_s / ours_s, "note": f"|coef diff| + |se diff| = {diff:.1e}"})
    except ImportError:
        rows.append({"benchmark": f"twfe_did_cluster_se ({size})", "ours_s": ours_s, "peer": None, "peer_s": None, "ratio": None, "note": "pyfixest not installed"})
    try:
        from linearmodels.panel import PanelOLS

        pdf = df.set_index(["unit", "time"])

        def lm():
            return PanelOLS(pdf.y, pdf[["D"]], entity_effects=True, time_effects=True).fit(cov_type="clustered", cluster_entity=True)

        fit, lm_s = _timed(lm)
        diff = abs(float(fit.params.iloc[0]) - ours.estimate)
        rows.append({"benchmark": f"twfe_did_cluster_se ({size})", "ours_s": ours_s, "peer": "linearmodels", "peer_s": lm_s,
                     "ratio": lm_s / ours_s, "note": f"|coef diff| = {diff:.1e} (linearmodels' SE uses its own small-sample factor)"})
    except ImportError:
        rows.append({"benchmark": f"twfe_did_cluster_se ({size})", "ours_s": ours_s, "peer": None, "peer_s": None, "ratio": None, "note": "linearmodels not installed (bench-only peer)"})
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
    ours, ours_s = _timed(lambda: synth_fit(Z1, Z0, X1, X0, maxiter=SYNTH_MAXITER))
    size = f"{n_units} units x {n_periods} periods, 7 predictors"
    try:
        from pysyncon import Synth

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

        s, peer_s = _timed(peer)
        note = (f"Nelder-Mead budget {SYNTH_MAXITER} iterations each; pre-period MSPE ours {ours['loss_v']:.4g} "
                f"vs pysyncon {s.loss_V:.4g}")
        return [{"benchmark": f"synthetic_control_fit ({size})", "ours_s": ours_s, "peer": "pysyncon", "peer_s": peer_s,
                 "ratio": peer_s / ours_s, "note": note}]
    except ImportError:
        return [{"benchmark": f"synthetic_control_fit ({size})", "ours_s": ours_s, "peer": None, "peer_s": None, "ratio": None,
                 "note": "pysyncon not installed (bench-only peer)"}]


def run(scale: str = "quick") -> list[dict]:
    """Benchmark rows for ``scale`` in {"quick", "full"}."""
    if scale not in SIZES:
        raise ValueError(f"The 'scale' parameter must be one of ['quick', 'full']. Got {scale!r} instead.")
    sz = SIZES[scale]
    return _twfe_rows(*sz["twfe"]) + _synth_rows(*sz["synth"])


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)

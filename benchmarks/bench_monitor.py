#!/usr/bin/env python
"""Drift statistics on rows x 20 columns: insightroi.monitor next to Evidently's data-drift preset.

Data: ``rows`` rows split evenly into a reference and a current window; 15 numeric columns
(normal, lognormal, gamma; the current window shifted on three of them) and 5 categorical columns
(10 levels, one shifted). Same arrays for both tools, in the same run.

Ours: per numeric column PSI on reference deciles + two-sample KS (statistic and asymptotic
p-value); per categorical column PSI + chi-square (counts with np.unique). Evidently 0.7.23:
``Report([DataDriftPreset()])`` with its defaults (for > 1000 rows: Wasserstein distance for
numeric and Jensen-Shannon for categorical columns) -- what a user of the preset runs; the second
peer row forces ``stattest="psi"`` so both compute PSI. Evidently is not installable into the
project venv (it pins plotly < 6 and older numpy/pandas), so it is installed with
``pip install --target .bench-peers --no-deps evidently==0.7.23 dynaconf uuid6 typing-inspect
mypy_extensions deprecation iterative-telemetry appdirs distro ujson nltk regex`` and imported with
its UI package stubbed (see ``_evidently``). Without it the peer is a naive pandas/scipy loop
(``scipy.stats.ks_2samp`` + ``chi2_contingency`` + pandas ``qcut``/``value_counts`` PSI).

"quick" = 1,000,000 rows; "full" = 10,000,000 rows (Evidently capped at ``EVIDENTLY_MAX_ROWS``,
the largest size it ran here within memory and a few minutes; the ratio is reported at that size).
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import numpy as np

from insightroi.monitor import chi_square_counts, ks_two_sample, psi_from_counts, psi_numeric

HERE = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("INSIGHTROI_PEERS", HERE.parent / ".bench-peers"))
SIZES = {"quick": 1_000_000, "full": 10_000_000}
EVIDENTLY_MAX_ROWS = int(os.environ.get("EVIDENTLY_MAX_ROWS", 2_000_000))
N_NUM, N_CAT = 15, 5


def _data(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    half = rows // 2
    num_ref, num_cur = [], []
    for j in range(N_NUM):
        shift = 0.2 if j < 3 else 0.0
        if j % 3 == 0:
            a, b = rng.normal(size=half), rng.normal(shift, 1.0, size=half)
        elif j % 3 == 1:
            a, b = rng.lognormal(size=half), rng.lognormal(shift, 1.0, size=half)
        else:
            a, b = rng.gamma(2.0, size=half), rng.gamma(2.0 + shift, size=half)
        num_ref.append(a)
        num_cur.append(b)
    p = np.full(10, 0.1)
    q = np.array([0.05, 0.15] + [0.1] * 8)
    cat_ref = [rng.choice(10, size=half, p=p).astype(np.int64) for _ in range(N_CAT)]
    cat_cur = [rng.choice(10, size=half, p=q if j == 0 else p).astype(np.int64) for j in range(N_CAT)]
    return num_ref, num_cur, cat_ref, cat_cur


def ours(num_ref, num_cur, cat_ref, cat_cur) -> list[dict]:
    out = []
    for j, (a, b) in enumerate(zip(num_ref, num_cur)):
        ks, p = ks_two_sample(a, b)
        out.append({"feature": f"x{j}", "psi": psi_numeric(a, b), "ks": ks, "p": p})
    for j, (a, b) in enumerate(zip(cat_ref, cat_cur)):
        k = int(max(a.max(), b.max())) + 1
        r, c = np.bincount(a, minlength=k), np.bincount(b, minlength=k)
        stat, p, _ = chi_square_counts(r, c)
        out.append({"feature": f"c{j}", "psi": psi_from_counts(r, c), "chi2": stat, "p": p})
    return out


def _evidently():
    if not (PEERS / "evidently").is_dir():
        return None
    if str(PEERS) not in sys.path:
        sys.path.append(str(PEERS))
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):  # pandas 3 removed it; only used by data-integrity tests
        common.infer_dtype_from_object = lambda t: t
    if "evidently" not in sys.modules:
        root = types.ModuleType("evidently")  # skip evidently/__init__ (imports the UI server stack)
        root.__path__ = [str(PEERS / "evidently")]
        sys.modules["evidently"] = root
    try:
        import evidently.descriptors  # noqa: F401  (import order that avoids a circular import)
        from evidently.legacy.metric_preset import DataDriftPreset
        from evidently.legacy.pipeline.column_mapping import ColumnMapping
        from evidently.legacy.report import Report
    except Exception:  # noqa: BLE001
        return None
    return Report, DataDriftPreset, ColumnMapping


def _frames(num_ref, num_cur, cat_ref, cat_cur):
    import pandas as pd

    ref = pd.DataFrame({**{f"x{j}": a for j, a in enumerate(num_ref)},
                        **{f"c{j}": a.astype(str) for j, a in enumerate(cat_ref)}})
    cur = pd.DataFrame({**{f"x{j}": a for j, a in enumerate(num_cur)},
                        **{f"c{j}": a.astype(str) for j, a in enumerate(cat_cur)}})
    return ref, cur


def evidently_run(peer, ref, cur, stattest=None) -> dict:
    Report, DataDriftPreset, ColumnMapping = peer
    mapping = ColumnMapping(numerical_features=[f"x{j}" for j in range(N_NUM)],
                            categorical_features=[f"c{j}" for j in range(N_CAT)])
    preset = DataDriftPreset(stattest=stattest) if stattest else DataDriftPreset()
    rep = Report(metrics=[preset])
    rep.run(reference_data=ref, current_data=cur, column_mapping=mapping)
    return rep.as_dict()


def naive(ref, cur) -> list[dict]:
    """A straightforward pandas/scipy implementation (the fallback peer)."""
    import pandas as pd
    from scipy.stats import chi2_contingency, ks_2samp

    out = []
    for col in ref.columns:
        a, b = ref[col], cur[col]
        row = {"feature": col}
        if col.startswith("x"):
            _, edges = pd.qcut(a, 10, retbins=True, duplicates="drop")
            edges[0], edges[-1] = -np.inf, np.inf
            r = pd.cut(a, edges).value_counts(sort=False).to_numpy() / len(a)
            c = pd.cut(b, edges).value_counts(sort=False).to_numpy() / len(b)
            row["ks"] = ks_2samp(a, b, method="asymp").statistic
        else:
            vr, vc = a.value_counts(), b.value_counts()
            idx = vr.index.union(vc.index)
            r = vr.reindex(idx, fill_value=0).to_numpy() / len(a)
            c = vc.reindex(idx, fill_value=0).to_numpy() / len(b)
            row["chi2"] = chi2_contingency(np.vstack([r * len(a), c * len(b)]), correction=False).statistic
        r, c = np.where(r == 0, 1e-4, r), np.where(c == 0, 1e-4, c)
        row["psi"] = float(np.sum((c - r) * np.log(c / r)))
        out.append(row)
    return out


def run(scale: str = "quick") -> list[dict]:
    if scale not in SIZES:
        raise ValueError(f"The 'scale' parameter must be one of {list(SIZES)}. Got {scale!r} instead.")
    rows_out = []
    rows = SIZES[scale]
    data = _data(rows)
    t = time.perf_counter()
    res = ours(*data)
    ours_s = time.perf_counter() - t
    peer = _evidently()
    note = f"{rows:,} rows x 20 cols (15 numeric: PSI deciles + KS; 5 categorical: PSI + chi-square)"
    if peer is None:
        ref, cur = _frames(*data)
        t = time.perf_counter()
        naive(ref, cur)
        peer_s = time.perf_counter() - t
        rows_out.append({"benchmark": f"drift {rows:,} x 20", "ours_s": ours_s, "peer": "pandas+scipy naive",
                         "peer_s": peer_s, "ratio": peer_s / ours_s, "note": note + "; Evidently not installed"})
        return rows_out
    peer_rows = min(rows, EVIDENTLY_MAX_ROWS)
    if peer_rows < rows:
        sub = _data(peer_rows)
        t = time.perf_counter()
        ours(*sub)
        ours_sub = time.perf_counter() - t
        rows_out.append({"benchmark": f"drift {rows:,} x 20", "ours_s": ours_s, "peer": None, "peer_s": None,
                         "ratio": None, "note": note + f"; Evidently run at {peer_rows:,} rows (rows below)"})
    else:
        sub, ours_sub = data, ours_s
    ref, cur = _frames(*sub)
    for stattest, label in ((None, "evidently DataDriftPreset (defaults)"), ("psi", "evidently DataDriftPreset(stattest='psi')")):
        t = time.perf_counter()
        d = evidently_run(peer, ref, cur, stattest)
        peer_s = time.perf_counter() - t
        drifted = d["metrics"][0]["result"]["number_of_drifted_columns"]
        rows_out.append({"benchmark": f"drift {peer_rows:,} x 20", "ours_s": ours_sub, "peer": label,
                         "peer_s": peer_s, "ratio": peer_s / ours_sub,
                         "note": f"Evidently flags {drifted} drifted columns; ours: PSI>=0.1 on "
                                 f"{sum(r['psi'] >= 0.1 for r in res)}, KS/chi-square p<0.001 on "
                                 f"{sum(r['p'] < 0.001 for r in res)} (4 shifted by design, small shifts)"})
    return rows_out


if __name__ == "__main__":
    scale = sys.argv[1] if len(sys.argv) > 1 else "quick"
    for row in run(scale):
        print(row)

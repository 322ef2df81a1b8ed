#!/usr/bin/env python
"""Drift on rows x 20 columns: the default detector and its statistics, beside NannyML and Evidently.

Detector study (the issue's must-show, 1,000,000 rows x 20 columns, half reference, half current):
four small shifts (a 0.02 SD location shift, a 3% wider lognormal, gamma shape 2 -> 2.04, 0.6
points of share between two of ten categories; PSI ~1e-4 each), then undrifted datasets (50 at
"full", 10 at "quick") for the false alarms. Ours: ``insightroi.monitor.detect_drift`` (KS for
numbers, chi-square for categories, Holm over the 20 columns, alpha 0.01). Peers on the same
arrays, interleaved with ours (ours, peer, ours, peer, ...; 5 pairs at "full"), one thread each,
CPU seconds compared: NannyML 0.13.1 ``UnivariateDriftCalculator`` with its defaults (Jensen-Shannon,
10 chunks, thresholds from the reference chunks) in its own venv (``make bench-peers``; it pins
plotly < 6, lightgbm and FLAML) through ``_nannyml_worker.py``, and Evidently 0.7.23's
``DataDriftPreset`` with its defaults. Evidently is not installable into the project venv either
(it pins plotly < 6 and older numpy/pandas), so it is installed with ``pip install --target
.bench-peers --no-deps evidently==0.7.23 dynaconf uuid6 typing-inspect mypy_extensions deprecation
iterative-telemetry appdirs distro ujson nltk regex`` and imported with its UI package stubbed
(see ``_evidently``).

Throughput row: the statistics alone (PSI deciles + KS, PSI + chi-square) at 1M ("quick") or 10M
("full") rows.
"""

from __future__ import annotations

import os

# One thread for ours and for each peer (the NannyML worker gets the same variables), so CPU
# seconds compare like with like.
_THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
for _k, _v in _THREADS.items():
    os.environ.setdefault(_k, _v)
import sys
import time
import types
from pathlib import Path

import numpy as np

from insightroi.monitor import chi_square_counts, ks_two_sample, psi_from_counts, psi_numeric

HERE = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("INSIGHTROI_PEERS", HERE.parent / ".bench-peers"))
SIZES = {"quick": 1_000_000, "full": 10_000_000}
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
    rows_out = detector_study(scale)
    rows_out += _throughput(scale)
    return rows_out


def _throughput(scale: str) -> list[dict]:
    """The statistics alone (PSI + KS, PSI + chi-square per column) beside a pandas/scipy loop."""
    rows = SIZES[scale]
    data = _data(rows)
    t = time.perf_counter()
    res = ours(*data)
    ours_s = time.perf_counter() - t
    ref, cur = _frames(*data)
    t = time.perf_counter()
    naive(ref, cur)
    peer_s = time.perf_counter() - t
    return [{"benchmark": f"drift statistics {rows:,} x 20", "ours_s": ours_s,
             "peer": "pandas + scipy (qcut/value_counts PSI, ks_2samp, chi2_contingency)", "peer_s": peer_s,
             "ratio": peer_s / ours_s,
             "note": f"15 numeric: PSI deciles + KS; 5 categorical: PSI + chi-square; "
                     f"{sum(r['p'] < 0.001 for r in res)} columns with p < 0.001 (4 shifted by design)"}]


# ---- the default detector: small shifts found, false alarms at the stated rate, peers in the same run ----
STUDY = {"quick": {"rows": 1_000_000, "undrifted": 10, "pairs": 3, "nannyml_undrifted": 3, "evidently_undrifted": 1},
         "full": {"rows": 1_000_000, "undrifted": 50, "pairs": 5, "nannyml_undrifted": 10, "evidently_undrifted": 3}}
SHIFTED = ("x0", "x1", "x2", "c0")
NANNYML_PYTHON = os.environ.get("INSIGHTROI_NANNYML_PYTHON", str(HERE.parent / ".bench-nannyml" / "bin" / "python"))


def study_data(rows: int, seed: int, drift: bool) -> tuple[dict, dict, list[str]]:
    """Reference and current halves of ``rows`` rows x 20 columns; with ``drift`` four small shifts.

    Shifts no PSI rule sees (PSI ~1e-4, far below 0.1) but real at this size: a 0.02 SD location
    shift (normal), a 3% larger log-scale (lognormal), gamma shape 2 -> 2.04, and 0.6 points of
    share moved between two of ten categories.
    """
    rng = np.random.default_rng(seed)
    half = rows // 2
    ref, cur = {}, {}
    for j in range(N_NUM):
        d = drift and j < 3
        if j % 3 == 0:
            ref[f"x{j}"], cur[f"x{j}"] = rng.normal(size=half), rng.normal(0.02 if d else 0.0, 1.0, size=half)
        elif j % 3 == 1:
            ref[f"x{j}"], cur[f"x{j}"] = rng.lognormal(0, 1.0, size=half), rng.lognormal(0, 1.03 if d else 1.0, size=half)
        else:
            ref[f"x{j}"], cur[f"x{j}"] = rng.gamma(2.0, size=half), rng.gamma(2.04 if d else 2.0, size=half)
    p = np.full(10, 0.1)
    q = np.array([0.094, 0.106] + [0.1] * 8)
    for j in range(N_CAT):
        ref[f"c{j}"] = rng.choice(10, size=half, p=p).astype(np.int64)
        cur[f"c{j}"] = rng.choice(10, size=half, p=q if (drift and j == 0) else p).astype(np.int64)
    return ref, cur, [f"c{j}" for j in range(N_CAT)]


def _ours_detect(ref, cur, cats):
    from insightroi.monitor import detect_drift

    c0, w0 = time.process_time(), time.perf_counter()
    out = detect_drift(ref, cur, categorical=cats)
    return time.process_time() - c0, time.perf_counter() - w0, sorted(r["feature"] for r in out if r["status"] == "alert")


class _NannyWorker:
    def __init__(self):
        import json
        import subprocess

        self._json = json
        env = {**os.environ, **_THREADS, "NML_DISABLE_USAGE_LOGGING": "1"}  # no telemetry calls
        self.proc = subprocess.Popen([NANNYML_PYTHON, str(HERE / "_nannyml_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.version = self._json.loads(self.proc.stdout.readline())["nannyml"]

    def run(self, npz: str, cats: list[str]):
        self.proc.stdin.write(self._json.dumps({"npz": npz, "categorical": cats}) + "\n")
        self.proc.stdin.flush()
        a = self._json.loads(self.proc.stdout.readline())
        return a["cpu_s"], a["wall_s"], a["flagged"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _evidently_detect(peer, ref, cur, cats):
    import pandas as pd

    Report, DataDriftPreset, ColumnMapping = peer
    rf, cf = pd.DataFrame(ref), pd.DataFrame(cur)
    for c in cats:
        rf[c], cf[c] = rf[c].astype(str), cf[c].astype(str)
    mapping = ColumnMapping(numerical_features=[c for c in rf.columns if c not in cats], categorical_features=list(cats))
    c0, w0 = time.process_time(), time.perf_counter()
    rep = Report(metrics=[DataDriftPreset()])
    rep.run(reference_data=rf, current_data=cf, column_mapping=mapping)
    d = rep.as_dict()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    by_col = d["metrics"][1]["result"]["drift_by_columns"]
    return cpu, wall, sorted(c for c, v in by_col.items() if v["drift_detected"])


def _save_npz(path: Path, ref, cur) -> str:
    np.savez(path, **{f"ref:{k}": v for k, v in ref.items()}, **{f"cur:{k}": v for k, v in cur.items()})
    return str(path)


def _ratio_text(ours_cpu, peer_cpu) -> tuple[float, str]:
    r = np.array(peer_cpu) / np.array(ours_cpu)
    return float(np.median(r)), f"median {np.median(r):.3g} (min {r.min():.3g}, max {r.max():.3g}) over {r.size} interleaved pairs"


def detector_study(scale: str) -> list[dict]:
    """Shifts found and false alarms of the default detector (KS / chi-square, Holm, alpha 0.01) and its peers.

    Ours and each peer run interleaved (ours, peer, ours, peer, ...) on the same arrays, one
    thread each; CPU seconds are compared (the peer's inside its process, import excluded).
    """
    import tempfile

    cfg = STUDY[scale]
    rows = cfg["rows"]
    ref, cur, cats = study_data(rows, seed=100, drift=True)
    tmp = Path(tempfile.mkdtemp(prefix="insightroi-drift-"))
    drifted_npz = _save_npz(tmp / "drifted.npz", ref, cur)
    found = _ours_detect(ref, cur, cats)[2]
    # PSI as the rule (the old default, and what a PSI >= 0.1 dashboard shows): per column.
    from insightroi.monitor import detect_drift

    psi_found = sorted(r["feature"] for r in detect_drift(ref, cur, categorical=cats) if (r["psi"] or 0) >= 0.1)
    fa_datasets, fa_columns = 0, 0
    undrifted_npz = []
    for k in range(cfg["undrifted"]):
        r0, c0_, _ = study_data(rows, seed=1000 + k, drift=False)
        flagged = _ours_detect(r0, c0_, cats)[2]
        fa_datasets += bool(flagged)
        fa_columns += len(flagged)
        if k < max(cfg["nannyml_undrifted"], cfg["evidently_undrifted"]):
            undrifted_npz.append((_save_npz(tmp / f"undrifted{k}.npz", r0, c0_), r0, c0_))
    n_cols = N_NUM + N_CAT
    ours_note = (f"ours (KS / chi-square, Holm over 20 columns, alpha 0.01): {len(set(found) & set(SHIFTED))} of 4 shifts "
                 f"found, {len(set(found) - set(SHIFTED))} other columns; undrifted: {fa_datasets} of {cfg['undrifted']} "
                 f"datasets with any alert ({fa_columns} of {cfg['undrifted'] * n_cols} columns); a PSI >= 0.1 rule finds "
                 f"{len(set(psi_found) & set(SHIFTED))} of 4")
    out = []
    peers = []
    if Path(NANNYML_PYTHON).exists():
        peers.append("nannyml")
    else:
        out.append({"benchmark": f"drift detector {rows:,} x 20", "ours_s": None, "peer": "NannyML", "peer_s": None,
                    "ratio": None, "note": f"NannyML venv not found at {NANNYML_PYTHON} (make bench-peers)"})
    ev = _evidently()
    if ev is not None:
        peers.append("evidently")
    for name in peers:
        worker = _NannyWorker() if name == "nannyml" else None
        call = (lambda npz, r_, c_: worker.run(npz, cats)) if worker else (lambda npz, r_, c_: _evidently_detect(ev, r_, c_, cats))
        ours_cpu, peer_cpu, ours_wall, peer_wall = [], [], [], []
        peer_found = None
        for _ in range(cfg["pairs"]):
            oc, ow, _f = _ours_detect(ref, cur, cats)
            pc, pw, pf = call(drifted_npz, ref, cur)
            ours_cpu.append(oc); ours_wall.append(ow); peer_cpu.append(pc); peer_wall.append(pw)
            peer_found = pf
        n_fa = cfg["nannyml_undrifted"] if worker else cfg["evidently_undrifted"]
        p_fa_sets, p_fa_cols = 0, 0
        for npz, r0, c0_ in undrifted_npz[:n_fa]:
            f = call(npz, r0, c0_)[2]
            p_fa_sets += bool(f)
            p_fa_cols += len(f)
        if worker:
            label = f"NannyML {worker.version} UnivariateDriftCalculator (defaults: Jensen-Shannon, 10 chunks)"
            worker.close()
        else:
            label = "Evidently 0.7.23 DataDriftPreset (defaults)"
        ratio, ratio_txt = _ratio_text(ours_cpu, peer_cpu)
        out.append({
            "benchmark": f"drift detector {rows:,} x 20 (CPU s, median)", "ours_s": float(np.median(ours_cpu)),
            "peer": label, "peer_s": float(np.median(peer_cpu)), "ratio": ratio,
            "note": (f"{ratio_txt}; wall ours {np.median(ours_wall):.2f} s, peer {np.median(peer_wall):.2f} s; one thread "
                     f"each; peer: {len(set(peer_found) & set(SHIFTED))} of 4 shifts found, "
                     f"{len(set(peer_found) - set(SHIFTED))} other columns; undrifted: {p_fa_sets} of {n_fa} datasets with "
                     f"any alert ({p_fa_cols} of {n_fa * n_cols} columns). " + ours_note),
        })
    if not peers:
        oc, ow, _ = _ours_detect(ref, cur, cats)
        out.append({"benchmark": f"drift detector {rows:,} x 20 (CPU s)", "ours_s": oc, "peer": None, "peer_s": None,
                    "ratio": None, "note": ours_note})
    return out


if __name__ == "__main__":
    scale = sys.argv[1] if len(sys.argv) > 1 else "quick"
    for row in run(scale):
        print(row)

"""NannyML's univariate drift with its defaults, as a worker in NannyML's own virtualenv.

NannyML 0.13 pins plotly < 6, lightgbm and FLAML versions the project does not use, so it lives in
its own venv (``make bench-peers``) and bench_monitor.py drives it through this worker: one JSON
line per request on stdin ``{"npz": path, "categorical": [...]}``, one JSON line per answer with
the CPU and wall seconds of ``fit`` + ``calculate`` (the import is paid once, outside the timer)
and the columns NannyML alerts on in any analysis chunk.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import nannyml as nml  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _frames(path: str, categorical: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = np.load(path)
    cols = sorted({k.split(":", 1)[1] for k in data.files})
    ref = pd.DataFrame({c: data[f"ref:{c}"] for c in cols})
    cur = pd.DataFrame({c: data[f"cur:{c}"] for c in cols})
    for c in categorical:  # NannyML treats strings as categories, as a user's frame would hold them
        ref[c] = ref[c].astype(str)
        cur[c] = cur[c].astype(str)
    return ref, cur


def main() -> None:
    print(json.dumps({"ready": True, "nannyml": nml.__version__, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        ref, cur = _frames(req["npz"], req["categorical"])
        w0, c0 = time.perf_counter(), time.process_time()
        # Defaults: Jensen-Shannon for both kinds, 10 chunks, thresholds from the reference chunks.
        calc = nml.UnivariateDriftCalculator(column_names=list(ref.columns), treat_as_categorical=req["categorical"])
        calc.fit(ref)
        res = calc.calculate(cur).filter(period="analysis").to_df()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        flagged = sorted({col for col in ref.columns for key in res.columns
                          if key[0] == col and key[-1] == "alert" and bool(res[key].any())})
        print(json.dumps({"cpu_s": cpu, "wall_s": wall, "flagged": flagged}), flush=True)


if __name__ == "__main__":
    main()

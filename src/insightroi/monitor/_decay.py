"""Outcome decay: the program's effect against the persistent holdout, period by period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from insightroi.errors import DataError
from insightroi.stats import Check, Ratio, Result, two_arm

__all__ = ["ratio_difference", "outcome_decay", "decay_rows"]


def ratio_difference(
    num_t, den_t, num_c, den_c, *, scale: float = 1.0, alpha: float = 0.05, metric: str = "", period: str = ""
) -> Result:
    """Treatment minus control of a ratio-of-sums KPI, with a delta-method interval.

    Each arm's KPI is ``scale * sum(num) / sum(den)`` over its units (clusters); its variance is
    the delta-method (linearisation) variance of a ratio of means over independent units
    (Cochran 1977, *Sampling Techniques*, sec. 6.4; Deng, Knoblich & Lu 2018, "Applying the delta
    method in metric analytics"), computed by :func:`insightroi.stats.two_arm` on
    :class:`insightroi.stats.Ratio` statistics. The difference's interval is normal.

    Parameters
    ----------
    num_t, den_t, num_c, den_c : array_like
        Per-unit numerator and denominator totals for the period, treatment and control.
    scale : float
        The KPI's scale (e.g. 1000 for "per 1,000 orders").
    alpha : float
        1 - confidence level.

    Returns
    -------
    Result
        ``estimate`` in KPI units; ``extra`` holds the period, both arm means and unit counts.
    """
    arrays = [np.asarray(a, dtype=float) for a in (num_t, den_t, num_c, den_c)]
    nt, dt, nc, dc = arrays
    if nt.shape != dt.shape or nc.shape != dc.shape:
        raise DataError("numerator and denominator arrays must have the same length within an arm")
    # Units with no denominator carry no information about the ratio.
    keep_t, keep_c = np.isfinite(nt) & np.isfinite(dt), np.isfinite(nc) & np.isfinite(dc)
    nt, dt, nc, dc = nt[keep_t], dt[keep_t], nc[keep_c], dc[keep_c]
    if nt.size < 2 or nc.size < 2 or dt.sum() <= 0 or dc.sum() <= 0:
        raise DataError(
            f"period {period!r}: need at least 2 units with a positive denominator in each arm "
            f"(treatment {nt.size}, control {nc.size})"
        )
    res = two_arm(Ratio.from_arrays(nc, dc), Ratio.from_arrays(nt, dt), test="z", alpha=alpha, metric=metric,
                  method="delta_ratio_difference")
    est, se = scale * res.estimate, scale * res.se
    small = min(nt.size, nc.size) < 10
    check = Check(
        "units_per_arm",
        "warn" if small else "pass",
        f"{nt.size} treated and {nc.size} control units" + ("; the normal interval is rough below 10" if small else ""),
        statistic=float(min(nt.size, nc.size)),
        threshold=10.0,
    )
    return Result(
        estimate=est,
        se=se,
        ci=(scale * res.ci[0], scale * res.ci[1]),
        p_value=res.p_value,
        method="delta_ratio_difference",
        n=int(nt.size + nc.size),
        unit="absolute",
        diagnostics=(check,),
        alpha=alpha,
        metric=metric,
        extra={
            "period": period,
            "treatment_mean": scale * res.extra["treatment_mean"],
            "control_mean": scale * res.extra["control_mean"],
            "n_treatment": int(nt.size),
            "n_control": int(nc.size),
            "treatment_denominator": float(dt.sum()),
        },
    )


def outcome_decay(
    periods: Mapping[str, Sequence[Any]], *, scale: float = 1.0, alpha: float = 0.05, metric: str = ""
) -> list[Result]:
    """Effect per period (e.g. per 28-day period) against the persistent holdout.

    Parameters
    ----------
    periods : mapping of period label -> (num_t, den_t, num_c, den_c)
        Per-unit arrays for each period, in time order (dict order is kept).
    scale, alpha, metric
        As in :func:`ratio_difference`.

    Returns
    -------
    list of Result
        One per period; a period that cannot be estimated raises :class:`DataError` naming it.
    """
    return [
        ratio_difference(*arrays, scale=scale, alpha=alpha, metric=metric, period=str(label))
        for label, arrays in periods.items()
    ]


def decay_rows(effects: Sequence[Result | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Normalise period effects to the bundle's decay rows ``{period, estimate, ci_low, ci_high, ...}``.

    Accepts :class:`Result` objects from :func:`outcome_decay` (or any estimator that puts the
    period label in ``extra["period"]``) or dicts with those keys (``treatment_denominator``,
    the treated units' denominator volume in the period, and ``control_mean``, the KPI in the
    control arm, are kept when present).
    """
    rows = []
    for i, e in enumerate(effects):
        if isinstance(e, Result):
            row = {
                "period": str(e.extra.get("period", i)),
                "estimate": e.estimate,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "se": e.se,
                "p_value": e.p_value,
            }
            for k in ("treatment_denominator", "control_mean"):
                if k in e.extra:
                    row[k] = e.extra[k]
        else:
            row = {"period": str(e.get("period", i))}
            for k in ("estimate", "ci_low", "ci_high", "se", "p_value", "treatment_denominator", "control_mean"):
                if k in e and e[k] is not None:
                    row[k] = float(e[k])
            if "se" not in row and "ci_low" in row and "ci_high" in row:
                row["se"] = (row["ci_high"] - row["ci_low"]) / (2 * 1.959963984540054)
        rows.append(row)
    return rows

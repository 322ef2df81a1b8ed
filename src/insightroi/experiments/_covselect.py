"""Choosing a KPI's covariates for regression adjustment without looking at the experiment's outcome.

Adding covariates to Lin's interacted regression costs two slopes each (one per arm). With tens
of clusters per arm a covariate with little signal for a KPI costs more precision than it
brings, so a fixed list can leave a KPI's variance above CUPED's. This module chooses, per KPI,
among CUPED (the KPI's own pre-period value), regression adjustment on the own value plus each
subset of the candidate covariates, and CUPAC, the set that best predicts the KPI *one period
earlier*:

* the "lagged" frame holds each unit's pre-period KPI as the outcome and the period before it
  (history) as covariates: the same lag as the analysis (pre-period covariates, experiment
  outcome), measured entirely before assignment;
* each set's criterion is the regression adjustment's variance it would give there,
  ``sum_a mean(loo_a^2) / n_a``, with ``loo`` the leave-one-out residuals of an OLS fit *within*
  each arm, as the interacted fit estimates its slopes within arms: the slopes' cost (the
  leverage of each unit) is in the criterion, so no separate penalty is needed;
* the one-standard-error rule (Hastie, Tibshirani & Friedman 2009, sec. 7.10) keeps the set
  with the fewest covariates whose criterion is within one (paired) standard error of the best;
* CUPED is the default a set must beat: the set kept replaces it only when its criterion is
  lower than CUPED's by ``MIN_Z`` paired standard errors (one-sided 5%). The best of 32 subsets
  beats CUPED by chance alone: on 200 simulated worlds of 80 units with five pure-noise
  covariates, the one-standard-error rule alone replaced CUPED in 8.5% of them (each time
  costing variance), with the threshold in 0.5%; where one covariate carries real signal
  (lagged variance 0.64x CUPED's) it was still chosen in 78% of worlds (94% without the threshold).

The choice depends on pre-assignment data and the assignment only, never on an outcome measured
after it, so the analysis keeps the validity of a pre-registered covariate set.

References
----------
Hastie, T., Tibshirani, R., Friedman, J. (2009). The Elements of Statistical Learning, 2nd ed.,
sec. 7.10 (cross-validation and the one-standard-error rule).
Lin, W. (2013). Agnostic notes on regression adjustments to experimental data. AoAS 7(1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from insightroi.experiments._common import CONTROL, TREATMENT

__all__ = ["CovariateChoice", "select_covariates", "EXHAUSTIVE_MAX"]

#: Up to this many candidate covariates every subset is compared (2^5 = 32 fits of a few
#: columns); beyond it, forward selection builds one nested path (p (p + 1) / 2 fits).
EXHAUSTIVE_MAX = 5

#: Paired z by which the kept set's criterion must beat CUPED's to replace it (one-sided 5%).
MIN_Z = 1.645


@dataclass(frozen=True)
class CovariateChoice:
    """The covariate set chosen for one KPI and why.

    Attributes
    ----------
    covariates : list of str
        Candidate covariate columns chosen beside the KPI's own pre-period value (empty: CUPED,
        or CUPAC without extra columns).
    cupac : bool
        The CUPAC prediction is part of the chosen set.
    method : str
        ``"cuped"``, ``"regression_adjusted"`` or ``"cupac"``.
    reason : str
        One sentence for the KPI's ``covariate_adjustment`` check.
    criteria : dict
        Set label -> lagged out-of-sample variance (the criterion), for the JSON.
    ratio_vs_cuped : float
        The chosen set's criterion over CUPED's (1.0 when CUPED is chosen).
    """

    covariates: list[str]
    cupac: bool
    method: str
    reason: str
    criteria: dict[str, float] = field(default_factory=dict)
    ratio_vs_cuped: float = 1.0
    z_vs_cuped: float = 0.0

    def as_dict(self) -> dict:
        """The choice as plain data (the KPI result's ``extra["covariate_selection"]``)."""
        # A set that cannot be fitted has an infinite criterion; JSON has no infinity, so it is None.
        crit = {k: (v if math.isfinite(v) else None) for k, v in self.criteria.items()}
        return {"method": self.method, "covariates": list(self.covariates), "cupac": self.cupac,
                "reason": self.reason, "criteria": crit, "ratio_vs_cuped": self.ratio_vs_cuped,
                "z_vs_cuped": self.z_vs_cuped}


def _loo_contributions(y: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Each unit's ``loo_i^2 / n^2`` for an OLS fit of ``y`` on an intercept and ``X`` (one arm)."""
    n = y.size
    Z = np.column_stack([np.ones(n), X])
    if n <= Z.shape[1] + 1:
        return np.full(n, math.inf)
    # Centred and scaled columns keep the hat matrix accurate for counts in the thousands.
    sd = Z[:, 1:].std(axis=0)
    Z[:, 1:] = (Z[:, 1:] - Z[:, 1:].mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    q, r = np.linalg.qr(Z)
    if np.min(np.abs(np.diag(r))) <= 1e-10 * np.max(np.abs(np.diag(r))):
        return np.full(n, math.inf)
    h = (q**2).sum(axis=1)
    e = y - q @ (q.T @ y)
    loo = e / np.clip(1 - h, 1e-12, None)
    return loo**2 / n**2


class _Designs:
    """The lagged frame's per-arm design built once; each candidate set is a choice of its columns."""

    def __init__(self, lagged, candidates: Sequence[str], prediction: str | None):
        from insightroi.experiments._analysis import covariate_design

        self.ra, self.ra_names = covariate_design(lagged, candidates, None, use_pre=True)
        self.cupac = self.cupac_names = None
        if prediction is not None:
            self.cupac, self.cupac_names = covariate_design(lagged, candidates, prediction, use_pre=True)

    def criterion(self, covs: Sequence[str], cupac: bool) -> tuple[np.ndarray, int]:
        """Per-unit criterion contributions of one set, and its number of columns."""
        design, names = (self.cupac, self.cupac_names) if cupac else (self.ra, self.ra_names)
        # A candidate left out of the full design (constant, or collinear with the ones before it)
        # is left out of every set, as the analysis' fit would leave it out.
        cols = [j for j, c in enumerate(names) if c in ("kpi_pre", "cupac_prediction") or c in covs or cupac]
        parts = [_loo_contributions(y, X[:, cols]) for y, X in (design[a] for a in (CONTROL, TREATMENT))]
        return np.concatenate(parts), len(cols)


def _label(covs: Sequence[str], cupac: bool) -> str:
    if cupac:
        return "CUPAC (prediction, kpi_pre" + "".join(f", {c}" for c in covs) + ")"
    return "CUPED (kpi_pre)" if not covs else "RA (kpi_pre, " + ", ".join(covs) + ")"


def select_covariates(lagged, candidates: Sequence[str], *, prediction: str | None = None,
                      lag: str = "the period before the pre-period -> pre-period",
                      min_z: float | None = None) -> CovariateChoice:
    """Choose a KPI's covariate set on a lagged frame measured before assignment.

    Parameters
    ----------
    lagged : pandas.DataFrame
        One row per unit, as :func:`insightroi.experiments.kpi_effect` takes them but one period
        earlier: ``arm``; ``num`` / ``den``, the KPI's parts in the pre-period (the outcome to
        predict); ``num_pre`` / ``den_pre``, its parts in the period before (the lagged CUPED
        covariate); each candidate column holding that earlier period's value; and, with
        ``prediction``, that column holding an out-of-fold model prediction of the pre-period
        KPI from the earlier period's values.
    candidates : sequence of str
        Covariate columns to choose from (beside the KPI's own lagged value, always kept).
    prediction : str, optional
        Column of the CUPAC prediction; adds the CUPAC set (prediction, own value, all
        candidates), the analysis' ``cupac = true`` fit.
    lag : str
        How the lagged frame was built, for the reason text.
    min_z : float, optional
        Evidence a set needs to replace CUPED, in paired standard errors of the criterion
        (default :data:`MIN_Z`).

    Returns
    -------
    CovariateChoice
        ``method="cuped"`` unless a larger set predicts the lagged outcome better than CUPED by
        more than one paired standard error of the criterion.
    """
    candidates = list(dict.fromkeys(candidates))
    sets: list[tuple[tuple[str, ...], bool]] = []
    if len(candidates) <= EXHAUSTIVE_MAX:
        for size in range(len(candidates) + 1):
            sets += [(c, False) for c in combinations(candidates, size)]
    else:
        sets.append(((), False))
    designs = _Designs(lagged, candidates, prediction)
    contrib: dict[tuple[tuple[str, ...], bool], np.ndarray] = {}
    ncols: dict[tuple[tuple[str, ...], bool], int] = {}
    for s in sets:
        contrib[s], ncols[s] = designs.criterion(s[0], False)
    if len(candidates) > EXHAUSTIVE_MAX:
        # Forward selection: each step adds the candidate that lowers the criterion most.
        chosen: tuple[str, ...] = ()
        left = list(candidates)
        while left:
            trial = {c: designs.criterion(chosen + (c,), False) for c in left}
            best = min(left, key=lambda c: float(trial[c][0].sum()))
            chosen += (best,)
            left.remove(best)
            contrib[(chosen, False)], ncols[(chosen, False)] = trial[best]
    if prediction is not None:
        s = (tuple(candidates), True)
        contrib[s], ncols[s] = designs.criterion(candidates, True)
    total = {s: float(v.sum()) for s, v in contrib.items()}
    cuped = ((), False)
    finite = [s for s in total if math.isfinite(total[s])]
    if not finite or not math.isfinite(total[cuped]) or total[cuped] <= 0:
        return CovariateChoice([], False, "cuped", f"CUPED kept: the lagged fit ({lag}) cannot rank the covariate "
                                                   "sets (too few units or no variation)",
                               {_label(*s): total[s] for s in total})
    best = min(finite, key=lambda s: total[s])
    n_units = contrib[best].size

    def paired_se(s) -> float:
        # Units are independent: the variance of a sum of per-unit differences is n times theirs.
        d = contrib[s] - contrib[best]
        return float(math.sqrt(n_units * d.var(ddof=1))) if n_units > 1 else math.inf

    within = [s for s in finite if total[s] <= total[best] + paired_se(s)]
    pick = min(within, key=lambda s: (ncols[s], total[s]))
    d_cuped = contrib[pick] - contrib[cuped]
    z = float(-d_cuped.sum() / math.sqrt(n_units * d_cuped.var(ddof=1))) if pick != cuped else 0.0
    ratio = total[pick] / total[cuped]
    criteria = {_label(*s): total[s] for s in sorted(total, key=lambda s: total[s])}
    n_sets = len(total)
    min_z = MIN_Z if min_z is None else min_z
    weak = pick != cuped and z < min_z
    if weak:
        pick, ratio = cuped, 1.0
    if pick == cuped:
        if weak:
            note = (f"; the best candidate, {_label(*best)}, at {total[best] / total[cuped]:.3f}x, beats it by "
                    f"{z:.2f} standard errors, short of the {min_z:g} required")
        elif best != cuped:
            note = f"; the best, {_label(*best)}, at {total[best] / total[cuped]:.3f}x, is within one standard error"
        else:
            note = ""
        reason = (f"selected CUPED: no covariate set predicted the KPI out of sample ({lag}, leave-one-out within "
                  f"arms, {n_sets} sets) clearly better than CUPED{note}")
        return CovariateChoice([], False, "cuped", reason, criteria, 1.0)
    covs, use_cupac = list(pick[0]), pick[1]
    reason = (f"selected {_label(covs, use_cupac)}: lagged out-of-sample variance {ratio:.3f}x CUPED's ({lag}, "
              f"leave-one-out within arms, {n_sets} sets; {z:.2f} standard errors better; the fewest covariates "
              "within one standard error of the best)")
    return CovariateChoice(covs, use_cupac, "cupac" if use_cupac else "regression_adjusted", reason, criteria, ratio,
                           z)

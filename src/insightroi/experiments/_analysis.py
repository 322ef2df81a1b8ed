"""Run the program's randomized experiment on the store: per-KPI effects, adjusted p-values, checks.

Stages as in DoWhy: design (the assignments) -> checks (SRM, contamination, balance,
pre-period equivalence, regression to the mean, novelty) -> estimate (ratio-of-sums delta
method at the randomization unit, with CUPED on the pre-period KPI) -> multiplicity (Holm and
Benjamini-Hochberg across KPIs).

With ``[experiment] covariates`` each ratio or mean KPI is regression-adjusted on several
pre-period values (:func:`insightroi.stats.regression_adjusted`); with ``cupac = true`` a model
fitted on pre-period data only adds its prediction of the outcome as a covariate
(:func:`insightroi.stats.cupac`). ``regression_adjusted`` works on per-unit means, so a ratio
KPI ``sum num / sum den`` is linearised first, as the CUPED ratio estimator is: each unit's
value is ``R_a + (num - R_a den) / mean(den)_a`` in its arm ``a``, whose arm mean is ``R_a``
exactly and whose arm variance over units is the ratio's delta-method variance; the KPI's
pre-period ratio, linearised the same way, is the first covariate (what CUPED adjusts by).
An A/B/n design's per-arm comparisons use the same adjustment, Holm-corrected across arms.
Quantile KPIs keep their unadjusted path, and sequential (always-valid) inference keeps CUPED.

A KPI over a ``quantile`` measure (median resolution hours) is the quantile of the rows pooled
over each arm's units: it is dispatched to :func:`insightroi.stats.quantile_effect` (the
clustered quantile delta method), without CUPED, pre-period or segment analyses. A capped
measure's cap is computed once over the analysis window and applied to every period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np
from scipy import special

from insightroi.errors import DataError, EstimationError
from insightroi.experiments._checks import (
    annotation_check,
    balance_check,
    contamination_check,
    novelty_check,
    pre_period_check,
    regression_to_mean_check,
    srm_check,
)
from insightroi.experiments._common import (
    CONTROL,
    TREATMENT,
    ExperimentAnalysis,
    annotate_kpi_results,
    quantile_measure,
    whole_window_kpis,
)
from insightroi.experiments._design_analysis import analyze_quasi_design
from insightroi.experiments._switchback_analysis import analyze_switchback
from insightroi.metrics import (
    UNIT_COLUMNS,
    analysis_windows,
    measure_caps,
    measure_rows_expr,
    measure_specs,
    unit_measures_expr,
)
from insightroi.program import Kpi, Program
from insightroi.stats import (
    NO_DENOMINATOR_IN_ARM,
    NO_DENOMINATOR_IN_EITHER_ARM,
    Check,
    EffectPrior,
    MultiRegressionAdjusted,
    Ratio,
    RatioRegressionAdjusted,
    Result,
    bayesian_two_arm,
    cupac,
    holm,
    multi_arm,
    quantile_effect,
    regression_adjusted,
    segment_breakdown,
    two_arm,
)
from insightroi.store import TABLES, Store

__all__ = ["analyze_experiment", "covariate_design", "cupac_predictions", "kpi_effect"]

_RANDOMIZED = ("ab", "cluster", "holdout")


def _stats(df, arm: str, use_pre: bool):
    d = df[df.arm == arm]
    if use_pre:
        return RatioRegressionAdjusted.from_arrays(d.num, d.den, d.num_pre, d.den_pre)
    return Ratio.from_arrays(d.num, d.den)


def _scaled(res: Result, scale: float) -> Result:
    if scale == 1:
        return res
    x = dict(res.extra)
    for k in ("control_mean", "treatment_mean", "control_mean_pre", "treatment_mean_pre", "mde",
              "control_mean_adjusted", "treatment_mean_adjusted", "unadjusted_se", "cuped_se", "cuped_estimate"):
        if k in x and x[k] is not None:
            x[k] = x[k] * scale
    if x.get("ci_adjusted") is not None:  # A/B/n arms' simultaneous interval
        x["ci_adjusted"] = tuple(v * scale for v in x["ci_adjusted"])
    return replace(res, estimate=res.estimate * scale, se=res.se * scale, ci=(res.ci[0] * scale, res.ci[1] * scale),
                   extra=x)


def _nan_result(kpi: Kpi, n: int, message: str, alpha: float, unit: str = "absolute", *,
                method: str = "ratio_delta", extra: dict | None = None) -> Result:
    return Result.not_estimable(message, method=method, metric=kpi.name, n=n, unit=unit, alpha=alpha, extra=extra)


def store_annotations(store: Store, window: tuple[date, date]) -> list[dict[str, Any]]:
    """The ``annotations`` rows whose span meets ``window`` (inclusive days); ``[]`` without any."""
    a = store.table("annotations")
    lo = datetime.combine(window[0], time())
    hi = datetime.combine(window[1] + timedelta(days=1), time())
    rows = a.filter((a.start_time < hi) & (a.end_time.fill_null(a.start_time) >= lo)).select(
        "id", "kind", "start_time", "end_time", "scope", "description").order_by("start_time").execute()
    return rows.to_dict("records")


def kpi_effect(df, kpi: Kpi, *, alpha: float = 0.05, cuped: bool = True,
               sequential_tuning: float | None = None,
               bayesian: EffectPrior | Literal["flat"] | None = None,
               covariates: Sequence[str] = (), prediction: str | None = None) -> tuple[Result, Result]:
    """Absolute and relative effect of one KPI from per-unit data (columns arm, num, den, num_pre, den_pre).

    The estimator is the ratio of sums per arm with its delta-method variance at the
    randomization unit (cluster-robust for cluster designs: see
    :func:`insightroi.stats.cluster_randomized`), CUPED-adjusted by the unit's pre-period KPI
    when the pre-period has data in both arms (Deng et al. 2013). With ``sequential_tuning``
    the interval and p-value are always valid (a confidence sequence with that N*, as gbstats'
    sequential engine), so they may be read at every look. With ``bayesian`` (a prior on the
    relative effect, or ``"flat"``) both Results' ``extra`` gain ``chance_to_win``,
    ``risk_control``, ``risk_treatment`` and ``credible_interval`` (relative) from
    :func:`insightroi.stats.bayesian_two_arm` on the same statistics ("win" follows the KPI's
    direction).

    With ``covariates`` (columns of ``df`` holding pre-period per-unit values) or ``prediction``
    (a column holding a CUPAC model's prediction of the outcome, made from pre-period data only)
    the effect is regression-adjusted on the linearised pre-period KPI, the prediction and the
    covariates (:func:`covariate_design`): ``method`` becomes ``"regression_adjusted"`` or
    ``"cupac"`` and ``extra`` gains ``covariates``, ``variance_reduction`` (against the
    unadjusted delta-method variance), ``cuped_estimate``, ``cuped_se`` and
    ``variance_reduction_vs_cuped``. When
    that fit is impossible (collinear covariates, too few units) the CUPED result stands with a
    ``covariate_adjustment`` diagnostic saying why. Always-valid (sequential) intervals stay on
    CUPED: the confidence sequence is implemented for the two-arm statistics only.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per randomization unit.
    kpi : Kpi
    alpha : float
    cuped : bool
        Adjust by the unit's pre-period KPI when both arms have pre-period data.
    sequential_tuning : float, optional
    bayesian : EffectPrior or "flat", optional
    covariates : sequence of str
        Columns of ``df`` with further pre-period per-unit values.
    prediction : str, optional
        Column of ``df`` with the CUPAC prediction.

    Returns
    -------
    (Result, Result)
        The absolute effect (in the KPI's scale) and the relative one.
    """
    n = int(len(df))
    dens = {a: float(df.loc[df.arm == a, "den"].sum()) for a in (TREATMENT, CONTROL)}
    if dens[CONTROL] == 0 or dens[TREATMENT] == 0:
        empty = CONTROL if dens[CONTROL] == 0 else TREATMENT
        if dens[CONTROL] == dens[TREATMENT] == 0:
            msg = NO_DENOMINATOR_IN_EITHER_ARM.format(denominator=kpi.denominator, kpi=kpi.name)
        else:
            msg = NO_DENOMINATOR_IN_ARM.format(arm=empty, denominator=kpi.denominator, kpi=kpi.name)
        tr = df[df.arm == TREATMENT]
        tm = float(tr.num.sum() / tr.den.sum() * kpi.scale) if dens[TREATMENT] else math.nan
        return (_nan_result(kpi, n, msg, alpha, extra={"treatment_mean": tm, "control_mean": math.nan}),
                _nan_result(kpi, n, msg, alpha, "relative"))
    use_pre = bool(cuped and all(float(df.loc[df.arm == a, "den_pre"].sum()) > 0 for a in (TREATMENT, CONTROL)))
    c, t = _stats(df, CONTROL, use_pre), _stats(df, TREATMENT, use_pre)
    try:
        ab = two_arm(c, t, alpha=alpha, metric=kpi.name, cuped=use_pre, sequential_tuning=sequential_tuning)
        rel = two_arm(c, t, relative=True, alpha=alpha, metric=kpi.name, cuped=use_pre,
                      sequential_tuning=sequential_tuning)
    except DataError as exc:
        method = "cuped_ratio" if use_pre else "ratio_delta"
        return (_nan_result(kpi, n, str(exc), alpha, method=method),
                _nan_result(kpi, n, str(exc), alpha, "relative", method=method))
    if bayesian is not None:
        bay = _bayesian_figures(c, t, kpi, alpha=alpha, cuped=use_pre, prior=None if bayesian == "flat" else bayesian)
        ab, rel = (replace(r, extra={**r.extra, **bay}) for r in (ab, rel))
    if covariates or prediction:
        if sequential_tuning is not None:
            note = Check("covariate_adjustment", "skip", "covariates and CUPAC are not applied under sequential "
                                                         "inference: the always-valid interval is CUPED's")
            ab, rel = (replace(r, diagnostics=r.diagnostics + (note,)) for r in (ab, rel))
        else:
            ab, rel = _adjusted_effects(df, kpi, ab, rel, covariates=covariates, prediction=prediction,
                                        use_pre=use_pre, alpha=alpha)
    return _scaled(ab, kpi.scale), rel


# Smallest eigenvalue, relative to the largest, of the within-arm correlation matrix of the
# covariates kept: a column that brings it below this adds no information the others lack, and
# keeping it would make the regression refuse (stats.regression_adjusted's collinearity check).
_KEEP_EIG = 1e-8


def _linearised(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # The arm's ratio plus each unit's delta-method influence: the mean is the ratio of sums
    # and the variance over units that of the delta method.
    r = num.sum() / den.sum()
    return r + (num - r * den) / den.mean()


def covariate_design(df, covariates: Sequence[str] = (), prediction: str | None = None, *,
                     use_pre: bool = True) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Per-arm linearised outcome and covariate matrix of a KPI, as the regression adjustment fits them.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per unit: ``arm`` (control / treatment), ``num``, ``den``, ``num_pre``,
        ``den_pre`` and the named columns.
    covariates : sequence of str
        Columns with pre-period per-unit covariates.
    prediction : str, optional
        Column with a CUPAC prediction; it comes first.
    use_pre : bool
        Include the linearised pre-period KPI (needs pre-period denominators in both arms).

    Returns
    -------
    (dict, list of str)
        ``{arm: (y, X)}`` for control and treatment, and the names of ``X``'s columns. Columns
        with no within-arm variation, or collinear with the ones before them, are dropped (in
        the order prediction, pre-period KPI, covariates), so the fit never fails on them.
    """
    names = ([prediction] if prediction else []) + (["kpi_pre"] if use_pre else []) + list(covariates)
    arm = df["arm"].to_numpy()
    col = {c: df[c].to_numpy(float) for c in {"num", "den", "num_pre", "den_pre", *covariates,
                                               *([prediction] if prediction else [])} if c in df.columns}
    out = {}
    for a in (CONTROL, TREATMENT):
        sel = arm == a
        y = _linearised(col["num"][sel], col["den"][sel])
        cols = [col[prediction][sel]] if prediction else []
        if use_pre:
            cols.append(_linearised(col["num_pre"][sel], col["den_pre"][sel]))
        cols += [col[c][sel] for c in covariates]
        out[a] = (y, np.column_stack(cols) if cols else np.empty((int(sel.sum()), 0)))
    # Each arm on its own, as the interacted fit uses them: within one arm the linearised
    # pre-period KPI is an exact linear combination of its numerator and denominator (with that
    # arm's constants), so those two beside it are collinear there though not across arms.
    centred = [X - X.mean(axis=0) for _, X in out.values()]
    raws = [np.sqrt((X**2).sum(axis=0)) for _, X in out.values()]
    keep: list[int] = []
    for j in range(len(names)):
        ok = True
        for cen, raw in zip(centred, raws):
            cand = cen[:, keep + [j]]
            sd = np.sqrt((cand**2).sum(axis=0))
            # Relative, not exact, zero: a constant column centres to rounding noise, which the
            # scaled check below would take for a fresh, uncorrelated covariate.
            if not np.all(np.isfinite(cand)) or sd[-1] <= 1e-9 * raw[j]:
                ok = False
                break
            eig = np.linalg.eigvalsh((cand.T @ cand) / np.outer(sd, sd))
            if eig[0] <= _KEEP_EIG * eig[-1]:
                ok = False
                break
        if ok:
            keep.append(j)
    return {a: (y, X[:, keep]) for a, (y, X) in out.items()}, [names[j] for j in keep]


def _cupac_model():
    # Gradient-boosted trees rather than a ridge fit: a linear model's prediction lies in the
    # span of the covariates it is fed, so as a control variate it adds nothing that the
    # regression adjustment on those covariates does not already remove. Trees pick up
    # thresholds, saturation and interactions of skewed per-unit counts without transforms, fit
    # tens of thousands of units in well under a second, and with early stopping off and a fixed
    # seed give the same prediction on every run (the analysis must be reproducible).
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20,
                                         l2_regularization=1.0, early_stopping=False, random_state=0)


def cupac_predictions(features: np.ndarray, target: np.ndarray, apply_features: np.ndarray | None = None, *,
                      folds: int = 5) -> np.ndarray:
    """A model's prediction of each unit's outcome, for use as CUPAC's control variate.

    Everything passed here must be measured before assignment: the prediction is a valid
    covariate only because it cannot depend on treatment.

    Parameters
    ----------
    features : array (n, k)
        Training features per unit.
    target : array (n,)
        What the model learns to predict (a pre-period outcome).
    apply_features : array (n, k), optional
        Lagged training: the model fitted on ``features -> target`` (e.g. the period before
        the pre-period predicting the pre-period) is applied to these (the same quantities one
        period later, i.e. the pre-period), to predict the in-experiment outcome. When omitted,
        cross-fitting: ``folds``-fold out-of-fold predictions of ``target`` from ``features``,
        so no unit's prediction has seen its own target.
    folds : int
        Folds for cross-fitting.

    Returns
    -------
    numpy.ndarray
        One prediction per unit.
    """
    from sklearn.model_selection import KFold
    from threadpoolctl import threadpool_limits

    X = np.asarray(features, dtype=float)
    y = np.asarray(target, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    # Below some tens of thousands of units the trees' OpenMP threads cost more in start-up and
    # contention than they save (5x slower on 200 units on two busy cores).
    with threadpool_limits(limits=1 if y.size < 20_000 else None, user_api="openmp"):
        if apply_features is not None:
            A = np.asarray(apply_features, dtype=float)
            return _cupac_model().fit(X, y).predict(A[:, None] if A.ndim == 1 else A)
        pred = np.empty(y.size)
        for train, test in KFold(n_splits=min(folds, y.size), shuffle=True, random_state=0).split(X):
            pred[test] = _cupac_model().fit(X[train], y[train]).predict(X[test])
    return pred


def _adjusted_effects(df, kpi: Kpi, ab: Result, rel: Result, *, covariates, prediction, use_pre: bool,
                      alpha: float) -> tuple[Result, Result]:
    # Lin's (2013) interacted fit, a slope per arm: the effect is multiplicative in most KPIs
    # (a treated unit's rate times 1 + effect), so the slope differs between arms, and a pooled
    # slope then carries an O(1/n) bias that 1,000 simulated experiments of 400 units
    # (tests/experiments/test_exp_covariates.py) showed at 3 to 4 standard errors of their mean;
    # the interacted fit also never loses precision to unequal arms (a 10% holdout).
    design, kept = covariate_design(df, covariates, prediction, use_pre=use_pre)
    (yc, xc), (yt, xt) = design[CONTROL], design[TREATMENT]
    use_cupac = bool(prediction) and prediction in kept
    method = "cupac" if use_cupac else "regression_adjusted"
    dropped = [c for c in ([prediction] if prediction else []) + list(covariates) if c not in kept]
    if not kept:
        note = Check("covariate_adjustment", "skip", "no covariate varies within the arms: the CUPED result stands")
        return tuple(replace(r, diagnostics=r.diagnostics + (note,)) for r in (ab, rel))
    try:
        if use_cupac:
            rest = (xc[:, 1:], xt[:, 1:]) if len(kept) > 1 else None
            res = [cupac(yc, xc[:, 0], yt, xt[:, 0], rest, interacted=True, relative=r, alpha=alpha, metric=kpi.name)
                   for r in (False, True)]
        else:
            sc, st = MultiRegressionAdjusted.from_arrays(yc, xc), MultiRegressionAdjusted.from_arrays(yt, xt)
            res = [regression_adjusted(sc, st, interacted=True, relative=r, alpha=alpha, metric=kpi.name,
                                       method="regression_adjusted") for r in (False, True)]
    except DataError as exc:
        note = Check("covariate_adjustment", "warn", f"regression adjustment not possible ({exc}): the CUPED "
                                                     "result stands")
        return tuple(replace(r, diagnostics=r.diagnostics + (note,)) for r in (ab, rel))
    out = []
    for new, old in zip(res, (ab, rel)):
        cuped_var = old.se**2 if old.se == old.se else math.nan
        extra = {**new.extra, "covariates": [c for c in kept], "cuped_se": old.se, "cuped_estimate": old.estimate,
                 "variance_reduction_vs_cuped": 1 - new.se**2 / cuped_var if cuped_var > 0 else math.nan,
                 "cuped_method": old.method, "linearised": kpi.denominator != "units"}
        bayes = {k: v for k, v in old.extra.items() if k.startswith(("chance_to_win", "risk_", "credible",
                                                                     "posterior", "prior", "bayesian"))}
        if "chance_to_win" in bayes:
            bayes["bayesian_note"] = "chance to win and risk come from the CUPED statistics (one pre-period covariate)"
        extra.update(bayes)
        msg = (f"{method}: {', '.join(kept)}; variance {100 * extra['variance_reduction']:.1f}% below the unadjusted, "
               f"{100 * extra['variance_reduction_vs_cuped']:.1f}% below CUPED's")
        if dropped:
            msg += f" (left out, no information beyond the others: {', '.join(dropped)})"
        diag = old.diagnostics + (Check("covariate_adjustment", "pass", msg,
                                        statistic=extra["variance_reduction_vs_cuped"]),)
        out.append(replace(new, extra=extra, diagnostics=diag))
    return out[0], out[1]


def _bayesian_figures(c, t, kpi: Kpi, *, alpha: float, cuped: bool, prior: EffectPrior | None) -> dict[str, Any]:
    try:
        b = bayesian_two_arm(c, t, relative=True, prior=prior, inverse=kpi.direction == "decrease", alpha=alpha,
                             cuped=cuped, metric=kpi.name)
    except DataError as exc:
        return {"bayesian_note": str(exc)}
    return {"chance_to_win": b.extra["chance_to_win"], "risk_control": b.extra["risk_control"],
            "risk_treatment": b.extra["risk_treatment"], "credible_interval": list(b.ci),
            "posterior_mean": b.estimate, "prior": b.extra.get("prior")}


_NO_CUPED = ("CUPED does not apply to a quantile KPI (a quantile of rows has no per-unit pre-period value to "
             "adjust by): the effect is unadjusted, and no pre-period or segment analysis is run")


def _quantile_effects(store: Store, program: Program, k: Kpi, window, alpha: float) -> tuple[Result, Result]:
    """Absolute and relative effect of a quantile KPI from its rows (clustered delta method)."""
    q = quantile_measure(program, k).quantile
    rows = measure_rows_expr(store, program, k.numerator, window=window).execute()
    arm = {a: rows[rows.arm == a] for a in (CONTROL, TREATMENT)}
    args = (arm[CONTROL].value.to_numpy(float), arm[CONTROL].unit_id.to_numpy(),
            arm[TREATMENT].value.to_numpy(float), arm[TREATMENT].unit_id.to_numpy())
    n = int(rows.unit_id.nunique())
    note = Check("cuped", "skip", _NO_CUPED)
    try:
        ab = quantile_effect(*args, q=q, alpha=alpha, metric=k.name)
        rel = quantile_effect(*args, q=q, relative=True, alpha=alpha, metric=k.name)
    except DataError as exc:
        return (_nan_result(k, n, str(exc), alpha, method="quantile_delta", extra={"quantile": q}),
                _nan_result(k, n, str(exc), alpha, "relative", method="quantile_delta"))
    ab = _scaled(ab, k.scale)
    return replace(ab, diagnostics=ab.diagnostics + (note,)), replace(rel, diagnostics=rel.diagnostics + (note,))


def _cap_checks(program: Program, k: Kpi, caps: dict[str, float]) -> tuple[Check, ...]:
    out = []
    for m in (k.numerator, k.denominator):
        if m not in caps:
            continue
        level = program.measure(m).cap
        cap = caps[m]
        if math.isfinite(cap):
            msg = (f"{m}: each row's value capped at {cap:.6g}, the {100 * level:g}th percentile of its values in "
                   "the analysis window (both arms pooled)")
        else:
            msg = f"{m}: no value in the analysis window, nothing capped"
        out.append(Check("capped_values", "pass", msg, statistic=cap if math.isfinite(cap) else None,
                         details={"measure": m, "percentile": level, "cap": cap}))
    return tuple(out)


def _weekly(store: Store, program, kpis_needed: Sequence[Kpi], window, alpha,
            caps: dict[str, float] | None = None) -> dict[str, list[Result]]:
    measures = sorted({m for k in kpis_needed for m in (k.numerator, k.denominator)})
    df = unit_measures_expr(store, program, measures, window=window, by=("week",), caps=caps).execute()
    # A/B/n: the weekly trend reads the pooled arms, as the KPI's main result does (arms named
    # other than "treatment" left every week without a treated unit, so novelty always skipped).
    df = df.assign(arm=np.where(df.arm == CONTROL, CONTROL, TREATMENT))
    out: dict[str, list[Result]] = {}
    for k in kpis_needed:
        res = []
        for w in sorted(df.week.unique()):
            d = df[df.week == w]
            dd = d.assign(num=d[k.numerator], den=d[k.denominator], num_pre=0.0, den_pre=0.0)
            res.append(kpi_effect(dd, k, alpha=alpha, cuped=False)[1])
        out[k.name] = res
    return out


def _missing_user_tables(store: Store, program, kpis) -> dict[str, list[str]]:
    """Declared user tables the store does not hold (nor reads in place) -> the KPIs that read them."""
    specs = measure_specs(program)
    held = set(store.user_tables())
    out: dict[str, list[str]] = {}
    for k in kpis:
        for m in (k.numerator, k.denominator):
            spec = specs.get(m)
            if spec is not None and spec.declared and spec.source is None and spec.table not in held:
                names = out.setdefault(spec.table.removeprefix("user_"), [])
                if k.name not in names:
                    names.append(k.name)
    return out


def analyze_experiment(
    store: Store,
    program: Program,
    *,
    kpis: Sequence[str] | None = None,
    segments: Sequence[str] | None = None,
    window: tuple[date, date] | None = None,
    alpha: float | None = None,
    cuped: bool = True,
    weekly: bool = True,
    volume_measures: Sequence[str] = (),
) -> ExperimentAnalysis:
    """Analyse the program's experiment on the store, whatever its design.

    Randomized unit designs (ab, cluster, holdout) are analysed here. A switchback design is
    handed to :func:`insightroi.experiments.analyze_switchback` (time blocks
    are the unit; ``cuped``, ``weekly`` and ``segments`` do not apply); did, synthetic_control and
    its to :func:`insightroi.experiments.analyze_quasi_design` (same result shape).

    Parameters
    ----------
    store : insightroi.store.Store
    program : Program
        Its ``experiment`` section names the assignments (experiment name, unit), window,
        pre-period, alpha and primary KPI.
    kpis : sequence of str, optional
        KPIs to analyse (default: all the program's KPIs).
    segments : sequence of str, optional
        Columns to break each KPI down by (e.g. ``["region"]``); each KPI gets one relative
        Result per segment value, BH-adjusted across values.
    window : (date, date), optional
        Inclusive analysis window (default: experiment start to end, or today).
    alpha : float, optional
        Default ``program.experiment.alpha``.
    cuped : bool
        Adjust each KPI by its pre-period value (variance reduction, no bias).
    weekly : bool
        Run the novelty check on the primary KPI (one extra pass over its tables).
    volume_measures : sequence of str
        Measures whose treated units' totals over the window to return as ``treated_totals``
        (randomized unit designs; what :func:`insightroi.metrics.treated_volumes` counts), summed
        from the analysis' own per-unit query (a capped measure capped at the same value, as
        :func:`insightroi.metrics.measure_totals` caps it).

    Returns
    -------
    ExperimentAnalysis

    Raises
    ------
    EstimationError
        For segment breakdowns of a switchback or quasi-experimental design.
    DataError
        When the store has no assignments for the experiment.
    """
    e = program.experiment
    if e.design not in _RANDOMIZED:
        for k in [program.kpi(n) for n in kpis] if kpis else program.kpis:
            if quantile_measure(program, k) is not None:
                raise EstimationError(f"KPI {k.name!r} is a quantile of rows ({k.numerator!r}); quantile KPIs are "
                                      f"analysed for randomized unit designs {list(_RANDOMIZED)}, not {e.design!r}")
    if e.design == "switchback":
        # Time blocks, not units, are randomized: a separate path with the same result shape.
        if segments:
            raise EstimationError("segment breakdowns are not available for switchback designs (blocks are the unit)")
        return analyze_switchback(store, program, kpis=kpis, window=window, alpha=alpha)
    if e.design in ("did", "synthetic_control", "its"):
        # Nothing was randomized: the design's own estimator, with the same result shape.
        if segments:
            raise EstimationError(f"segment breakdowns are not available for the {e.design} design")
        return analyze_quasi_design(store, program, kpis=kpis, window=window, alpha=alpha)
    alpha = e.alpha if alpha is None else alpha
    if e.design not in _RANDOMIZED:
        raise EstimationError(
            f"experiment design {e.design!r} is not a randomized unit-level design; analyze_experiment handles "
            f"{list(_RANDOMIZED) + ['switchback']} (did, synthetic_control, its: the quasi-experiment estimators)")
    chosen = [program.kpi(k) for k in kpis] if kpis else list(program.kpis)
    quantiles = {k.name for k in chosen if quantile_measure(program, k) is not None}
    totals = [k for k in chosen if k.name not in quantiles]
    window, pre_window = analysis_windows(program, window=window)
    # Alerts delivered to a control unit are contamination; chain events carry only the unit
    # columns alerts are routed by (a customer-level experiment has no alert per customer).
    alerts_by_unit = UNIT_COLUMNS.get(e.unit) in TABLES["chain_events"].columns
    covs = list(dict.fromkeys(e.covariates)) if pre_window is not None else []
    by_kpi = {name: list(dict.fromkeys(ms)) for name, ms in e.covariates_by_kpi.items()} if pre_window else {}
    all_covs = list(dict.fromkeys(covs + [m for ms in by_kpi.values() for m in ms]))
    volume_measures = list(dict.fromkeys(volume_measures))
    measures = sorted({m for k in totals for m in (k.numerator, k.denominator)} | set(all_covs)
                      | ({"alerts"} if alerts_by_unit else set()) | set(volume_measures))
    # Once per analysis: every period, week and segment caps at the analysis window's percentile.
    caps = measure_caps(store, program, measures, window=window)
    df = unit_measures_expr(store, program, measures, window=window, pre_window=pre_window, caps=caps).execute()
    if df.empty:
        raise DataError(f"no assignments for experiment {e.name!r} with unit type {e.unit!r} in the store")
    df = df.sort_values("unit_id", kind="stable").reset_index(drop=True)
    treated = df[df.arm != CONTROL]
    treated_totals = {m: float(treated[m].sum()) for m in volume_measures} | {"units": float(len(treated))}
    # A/B/n: every label other than "control" is a treatment arm. Each KPI's main result pools the
    # arms (the program's "treatment" policy, what the ROI values); ``arms`` compares each arm
    # with control, Holm-adjusted across arms.
    variants = sorted(set(df.arm) - {CONTROL})
    by_arm = df.copy() if variants != [TREATMENT] else None
    if by_arm is not None:
        if len(variants) < 2 and variants:
            raise DataError(f"arm label {variants[0]!r}: with one treatment arm it must be called 'treatment' "
                            "(several arms may have any names besides 'control')")
        df = df.assign(arm=np.where(df.arm == CONTROL, CONTROL, TREATMENT))
    arms = df.arm.value_counts()
    n_t, n_c = int(arms.get(TREATMENT, 0)), int(arms.get(CONTROL, 0))

    if by_arm is None:
        checks = [srm_check([n_c, n_t], [1 - e.treatment_share, e.treatment_share])]
    else:
        counts = by_arm.arm.value_counts()
        share = e.treatment_share / len(variants)
        checks = [srm_check([n_c] + [int(counts.get(v, 0)) for v in variants],
                            [1 - e.treatment_share] + [share] * len(variants))]
    control_exposed = int(((df.arm == CONTROL) & (df["alerts"] > 0)).sum()) if alerts_by_unit else 0
    checks.append(contamination_check(len(df), int((df.n_arms > 1).sum()), control_exposed=control_exposed,
                                      n_control=n_c))
    cov_c, cov_t = {}, {}
    for k in totals:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = df[f"{k.numerator}_pre"] / df[f"{k.denominator}_pre"]
        cov_c[f"{k.name} (pre)"], cov_t[f"{k.name} (pre)"] = rate[df.arm == CONTROL], rate[df.arm == TREATMENT]
        if k.denominator != "units":
            v = df[f"{k.denominator}_pre"]
            cov_c[f"{k.denominator} (pre)"], cov_t[f"{k.denominator} (pre)"] = v[df.arm == CONTROL], v[df.arm == TREATMENT]
    checks.append(balance_check(cov_c, cov_t) if pre_window else Check("covariate_balance", "skip", "no pre-period"))
    checks.append(annotation_check(store_annotations(store, window), window, rule=e.annotation_rule,
                                   excluded=e.exclude_windows))
    missing = _missing_user_tables(store, program, chosen)
    if missing:
        checks.append(Check("user_tables", "warn", "; ".join(
            f"the user table {t!r} is declared but not ingested (insightroi ingest --table {t} FILE): "
            f"{', '.join(ks)} not estimable" for t, ks in missing.items())))

    seq = e.sequential_tuning if e.sequential else None
    bayes = None
    if e.bayesian:
        bayes = "flat" if e.prior_sd is None else EffectPrior(mean=e.prior_mean, variance=e.prior_sd ** 2,
                                                              scale="relative")
    if seq is not None:
        checks.append(Check("sequential", "pass", f"always-valid intervals and p-values (confidence sequence, "
                                                  f"N* = {seq:g}): the results may be read at any look"))
    if (e.covariates or e.covariates_by_kpi or e.cupac) and pre_window is None:
        checks.append(Check("covariate_adjustment", "skip", "covariates and CUPAC need a pre-period "
                                                            "(pre_period_days > 0): KPIs are not adjusted by them"))
    hist = halves = None
    if (e.cupac or e.select_covariates) and pre_window is not None and totals:
        hist = _history(store, program, totals, all_covs, pre_window, caps, df.unit_id)
    if e.select_covariates and pre_window is not None and totals:
        halves = _pre_halves(store, program, totals, all_covs, pre_window, caps, df.unit_id)
    results: dict[str, Result] = {}
    relative: dict[str, Result] = {}
    adjust: dict[str, tuple[list[str], np.ndarray | None]] = {}  # the A/B/n arms reuse each KPI's adjustment
    for k in chosen:
        if k.name in quantiles:
            results[k.name], relative[k.name] = _quantile_effects(store, program, k, window, alpha)
            if seq is not None:
                note = Check("sequential", "warn", "a quantile KPI has no always-valid interval here: its interval "
                                                   "is fixed-horizon, valid only at the planned end")
                results[k.name] = replace(results[k.name], diagnostics=results[k.name].diagnostics + (note,))
            continue
        d = df.assign(num=df[k.numerator], den=df[k.denominator], num_pre=df[f"{k.numerator}_pre"],
                      den_pre=df[f"{k.denominator}_pre"])
        cov_cols, pred_col, cupac_how, choice = [], None, None, None
        k_covs = by_kpi.get(k.name, covs)
        if pre_window is not None and (k_covs or e.cupac):
            # The KPI's own numerator is already in its pre-period KPI (a mean KPI's is the same column).
            cov_cols = [f"{m}_pre" for m in k_covs if not (m == k.numerator and k.denominator == "units")]
            if e.cupac:
                pred, cupac_how = _cupac_prediction(d, hist, k, k_covs)
                if pred is not None:
                    pred_col = "cupac_prediction"
                    d = d.assign(cupac_prediction=pred)
            if e.select_covariates and cuped and seq is None:
                choice = _choose_covariates(d, k, k_covs, hist, halves, cupac=pred_col is not None)
                cov_cols = [c for c in cov_cols if c in choice.covariates]
                pred_col = pred_col if choice.cupac else None
        ab, rel = kpi_effect(d, k, alpha=alpha, cuped=cuped, sequential_tuning=seq, bayesian=bayes,
                             covariates=cov_cols, prediction=pred_col)
        if choice is not None:
            ab, rel = (_with_choice(r, choice) for r in (ab, rel))
        if (cov_cols or pred_col) and seq is None:
            adjust[k.name] = (cov_cols, None if pred_col is None else d[pred_col].to_numpy())
        if cupac_how is not None and (choice is None or choice.cupac):
            ab, rel = (replace(r, extra={**r.extra, "cupac_training": cupac_how}) for r in (ab, rel))
        diag = []
        if pre_window is not None:
            c_pre = Ratio.from_arrays(d.num_pre[d.arm == CONTROL], d.den_pre[d.arm == CONTROL])
            t_pre = Ratio.from_arrays(d.num_pre[d.arm == TREATMENT], d.den_pre[d.arm == TREATMENT])
            diag.append(pre_period_check(c_pre, t_pre, alpha=alpha, metric=k.name))
        diag += _cap_checks(program, k, caps)
        if caps and any(m in caps for m in (k.numerator, k.denominator)):
            ab = replace(ab, extra={**ab.extra, "caps": {m: caps[m] for m in (k.numerator, k.denominator) if m in caps}})
        results[k.name], relative[k.name] = replace(ab, diagnostics=ab.diagnostics + tuple(diag)), rel
    for t, names in missing.items():
        # A declared table with no rows yet: say that, not what its emptiness looks like from
        # inside the estimator ("the control arm has no ...", "0 units").
        why = f"the user table {t!r} is declared but not ingested (insightroi ingest --table {t} FILE): no rows"
        for name in names:
            for out in (results, relative):
                r = out.get(name)
                if r is not None and not r.estimable:
                    out[name] = Result.not_estimable(why, method=r.diagnostics[-1].details.get("method", r.method),
                                                     metric=r.metric, n=r.n, unit=r.unit, alpha=r.alpha,
                                                     extra=r.extra)
    # Regression to the mean on the primary KPI: the pre-period vs the equally long period before it.
    primary = next((k for k in totals if k.name == e.primary_kpi), None)
    if primary is not None and pre_window is not None:
        span = pre_window[1] - pre_window[0] + timedelta(days=1)
        hist_win = (pre_window[0] - span, pre_window[0] - timedelta(days=1))
        h = unit_measures_expr(store, program, [primary.numerator, primary.denominator], window=hist_win,
                               pre_window=pre_window, caps=caps).execute()
        rtm = regression_to_mean_check(Ratio.from_arrays(h[primary.numerator], h[primary.denominator]),
                                       Ratio.from_arrays(h[f"{primary.numerator}_pre"], h[f"{primary.denominator}_pre"]),
                                       metric=primary.name)
        r = results[primary.name]
        results[primary.name] = replace(r, diagnostics=r.diagnostics + (rtm,))
    per_unit = whole_window_kpis(program, totals)
    if primary is not None and weekly and primary.name in per_unit:
        checks.append(Check("novelty", "skip", f"{primary.name}: a per-unit condition or time to a first event "
                                               "has no weekly trend to read (a unit's week is not its window)"))
    elif primary is not None and weekly:
        wk = _weekly(store, program, [primary], window, alpha, caps)[primary.name]
        nov = novelty_check(wk, alpha=alpha)
        checks.append(replace(nov, message=f"{primary.name}: {nov.message}"))
    if weekly and e.primary_kpi in quantiles:
        checks.append(Check("novelty", "skip", f"{e.primary_kpi}: a quantile KPI is not checked for novelty "
                                               "(the weekly trend reads per-unit totals)"))

    annotate_kpi_results(results, relative, program, analysis_unit=e.unit, n_treatment=n_t, n_control=n_c,
                         window=window)

    arm_out: dict[str, dict[str, Result]] = {}
    if by_arm is not None:
        for k in totals:
            d = by_arm.assign(num=by_arm[k.numerator], den=by_arm[k.denominator],
                              num_pre=by_arm[f"{k.numerator}_pre"], den_pre=by_arm[f"{k.denominator}_pre"])
            use_pre = bool(cuped and all(float(d.loc[d.arm == a, "den_pre"].sum()) > 0 for a in (CONTROL, *variants)))
            try:
                mr = multi_arm(_stats(d, CONTROL, use_pre), {v: _stats(d, v, use_pre) for v in variants},
                               alpha=alpha, cuped=use_pre, correction="holm", metric=k.name)
            except DataError as exc:
                checks.append(Check("arms", "skip", f"{k.name}: arms not compared ({exc})"))
                continue
            arm_out[k.name] = {v: _scaled(r, k.scale) for v, r in mr.arms.items()}
            if k.name in adjust:
                arm_out[k.name] = _adjusted_arms(d, k, variants, adjust[k.name], arm_out[k.name], alpha=alpha,
                                                 cuped=cuped)

    seg_out: dict[str, dict[str, dict[str, Result]]] = {}
    if segments and per_unit:
        checks.append(Check("segments", "skip", f"{', '.join(sorted(per_unit))}: a per-unit condition or time to a "
                                                "first event over the unit's window is not broken down by segment"))
    for col in segments or ():
        seg_out[col] = _segments(store, program, [k for k in totals if k.name not in per_unit], col, window,
                                 pre_window, alpha, cuped, caps)

    return ExperimentAnalysis(
        name=e.name, design=e.design, unit=e.unit, window=window, pre_window=pre_window, n_treatment=n_t,
        n_control=n_c, results=results, relative=relative, checks=tuple(checks), segments=seg_out, alpha=alpha,
        arms=arm_out, treated_totals=treated_totals,
    )


def _adjusted_arms(d, k: Kpi, variants: Sequence[str], spec, cuped_arms: dict[str, Result], *, alpha: float,
                   cuped: bool) -> dict[str, Result]:
    """A/B/n: each arm against control with the KPI's covariate adjustment, Holm-adjusted across arms.

    The same covariates (and CUPAC prediction, fitted once on every unit's pre-assignment data) as
    the pooled result; the simultaneous interval uses the Bonferroni level ``alpha / m``, as
    :func:`insightroi.stats.multi_arm` does for Holm. If any arm's fit falls back to CUPED, every
    arm stays on CUPED (``cuped_arms``), so the arms are compared by one method.
    """
    cov_cols, pred = spec
    if pred is not None:
        d = d.assign(cupac_prediction=pred)
    out = {}
    for v in variants:
        sub = d[d.arm.isin([CONTROL, v])]
        sub = sub.assign(arm=np.where(sub.arm == CONTROL, CONTROL, TREATMENT))
        r, _ = kpi_effect(sub, k, alpha=alpha, cuped=cuped, covariates=cov_cols,
                          prediction=None if pred is None else "cupac_prediction")
        if r.method not in ("regression_adjusted", "cupac"):
            return cuped_arms
        out[v] = r
    p_raw = np.array([out[v].p_value for v in variants])
    p_adj = holm(p_raw)
    m = len(variants)
    res = {}
    for i, v in enumerate(variants):
        r = out[v]
        df_v = r.extra.get("df")
        crit = float(special.stdtrit(df_v, 1 - alpha / (2 * m)) if df_v else special.ndtri(1 - alpha / (2 * m)))
        extra = {**r.extra, "arm": v, "correction": "holm", "p_adjusted": float(p_adj[i]),
                 "significant_adjusted": bool(p_adj[i] < alpha), "alpha_per_arm": alpha / m,
                 "ci_adjusted": [r.estimate - crit * r.se, r.estimate + crit * r.se]}
        res[v] = replace(r, extra=extra)
    return res


def _history(store: Store, program: Program, kpis: Sequence[Kpi], covs: Sequence[str], pre_window, caps,
             unit_ids) -> Any:
    """Per-unit totals in the period before the pre-period (``<m>``) beside the pre-period ones (``<m>_pre``).

    CUPAC's model learns there how one period's values predict the next period's KPI, all before
    assignment; ``None`` when that period has no rows.
    """
    span = pre_window[1] - pre_window[0] + timedelta(days=1)
    hist_win = (pre_window[0] - span, pre_window[0] - timedelta(days=1))
    measures = sorted({m for k in kpis for m in (k.numerator, k.denominator)} | set(covs))
    h = unit_measures_expr(store, program, measures, window=hist_win, pre_window=pre_window, caps=caps).execute()
    h = h.drop_duplicates("unit_id").set_index("unit_id").reindex(unit_ids).fillna(0.0)
    return h, hist_win


def _pre_halves(store: Store, program: Program, kpis: Sequence[Kpi], covs: Sequence[str], pre_window, caps,
                unit_ids) -> Any:
    """Per-unit totals in the pre-period's second half (``<m>``) beside its first half (``<m>_pre``).

    The covariate selection's lagged frame where no data precede the pre-period: the first half
    predicts the second, both before assignment.
    """
    days = (pre_window[1] - pre_window[0]).days + 1
    if days < 2:
        return None
    mid = pre_window[0] + timedelta(days=days // 2)
    first, second = (pre_window[0], mid - timedelta(days=1)), (mid, pre_window[1])
    measures = sorted({m for k in kpis for m in (k.numerator, k.denominator)} | set(covs))
    h = unit_measures_expr(store, program, measures, window=second, pre_window=first, caps=caps).execute()
    h = h.drop_duplicates("unit_id").set_index("unit_id").reindex(unit_ids).fillna(0.0)
    return h, first, second


def _lagged_frame(d, h, k: Kpi, covs: Sequence[str], *, target: str) -> Any:
    """The selection's lagged frame from ``h`` (earlier period ``<m>``, later ``<m>_pre`` or ``<m>``)."""
    import pandas as pd

    later = (lambda m: h[f"{m}_pre"]) if target == "pre" else (lambda m: h[m])
    earlier = (lambda m: h[m]) if target == "pre" else (lambda m: h[f"{m}_pre"])
    cols = {"arm": d["arm"].to_numpy(), "num": later(k.numerator).to_numpy(float),
            "den": later(k.denominator).to_numpy(float), "num_pre": earlier(k.numerator).to_numpy(float),
            "den_pre": earlier(k.denominator).to_numpy(float)}
    for m in covs:
        cols[f"{m}_pre"] = earlier(m).to_numpy(float)
    return pd.DataFrame(cols)


def _choose_covariates(d, k: Kpi, covs: Sequence[str], hist, halves, *, cupac: bool):
    """``[experiment] select_covariates``: the KPI's covariate set chosen on data before assignment.

    The lagged frame is the period before the pre-period -> the pre-period when that period has
    the KPI's numerator and denominator, else the pre-period's first half -> its second half.
    With CUPAC, the candidate's prediction is cross-fitted on that frame (out of fold), as the
    analysis' model is fitted without the outcome it adjusts.
    """
    from insightroi.experiments._covselect import CovariateChoice, select_covariates

    cand = [m for m in covs if not (m == k.numerator and k.denominator == "units")]
    lagged, lag = None, ""
    if hist is not None:
        h, hist_win = hist
        if float(h[k.denominator].sum()) > 0 and float(h[k.numerator].abs().sum()) > 0:
            lagged = _lagged_frame(d, h, k, cand, target="pre")
            lag = f"{hist_win[0]} to {hist_win[1]} -> pre-period"
    if lagged is None and halves is not None:
        h, first, second = halves
        if float(h[k.denominator].sum()) > 0 and float(h[f"{k.denominator}_pre"].sum()) > 0:
            lagged = _lagged_frame(d, h, k, cand, target="post")
            lag = f"pre-period halves {first[0]} to {first[1]} -> {second[0]} to {second[1]}"
    if lagged is None or any(float(lagged.loc[lagged.arm == a, c].sum()) <= 0
                             for a in (CONTROL, TREATMENT) for c in ("den", "den_pre")):
        return CovariateChoice([], False, "cuped", "selected CUPED: no period before assignment has this KPI's data "
                                                   "in both arms to choose covariates on")
    pred = None
    if cupac:
        target = _linearised(lagged.num.to_numpy(float), lagged.den.to_numpy(float))
        names = ["num_pre", *([] if k.denominator == "units" else ["den_pre"]), *(f"{m}_pre" for m in cand)]
        lagged = lagged.assign(cupac_prediction=cupac_predictions(lagged[names].to_numpy(float), target))
        pred = "cupac_prediction"
    return select_covariates(lagged, [f"{m}_pre" for m in cand], prediction=pred, lag=lag)


def _with_choice(r: Result, choice) -> Result:
    """The selection in ``extra["covariate_selection"]`` and in the KPI's covariate_adjustment check."""
    diag, found = [], False
    for c in r.diagnostics:
        if c.name == "covariate_adjustment":
            c = replace(c, message=f"{choice.reason}. {c.message}")
            found = True
        diag.append(c)
    if not found:
        diag.append(Check("covariate_adjustment", "pass", choice.reason, statistic=0.0))
    return replace(r, diagnostics=tuple(diag), extra={**r.extra, "covariate_selection": choice.as_dict()})


def _cupac_prediction(d, hist, k: Kpi, covs: Sequence[str]) -> tuple[np.ndarray | None, str]:
    """CUPAC's prediction of each unit's in-experiment KPI, and how its model was trained.

    The target is the pre-period KPI linearised over all units (for a mean KPI, its numerator
    per unit): the analysis regresses the linearised in-experiment KPI on the prediction.
    Trained on the period before the pre-period when it has the KPI's denominator (lagged: those
    features predict the pre-period, then the pre-period's features predict the experiment);
    otherwise cross-fitted within the pre-period from the covariates (and the pre-period
    denominator), out of fold. Treatment-period outcomes never reach the model.
    """
    num_pre, den_pre = d.num_pre.to_numpy(float), d.den_pre.to_numpy(float)
    if den_pre.sum() <= 0:
        return None, "no pre-period denominator: no CUPAC prediction"
    target = _linearised(num_pre, den_pre)
    own_den = [] if k.denominator == "units" else [k.denominator]
    if hist is not None:
        h, hist_win = hist
        # "units" counts every assigned unit in any window, so the numerator must have rows too.
        if float(h[k.denominator].sum()) > 0 and float(h[k.numerator].abs().sum()) > 0:
            names = [k.numerator, *own_den, *(m for m in covs if m not in (k.numerator, k.denominator))]
            train = np.column_stack([h[m].to_numpy(float) for m in names])
            apply = np.column_stack([d[f"{m}_pre"].to_numpy(float) for m in names])
            return cupac_predictions(train, target, apply), f"lagged: trained {hist_win[0]} to {hist_win[1]} -> pre-period"
    names = [*own_den, *(m for m in covs if m != k.numerator)]
    if not names:
        return None, "no data before the pre-period and no covariate: no CUPAC prediction"
    feats = np.column_stack([d[f"{m}_pre"].to_numpy(float) for m in names])
    return cupac_predictions(feats, target), "cross-fitted (5 folds) within the pre-period"


def _segments(store: Store, program, chosen, col, window, pre_window, alpha, cuped,
              caps=None) -> dict[str, dict[str, Result]]:
    measures = sorted({m for k in chosen for m in (k.numerator, k.denominator)})
    if not measures:
        return {}
    df = unit_measures_expr(store, program, measures, window=window, pre_window=pre_window, by=(col,),
                            caps=caps).execute()
    out = {}
    for k in chosen:
        cells = {}
        for val, d in df.groupby(col, dropna=False, sort=True):
            args = [d[d.arm == a] for a in (CONTROL, TREATMENT)]
            if sum(float(x[k.denominator].sum()) for x in args) == 0:
                continue  # this KPI has no data in this segment (e.g. a table without the column's value)
            use_pre = cuped and all(float(x[f"{k.denominator}_pre"].sum()) > 0 for x in args)
            if use_pre:
                st = [RatioRegressionAdjusted.from_arrays(x[k.numerator], x[k.denominator], x[f"{k.numerator}_pre"],
                                                          x[f"{k.denominator}_pre"]) for x in args]
            else:
                st = [Ratio.from_arrays(x[k.numerator], x[k.denominator]) for x in args]
            if any(s.mean != s.mean or getattr(s, "n", 0) < 2 for s in st):  # NaN mean: empty denominator
                st = [Ratio.from_arrays(x[k.numerator], x[k.denominator]) for x in args]
            cells[str(val)] = tuple(st)
        out[k.name] = segment_breakdown(cells, relative=True, alpha=alpha, correction="bh", metric=k.name)
    return out

"""Quasi-experimental estimators on DataFrames: DiD, event study, staggered DiD, synthetic control,
time-series counterfactual and matched cohorts. Thin wrappers: reshape, then call ``insightroi.stats``.

Panels are long DataFrames, one row per unit x period. ``period`` must be numbers (week indices)
or dates, or text labels with an explicit ``period_order`` (every function here takes one);
``rollout``, exclusion windows (inclusive ``(start, end)`` pairs) and predictor periods are
written on that same scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from insightroi.errors import DataError, check_option
from insightroi.stats import (
    Result,
    causal_impact,
    did_2x2,
    event_study,
    matched_cohorts,
    staggered_did,
    synthetic_control,
    twfe,
)
from insightroi.stats import did_ratio
from insightroi.stats._its import ITS_DEFAULTS, LevelMode
from insightroi.stats._panel import period_positions

__all__ = [
    "kpi_rate",
    "diff_in_diff",
    "synthetic_control_panel",
    "time_series_impact",
    "matched_cohort_panel",
    "quasi_kpi_effects",
]

DidMethod = Literal["2x2", "twfe", "event_study", "staggered"]


def kpi_rate(data: pd.DataFrame, numerator: str, denominator: str, scale: float = 1.0, name: str = "kpi") -> pd.DataFrame:
    """Copy of ``data`` with ``name`` = numerator / denominator x scale (NaN where the denominator is 0)."""
    out = data.copy()
    den = out[denominator].astype(float)
    out[name] = np.where(den > 0, out[numerator].astype(float) / den.where(den > 0, 1.0) * scale, np.nan)
    return out


def _excluded(period: pd.Series, windows: Sequence[tuple]) -> np.ndarray:
    ex = np.zeros(len(period), dtype=bool)
    for lo, hi in windows:
        ex |= ((period >= lo) & (period <= hi)).to_numpy()
    return ex


def _ordered_periods(per: pd.Series, name: str, rollout, ft: pd.Series, windows: Sequence[tuple], period_order):
    """Periods, rollout, first-treated periods and windows on a scale whose sort order is time order.

    Numbers and datetime64 pass through. Text labels have no trustworthy order (alphabetically
    "Q12011" < "Q42010"), so they need ``period_order`` and are replaced by their positions in
    it; objects that are dates (``datetime.date``, Timestamps) become datetime64.
    """
    if period_order is None and isinstance(per.dtype, pd.CategoricalDtype) and per.cat.ordered:
        period_order = list(per.cat.categories)
    if period_order is not None:
        order = list(period_order)

        def pos(vals, what):
            return period_positions(np.asarray(list(vals), dtype=object), order, who="diff_in_diff", name=what)[0]

        per = pd.Series(pos(per.astype(object), f"period column {name!r}"), index=per.index)
        rollout = None if rollout is None else float(pos([rollout], "rollout")[0])
        ft = pd.Series(pos(ft.astype(object), "first_treated"), index=ft.index)
        windows = [(float(pos([lo], "exclude_windows")[0]), float(pos([hi], "exclude_windows")[0])) for lo, hi in windows]
        return per, rollout, ft, windows
    if per.dtype.kind in "biufM":
        return per, rollout, ft, windows
    # Raises for labels that are neither numbers nor dates, naming the column and the fix.
    period_positions(per.to_numpy(dtype=object), who="diff_in_diff", name=f"period column {name!r}")
    present = per.dropna()
    if len(present) and all(isinstance(v, (int, float, np.integer, np.floating)) for v in present.tolist()):
        return per.astype(float), rollout, ft, windows
    ts = pd.to_datetime
    return (ts(per), None if rollout is None else ts(rollout), ts(ft.astype(object)),
            [(ts(lo), ts(hi)) for lo, hi in windows])


def _period_scale(per: pd.Series, name: str, period_order, who: str):
    """Periods on a scale whose sort order is time order, and the map of other labels onto it.

    Returns the converted column and ``to_scale(values, what)``, which maps labels written like
    the column's (a rollout, window ends, predictor periods) onto the same scale; ``what`` names
    the argument in errors. Numbers and datetime64 pass through; objects that are dates become
    datetime64; text labels need ``period_order`` (or an ordered Categorical) and become their
    positions in it, because sorted as text "Q12011" < "Q42010" and a rollout would be misread.
    """
    if period_order is None and isinstance(per.dtype, pd.CategoricalDtype) and per.cat.ordered:
        period_order = list(per.cat.categories)
    if period_order is not None:
        order = list(period_order)

        def to_positions(vals, what):
            return period_positions(np.asarray(list(vals), dtype=object), order, who=who, name=what)[0]

        return pd.Series(to_positions(per.astype(object), f"period column {name!r}"), index=per.index), to_positions
    if per.dtype.kind in "biufM":
        return per, lambda vals, what: np.asarray(list(vals))
    # Raises for labels that are neither numbers nor dates, naming the column and the fix.
    period_positions(per.to_numpy(dtype=object), who=who, name=f"period column {name!r}")
    present = per.dropna()
    if len(present) and all(isinstance(v, (int, float, np.integer, np.floating)) for v in present.tolist()):
        return per.astype(float), lambda vals, what: np.asarray(list(vals), dtype=float)
    return pd.to_datetime(per), lambda vals, what: np.asarray(pd.to_datetime(list(vals)))


def _on_scale(data: pd.DataFrame, period: str, period_order, who: str, rollout=None, windows: Sequence[tuple] = ()):
    """``data`` with ``period`` on a time-ordered scale (a copy), the rollout and windows on it, and the map."""
    if period not in data.columns:
        raise DataError(f"{who}: column {period!r} not in the panel; it has {list(data.columns)}")
    per, to_scale = _period_scale(data[period], period, period_order, who)
    out = data.assign(**{period: per})
    r = None if rollout is None else to_scale([rollout], "rollout")[0]
    w = [tuple(to_scale([lo, hi], "exclude_windows")) for lo, hi in windows]
    return out, r, w, to_scale


def _period_codes(period: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    levels = np.sort(period.unique())
    return np.searchsorted(levels, period.to_numpy()), levels


def diff_in_diff(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: str,
    period: str,
    treated: str | None = None,
    rollout=None,
    first_treated: str | None = None,
    method: DidMethod = "twfe",
    covariates: Sequence[str] = (),
    exclude_windows: Sequence[tuple] = (),
    leads: int = 4,
    lags: int = 4,
    control: Literal["never", "notyet"] = "never",
    alpha: float = 0.05,
    metric: str = "",
    period_order: Sequence | None = None,
) -> Result:
    """Difference-in-differences on a unit x period panel.

    Parameters
    ----------
    data : DataFrame
        One row per unit x period.
    outcome, unit, period : str
        Column names.
    treated : str, optional
        Boolean column: the unit belongs to the treated group (for a common rollout).
    rollout : period value, optional
        First treated period for a common rollout (with ``treated``).
    first_treated : str, optional
        Column with each unit's first treated period (NaN/None for never treated); for staggered
        rollouts and event studies. Either this or ``treated`` + ``rollout``.
    method : {"2x2", "twfe", "event_study", "staggered"}
        ``2x2``: unit means before vs after (:func:`insightroi.stats.did_2x2`); ``twfe``: two-way
        fixed effects with unit-clustered errors; ``event_study``: leads/lags with a joint
        pre-trend test; ``staggered``: Callaway & Sant'Anna (balanced panel required).
    covariates : sequence of str
        Time-varying controls (seasonality terms, annotation dummies); twfe / event_study only.
    exclude_windows : sequence of (start, end)
        Declared shocks; their periods are dropped.
    leads, lags, control, alpha, metric
        Passed to the estimator.
    period_order : sequence, optional
        Every period label, earliest first. Required when ``period`` holds text labels (e.g.
        quarters written "Q42010"), which would otherwise sort alphabetically and misplace the
        rollout; ``rollout``, ``first_treated`` and ``exclude_windows`` then use the same labels.
        An ordered pandas Categorical supplies its own order. Numbers and dates need none.

    Returns
    -------
    Result

    Raises
    ------
    DataError
        Text periods without ``period_order``; a 2x2 with fewer than 2 treated or control units
        (the message points to ``method="twfe"``).
    """
    check_option("method", method, ("2x2", "twfe", "event_study", "staggered"))
    cols = [outcome, unit, period]
    missing = [c for c in cols + list(covariates) + [c for c in (treated, first_treated) if c] if c not in data.columns]
    if missing:
        raise DataError(f"diff_in_diff: columns {missing} not in the panel; it has {list(data.columns)}")
    df = data
    if first_treated is not None:
        ft = df[first_treated]
    elif treated is not None and rollout is not None:
        ft = pd.Series([rollout] * len(df), index=df.index, dtype=object).where(df[treated].astype(bool).to_numpy(), None)
    else:
        raise DataError("diff_in_diff: pass either first_treated, or treated and rollout")
    if method == "2x2":
        n_tr = int(df.loc[pd.notna(ft).to_numpy(), unit].nunique())
        n_all = int(df[unit].nunique())
        if 0 < n_tr < 2 or n_all - n_tr < 2:
            raise DataError(
                f'diff_in_diff(method="2x2"): {n_tr} treated and {n_all - n_tr} control unit(s); the 2x2 needs at least 2 '
                'of each for a variance. Use method="twfe", which switches to a wild cluster bootstrap when fewer than '
                "10 units are treated, or synthetic_control_panel for a single treated unit."
            )
    per, rollout, ft, exclude_windows = _ordered_periods(df[period], period, rollout, ft, exclude_windows, period_order)
    ex = _excluded(per, exclude_windows)
    pcode, levels = _period_codes(per)
    ft_vals = ft.to_numpy()
    ft_code = np.full(len(df), np.nan)
    has = pd.notna(ft).to_numpy()
    ft_code[has] = np.searchsorted(levels, ft_vals[has])
    y = df[outcome].to_numpy(dtype=float)
    u = df[unit].to_numpy()
    if method == "2x2":
        if not has.any():
            raise DataError("diff_in_diff: no treated unit")
        # Common rollout: "after" starts at the first treated period for every unit.
        d = pd.DataFrame({"u": u, "y": y, "post": pcode >= np.nanmin(ft_code), "tr": has})[~ex]
        g = d.groupby(["u", "post"])["y"].mean().unstack()
        tr = d.groupby("u")["tr"].first().reindex(g.index)
        return did_2x2(g.get(False, pd.Series(np.nan, index=g.index)).to_numpy(), g.get(True, pd.Series(np.nan, index=g.index)).to_numpy(), tr.to_numpy(dtype=bool), alpha=alpha, metric=metric)
    if method == "twfe":
        D = (has & (pcode >= np.nan_to_num(ft_code, nan=np.inf))).astype(float)
        X = df[list(covariates)].to_numpy(dtype=float) if covariates else None
        return twfe(y, u, pcode, D, covariates=X, covariate_names=list(covariates) or None, exclude=ex, alpha=alpha, metric=metric)
    if method == "event_study":
        X = df[list(covariates)].to_numpy(dtype=float) if covariates else None
        return event_study(y, u, pcode, ft_code, leads=leads, lags=lags, covariates=X, exclude=ex, alpha=alpha, metric=metric)
    # staggered: unit x period matrix
    wide = pd.DataFrame({"u": u, "p": pcode, "y": y}).pivot_table(index="u", columns="p", values="y", aggfunc="mean")
    if wide.isna().any().any():
        raise DataError("diff_in_diff(method='staggered'): the panel must be balanced (every unit in every period)")
    cohort = pd.Series(ft_code, index=u).groupby(level=0).first().reindex(wide.index).to_numpy()
    exp = np.zeros(len(levels), dtype=bool)
    for lo, hi in exclude_windows:
        exp |= (levels >= lo) & (levels <= hi)
    return staggered_did(wide.to_numpy(), cohort, control=control, exclude_periods=exp, alpha=alpha, metric=metric)


def synthetic_control_panel(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: str,
    period: str,
    treated_unit,
    rollout,
    predictors: dict[str, tuple[str, Sequence] | tuple[str, Sequence, str]] | None = None,
    donors: Sequence | None = None,
    placebo: bool = True,
    leave_one_out: bool = True,
    alpha: float = 0.05,
    metric: str = "",
    period_order: Sequence | None = None,
) -> Result:
    """Synthetic control for one treated unit from a long panel.

    Parameters
    ----------
    data : DataFrame
        One row per unit x period; balanced over the donors used.
    outcome, unit, period : str
    treated_unit : value of ``unit``
    rollout : period value
        First treated period.
    predictors : dict, optional
        ``name -> (column, periods)``: the predictor is the mean of ``column`` over ``periods``
        (ADH 2010's specification). Without it the pre-period outcomes are matched directly.
    donors : sequence, optional
        Donor units (default: every other unit with a complete series).
    placebo, leave_one_out, alpha, metric
        See :func:`insightroi.stats.synthetic_control`.
    period_order : sequence, optional
        Every period label, earliest first. Required when ``period`` holds text labels (e.g.
        "Q42010"), which would otherwise sort alphabetically: the pre-period would be the wrong
        rows. ``rollout`` and the periods in ``predictors`` then use the same labels. An ordered
        pandas Categorical supplies its own order; numbers and dates need none.

    Raises
    ------
    DataError
        Text periods without ``period_order``; a treated unit not in the panel.
    """
    data, rollout, _, to_scale = _on_scale(data, period, period_order, "synthetic_control_panel", rollout)
    if predictors:
        predictors = {k: (spec[0], list(to_scale(list(spec[1]), f"predictors[{k!r}] periods")), *spec[2:])
                      for k, spec in predictors.items()}
    Y = data.pivot_table(index=period, columns=unit, values=outcome, aggfunc="mean").sort_index()
    if treated_unit not in Y.columns:
        raise DataError(f"synthetic_control_panel: treated unit {treated_unit!r} not in the panel")
    pool = [c for c in (donors if donors is not None else Y.columns) if c != treated_unit]
    pool = [c for c in pool if Y[c].notna().all()]
    n_pre = int((Y.index < rollout).sum())
    P1 = P0 = None
    if predictors:
        def pred(u):
            d = data[data[unit] == u].set_index(period)
            return np.array([d.loc[d.index.isin(list(spec[1])), spec[0]].mean() for spec in predictors.values()])
        P1 = pred(treated_unit)
        P0 = np.column_stack([pred(u) for u in pool])
        ok = np.all(np.isfinite(P0), axis=0)
        pool = [p for p, k in zip(pool, ok) if k]
        P0 = P0[:, ok]
    return synthetic_control(
        Y[treated_unit].to_numpy(dtype=float), Y[pool].to_numpy(dtype=float), n_pre,
        predictors_treated=P1, predictors_donors=P0, donor_names=[str(p) for p in pool],
        placebo=placebo, leave_one_out=leave_one_out, alpha=alpha, metric=metric,
    )


def time_series_impact(
    data: pd.DataFrame,
    *,
    outcome: str,
    period: str,
    rollout,
    controls: Sequence[str] = (),
    seasonality: int | None = None,
    exclude_windows: Sequence[tuple] = (),
    level: LevelMode = ITS_DEFAULTS.level,
    level_ratio_scale: float = ITS_DEFAULTS.level_ratio_scale,
    prior_level_sd: float = ITS_DEFAULTS.prior_level_sd,
    prior_r2: float | None = ITS_DEFAULTS.prior_r2,
    prior_df: float = ITS_DEFAULTS.prior_df,
    n_sims: int = ITS_DEFAULTS.n_sims,
    seed: int = ITS_DEFAULTS.seed,
    alpha: float = ITS_DEFAULTS.alpha,
    metric: str = "",
    period_order: Sequence | None = None,
) -> Result:
    """CausalImpact-like counterfactual for one series (rows = periods, put in time order).

    A DataFrame front end to :func:`insightroi.stats.causal_impact` with the same defaults
    (both read :data:`insightroi.stats._its.ITS_DEFAULTS`), so one series gives one figure
    through either: ``level="estimated"`` (level and noise variances estimated from the
    pre-period, both uncertainties in the interval; half-Cauchy prior scale 0.3 on level SD /
    noise SD), ``n_sims=2000``, ``seed=0``, ``alpha=0.05``; R CausalImpact's priors
    (``prior_level_sd=0.01``, ``prior_r2=0.8``, ``prior_df=50``) apply with ``level="prior"``.
    See :func:`insightroi.stats.causal_impact` for the modes.

    Parameters
    ----------
    data : DataFrame
        One row per period.
    outcome, period : str
        Column names.
    rollout : period value
        First treated period.
    controls : sequence of str
        Control series (untouched by the intervention) used as regressors.
    seasonality : int, optional
    exclude_windows : sequence of (start, end)
        Periods inside are removed from the series before fitting (their rows are neither
        fitted nor counted as effects).
    level, level_ratio_scale, prior_level_sd, prior_r2, prior_df, n_sims, seed, alpha, metric
        Passed to :func:`insightroi.stats.causal_impact`.
    period_order : sequence, optional
        Every period label, earliest first. Required when ``period`` holds text labels (e.g.
        "Q42010"), which would otherwise sort alphabetically and scramble the series; ``rollout``
        and ``exclude_windows`` then use the same labels. Numbers and dates need none.

    Returns
    -------
    Result

    Raises
    ------
    DataError
        Text periods without ``period_order``.
    """
    df, rollout, windows, _ = _on_scale(data, period, period_order, "time_series_impact", rollout, exclude_windows)
    df = df.sort_values(period, kind="stable")
    df = df[~_excluded(df[period], windows)]
    n_pre = int((df[period] < rollout).sum())
    X = df[list(controls)].to_numpy(dtype=float) if controls else None
    return causal_impact(df[outcome].to_numpy(dtype=float), n_pre, X, seasonality=seasonality, level=level,
                         level_ratio_scale=level_ratio_scale, prior_level_sd=prior_level_sd, prior_r2=prior_r2,
                         prior_df=prior_df, n_sims=n_sims, seed=seed, alpha=alpha, metric=metric)


def matched_cohort_panel(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: str,
    period: str,
    treated: str,
    rollout,
    covariates: Sequence[str] = (),
    method: Literal["propensity", "mahalanobis", "exact"] = "propensity",
    caliper: float | None = 0.2,
    n_neighbors: int = 1,
    alpha: float = 0.05,
    metric: str = "",
    period_order: Sequence | None = None,
) -> Result:
    """Match treated to control units on pre-period KPI level and trend, then compare changes.

    Per unit: pre-period mean and slope of ``outcome`` (plus the means of ``covariates`` before
    ``rollout``) are the matching variables; the outcome compared is post mean - pre mean, so the
    estimate is a matched difference-in-differences (Heckman, Ichimura & Todd 1997).

    ``period_order`` (every period label, earliest first) is required when ``period`` holds text
    labels such as "Q42010": sorted as text they would put periods on the wrong side of
    ``rollout`` and bend the pre-period slope. ``rollout`` then uses the same labels.

    Raises
    ------
    DataError
        Text periods without ``period_order``; no periods on one side of the rollout.
    """
    data, rollout, _, _ = _on_scale(data, period, period_order, "matched_cohort_panel", rollout)
    df = data[[unit, period, outcome, treated, *covariates]].dropna(subset=[outcome])
    pre = df[df[period] < rollout]
    post = df[df[period] >= rollout]
    if pre.empty or post.empty:
        raise DataError("matched_cohort_panel: need periods on both sides of the rollout")
    pcode, _ = _period_codes(pre[period])
    pre = pre.assign(_t=pcode)

    def slope(g):
        t = g["_t"].to_numpy(dtype=float)
        v = g[outcome].to_numpy(dtype=float)
        return float(np.polyfit(t, v, 1)[0]) if len(np.unique(t)) > 1 else 0.0

    feats = pd.DataFrame({
        "pre_mean": pre.groupby(unit)[outcome].mean(),
        "pre_slope": pre.groupby(unit)[[outcome, "_t"]].apply(slope),
    })
    for c in covariates:
        feats[c] = pre.groupby(unit)[c].mean()
    feats["post_mean"] = post.groupby(unit)[outcome].mean()
    feats["treated"] = df.groupby(unit)[treated].first().astype(bool)
    feats = feats.dropna()
    names = ["pre_mean", "pre_slope", *covariates]
    return matched_cohorts(
        feats[names].to_numpy(dtype=float), feats["treated"].to_numpy(), (feats["post_mean"] - feats["pre_mean"]).to_numpy(dtype=float),
        method=method, caliper=caliper, n_neighbors=n_neighbors, covariate_names=names, alpha=alpha, metric=metric,
    )


def quasi_kpi_effects(
    panel: pd.DataFrame,
    *,
    numerator: str,
    denominator: str,
    rollout,
    scale: float = 1.0,
    unit: str = "unit",
    period: str = "period",
    treated: str = "treated",
    exclude_windows: Sequence[tuple] = (),
    seasonality: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    metric: str = "",
    period_order: Sequence | None = None,
) -> dict[str, Result]:
    """Observational estimates of a ratio KPI's effect from a unit x period panel (randomization ignored).

    Returns
    -------
    dict
        ``"did"``: ratio-of-sums DiD, all pre vs all post periods, SE clustered by unit
        (:func:`insightroi.stats.did_ratio`); ``"causal_impact"``: time-series counterfactual of
        the treated units' weekly KPI with the control units' weekly KPI as the control series
        (:func:`insightroi.stats.causal_impact`). Both in KPI units (x ``scale``).

    ``period_order`` (every period label, earliest first) is required when ``period`` holds text
    labels such as "Q42010", which would otherwise be split into pre and post, and ordered, as
    text; ``rollout`` and ``exclude_windows`` then use the same labels.

    Raises
    ------
    DataError
        Text periods without ``period_order``; no data on one side of the rollout.
    """
    panel, rollout, exclude_windows, _ = _on_scale(panel, period, period_order, "quasi_kpi_effects", rollout,
                                                   exclude_windows)
    df = panel[~_excluded(panel[period], exclude_windows)]
    g = df.assign(_post=df[period] >= rollout).groupby([unit, "_post"])[[numerator, denominator]].sum().unstack(fill_value=0.0)
    if (numerator, True) not in g.columns or (numerator, False) not in g.columns:
        raise DataError("quasi_kpi_effects: need data on both sides of the rollout")
    tr = df.groupby(unit)[treated].first().reindex(g.index).astype(bool).to_numpy()
    did = did_ratio(g[(numerator, False)].to_numpy(), g[(denominator, False)].to_numpy(), g[(numerator, True)].to_numpy(),
                    g[(denominator, True)].to_numpy(), tr, scale=scale, alpha=alpha, metric=metric)
    w = df.groupby([period, treated])[[numerator, denominator]].sum().reset_index()
    w = kpi_rate(w, numerator, denominator, scale)
    wide = w.pivot(index=period, columns=treated, values="kpi").sort_index().dropna()
    wide.columns = ["control" if not c else "treated" for c in wide.columns]
    # level="controls": the treated and control groups share shocks (defect bursts, season) that
    # move a group's level for weeks; R's fixed level prior assumed it barely moves and covered
    # the demo's true effect in 27 of 60 worlds (57 of 60 with this mode).
    its = causal_impact(wide["treated"].to_numpy(), int((wide.index < rollout).sum()), wide[["control"]].to_numpy(),
                        seasonality=seasonality, alpha=alpha, seed=seed, metric=metric, level="controls")
    return {"did": did, "causal_impact": its}

"""Claim validation: is "negative reviews down 40%" the program, or the season, or a spike?

A claim is checked the way a sceptical analyst would (the seed articles' checklist): which
denominator it uses; the absolute and relative before/after change in the treated units; the
same change in the untreated units; the incremental effect against the untreated units with its
interval (a difference-in-differences whose pre-period weight is estimated: each unit's
post-period KPI adjusted for its pre-period rates, see ``_incremental``; the plain DiD is shown
beside it); which "before" window the claimed number was computed from, and whether it was a
spike or the cherry-picked worst stretch of the pre-period that would have fallen anyway
(regression to the mean); whether the effect persists over the following windows; and whether
adjacent signals (tickets, refunds, defect mentions) moved the same way. The verdict is
``supported``, ``weak`` or ``not supported``, with the reasons.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from insightroi.errors import DataError
from insightroi.stats import Check, Result, did_ratio, jsonable, ratio_ancova, twfe

__all__ = ["ParsedClaim", "ClaimReport", "parse_claim", "validate_claim"]

Verdict = Literal["supported", "weak", "not supported"]
# A claim this many times beyond the interval's nearest end is "not supported" rather than "weak".
OVERSTATEMENT = 1.5

_DOWN = r"down|fell|fall|falls|dropped|drop|drops|decreased?|decreases|declined?|reduced?|reduces|reduction|fewer|lower|less|cut|cuts|shrank|slashed"
_UP = r"up|rose|rise|rises|increased?|increases|grew|grow|grows|more|higher|gained?|boosted?|improved?"


@dataclass(frozen=True)
class ParsedClaim:
    """What a claim says: direction, size and whether the size is relative (%) or absolute."""

    text: str
    direction: Literal["decrease", "increase"]
    magnitude: float  # positive; a fraction (0.4) when relative, KPI units when absolute
    kind: Literal["relative", "absolute"]

    @property
    def signed_relative(self) -> float | None:
        """The claimed relative change with its sign (e.g. -0.4), None for absolute claims."""
        if self.kind != "relative":
            return None
        return -self.magnitude if self.direction == "decrease" else self.magnitude


def parse_claim(text: str) -> ParsedClaim:
    """Parse a claim such as ``"negative reviews down 40%"`` or ``"tickets per 1000 orders fell by 2.5 points"``.

    Recognises percentages (``40%``, ``40 percent``), absolute changes (``by 2.5``, ``2.5 points``),
    ``halved`` (-50%), ``doubled`` (+100%), ``tripled`` (+200%) and a direction word (down, fell,
    reduced, fewer, up, rose, increased, ...). A bare signed number (``-40%``) also sets the direction.

    Raises
    ------
    DataError
        When no number or no direction can be read, naming what is missing.
    """
    t = text.lower().strip()
    if re.search(r"\bhalved\b", t):
        return ParsedClaim(text, "decrease", 0.5, "relative")
    for word, mult in (("doubled", 1.0), ("tripled", 2.0)):
        if re.search(rf"\b{word}\b", t):
            return ParsedClaim(text, "increase", mult, "relative")
    pat = r"([+\-\u2212]?)\s*(\d+(?:[.,]\d+)?)\s*(%|percent\b|per cent\b|pp\b|points?\b|percentage points?\b)?"
    cands = list(re.finditer(pat, t))
    if not cands:
        raise DataError(f"cannot read a number from the claim {text!r} (e.g. 'negative reviews down 40%')")
    # Prefer a number with a unit (40%, 2 points), then one after "by", then the last number
    # ("tickets per 1000 orders fell 12%" must not read 1000).
    with_unit = [c for c in cands if c.group(3)]
    after_by = [c for c in cands if t[: c.start()].rstrip().endswith("by")]
    m = with_unit[0] if with_unit else (after_by[0] if after_by else cands[-1])
    sign, num, unit = m.group(1), float(m.group(2).replace(",", ".")), (m.group(3) or "").strip()
    kind: Literal["relative", "absolute"] = "relative" if unit in ("%", "percent", "per cent") else "absolute"
    mag = num / 100.0 if kind == "relative" else num
    direction = None
    down = re.search(rf"\b({_DOWN})\b", t)
    up = re.search(rf"\b({_UP})\b", t)
    if sign in ("-", "\u2212"):
        direction = "decrease"
    elif sign == "+":
        direction = "increase"
    elif down and not up:
        direction = "decrease"
    elif up and not down:
        direction = "increase"
    elif down and up:
        direction = "decrease" if down.start() < up.start() else "increase"
    if direction is None:
        raise DataError(f"cannot tell whether the claim {text!r} is an increase or a decrease (say 'down' or 'up')")
    if kind == "relative" and direction == "decrease" and mag > 1:
        raise DataError(f"the claim {text!r} says a decrease of more than 100%, which is impossible for a rate")
    return ParsedClaim(text, direction, mag, kind)


@dataclass(frozen=True)
class ClaimReport:
    """Everything :func:`validate_claim` found, and the verdict with its reasons."""

    claim: ParsedClaim
    kpi: str
    numerator: str
    denominator: str
    scale: float
    treated_before: float
    treated_after: float
    absolute_change: float
    relative_change: float
    control_before: float
    control_after: float
    control_absolute_change: float
    control_relative_change: float
    incremental: Result
    incremental_relative: float
    incremental_relative_ci: tuple[float, float]
    pre_trends: Check
    regression_to_mean: Check
    persistence: Check
    triangulation: Check
    verdict: Verdict
    reasons: tuple[str, ...]
    windows: dict[str, Any] = field(default_factory=dict)
    # Annotated events (promotions, outages) inside the claim's windows, when the store was read.
    annotations: Check | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        checks = ("pre_trends", "regression_to_mean", "persistence", "triangulation", "annotations")
        d = {k: v for k, v in asdict(self).items() if k not in ("incremental", *checks)}
        d["incremental"] = self.incremental.to_dict()
        for k in checks:
            d[k] = None if getattr(self, k) is None else getattr(self, k).to_dict()
        return jsonable(d)

    def summary(self) -> str:
        """Readable text report."""
        c = self.claim
        claimed = (f"{c.signed_relative:+.0%}" if c.kind == "relative" else f"{'-' if c.direction == 'decrease' else '+'}{c.magnitude:g}")
        lo, hi = self.incremental.ci
        rlo, rhi = self.incremental_relative_ci
        lines = [
            f"Claim: {c.text!r} (read as {claimed}, {c.kind})",
            f"KPI: {self.kpi} = {self.numerator} / {self.denominator} x {self.scale:g}",
            f"Treated, before -> after: {self.treated_before:.4g} -> {self.treated_after:.4g} "
            f"({self.absolute_change:+.4g} absolute, {self.relative_change:+.1%} relative)",
            f"Control, same windows:    {self.control_before:.4g} -> {self.control_after:.4g} "
            f"({self.control_absolute_change:+.4g}, {self.control_relative_change:+.1%})",
            f"Incremental effect (vs control, pre-period adjusted): {self.incremental.estimate:+.4g} [{lo:+.4g}, {hi:+.4g}] absolute, "
            f"{self.incremental_relative:+.1%} [{rlo:+.1%}, {rhi:+.1%}] relative, p = {self.incremental.p_value:.3g}",
        ]
        did = self.windows.get("did_ratio") or {}
        if "estimate" in did:
            lines.append(f"  Plain ratio DiD (pre-period weight fixed at 1): {did['estimate']:+.4g} [{did['ci'][0]:+.4g}, {did['ci'][1]:+.4g}]")
        for chk in (self.pre_trends, self.regression_to_mean, self.persistence, self.triangulation,
                    *((self.annotations,) if self.annotations is not None else ())):
            lines.append(f"  {chk.name}: {chk.status.upper()} - {chk.message}")
        lines.append(f"Verdict: {self.verdict.upper()}")
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def _ratio(df: pd.DataFrame, num: str, den: str, scale: float) -> float:
    d = float(df[den].sum())
    return float(df[num].sum()) / d * scale if d > 0 else float("nan")


def _rel(a: float, b: float) -> float:
    return (b - a) / a if a not in (0.0,) and np.isfinite(a) else float("nan")


def _did_rate(panel: pd.DataFrame, num: str, den: str, scale: float, unit: str, period: str, treated: str,
              rollout, alpha: float, metric: str, post_periods=None) -> tuple[Result, float, tuple[float, float]]:
    """Ratio-of-sums DiD of the KPI, clustered by unit (:func:`insightroi.stats.did_ratio`).

    Reported next to the adjusted estimate as a robustness check (it fixes the weight on the
    pre-period at 1). The relative effect divides by the treated units' counterfactual KPI.
    """
    df = panel[[unit, period, num, den, treated]]
    if post_periods is not None:
        df = df[(df[period] < rollout) | df[period].isin(post_periods)]
    if float(df[num].sum()) == 0.0:
        raise DataError(f"{num} is zero everywhere (not measured?)")
    g = df.assign(_post=df[period] >= rollout).groupby([unit, "_post"])[[num, den]].sum().unstack(fill_value=0.0)
    if (num, True) not in g.columns or (num, False) not in g.columns:
        raise DataError("no data on one side of the rollout")
    tr = df.groupby(unit)[treated].first().reindex(g.index).astype(bool).to_numpy()
    res = did_ratio(g[(num, False)].to_numpy(), g[(den, False)].to_numpy(), g[(num, True)].to_numpy(), g[(den, True)].to_numpy(),
                    tr, scale=scale, alpha=alpha, metric=metric)
    return res, *_relative(res, res.extra["treated"]["kpi_post"])


def _relative(res: Result, treated_post: float) -> tuple[float, tuple[float, float]]:
    cf = treated_post - res.estimate
    if cf > 0:
        return res.estimate / cf, (res.ci[0] / cf, res.ci[1] / cf)
    return float("nan"), (float("nan"), float("nan"))


def _pre_rates(panel: pd.DataFrame, specs: list[tuple[str, str]], unit: str, period: str, rollout) -> pd.DataFrame:
    """Each unit's pre-period rate (sum num / sum den) of every (numerator, denominator) pair."""
    pre = panel[panel[period] < rollout]
    cols = list(dict.fromkeys(c for sp in specs for c in sp))
    g = pre.groupby(unit)[cols].sum()
    out = pd.DataFrame(index=g.index)
    for n_, d_ in specs:
        out[f"pre_{n_}_per_{d_}"] = g[n_] / g[d_].where(g[d_] > 0)
    return out


def _incremental(panel: pd.DataFrame, num: str, den: str, scale: float, unit: str, period: str, treated: str,
                 rollout, alpha: float, metric: str, covariates: list[tuple[str, str]], post_periods=None,
                 ) -> tuple[Result, float, tuple[float, float]]:
    """Post-period treated-vs-control difference of the KPI, adjusted for the units' pre-period rates.

    :func:`insightroi.stats.ratio_ancova`: each unit's post-period KPI (sum of numerators /
    sum of denominators, weighted by its denominator, so the groups' KPIs are the program's
    ratio-of-sums definition) regressed on treatment and the unit's pre-period rates of the claimed
    KPI and its adjacent KPIs (they share the unit's underlying quality, so together they predict
    its post-period level better than one noisy rate). Against a plain DiD this estimates the
    weight of the pre-period rather than fixing it at 1: on the demo world, where complaints come
    in transient defect bursts, that cuts the error SD by ~35% (1.88 -> 1.19 per 1,000 orders)
    at the same coverage. Robust SE per unit = clustered over its weeks.
    """
    post = panel[panel[period] >= rollout]
    if post_periods is not None:
        post = post[post[period].isin(post_periods)]
    if post.empty or not (panel[period] < rollout).any():
        raise DataError("no data on one side of the rollout")
    if float(panel[num].sum()) == 0.0:
        raise DataError(f"{num} is zero everywhere (not measured?)")
    g = post.groupby(unit)[[num, den]].sum()
    tr = panel.groupby(unit)[treated].first().astype(bool)
    X = _pre_rates(panel, covariates, unit, period, rollout).reindex(g.index)
    res = ratio_ancova(g[num].to_numpy(dtype=float), g[den].to_numpy(dtype=float), tr.reindex(g.index).to_numpy(),
                       X.to_numpy(dtype=float), covariate_names=list(X.columns), scale=scale, alpha=alpha, metric=metric)
    return res, *_relative(res, res.extra["kpi_post_treated"])


def _significant(r: Result) -> bool:
    lo, hi = r.ci
    return bool(np.isfinite(lo) and np.isfinite(hi) and not (lo <= 0.0 <= hi))


def validate_claim(
    claim: str | ParsedClaim,
    panel: pd.DataFrame,
    *,
    rollout,
    unit: str = "unit",
    period: str = "period",
    numerator: str = "num",
    denominator: str = "den",
    treated: str = "treated",
    scale: float = 1.0,
    kpi: str = "kpi",
    window: int = 4,
    adjacent: dict[str, tuple[str, str] | tuple[str, str, str]] | None = None,
    kpi_direction: Literal["decrease", "increase"] | None = None,
    alpha: float = 0.05,
    spike_z: float = 2.0,
    rtm_share: float = 0.25,
    before: tuple | None = None,
) -> ClaimReport:
    """Validate a before/after claim against a unit x period panel with treated and control units.

    Parameters
    ----------
    claim : str or ParsedClaim
        E.g. ``"negative reviews down 40%"``.
    panel : DataFrame
        One row per unit x period: ``unit``, ``period`` (orderable, e.g. week index), KPI
        ``numerator`` and ``denominator`` counts, boolean ``treated`` (the unit got the program).
    rollout : period value
        First period of the program.
    scale : float
        KPI = numerator / denominator x scale (e.g. 1000 for "per 1,000 orders").
    kpi : str
        Name for the report.
    window : int
        Periods on each side of ``rollout`` for the before/after comparison the claim is assumed
        to come from; the post period is also cut into consecutive windows of this length to
        check persistence.
    adjacent : dict, optional
        Other KPIs in the same panel for triangulation: ``name -> (numerator, denominator[,
        direction[, scale]])`` with direction ``"decrease"`` (default) or ``"increase"`` = the
        good direction for that KPI.
    kpi_direction : {"decrease", "increase"}, optional
        The good direction of the claimed KPI (default: the claim's own direction).
    alpha : float
    spike_z : float
        The "before" window counts as a spike when its treated-minus-control gap lies more than
        ``spike_z`` standard errors above (or below) the rest of the pre-period in the claimed
        direction.
    rtm_share : float
        The "before" window also fails the regression-to-the-mean check when it is the most
        extreme ``window``-long stretch of the pre-period in the claim's favour (cherry-picked)
        and its excess over the rest of the pre-period accounts for at least this share of the
        claimed before/after change: picking the worst weeks guarantees regression to the mean
        even when no single week is a significant spike.
    before : (first, last) period, optional
        The "before" window the claim was computed from. Default: the ``window``-long stretch of
        the pre-period whose treated before/after change (against the first ``window`` post
        periods) is closest to the claim.

    Returns
    -------
    ClaimReport

    Notes
    -----
    The incremental effect compares treated and control units over all post periods, each unit's
    post-period KPI adjusted for its pre-period rates of this KPI and the adjacent ones
    (:func:`insightroi.stats.ratio_ancova`; CUPED-style, a DiD whose pre-period weight is
    estimated). The plain ratio DiD is reported in ``windows["did_ratio"]``.

    Verdict rules. *not supported*: the interval contains no change in the claimed direction
    (it includes 0 and excludes the claimed size, or points the other way), or the claimed size
    is outside the interval and either more than 1.5 times its nearest end or built on a spike
    (regression to the mean), or the claim rests on a spike / cherry-picked before window and
    overstates the point estimate (the excess is regression to the mean, not the program).
    *weak*: the effect is significant in the claimed direction but
    the claimed size lies (moderately) outside its interval; or
    the interval includes both 0 and the claimed size (inconclusive); or a supported effect is
    undercut by failed pre-trends, no persistence, or adjacent signals moving against it.
    *supported*: significant in the claimed direction, the claimed size inside the interval, and
    none of those warnings.
    """
    pc = claim if isinstance(claim, ParsedClaim) else parse_claim(claim)
    need = [unit, period, numerator, denominator, treated]
    missing = [c for c in need if c not in panel.columns]
    if missing:
        raise DataError(f"validate_claim: panel lacks columns {missing}; it has {list(panel.columns)}")
    df = panel.copy()
    df[treated] = df[treated].astype(bool)
    if df[treated].all() or not df[treated].any():
        raise DataError("validate_claim: the panel needs both treated and control units")
    periods = np.sort(df[period].unique())
    pre_p = periods[periods < rollout]
    post_p = periods[periods >= rollout]
    if len(pre_p) < 2 or len(post_p) < 1:
        raise DataError("validate_claim: need at least 2 periods before and 1 after the rollout")
    w = max(1, min(window, len(pre_p), len(post_p)))
    after_p = post_p[:w]
    good = kpi_direction or pc.direction
    claim_sign = -1.0 if pc.direction == "decrease" else 1.0
    if before is not None:
        before_p = pre_p[(pre_p >= before[0]) & (pre_p <= before[1])]
        if len(before_p) == 0:
            raise DataError(f"validate_claim: no pre-rollout period inside before={before!r}")
        search = {"given": True}
    else:
        # Which "before" window does the claimed number come from? The w-period stretch of the
        # pre-period whose treated before/after change is closest to the claim (ties: the
        # latest). A claim built on the worst weeks of the pre-period is found here, not only one
        # built on the weeks just before rollout.
        before_p, search = _locate_before(df, numerator, denominator, scale, period, treated, pre_p, after_p, w, pc)
    T, C = df[df[treated]], df[~df[treated]]
    tb, ta = _ratio(T[T[period].isin(before_p)], numerator, denominator, scale), _ratio(T[T[period].isin(after_p)], numerator, denominator, scale)
    cb, ca = _ratio(C[C[period].isin(before_p)], numerator, denominator, scale), _ratio(C[C[period].isin(after_p)], numerator, denominator, scale)

    # Regression to the mean: was the "before" window a treated-specific spike, or the
    # cherry-picked worst stretch of the pre-period?
    rtm = _rtm_check(df, numerator, denominator, scale, period, treated, pre_p, before_p, claim_sign, spike_z, tb, ta,
                     search=search, rtm_share=rtm_share)
    if rtm.status == "fail":
        # The spike would bias the estimate too: estimate against the pre-period without it.
        df = df[~df[period].isin(before_p)]
        pre_p = pre_p[~np.isin(pre_p, before_p)]

    # Covariates: every unit's pre-period rate of the claimed KPI and of the adjacent KPIs.
    cov_specs = [(numerator, denominator)]
    for spec in (adjacent or {}).values():
        if spec[0] in df.columns and spec[1] in df.columns and (spec[0], spec[1]) not in cov_specs:
            cov_specs.append((spec[0], spec[1]))

    def effect(n_, d_, sc, name, post_periods=None):
        return _incremental(df, n_, d_, sc, unit, period, treated, rollout, alpha, name, cov_specs, post_periods=post_periods)

    # Incremental effect: all post periods against control, adjusted for pre-period rates.
    inc, inc_rel, inc_rel_ci = effect(numerator, denominator, scale, kpi)
    # Plain ratio DiD (pre-period weight fixed at 1) as a robustness row.
    try:
        did, did_rel, did_rel_ci = _did_rate(df, numerator, denominator, scale, unit, period, treated, rollout, alpha, kpi)
        did_row = {"estimate": did.estimate, "ci": list(did.ci), "p_value": did.p_value, "relative": did_rel, "relative_ci": list(did_rel_ci)}
    except DataError as exc:
        did_row = {"status": f"not estimable: {exc}"}

    # Pre-trends: treated x linear trend over the pre-period.
    pre_trends = _pre_trend_check(df, numerator, denominator, scale, unit, period, treated, pre_p, alpha)

    # Persistence: the same estimate per consecutive post window.
    pers_rows = []
    # Consecutive windows of ``w`` periods; a shorter remainder joins the last full window.
    starts = list(range(0, len(post_p), w))
    if len(starts) > 1 and len(post_p) - starts[-1] < w:
        starts.pop()
    for j, i in enumerate(starts):
        win = post_p[i:(starts[j + 1] if j + 1 < len(starts) else len(post_p))]
        try:
            r, rr, rci = effect(numerator, denominator, scale, kpi, post_periods=win)
        except DataError:
            continue
        pers_rows.append({"periods": [_plain(x) for x in (win[0], win[-1])], "estimate": r.estimate, "ci": list(r.ci), "relative": rr, "significant": _significant(r)})
    persistence = _persistence_check(pers_rows, claim_sign, inc.estimate)

    # Triangulation: the same estimate on adjacent KPIs.
    tri_rows = []
    for name, spec in (adjacent or {}).items():
        n_, d_ = spec[0], spec[1]
        good_dir = spec[2] if len(spec) > 2 else "decrease"
        adj_scale = float(spec[3]) if len(spec) > 3 else 1.0
        if n_ not in df.columns or d_ not in df.columns:
            tri_rows.append({"kpi": name, "status": "missing"})
            continue
        try:
            r, rr, rci = effect(n_, d_, adj_scale, name)
        except DataError as exc:
            tri_rows.append({"kpi": name, "status": f"not estimable: {exc}"})
            continue
        # "Same way" = the adjacent KPI improves when the claimed KPI's change is an improvement.
        improving_claim = (pc.direction == good)
        adj_improves = (r.estimate < 0) == (good_dir == "decrease")
        agrees = adj_improves == improving_claim
        tri_rows.append({"kpi": name, "estimate": r.estimate, "ci": list(r.ci), "relative": rr, "significant": _significant(r), "agrees": bool(agrees)})
    triangulation = _triangulation_check(tri_rows)

    verdict, reasons = _verdict(pc, inc, inc_rel, inc_rel_ci, pre_trends, rtm, persistence, triangulation, tb, ta, cb, ca)
    return ClaimReport(
        claim=pc, kpi=kpi, numerator=numerator, denominator=denominator, scale=float(scale),
        treated_before=tb, treated_after=ta, absolute_change=ta - tb, relative_change=_rel(tb, ta),
        control_before=cb, control_after=ca, control_absolute_change=ca - cb, control_relative_change=_rel(cb, ca),
        incremental=inc, incremental_relative=float(inc_rel), incremental_relative_ci=(float(inc_rel_ci[0]), float(inc_rel_ci[1])),
        pre_trends=pre_trends, regression_to_mean=rtm, persistence=persistence, triangulation=triangulation,
        verdict=verdict, reasons=tuple(reasons),
        windows={"window": int(w), "before": [_plain(before_p[0]), _plain(before_p[-1])], "after": [_plain(after_p[0]), _plain(after_p[-1])],
                 "spike_window_excluded": rtm.status == "fail", "n_pre_periods": int(len(pre_p)), "n_post_periods": int(len(post_p)), "persistence": pers_rows, "triangulation": tri_rows,
                 "before_search": search, "did_ratio": did_row, "covariates": [f"pre_{n_}_per_{d_}" for n_, d_ in cov_specs]},
    )


def _plain(x):
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "isoformat"):
        return x.isoformat()
    return x


def _pre_trend_check(df, num, den, scale, unit, period, treated, pre_p, alpha) -> Check:
    if len(pre_p) < 3:
        return Check("pre_trends", "skip", f"Only {len(pre_p)} pre-periods; parallel trends cannot be tested.")
    d = df[df[period].isin(pre_p) & (df[den] > 0)]
    rate = d[num].to_numpy(dtype=float) / d[den].to_numpy(dtype=float) * scale
    codes = np.searchsorted(pre_p, d[period].to_numpy())
    tr = d[treated].to_numpy(dtype=bool)
    # Treated x linear pre-period trend, within unit and period effects: a 1-df test with power
    # against the usual diverging-trend alternative (a full set of leads is in the event study).
    x = (tr * (codes - codes.mean())).astype(float)
    try:
        r = twfe(rate, d[unit].to_numpy(), codes, x, alpha=alpha)
    except DataError as exc:
        return Check("pre_trends", "skip", f"Pre-trend test not run: {exc}")
    p = r.p_value
    return Check(
        "pre_trends", "fail" if p < alpha else "pass",
        f"Treated-minus-control trend before rollout: {r.estimate:+.3g} per period (p = {p:.3g})"
        + ("; the groups were already diverging, so DiD is biased." if p < alpha else "; no evidence of diverging pre-trends."),
        statistic=r.estimate, p_value=p, threshold=alpha,
    )


def _window_levels(df, num, den, scale, period, treated, pre_p, w) -> tuple[list[np.ndarray], np.ndarray]:
    """Every run of ``w`` consecutive pre-periods and the treated units' KPI over each."""
    t = df[df[treated] & df[period].isin(pre_p)].groupby(period)[[num, den]].sum().reindex(pre_p, fill_value=0.0)
    a, b = t[num].to_numpy(dtype=float), t[den].to_numpy(dtype=float)
    wins, lv = [], []
    for j in range(len(pre_p) - w + 1):
        wins.append(pre_p[j:j + w])
        d = b[j:j + w].sum()
        lv.append(a[j:j + w].sum() / d * scale if d > 0 else np.nan)
    return wins, np.asarray(lv, dtype=float)


def _locate_before(df, num, den, scale, period, treated, pre_p, after_p, w, pc: ParsedClaim) -> tuple[np.ndarray, dict]:
    """The pre-period window whose treated before/after change best reproduces the claim."""
    T = df[df[treated]]
    ta = _ratio(T[T[period].isin(after_p)], num, den, scale)
    wins, lv = _window_levels(df, num, den, scale, period, treated, pre_p, w)
    if pc.kind == "relative":
        with np.errstate(divide="ignore", invalid="ignore"):  # a window with a zero KPI cannot reproduce a relative claim
            naive, claimed = ta / lv - 1.0, pc.signed_relative
    else:
        naive, claimed = ta - lv, (-1.0 if pc.direction == "decrease" else 1.0) * pc.magnitude
    dist = np.abs(naive - claimed)
    if not np.isfinite(dist).any():
        return pre_p[-w:], {"given": False, "n_windows": len(wins), "note": "no window with data; used the last one"}
    # Ties (and equally good fits) go to the latest window: the conventional "just before" choice.
    j = len(dist) - 1 - int(np.nanargmin(dist[::-1]))
    # "Reproduces" = within a tenth of the claimed size (claims are rounded, windows may be off by
    # a few days). A claim no window reproduces is not a plain before/after of these units (it may
    # already be control-adjusted): then the conventional window just before rollout is used.
    tol = max(0.1 * abs(claimed), 0.01 if pc.kind == "relative" else 0.0)
    reproduced = bool(dist[j] <= tol)
    if not reproduced:
        j = len(wins) - 1
    return wins[j], {
        "given": False, "n_windows": len(wins), "chosen": [_plain(wins[j][0]), _plain(wins[j][-1])],
        "naive_change": float(naive[j]), "claimed": float(claimed), "reproduced": reproduced,
        "is_last_window": j == len(wins) - 1,
    }


def _rtm_check(df, num, den, scale, period, treated, pre_p, before_p, claim_sign, spike_z, tb, ta, *,
               search: dict | None = None, rtm_share: float = 0.25) -> Check:
    base_p = pre_p[~np.isin(pre_p, before_p)]
    if len(base_p) < 3:
        return Check("regression_to_mean", "skip", "Fewer than 3 baseline periods outside the 'before' window; cannot judge whether it was a spike.")
    # Treated-minus-control gap per period: common seasonality cancels, so a spike here is
    # specific to the treated units (the kind that a before/after claim, and a DiD whose
    # pre-period includes it, would both mistake for an effect).
    g = df[df[period].isin(pre_p)].groupby([period, treated])[[num, den]].sum()
    rates = (g[num] / g[den].where(g[den] > 0)).unstack() * scale
    if True not in rates.columns or False not in rates.columns:
        return Check("regression_to_mean", "skip", "Treated or control units have no pre-period data.")
    gap = (rates[True] - rates[False]).dropna()
    base = gap[gap.index.isin(base_p)]
    before = gap[gap.index.isin(before_p)]
    if len(base) < 3 or before.empty:
        return Check("regression_to_mean", "skip", "Too few baseline periods with data.")
    mu, sd = float(base.mean()), float(base.std(ddof=1))
    se = sd * math.sqrt(1 / len(before) + 1 / len(base)) if sd > 0 else float("nan")
    jump = float(before.mean()) - mu
    z = jump / se if np.isfinite(se) and se > 0 else 0.0
    # A spike "helps" a claimed decrease when the before window sat above baseline (a dip helps
    # a claimed increase).
    helping = -claim_sign * z
    naive = ta - tb
    explained = -jump / naive if naive != 0 else float("nan")
    # Cherry-picking: the before window is the most extreme stretch of the pre-period in the
    # claim's favour. The maximum of several noisy windows sits above the mean by construction,
    # so it regresses even without a single significant spike week.
    # Only a window the claim was actually computed from can have been picked.
    w = len(before_p)
    wins, lv = _window_levels(df, num, den, scale, period, treated, pre_p, w)
    fav = -claim_sign * lv  # larger = better "before" for the claim
    idx = [j for j, win in enumerate(wins) if len(win) == len(before_p) and np.array_equal(win, before_p)]
    from_claim = bool((search or {}).get("given") or (search or {}).get("reproduced"))
    extreme = bool(from_claim and idx and len(wins) > 1 and np.isfinite(fav[idx[0]]) and fav[idx[0]] >= np.nanmax(fav))
    # Selection happens on the treated units' level, so the regression it implies is the chosen
    # window's excess over the treated units' KPI in the rest of the pre-period.
    T = df[df[treated]]
    rest = _ratio(T[T[period].isin(base_p)], num, den, scale)
    pick_share = (tb - rest) / (tb - ta) if np.isfinite(rest) and tb != ta else float("nan")
    picked = extreme and np.isfinite(pick_share) and pick_share >= rtm_share
    if picked:
        explained = pick_share
    lo_p, hi_p = _plain(before_p[0]), _plain(before_p[-1])
    details = {"baseline_gap": mu, "before_gap": float(before.mean()), "z": float(z), "share_explained": explained,
               "baseline_periods": int(len(base)), "before_periods": int(len(before)), "before_window": [lo_p, hi_p],
               "most_extreme_of": int(len(wins)) if extreme else None, "treated_rest_of_pre": rest, "pick_share": pick_share,
               "search": search or {}}
    where = f"periods {lo_p}-{hi_p}"
    if helping > spike_z or picked:
        if helping > spike_z:
            what = (f"had the treated units {abs(jump):.3g} {'above' if jump > 0 else 'below'} their usual gap to control: "
                    f"a spike ({z:+.1f} SE)")
        else:
            what = (f"is the most extreme of the {len(wins)} {w}-period windows before rollout, picked in the claim's favour: "
                    f"treated KPI {tb:.4g} against {rest:.4g} in the rest of the pre-period")
        return Check(
            "regression_to_mean", "fail",
            f"The claim's 'before' window ({where}) {what}. Its return to normal alone accounts for about {explained:.0%} of the before/after change; "
            "the incremental effect is estimated against the pre-period without it.",
            statistic=float(z), threshold=spike_z, details=details,
        )
    return Check(
        "regression_to_mean", "pass",
        f"The 'before' window ({where}) is in line with the rest of the pre-period's treated-vs-control gap (z = {z:+.1f}, threshold {spike_z:g}"
        + (f"; the most extreme window, but regression explains only {explained:.0%} of the change" if extreme else "") + ").",
        statistic=float(z), threshold=spike_z, details=details,
    )


def _persistence_check(rows, claim_sign, overall) -> Check:
    if len(rows) < 2:
        return Check("persistence", "skip", "Fewer than two post-rollout windows; persistence cannot be judged.", details={"windows": rows})
    same = [np.sign(r["estimate"]) == claim_sign for r in rows]
    last = rows[-1]
    # Faded = the last window points the other way AND its interval excludes the overall effect
    # (one noisy window with the wrong sign is only a warning).
    lo, hi = last["ci"]
    faded = (not same[-1]) and np.isfinite(lo) and np.isfinite(hi) and not (lo <= overall <= hi)
    status = "pass" if all(same) else ("fail" if faded else "warn")
    desc = ", ".join(f"{r['estimate']:+.3g}" for r in rows)
    msg = f"Effect by post window: {desc}; " + (
        "same direction throughout." if status == "pass" else
        ("direction changes in some windows." if status == "warn" else "the effect has faded or reversed by the last window (its interval excludes the overall effect).")
    )
    return Check("persistence", status, msg, statistic=float(last["estimate"]), details={"windows": rows})


def _triangulation_check(rows) -> Check:
    est = [r for r in rows if "agrees" in r]
    if not est:
        return Check("triangulation", "skip", "No adjacent signals to triangulate with.", details={"signals": rows})
    agree_sig = [r["kpi"] for r in est if r["agrees"] and r["significant"]]
    against_sig = [r["kpi"] for r in est if not r["agrees"] and r["significant"]]
    agree = [r["kpi"] for r in est if r["agrees"]]
    if against_sig and len(against_sig) >= len(agree_sig):
        status = "fail"
    elif agree_sig:
        status = "pass"
    else:
        status = "warn"
    msg = (f"{len(agree)} of {len(est)} adjacent signals move the same way ({len(agree_sig)} significantly"
           + (f": {', '.join(agree_sig)}" if agree_sig else "") + ")"
           + (f"; significantly against: {', '.join(against_sig)}." if against_sig else "."))
    return Check("triangulation", status, msg, statistic=float(len(agree)), details={"signals": rows})


def _verdict(pc, inc, rel, rel_ci, pre_trends, rtm, persistence, tri, tb, ta, cb, ca) -> tuple[str, list[str]]:
    reasons = []
    sign = -1.0 if pc.direction == "decrease" else 1.0
    lo, hi = inc.ci
    if pc.kind == "relative":
        claimed, clo, chi = pc.signed_relative, rel_ci[0], rel_ci[1]
        unit_txt = lambda v: f"{v:+.1%}"  # noqa: E731
    else:
        claimed, clo, chi = sign * pc.magnitude, lo, hi
        unit_txt = lambda v: f"{v:+.4g}"  # noqa: E731
    sig_dir = (hi < 0) if sign < 0 else (lo > 0)
    sig_other = (lo > 0) if sign < 0 else (hi < 0)
    inside = np.isfinite(clo) and clo <= claimed <= chi
    naive_rel = _rel(tb, ta)
    reasons.append(
        f"Before/after in treated units: {naive_rel:+.1%}; control units moved {_rel(cb, ca):+.1%} over the same windows."
    )
    est_txt = unit_txt(rel if pc.kind == "relative" else inc.estimate)
    ci_txt = f"[{unit_txt(clo)}, {unit_txt(chi)}]"
    point = rel if pc.kind == "relative" else inc.estimate
    # A claim computed against a spike that says more than the point estimate: the excess is
    # regression to the mean, so the number is not the program's even if the (wide) interval
    # happens to reach it.
    spike_overstated = rtm.status == "fail" and bool(np.isfinite(point)) and sign * claimed > sign * point
    if (sig_dir or inside) and spike_overstated:
        verdict = "not supported"
        reasons.append(
            f"The claimed {unit_txt(claimed)} comes from a before window that regressed to the mean and overstates the incremental "
            f"effect {est_txt} {ci_txt}" + ("; the data support an effect of about the estimate, not the claimed size." if sig_dir
                                             else "; the data do not show a significant effect either.")
        )
    elif sig_dir and inside:
        verdict = "supported"
        reasons.append(f"The incremental effect {est_txt} {ci_txt} is significant and contains the claimed {unit_txt(claimed)}.")
    elif sig_dir:
        # The nearest interval end to the claim is the largest effect the data allow: a claim
        # 1.5 times beyond it, or one whose before/after rests on a spike, is not "weak".
        nearest = clo if abs(clo - claimed) < abs(chi - claimed) else chi
        overstated = abs(claimed) > OVERSTATEMENT * abs(nearest)
        if overstated or rtm.status == "fail":
            verdict = "not supported"
            reasons.append(
                f"There is an effect in the claimed direction, {est_txt} {ci_txt}, but the claimed {unit_txt(claimed)} "
                + (f"is more than {OVERSTATEMENT:g} times the largest effect the interval allows." if overstated else "comes from a spike and lies outside the interval.")
            )
        else:
            verdict = "weak"
            reasons.append(f"There is a significant effect in the claimed direction, {est_txt} {ci_txt}, but the claimed {unit_txt(claimed)} lies outside its interval.")
    elif sig_other:
        verdict = "not supported"
        reasons.append(f"The incremental effect {est_txt} {ci_txt} points the other way.")
    elif inside:
        verdict = "weak"
        reasons.append(f"Inconclusive: the interval {ci_txt} contains both no effect and the claimed {unit_txt(claimed)}.")
    else:
        verdict = "not supported"
        reasons.append(f"Against the control group the effect is {est_txt} {ci_txt}: no significant change, and the claimed {unit_txt(claimed)} is outside the interval.")
    if rtm.status == "fail":
        reasons.append("Regression to the mean: " + rtm.message)
    downgrade = []
    if pre_trends.status == "fail":
        downgrade.append("pre-trends: " + pre_trends.message)
    if persistence.status == "fail":
        downgrade.append("persistence: " + persistence.message)
    if tri.status == "fail":
        downgrade.append("triangulation: " + tri.message)
    if downgrade and verdict == "supported":
        verdict = "weak"
    reasons += [d[0].upper() + d[1:] for d in downgrade]
    if tri.status == "pass" and verdict != "not supported":
        reasons.append("Corroborated: " + tri.message)
    return verdict, reasons

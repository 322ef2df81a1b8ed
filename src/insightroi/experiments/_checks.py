"""Checks that protect an experiment's estimate; each returns a :class:`insightroi.stats.Check`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from insightroi._constants import ANALYZE_GATES
from insightroi.errors import DataError
from insightroi.stats import Check, Ratio, Result, srm_test, trend_test, two_arm

__all__ = [
    "srm_check",
    "balance_check",
    "pre_period_check",
    "regression_to_mean_check",
    "novelty_check",
    "contamination_check",
    "ANALYZE_GATES",
    "analyze_gate_failures",
    "annotation_check",
]


def srm_check(counts: Sequence[float], expected_shares: Sequence[float], *, threshold: float = 0.001) -> Check:
    """Sample-ratio mismatch: chi-square test of the arm counts against the designed shares.

    A mismatch means assignment or logging is broken and the estimate cannot be trusted
    (Fabijan et al. 2019, KDD). The test is :func:`insightroi.stats.srm_test` (its p-value equals
    gbstats' ``check_srm``); the threshold 0.001 is GrowthBook's default.
    """
    obs = np.asarray(counts, dtype=float)
    shares = np.asarray(expected_shares, dtype=float)
    if obs.size != shares.size or obs.size < 2:
        raise DataError("srm_check needs one expected share per arm and at least two arms")
    if obs.sum() == 0:
        return Check("sample_ratio_mismatch", "skip", "no units assigned")
    chi2, p, exp = srm_test(obs, shares)
    observed = ", ".join(f"{int(o):,}" for o in obs)
    expected = ", ".join(f"{e:,.1f}" for e in exp)
    if p < threshold:
        status, msg = "fail", (f"sample-ratio mismatch: observed {observed} units vs expected {expected} "
                               f"(p = {p:.2g}); check assignment and logging before trusting any estimate")
    else:
        status, msg = "pass", f"arm sizes {observed} match the design's expected {expected} (p = {p:.3g})"
    return Check("sample_ratio_mismatch", status, msg, statistic=chi2, p_value=p, threshold=threshold,
                 details={"observed": obs.tolist(), "expected": exp.tolist()})


def balance_check(
    control: Mapping[str, Sequence[float]], treatment: Mapping[str, Sequence[float]], *,
    warn: float = 0.1, fail: float = 0.25,
) -> Check:
    """Covariate balance by standardized mean differences (Austin 2009, Stat. Med. 28).

    ``d = (mean_t - mean_c) / sqrt((var_t + var_c) / 2)`` per covariate; |d| above 0.1 is the usual
    sign of imbalance (warn), above 0.25 a serious one (fail).
    """
    diffs = {}
    for name in control:
        c = np.asarray(control[name], dtype=float)
        t = np.asarray(treatment[name], dtype=float)
        c, t = c[np.isfinite(c)], t[np.isfinite(t)]
        if c.size < 2 or t.size < 2:
            continue
        pooled = math.sqrt((c.var(ddof=1) + t.var(ddof=1)) / 2)
        diffs[name] = float((t.mean() - c.mean()) / pooled) if pooled > 0 else 0.0
    if not diffs:
        return Check("covariate_balance", "skip", "no covariate with data in both arms")
    worst = max(diffs, key=lambda k: abs(diffs[k]))
    d = abs(diffs[worst])
    status = "fail" if d > fail else "warn" if d > warn else "pass"
    crossed = fail if status == "fail" else warn
    msg = (f"largest standardized difference {diffs[worst]:+.3f} on {worst}"
           + ("" if status == "pass" else f" (above {crossed}): adjust for it (CUPED or regression adjustment on "
              "the pre-period) and check the assignment; stratify the next one"))
    return Check("covariate_balance", status, msg, statistic=d, threshold=crossed,
                 details={"std_diff": diffs, "warn": warn, "fail": fail})


def pre_period_check(
    control_pre: Ratio, treatment_pre: Ratio, *, margin: float = 0.1, alpha: float = 0.05, metric: str = "",
) -> Check:
    """Pre-period equivalence: the arms should not differ before the program started.

    Relative difference of the pre-period ratio with its ``1 - 2 alpha`` interval (two one-sided
    tests, Schuirmann 1987): ``pass`` when the interval lies inside ``+-margin``; ``fail`` when the
    ``1 - alpha`` interval excludes zero (the arms already differed); else ``warn`` (inconclusive).
    """
    try:
        res = two_arm(control_pre, treatment_pre, relative=True, alpha=2 * alpha, cuped=False, metric=metric)
    except DataError as exc:
        return Check("pre_period_equivalence", "skip", f"no usable pre-period data: {exc}")
    lo, hi = res.ci
    if res.p_value < alpha:
        status, msg = "fail", (f"arms differed before launch by {res.estimate:+.1%} (p = {res.p_value:.3g}); "
                               "the comparison is biased unless adjusted (CUPED, DiD)")
    elif -margin < lo and hi < margin:
        status, msg = "pass", f"pre-period difference {res.estimate:+.1%}, equivalent within +-{margin:.0%}"
    else:
        status, msg = "warn", (f"pre-period difference {res.estimate:+.1%} (90% CI {lo:+.1%} to {hi:+.1%}) is not "
                               f"significant but not shown equivalent within +-{margin:.0%}")
    return Check("pre_period_equivalence", status, msg, statistic=res.estimate, p_value=res.p_value, threshold=margin,
                 details={"ci_low": lo, "ci_high": hi})


def regression_to_mean_check(
    history: Ratio, recent: Ratio, *, z_threshold: float = 2.0, metric: str = "",
) -> Check:
    """Was the period just before launch a spike? (regression to the mean; Barnett et al. 2005).

    Compares the KPI in the pre-period (``recent``) with the period before it (``history``) over
    the same units. A level well above its history will fall back on its own, so a
    before/after comparison would credit the program with the fall; a randomized control does
    not suffer from it, which the message says.
    """
    try:
        r_h, r_r = history.mean, recent.mean
        res = two_arm(history, recent, relative=True, cuped=False, test="z")
    except DataError as exc:
        return Check("regression_to_mean", "skip", f"not enough history: {exc}")
    z = res.estimate / res.se if res.se > 0 else 0.0
    details = {"history": r_h, "recent": r_r, "change": res.estimate}
    if abs(z) > z_threshold:
        word = "spike" if z > 0 else "dip"
        return Check("regression_to_mean", "warn",
                     f"the pre-period was a {word}: {metric or 'KPI'} {res.estimate:+.1%} vs the period before "
                     f"(z = {z:.1f}); it will drift back by itself, so compare with the control arm, "
                     "never before vs after", statistic=z, p_value=res.p_value, threshold=z_threshold, details=details)
    return Check("regression_to_mean", "pass", f"pre-period level in line with its history ({res.estimate:+.1%}, z = {z:.1f})",
                 statistic=z, p_value=res.p_value, threshold=z_threshold, details=details)


def novelty_check(weekly: Sequence[Result], *, alpha: float = 0.05) -> Check:
    """Novelty or persistence: does the effect fade with weeks since launch?

    Weighted least squares of the weekly effect on the week index (weights ``1 / se^2``,
    :func:`insightroi.stats.trend_test`); a slope significantly against the overall effect's sign
    means the effect is fading (novelty, or teams stop acting on alerts). ``details["weeks"]``
    lists the weekly effects for plots.
    """
    rows = [(i, r.estimate, r.se) for i, r in enumerate(weekly) if math.isfinite(r.estimate) and r.se > 0]
    if len(rows) < 3:
        return Check("novelty", "skip", f"need at least 3 weeks with an estimate, have {len(rows)}")
    w_idx, est, se = (np.array(x, dtype=float) for x in zip(*rows))
    slope, _, _, p, overall = trend_test(w_idx, est, se)
    details = {"weeks": [{"week": int(i), "estimate": float(e), "se": float(s)} for i, e, s in rows],
               "slope_per_week": slope, "overall": float(overall)}
    if p < alpha and np.sign(slope) == -np.sign(overall):
        return Check("novelty", "warn", f"effect fading by {slope:+.3g} per week (p = {p:.3g}); the long-run effect "
                     "is smaller than the average", statistic=slope, p_value=p, threshold=alpha, details=details)
    return Check("novelty", "pass", f"no significant fading of the effect over {len(rows)} weeks (slope {slope:+.3g}/week)",
                 statistic=slope, p_value=p, threshold=alpha, details=details)


def contamination_check(
    n_units: int, n_both_arms: int, *, control_exposed: int = 0, n_control: int | None = None, threshold: float = 0.01,
) -> Check:
    """Exposure contamination: units assigned to both arms, or control units that got the treatment.

    Either dilutes the estimate towards zero (intention to treat). ``control_exposed`` counts
    control units that received treatment events (e.g. alerts delivered for a control SKU family).
    """
    if n_units == 0:
        return Check("exposure_contamination", "skip", "no units assigned")
    both = n_both_arms / n_units
    exposed = control_exposed / n_control if n_control else 0.0
    share = max(both, exposed)
    details = {"units_in_both_arms": n_both_arms, "control_units_exposed": control_exposed, "n_units": n_units}
    if share > threshold:
        return Check("exposure_contamination", "warn",
                     f"{n_both_arms} unit(s) assigned to both arms and {control_exposed} control unit(s) exposed "
                     f"({share:.1%}); the intention-to-treat estimate is diluted towards zero",
                     statistic=share, threshold=threshold, details=details)
    return Check("exposure_contamination", "pass", f"no material contamination ({share:.1%} of units)",
                 statistic=share, threshold=threshold, details=details)


def analyze_gate_failures(section: Mapping, gates: Sequence[str]) -> list[str]:
    """Why an analysis should stop a pipeline, for each gate it trips (empty: it passes).

    Parameters
    ----------
    section : mapping
        The saved ``analyze`` section as JSON (``checks``, ``kpis`` with their ``checks``,
        ``decision_rules``).
    gates : sequence of str
        Any of :data:`ANALYZE_GATES`: ``"srm"`` a sample-ratio mismatch (the assignment or the
        logging is broken, so no estimate can be trusted); ``"check"`` any experiment or KPI check
        that failed (warnings do not trip it); ``"rule"`` a program decision rule that failed.

    Returns
    -------
    list of str
        One line per tripped condition, naming the check or rule and its message.
    """
    unknown = sorted(set(gates) - set(ANALYZE_GATES))
    if unknown:
        raise DataError(f"--fail-on: unknown gate {unknown[0]!r}; choose from {', '.join(ANALYZE_GATES)}")
    checks = [("experiment", c) for c in section.get("checks") or []]
    checks += [(k.get("name"), c) for k in section.get("kpis") or [] for c in k.get("checks") or []]
    out: list[str] = []
    if "srm" in gates:
        out += [f"srm: {c.get('message', '')}" for _, c in checks
                if c.get("name") == "sample_ratio_mismatch" and c.get("status") == "fail"]
    if "check" in gates:
        out += [f"check {c.get('name')} ({where}): {c.get('message', '')}" for where, c in checks
                if c.get("status") == "fail" and not ("srm" in gates and c.get("name") == "sample_ratio_mismatch")]
    if "rule" in gates:
        out += [f"rule on {r.get('kpi')} ({r.get('rule')}): {r.get('message', '')}"
                for r in section.get("decision_rules") or [] if r.get("status") == "fail"]
    return list(dict.fromkeys(out))


def annotation_check(annotations: Sequence[Mapping], window: tuple, *, rule: str = "warn",
                     excluded: Sequence[tuple] = (), what: str = "the analysis window") -> Check:
    """Known events (promotions, outages, price changes) inside a window the figures rest on.

    A randomized comparison stays unbiased when a shock hits both arms, but its effect is then
    measured under conditions that will not last (the ROI extrapolates it), and a before/after
    claim has no control for it at all. So an annotated event inside the window is named, with the
    fix: declare it in ``experiment.exclude_windows`` (the analysis then leaves those days out) or
    accept it knowingly.

    Parameters
    ----------
    annotations : sequence of mapping
        Rows of the ``annotations`` table (``kind``, ``start_time``, ``end_time`` or None,
        ``scope``, ``description``, ``id``).
    window : (date, date)
        Inclusive first and last day.
    rule : {"warn", "fail", "ignore"}
        The program's ``experiment.annotation_rule``: the status an overlap gets.
    excluded : sequence of (date, date)
        Declared exclusion windows; an event wholly inside one is already handled.
    what : str
        How the message names the window.

    Returns
    -------
    Check
        ``annotations``: ``pass`` when no event overlaps, else ``rule``'s status listing them.
    """
    lo, hi = window
    hits = []
    for a in annotations:
        start = _as_date(a.get("start_time"))
        end = _as_date(a.get("end_time")) or start
        if start is None or start > hi or end < lo:
            continue
        if any(x0 <= start and end <= x1 for x0, x1 in excluded):
            continue
        hits.append((start, end, a))
    hits.sort(key=lambda h: h[0])
    if rule == "ignore" or not hits:
        status = "skip" if rule == "ignore" else "pass"
        return Check("annotations", status, f"no annotated event in {what} ({lo} to {hi})" if not hits else
                     f"{len(hits)} annotated event(s) in {what} not checked (annotation_rule = ignore)")
    listed = "; ".join(f"{a.get('kind')} {s_} to {e_}" + (f" ({a.get('scope')})" if a.get("scope") else "")
                       + (f": {a.get('description')}" if a.get("description") else "")
                       for s_, e_, a in hits[:5])
    more = f" and {len(hits) - 5} more" if len(hits) > 5 else ""
    return Check("annotations", "fail" if rule == "fail" else "warn",
                 f"{len(hits)} annotated event(s) overlap {what} ({lo} to {hi}): {listed}{more}; declare them in "
                 "experiment.exclude_windows to leave those days out, or read the effect as measured under them",
                 details={"events": [{"id": a.get("id"), "kind": a.get("kind"), "start": str(s_), "end": str(e_),
                                      "scope": a.get("scope")} for s_, e_, a in hits]})


def _as_date(value):
    if value is None or value != value:
        return None
    return value.date() if hasattr(value, "date") and callable(value.date) else value

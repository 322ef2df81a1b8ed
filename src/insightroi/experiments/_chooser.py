"""Pick the estimator a design supports, and say why; refuse when no credible estimate exists.

The rules follow the usual hierarchy of evidence for program evaluation: a randomized comparison
when there is one; with many treated and control units and enough history, difference-in-
differences (an event study when pre-trends can be tested, Callaway-Sant'Anna when adoption is
staggered); with one or a few treated units and a donor pool, synthetic control (Abadie 2021
asks for a long pre-period); with no comparison units at all, a time-series counterfactual,
credible only with a long pre-period and preferably control series (Brodersen et al. 2015).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from insightroi.errors import DataError, EstimationError

__all__ = ["MethodChoice", "choose_method", "METHODS"]

Method = Literal[
    "randomized", "did_2x2", "event_study", "staggered_did", "matched_did", "synthetic_control", "causal_impact",
]
METHODS: tuple[str, ...] = (
    "randomized", "did_2x2", "event_study", "staggered_did", "matched_did", "synthetic_control", "causal_impact",
)

# Thresholds, with their reasons.
MIN_PRE_EVENT_STUDY = 3  # two leads besides the reference period, so a pre-trend test exists
MIN_PRE_SYNTH = 5  # Abadie (2021): fit over a long pre-period or the weights overfit noise
MIN_DONORS_SYNTH = 5  # placebo p-values cannot go below 1 / (donors + 1)
MIN_PRE_ITS = 8  # a level + noise model needs several cycles of history to forecast from
MAX_TREATED_SYNTH = 5  # beyond a handful of treated units, DiD's averaging is the better tool


@dataclass(frozen=True)
class MethodChoice:
    """The chosen estimator (one of :data:`METHODS`), the reason, and caveats to report with it."""

    method: str
    reason: str
    caveats: tuple[str, ...] = field(default_factory=tuple)


def choose_method(
    randomized: bool,
    n_treated_units: int,
    n_control_units: int,
    n_pre_periods: int,
    has_controls: bool = False,
    staggered: bool = False,
) -> MethodChoice:
    """Choose the quasi-experimental (or experimental) estimator a design supports.

    Parameters
    ----------
    randomized : bool
        Treatment was assigned at random (A/B, cluster, switchback, holdout).
    n_treated_units, n_control_units : int
        Number of treated and untreated comparison units.
    n_pre_periods : int
        Periods observed before treatment starts.
    has_controls : bool
        Control *series* exist that the treatment cannot affect (for a time-series
        counterfactual without control units).
    staggered : bool
        Units adopt at different times.

    Returns
    -------
    MethodChoice

    Raises
    ------
    EstimationError
        When no credible estimate exists; the message says why and what would make one possible.
    DataError
        On negative counts.
    """
    for name, v in (("n_treated_units", n_treated_units), ("n_control_units", n_control_units), ("n_pre_periods", n_pre_periods)):
        if v < 0:
            raise DataError(f"choose_method: {name} must be >= 0, got {v}")
    if n_treated_units == 0:
        raise EstimationError("No treated unit: there is no effect to estimate.")
    if randomized:
        if n_control_units == 0:
            raise EstimationError("Randomized design without any control unit: the holdout is empty, so nothing can be compared.")
        if n_treated_units >= 2 and n_control_units >= 2:
            cav = ()
            if n_treated_units + n_control_units < 40:
                cav = ("Fewer than 40 randomized units: use cluster-robust or randomization inference and expect wide intervals.",)
            return MethodChoice("randomized", "Treatment was randomized: compare arms directly (CUPED with the pre-period when available); no parallel-trends assumption needed.", cav)
        raise EstimationError("Randomized with a single unit in an arm: one unit per arm cannot separate the effect from unit differences.")
    if n_control_units == 0:
        if n_pre_periods >= MIN_PRE_ITS:
            cav = () if has_controls else ("No control series: the counterfactual assumes the pre-period level continues; any concurrent shock (season, promotion, outage) is attributed to the program.",)
            return MethodChoice("causal_impact", f"No comparison units but {n_pre_periods} pre-periods: forecast the untreated path with a structural time-series model" + (" and control series" if has_controls else "") + ".", cav)
        raise EstimationError(
            f"No comparison units and only {n_pre_periods} pre-periods (need >= {MIN_PRE_ITS}): a before/after comparison "
            "cannot separate the program from seasonality or other changes. Keep a holdout or collect more history."
        )
    if n_pre_periods == 0:
        raise EstimationError(
            "No pre-treatment period: treated and control units can only be compared after treatment, so any "
            "pre-existing difference is attributed to the program. Randomize, or collect pre-period data."
        )
    if n_treated_units <= MAX_TREATED_SYNTH and not staggered:
        if n_control_units >= MIN_DONORS_SYNTH and n_pre_periods >= MIN_PRE_SYNTH:
            return MethodChoice(
                "synthetic_control",
                f"{n_treated_units} treated unit(s) and {n_control_units} donors with {n_pre_periods} pre-periods: weight donors to reproduce each treated unit's pre-period path; infer by placebo.",
                (f"Placebo p-values cannot go below 1/{n_control_units + 1}.",),
            )
        if n_treated_units == 1:
            if n_pre_periods >= MIN_PRE_ITS and has_controls:
                return MethodChoice("causal_impact", "One treated unit, too few donors or pre-periods for synthetic control: use the donors as control series in a time-series counterfactual.")
            raise EstimationError(
                f"One treated unit with {n_control_units} comparison units and {n_pre_periods} pre-periods: too few donors "
                f"(need >= {MIN_DONORS_SYNTH}) or pre-periods (need >= {MIN_PRE_SYNTH}) for a synthetic control, and a single-unit DiD has no valid standard error."
            )
    if n_treated_units < 2 or n_control_units < 2:
        raise EstimationError("DiD needs at least 2 treated and 2 control units for a standard error clustered by unit.")
    caveats = []
    if n_treated_units + n_control_units < 30:
        caveats.append("Fewer than 30 clusters: cluster-robust standard errors are approximate.")
    if staggered:
        if n_pre_periods < 2:
            caveats.append("Only one pre-period: pre-trends cannot be tested.")
        return MethodChoice(
            "staggered_did",
            "Staggered adoption: Callaway-Sant'Anna group-time effects compare each cohort only with not-yet/never-treated units, avoiding TWFE's negative weights.",
            tuple(caveats),
        )
    if n_pre_periods >= MIN_PRE_EVENT_STUDY:
        return MethodChoice(
            "event_study",
            f"{n_treated_units} treated vs {n_control_units} control units with {n_pre_periods} pre-periods: DiD with leads and lags, testing parallel pre-trends.",
            tuple(caveats),
        )
    if n_control_units >= 3 * n_treated_units:
        return MethodChoice(
            "matched_did",
            "Short pre-period but a large control pool: match controls on pre-period KPI levels, then difference-in-differences.",
            tuple(caveats) + ("Pre-trends cannot be tested with fewer than 3 pre-periods.",),
        )
    return MethodChoice(
        "did_2x2",
        "Short pre-period: a 2x2 difference-in-differences of before/after means.",
        tuple(caveats) + ("Pre-trends cannot be tested with fewer than 3 pre-periods; the estimate rests on an untestable parallel-trends assumption.",),
    )

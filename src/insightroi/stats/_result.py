"""The two result types every estimator and check returns (DESIGN.md, conventions 2 and 3)."""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Check",
    "Result",
    "jsonable",
    "NOT_ESTIMABLE",
    "TOO_FEW_UNITS",
    "ZERO_DENOMINATOR",
    "ZERO_CONTROL_MEAN",
    "NO_DENOMINATOR_IN_ARM",
    "NO_DENOMINATOR_IN_EITHER_ARM",
    "UNDEFINED_COUNTERFACTUAL",
]

CheckStatus = Literal["pass", "warn", "fail", "skip"]

# One label and a few message templates for every "cannot compute" case, so a report, a test or
# a batch run can recognise them without parsing prose (as gbstats' ``messages.py``).
NOT_ESTIMABLE = "not_estimable"
TOO_FEW_UNITS = "the {arm} arm has {n} unit(s); at least 2 are needed for a variance"
ZERO_DENOMINATOR = "the {arm} arm's denominator sums to zero"
ZERO_CONTROL_MEAN = "the control mean is zero, so the relative lift is undefined"
NO_DENOMINATOR_IN_ARM = ("the {arm} arm has no {denominator} in the window, so {kpi} cannot be compared "
                         "(a workflow KPI that exists only under treatment is descriptive)")
NO_DENOMINATOR_IN_EITHER_ARM = ("neither arm has any {denominator} in the window, so {kpi} cannot be compared "
                                "(is the table holding them ingested?)")
UNDEFINED_COUNTERFACTUAL = "the counterfactual KPI is zero or undefined, so the relative effect is undefined"


@dataclass(frozen=True)
class Check:
    """The outcome of one assumption check (SRM, balance, pre-trends, ...).

    Parameters
    ----------
    name : str
        Short identifier, e.g. ``"sample_ratio_mismatch"``.
    status : {"pass", "warn", "fail", "skip"}
        ``skip`` when the check could not run (the message says why).
    message : str
        One sentence a reader can act on.
    statistic, p_value, threshold : float, optional
        The figure the decision was based on and the bound it was compared with.
    details : dict
        Anything else worth showing (per-covariate differences, counts, ...).
    """

    name: str
    status: CheckStatus
    message: str
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True unless the check failed (a warning or a skip is not a failure)."""
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (NaN and infinities become None)."""
        return jsonable(asdict(self))


@dataclass(frozen=True, kw_only=True)
class Result:
    """One estimate with its uncertainty, as every estimator in insightroi returns it.

    Keyword-only: eleven fields of which five are floats are too many to pass by position without
    swapping two of them silently (pyfixest's and statsmodels' result classes are built the same way).

    Parameters
    ----------
    estimate : float
        The point estimate of the effect (in ``unit``).
    se : float
        Its standard error (NaN where the method has none, e.g. permutation-only inference).
    ci : tuple of float
        The ``1 - alpha`` confidence (or credible) interval.
    p_value : float
        Two-sided p-value of no effect (NaN where undefined).
    method : str
        What was computed, e.g. ``"welch_t"``, ``"cuped"``, ``"did_2x2"``.
    n : int
        Number of analysis units behind the estimate.
    unit : str
        What the estimate is measured in, e.g. ``"absolute"``, ``"relative"``, ``"FTE"``.
    diagnostics : tuple of Check
        Every check run on the way to this estimate.
    alpha : float
        The level the interval was built for.
    metric : str
        Name of the KPI the estimate is about (empty when not applicable).
    extra : dict
        Method-specific figures (arm means, weights, per-period effects, ...). JSON-able.
    """

    estimate: float
    se: float
    ci: tuple[float, float]
    p_value: float
    method: str
    n: int
    unit: str = "absolute"
    diagnostics: tuple[Check, ...] = ()
    alpha: float = 0.05
    metric: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ci_low(self) -> float:
        """Lower end of the interval."""
        return self.ci[0]

    @property
    def ci_high(self) -> float:
        """Upper end of the interval."""
        return self.ci[1]

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return not (self.ci[0] <= 0.0 <= self.ci[1])

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        """The diagnostics whose status is ``fail``."""
        return tuple(c for c in self.diagnostics if c.status == "fail")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the result, diagnostics included."""
        d = asdict(self)
        d["ci"] = list(self.ci)
        d["diagnostics"] = [c.to_dict() for c in self.diagnostics]
        return jsonable(d)

    @classmethod
    def not_estimable(
        cls,
        reason: str,
        *,
        method: str,
        metric: str = "",
        n: int = 0,
        unit: str = "absolute",
        alpha: float = 0.05,
        diagnostics: tuple[Check, ...] = (),
        extra: dict[str, Any] | None = None,
    ) -> "Result":
        """The one shape of a result that could not be computed.

        Every figure is NaN, ``method`` is :data:`NOT_ESTIMABLE` and the last diagnostic is a
        ``skip`` check named ``"estimable"`` carrying ``reason``, so a breakdown or a batch run
        keeps the row and says why, instead of dropping it (gbstats' ``_default_output`` with its
        message constants, ``gbstats/messages.py``).

        Parameters
        ----------
        reason : str
            Why, in one sentence; preferably one of the message templates of this module
            (:data:`TOO_FEW_UNITS`, :data:`ZERO_DENOMINATOR`, ...) filled in.
        method : str
            The estimator that was attempted (kept in the check's ``details["method"]``).
        metric, n, unit, alpha :
            As on :class:`Result`.
        diagnostics : tuple of Check
            Checks already run before the estimate failed; the ``estimable`` check is appended.
        extra : dict, optional
            Figures that are still known (e.g. the treatment arm's mean).
        """
        nan = math.nan
        chk = Check("estimable", "skip", reason, details={"method": method})
        return cls(estimate=nan, se=nan, ci=(nan, nan), p_value=nan, method=NOT_ESTIMABLE, n=int(n), unit=unit,
                   diagnostics=tuple(diagnostics) + (chk,), alpha=alpha, metric=metric, extra=dict(extra or {}))

    @property
    def estimable(self) -> bool:
        """False for a :meth:`not_estimable` result."""
        return self.method != NOT_ESTIMABLE

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        """Rebuild a Result saved with :meth:`to_dict` (None reads back as NaN)."""

        def num(x: Any) -> float:
            return float("nan") if x is None else float(x)

        return cls(
            estimate=num(d["estimate"]),
            se=num(d["se"]),
            ci=(num(d["ci"][0]), num(d["ci"][1])),
            p_value=num(d["p_value"]),
            method=d["method"],
            n=int(d["n"]),
            unit=d.get("unit", "absolute"),
            diagnostics=tuple(Check(**c) for c in d.get("diagnostics", [])),
            alpha=float(d.get("alpha", 0.05)),
            metric=d.get("metric", ""),
            extra=d.get("extra", {}),
        )

    def to_frame(self):
        """One-row pandas DataFrame (pandas is imported here, not at module load)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "metric": self.metric,
                    "method": self.method,
                    "unit": self.unit,
                    "estimate": self.estimate,
                    "se": self.se,
                    "ci_low": self.ci[0],
                    "ci_high": self.ci[1],
                    "p_value": self.p_value,
                    "n": self.n,
                    "alpha": self.alpha,
                    "checks_failed": len(self.failed_checks),
                }
            ]
        )

    def summary(self, fmt: Literal["text", "html"] = "text") -> str:
        """A readable table of the estimate and numbered notes, one per check.

        Parameters
        ----------
        fmt : {"text", "html"}
            Plain text for terminals and logs, or an HTML fragment for reports.
        """
        level = round(100 * (1 - self.alpha))

        def g(x: float, digits: int = 6) -> str:
            # Not estimable is a dash, as everywhere else the figure is shown, never "nan".
            return f"{x:.{digits}g}" if math.isfinite(x) else "-"

        rows = [
            ("Metric", self.metric or "-"),
            ("Method", self.method),
            ("Estimate", f"{g(self.estimate)} ({self.unit})"),
            ("Std. error", g(self.se)),
            (f"{level}% CI", f"[{g(self.ci[0])}, {g(self.ci[1])}]"),
            ("p-value", g(self.p_value, 4)),
            ("N", f"{self.n:,}"),
        ]
        notes = [f"[{i}] {c.name}: {c.status.upper()} - {c.message}" for i, c in enumerate(self.diagnostics, 1)]
        if fmt == "html":
            body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
            note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            return (
                f'<table class="result">{body}</table>'
                + (f'<ol class="notes">{note_html}</ol>' if notes else "")
            )
        if fmt != "text":
            raise ValueError(f"The 'fmt' parameter must be one of ['text', 'html']. Got {fmt!r} instead.")
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        if notes:
            lines += ["", "Notes:"] + notes
        return "\n".join(lines)


def jsonable(obj: Any) -> Any:
    """Plain-JSON form of nested results: NaN and infinities become None, numpy scalars Python ones.

    Dict keys become strings and tuples lists, so ``json.dumps(jsonable(x), allow_nan=False)``
    succeeds for anything built from dicts, sequences, numbers and strings (strict JSON has no
    NaN, RFC 8259 sec. 6).
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return jsonable(obj.item())
    return obj


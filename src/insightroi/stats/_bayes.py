"""Bayesian two-arm analysis: chance to win, expected loss ("risk") and a credible interval.

Two models:

* :func:`bayesian_two_arm` -- the gaussian *effect* model of GrowthBook's gbstats 0.8.0
  (``gbstats.bayesian.tests.EffectBayesianABTest``): the data summarise to the same delta-method
  estimate and variance as the frequentist :func:`insightroi.stats.two_arm` (means, proportions,
  ratios, CUPED), read as a normal likelihood for the effect, and a normal prior on the absolute
  or relative effect (or a flat, improper one) gives a normal posterior.
* :func:`beta_binomial` -- the conjugate model for proportions: independent
  ``Beta(a + successes, b + failures)`` posteriors per arm, with chance to win, risk and the
  credible interval of the difference (or relative lift) by one-dimensional quadrature, so the
  figures are deterministic and exact to quadrature precision.

Both return a :class:`~insightroi.stats.Result` whose ``estimate`` / ``se`` / ``ci`` are the
posterior mean, posterior standard deviation and equal-tailed credible interval of the effect,
``p_value`` is NaN (a posterior has none), and ``extra`` carries the decision figures:

``chance_to_win``
    Posterior probability that treatment is better than control (``P(effect > 0)``; with
    ``inverse=True``, where lower is better, ``P(effect < 0)``).
``risk``
    ``[risk_control, risk_treatment]``: the expected loss of shipping control, ``E[max(effect, 0)]``,
    and of shipping treatment, ``E[max(-effect, 0)]``, in the effect's unit (swapped when
    ``inverse=True``), as gbstats orders them. Also stored as ``risk_control`` / ``risk_treatment``.
``risk_type``
    ``"absolute"`` or ``"relative"``, the unit of the risk.

References
----------
GrowthBook (2024). gbstats 0.8.0, ``gbstats/bayesian/tests.py``.
Stucchio, C. (2015). Bayesian A/B Testing at VWO (expected loss as the decision criterion).
Kruschke, J. K. (2015). Doing Bayesian Data Analysis, 2nd ed., ch. 6 (beta-binomial model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
from scipy import integrate, optimize, special

from insightroi.errors import DataError, check_option
from insightroi.stats._result import ZERO_CONTROL_MEAN, Result
from insightroi.stats._suffstats import Proportion, Statistic
from insightroi.stats._twoarm import two_arm

__all__ = ["EffectPrior", "bayesian_two_arm", "beta_binomial", "gaussian_risk"]

PriorScale = Literal["relative", "absolute"]


@dataclass(frozen=True)
class EffectPrior:
    """A proper normal prior on the treatment effect.

    Parameters
    ----------
    mean : float
        Prior mean of the effect.
    variance : float
        Prior variance of the effect (``> 0``).
    scale : {"relative", "absolute"}
        What ``mean`` and ``variance`` are about: the relative lift ``treatment / control - 1``
        (gbstats' default ``prior_type``) or the absolute difference in metric units. A prior on
        the other scale than the analysis is rescaled by the control arm's unadjusted mean ``m``:
        ``(mean / |m|, variance / m^2)`` or ``(mean |m|, variance m^2)``, as gbstats does.
    """

    mean: float = 0.0
    variance: float = 1.0
    scale: PriorScale = "relative"

    def __post_init__(self) -> None:
        check_option("scale", self.scale, ("relative", "absolute"))
        if not (self.variance > 0 and math.isfinite(self.variance)):
            raise DataError(f"the prior variance must be positive and finite, got {self.variance!r}")
        if not math.isfinite(self.mean):
            raise DataError(f"the prior mean must be finite, got {self.mean!r}")


def gaussian_risk(mean: float, sd: float) -> tuple[float, float]:
    """Expected losses of both decisions when the effect is ``N(mean, sd^2)``.

    ``risk_control = E[max(D, 0)] = mean Phi(mean / sd) + sd phi(mean / sd)`` (what is lost by
    keeping control when treatment is better) and ``risk_treatment = E[max(-D, 0)] =
    risk_control - mean``; the closed form of gbstats' ``get_risk``, which computes the same
    from truncated-normal means.

    Parameters
    ----------
    mean, sd : float
        Posterior mean and standard deviation of the effect (``sd > 0``).

    Returns
    -------
    (risk_control, risk_treatment)
    """
    z = mean / sd
    pdf = sd * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    # Each side from its own tail (not one minus the other) so a tiny risk keeps its digits.
    risk_control = mean * special.ndtr(z) + pdf
    risk_treatment = -mean * special.ndtr(-z) + pdf
    return float(risk_control), float(risk_treatment)


def _decision_extra(mean: float, sd: float, p_positive: float, risk_pos: float, risk_neg: float, *,
                    inverse: bool, relative: bool) -> dict:
    ctw = (1.0 - p_positive) if inverse else p_positive
    risk = [risk_neg, risk_pos] if inverse else [risk_pos, risk_neg]
    return {"chance_to_win": float(ctw), "risk": [float(risk[0]), float(risk[1])], "risk_control": float(risk[0]),
            "risk_treatment": float(risk[1]), "risk_type": "relative" if relative else "absolute",
            "inverse": inverse, "posterior_mean": float(mean), "posterior_sd": float(sd)}


def bayesian_two_arm(
    control: Statistic,
    treatment: Statistic,
    *,
    relative: bool = False,
    prior: EffectPrior | None = None,
    inverse: bool = False,
    alpha: float = 0.05,
    cuped: bool = True,
    metric: str = "",
) -> Result:
    """Gaussian Bayesian analysis of the effect of treatment over control (gbstats' effect model).

    The likelihood is ``N(d, v)`` with ``d`` and ``v`` the delta-method estimate and variance of
    :func:`insightroi.stats.two_arm` (absolute difference or relative lift; CUPED-adjusted for
    statistics with a pre-period). With a proper prior ``N(m0, v0)`` the posterior is
    ``N((d / v + m0 / v0) / (1 / v + 1 / v0), 1 / (1 / v + 1 / v0))``; without one (flat prior)
    it is ``N(d, v)``, and the credible interval equals the normal-reference confidence interval.
    Matches ``EffectBayesianABTest(a, b, EffectBayesianConfig(...)).compute_result()`` of gbstats
    0.8.0 to 1e-6 (tests/stats/reference_values.toml).

    Parameters
    ----------
    control, treatment : SampleMean, Proportion, Ratio, RegressionAdjusted or RatioRegressionAdjusted
        Both arms' sufficient statistics, of the same kind.
    relative : bool
        ``False``: effect is ``treatment - control`` in metric units; ``True``: ``treatment /
        control - 1`` (the risk is then relative too).
    prior : EffectPrior, optional
        Proper normal prior on the effect; None for gbstats' default flat (improper) prior.
    inverse : bool
        True when lower is better (e.g. complaints per order): the chance to win becomes
        ``P(effect < 0)`` and the two risks swap. The interval is still of ``treatment - control``.
    alpha : float
        The credible interval has posterior mass ``1 - alpha`` (equal tails).
    cuped : bool
        Passed to :func:`two_arm` for statistics with a pre-period covariate. With ``relative=True``
        the CUPED variance is the full delta method of :func:`two_arm`, which differs from gbstats'
        simpler formula in the control arm's term.
    metric : str
        Label stored on the Result.

    Returns
    -------
    Result
        ``estimate``, ``se``, ``ci``: posterior mean, standard deviation and credible interval;
        ``p_value`` NaN; ``method`` ``"bayes_gaussian"``. ``extra`` holds ``chance_to_win``,
        ``risk`` (``[risk_control, risk_treatment]``), ``risk_control``, ``risk_treatment``,
        ``risk_type``, ``inverse``, ``prior`` (as used, rescaled to the analysis scale; None when
        flat), ``data_estimate`` / ``data_se`` (the likelihood) and the arm means of :func:`two_arm`.
        A statistic without sampling variance gives :meth:`Result.not_estimable`.

    Raises
    ------
    DataError
        As :func:`two_arm`: fewer than two units in an arm, a zero denominator, a zero control
        mean with ``relative=True`` (or with a prior given on the other scale).
    """
    if prior is not None and not isinstance(prior, EffectPrior):
        raise DataError(f"prior must be an EffectPrior or None, got {type(prior).__name__}")
    freq = two_arm(control, treatment, relative=relative, alpha=alpha, test="z", cuped=cuped, metric=metric,
                   method="bayes_gaussian")
    unit = "relative" if relative else "absolute"
    base_extra = {k: freq.extra[k] for k in ("control_mean", "treatment_mean", "control_n", "treatment_n", "theta",
                                             "cuped", "variance_reduction")}
    data_mean, data_se = freq.estimate, freq.se
    if not (data_se > 0 and math.isfinite(data_se)):
        return Result.not_estimable("the effect has no sampling variance (an arm has zero variance)",
                                    method="bayes_gaussian", metric=metric, n=freq.n, unit=unit, alpha=alpha,
                                    extra=base_extra)
    data_var = data_se * data_se
    used_prior = None
    if prior is None:
        mean, var = data_mean, data_var
    else:
        pm, pv = prior.mean, prior.variance
        if prior.scale != unit:
            # gbstats rescales by the control arm's *unadjusted* mean, also under CUPED.
            m0 = freq.extra["control_mean"]
            if m0 == 0:
                raise DataError(ZERO_CONTROL_MEAN)
            pm, pv = (pm / abs(m0), pv / m0**2) if relative else (pm * abs(m0), pv * m0**2)
        prec = 1.0 / data_var + 1.0 / pv
        mean = (data_mean / data_var + pm / pv) / prec
        var = 1.0 / prec
        used_prior = {"mean": pm, "variance": pv, "scale": unit, "given": asdict(prior)}
    sd = math.sqrt(var)
    zq = special.ndtri(1 - alpha / 2)
    risk_pos, risk_neg = gaussian_risk(mean, sd)
    extra = {**base_extra, **_decision_extra(mean, sd, float(special.ndtr(mean / sd)), risk_pos, risk_neg,
                                             inverse=inverse, relative=relative),
             "prior": used_prior, "data_estimate": data_mean, "data_se": data_se}
    return replace(freq, estimate=float(mean), se=sd, ci=(float(mean - zq * sd), float(mean + zq * sd)),
                   p_value=math.nan, extra=extra)


# ------------------------------------------------------------------------------ beta-binomial


@dataclass(frozen=True)
class _Beta:
    a: float
    b: float

    # scipy.special ufuncs, not scipy.stats.beta: quadrature calls these thousands of times and
    # the distribution objects cost tens of microseconds a call.
    def pdf(self, x):
        return np.exp((self.a - 1) * np.log(x) + (self.b - 1) * np.log1p(-x) - special.betaln(self.a, self.b))

    def cdf(self, x):
        return special.betainc(self.a, self.b, np.clip(x, 0.0, 1.0))

    def sf(self, x):
        return special.betaincc(self.a, self.b, np.clip(x, 0.0, 1.0))

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    @property
    def var(self) -> float:
        s = self.a + self.b
        return self.a * self.b / (s * s * (s + 1))

    def upper_partial(self, x):
        """``E[(Y - x)^+]`` for ``Y ~ Beta(a, b)``: ``E[Y; Y > x] - x P(Y > x)``."""
        # E[Y 1{Y > x}] = mean * P(Beta(a + 1, b) > x): the size-biased beta.
        return self.mean * special.betaincc(self.a + 1, self.b, x) - x * special.betaincc(self.a, self.b, x)


def _quad_over(post: _Beta, fn, points=()) -> float:
    """``E[fn(X)]`` for ``X ~ post``, integrating its density where it has mass."""
    lo = float(special.betaincinv(post.a, post.b, 1e-15))
    hi = float(special.betainccinv(post.a, post.b, 1e-15))
    inner = sorted(p for p in set(points) if lo < p < hi)
    val, _ = integrate.quad(lambda x: post.pdf(x) * fn(x), lo, hi, points=inner or None, limit=400,
                            epsabs=1e-14, epsrel=1e-12)
    return float(val)


def beta_binomial(
    control: Proportion,
    treatment: Proportion,
    *,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    relative: bool = False,
    inverse: bool = False,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """Conjugate beta-binomial analysis of two proportions.

    Each arm's rate has posterior ``Beta(prior_alpha + successes, prior_beta + n - successes)``,
    independently. With ``pA``, ``pB`` the control and treatment rates and ``D = pB - pA`` (or
    ``pB / pA - 1`` when ``relative``):

    * chance to win ``P(pB > pA) = int f_A(x) P(pB > x) dx``;
    * ``risk_control = E[max(D, 0)]`` from the closed-form partial expectation of a beta, integrated
      over ``pA``; ``risk_treatment = risk_control - E[D]``;
    * credible interval: the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of ``D``, solving
      ``P(D <= d) = int f_A(x) F_B(x + d) dx`` (or ``F_B((1 + d) x)``) for ``d``;
    * posterior mean and standard deviation of ``D`` in closed form (for the relative lift
      ``E[pB] E[1 / pA] - 1`` and the moments of ``1 / pA``, which need ``alpha_A > 2``).

    All by adaptive quadrature, so the figures are deterministic; they agree with a Monte Carlo
    of two million draws per arm within its error (tests/stats/test_stats_bayes.py).

    Parameters
    ----------
    control, treatment : Proportion
        Successes out of units per arm.
    prior_alpha, prior_beta : float
        The ``Beta`` prior of each arm's rate (``Beta(1, 1)``: uniform). Informative priors are
        pseudo-counts: ``Beta(20, 180)`` is worth 200 units at a 10% rate.
    relative : bool
        Effect as ``pB / pA - 1`` instead of ``pB - pA``.
    inverse : bool
        Lower is better: chance to win ``P(D < 0)``, risks swapped.
    alpha : float
        Posterior mass outside the credible interval.
    metric : str
        Label stored on the Result.

    Returns
    -------
    Result
        ``method`` ``"bayes_beta_binomial"``, ``p_value`` NaN; ``extra`` as
        :func:`bayesian_two_arm` (``chance_to_win``, ``risk``, ...) plus the posterior parameters
        ``control_posterior`` / ``treatment_posterior`` (``[a, b]``) and the arm rates.

    Raises
    ------
    DataError
        When a statistic is not a :class:`Proportion`, has no units, counts outside ``[0, n]``,
        or a prior parameter is not positive.
    """
    for name, s in (("control", control), ("treatment", treatment)):
        if not isinstance(s, Proportion):
            raise DataError(f"beta_binomial needs Proportion statistics, got {type(s).__name__} for {name}")
        if s.n < 1 or not (0 <= s.successes <= s.n):
            raise DataError(f"the {name} arm needs n >= 1 and 0 <= successes <= n, got n={s.n}, successes={s.successes}")
    if not (prior_alpha > 0 and prior_beta > 0):
        raise DataError(f"prior_alpha and prior_beta must be positive, got {prior_alpha!r} and {prior_beta!r}")
    pa = _Beta(prior_alpha + control.successes, prior_beta + control.n - control.successes)
    pb = _Beta(prior_alpha + treatment.successes, prior_beta + treatment.n - treatment.successes)
    unit = "relative" if relative else "absolute"
    n = int(control.n + treatment.n)
    hints = (pa.mean, pb.mean)
    p_pos = _quad_over(pa, pb.sf, hints)
    if relative:
        if pa.a <= 2:
            return Result.not_estimable("the control arm's posterior has no finite variance of 1 / rate "
                                        "(prior_alpha + successes <= 2)", method="bayes_beta_binomial",
                                        metric=metric, n=n, unit=unit, alpha=alpha)
        inv1 = (pa.a + pa.b - 1) / (pa.a - 1)
        inv2 = inv1 * (pa.a + pa.b - 2) / (pa.a - 2)
        mean = pb.mean * inv1 - 1.0
        eb2 = pb.var + pb.mean**2
        var = eb2 * inv2 - (pb.mean * inv1) ** 2
        risk_pos = _quad_over(pa, lambda x: pb.upper_partial(x) / x, hints)
        cdf = lambda d: _quad_over(pa, lambda x: pb.cdf((1 + d) * x), hints)  # noqa: E731
        lo_b, hi_b = -1.0, max(10.0, mean + 50 * math.sqrt(var))
    else:
        mean = pb.mean - pa.mean
        var = pa.var + pb.var
        risk_pos = _quad_over(pa, pb.upper_partial, hints)
        cdf = lambda d: _quad_over(pa, lambda x: pb.cdf(x + d), hints)  # noqa: E731
        lo_b, hi_b = -1.0, 1.0
    sd = math.sqrt(var)
    risk_neg = risk_pos - mean
    # Bracket the quantiles near the normal approximation first: the CDF is flat far out.
    ci = []
    for q in (alpha / 2, 1 - alpha / 2):
        lo, hi = max(lo_b, mean - 12 * sd), min(hi_b, mean + 12 * sd)
        f = lambda d, q=q: cdf(d) - q  # noqa: E731
        if f(lo) > 0:
            lo = lo_b
        if f(hi) < 0:
            hi = hi_b
        ci.append(float(optimize.brentq(f, lo, hi, xtol=1e-13, rtol=1e-12)))
    extra = {"control_mean": control.mean, "treatment_mean": treatment.mean, "control_n": control.n,
             "treatment_n": treatment.n, "control_posterior": [pa.a, pa.b], "treatment_posterior": [pb.a, pb.b],
             "prior": {"alpha": prior_alpha, "beta": prior_beta},
             **_decision_extra(mean, sd, p_pos, risk_pos, risk_neg, inverse=inverse, relative=relative)}
    return Result(estimate=float(mean), se=sd, ci=(ci[0], ci[1]), p_value=math.nan, method="bayes_beta_binomial",
                  n=n, unit=unit, alpha=alpha, metric=metric, extra=extra)


"""Regression adjustment on several covariates, CUPAC and post-stratification, from sufficient statistics.

Every estimator here is an ordinary least-squares fit whose normal equations need only per-arm
sums: ``n``, ``sum y``, ``sum y^2``, ``sum x``, ``sum x x'`` and ``sum x y`` (all entries of
``sum w w'`` for ``w = (1, x, y)``). Those sums add across partitions, so the warehouse (or
Spark) aggregates once per arm and the fit costs a ``(2p + 2)``-square solve, whatever the number
of units.

Which standard errors are exact from which statistics
-----------------------------------------------------
* Second moments give the classical OLS variance (statsmodels ``cov_type="nonrobust"``) exactly,
  and the *arm-wise* variance (the default, below), which is the asymptotic variance of both
  estimators under heterogeneous effects and unequal arms (Lin 2013, Theorem 2 and sec. 5).
* Optional fourth moments (``sum w_i w_j w_k w_l``) give White's HC0 and HC1 exactly: the meat
  ``sum e_i^2 z_i z_i'`` is a quartic form in ``w`` because within an arm the residual ``e`` and
  the design row ``z`` are linear in ``w``.
* HC2 and HC3 need each unit's leverage ``z_i' (Z'Z)^-1 z_i`` and divide by ``1 - h_ii``: no finite
  set of moments yields them, so they are not offered for covariates. For post-stratification the
  regression is saturated, the leverage is ``1 / n_cell``, and :func:`post_stratified` equals
  HC2 exactly.

References
----------
Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data (CUPED). WSDM.
Freedman, D. A. (2008). On regression adjustments to experimental data. Adv. Appl. Math. 40, 180-193.
Lin, W. (2013). Agnostic notes on regression adjustments to experimental data: reexamining
Freedman's critique. Ann. Appl. Stat. 7(1), 295-318.
Tang, Y., Huang, C., Kastelman, D., Bauman, J. (2020). Control using predictions as covariates in
switchback experiments (CUPAC). DoorDash engineering blog.
Miratrix, L. W., Sekhon, J. S., Yu, B. (2013). Adjusting treatment effect estimates by
post-stratification in randomized experiments. JRSS-B 75(2), 369-396.
White, H. (1980). A heteroskedasticity-consistent covariance matrix estimator. Econometrica 48.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from operator import add
from typing import Literal

import numpy as np
from scipy import special

from insightroi.errors import DataError, check_option
from insightroi.stats._intervals import welch_df
from insightroi.stats._result import TOO_FEW_UNITS, ZERO_CONTROL_MEAN, Result
from insightroi.stats._suffstats import Proportion, SampleMean

__all__ = ["MultiRegressionAdjusted", "regression_adjusted", "cupac", "post_stratified"]

CovType = Literal["arm", "nonrobust", "HC0", "HC1"]
_COV_TYPES = ("arm", "nonrobust", "HC0", "HC1")

# Relative size of the smallest eigenvalue of the scaled normal matrix below which the design is
# treated as collinear: beyond it the solve amplifies rounding in the sums past 1e-4.
_COLLINEAR = 1e-12


def _as_tuple2(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in a)


@dataclass(frozen=True)
class MultiRegressionAdjusted:
    """One arm's outcome ``y`` and ``p`` pre-period covariates ``x``, as sums over units.

    Adds fieldwise, so the statistics of two partitions sum to those of their union (what lets
    the store aggregate per partition). Arrays are kept as tuples so the instance stays frozen,
    hashable and comparable with ``==``.

    Parameters
    ----------
    n : int
        Units.
    y_sum, y_sum_sq : float
        ``sum y`` and ``sum y^2``.
    x_sum : tuple of float, length p
        ``sum x``.
    xx_sum : tuple of tuples, p x p
        ``sum x x'``.
    xy_sum : tuple of float, length p
        ``sum x y``.
    fourth : tuple of float, optional
        The ``q^4`` sums ``sum w_i w_j w_k w_l`` of ``w = (1, x_1, ..., x_p, y)`` (``q = p + 2``),
        flattened in C order. Only the HC0 / HC1 standard errors need them.
    """

    n: int
    y_sum: float
    y_sum_sq: float
    x_sum: tuple[float, ...]
    xx_sum: tuple[tuple[float, ...], ...]
    xy_sum: tuple[float, ...]
    fourth: tuple[float, ...] | None = None

    def __add__(self, other: "MultiRegressionAdjusted") -> "MultiRegressionAdjusted":
        if not isinstance(other, MultiRegressionAdjusted):
            return NotImplemented
        if self.p != other.p:
            raise DataError(f"cannot add statistics with {self.p} and {other.p} covariates")
        if (self.fourth is None) != (other.fourth is None):
            # Dropping the fourth moments silently would turn a later HC request into an error
            # far from its cause; mixing partitions built two ways is the mistake to report.
            raise DataError("cannot add statistics with and without fourth moments; build every partition "
                            "with the same fourth_moments setting")
        fourth = None if self.fourth is None else tuple(a + b for a, b in zip(self.fourth, other.fourth))
        return MultiRegressionAdjusted(
            self.n + other.n, self.y_sum + other.y_sum, self.y_sum_sq + other.y_sum_sq,
            tuple(a + b for a, b in zip(self.x_sum, other.x_sum)),
            tuple(tuple(a + b for a, b in zip(r1, r2)) for r1, r2 in zip(self.xx_sum, other.xx_sum)),
            tuple(a + b for a, b in zip(self.xy_sum, other.xy_sum)), fourth)

    @classmethod
    def from_arrays(cls, y, X, *, fourth_moments: bool = False) -> "MultiRegressionAdjusted":
        """Statistics of per-unit outcomes ``y`` (n,) and covariates ``X`` (n,) or (n, p).

        Parameters
        ----------
        fourth_moments : bool
            Also keep ``sum w_i w_j w_k w_l`` (``(p + 2)^4`` numbers) for HC0 / HC1 errors.

        Raises
        ------
        DataError
            On mismatched shapes or non-finite values (a NaN would poison every sum silently).
        """
        y = np.asarray(y, dtype=float)
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if y.ndim != 1 or X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise DataError(f"y must be 1-D and X (n,) or (n, p) with the same n, got {y.shape} and {X.shape}")
        if not (np.isfinite(y).all() and np.isfinite(X).all()):
            raise DataError("y and X must be finite; drop or impute missing values before aggregating")
        fourth = None
        if fourth_moments:
            W = np.column_stack([np.ones(y.size), X, y])
            q = W.shape[1]
            WW = (W[:, :, None] * W[:, None, :]).reshape(y.size, q * q)
            fourth = tuple(float(v) for v in (WW.T @ WW).ravel())
        return cls(int(y.size), float(y.sum()), float(y @ y), tuple(float(v) for v in X.sum(axis=0)),
                   _as_tuple2(X.T @ X), tuple(float(v) for v in X.T @ y), fourth)

    @property
    def p(self) -> int:
        """Number of covariates."""
        return len(self.x_sum)

    @property
    def mean(self) -> float:
        """Mean outcome."""
        return self.y_sum / self.n if self.n else math.nan

    @property
    def x_mean(self) -> np.ndarray:
        """Covariate means, shape (p,)."""
        return np.asarray(self.x_sum, dtype=float) / self.n if self.n else np.full(self.p, math.nan)

    def second(self) -> np.ndarray:
        """``sum w w'`` for ``w = (1, x, y)``: the ``(p + 2)``-square matrix every fit starts from."""
        p = self.p
        m = np.empty((p + 2, p + 2))
        m[0, 0] = self.n
        m[0, 1:p + 1] = m[1:p + 1, 0] = self.x_sum
        m[0, -1] = m[-1, 0] = self.y_sum
        m[1:p + 1, 1:p + 1] = self.xx_sum
        m[1:p + 1, -1] = m[-1, 1:p + 1] = self.xy_sum
        m[-1, -1] = self.y_sum_sq
        return m

    def fourth_array(self) -> np.ndarray | None:
        """The fourth moments as a ``(q, q, q, q)`` array, or None when not kept."""
        if self.fourth is None:
            return None
        q = self.p + 2
        return np.asarray(self.fourth, dtype=float).reshape(q, q, q, q)


def _sample_cov_forms(m2: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Sample covariance (n - 1) of the per-unit linear forms ``a'w`` and ``b'w`` from ``sum w w'``."""
    n = m2[0, 0]
    return float((a @ m2 @ b - (a @ m2[:, 0]) * (b @ m2[:, 0]) / n) / (n - 1))


def _check_rank(zz: np.ndarray, what: str) -> None:
    d = np.sqrt(np.diag(zz))
    if np.any(d == 0):
        raise DataError(f"{what}: a design column is identically zero")
    eig = np.linalg.eigvalsh(zz / np.outer(d, d))
    if eig[0] <= _COLLINEAR * eig[-1]:
        # Raw sums also lose the spread of a covariate whose mean dwarfs it (|mean| / sd ~ 1e6):
        # centring it on a fixed value before aggregating keeps the sums exact.
        raise DataError(f"{what}: the covariates are collinear (or constant) within the data; drop redundant "
                        "ones, or centre a covariate whose mean is huge next to its spread before aggregating")


def _t_or_z(estimate: float, se: float, df: float, alpha: float) -> tuple[float, float]:
    # scipy.special directly, as in _twoarm: distribution objects cost ~100 us a call.
    if not (se > 0 and math.isfinite(se)):
        return math.nan, math.nan
    if math.isfinite(df):
        return float(special.stdtrit(df, 1 - alpha / 2) * se), float(2 * special.stdtr(df, -abs(estimate) / se))
    return float(special.ndtri(1 - alpha / 2) * se), float(2 * special.ndtr(-abs(estimate) / se))


def _satterthwaite(variances, dofs) -> float:
    den = sum(v**2 / d for v, d in zip(variances, dofs))
    return sum(variances) ** 2 / den if den > 0 else math.inf


def regression_adjusted(
    control: MultiRegressionAdjusted,
    treatment: MultiRegressionAdjusted,
    *,
    interacted: bool = False,
    cov_type: CovType = "arm",
    relative: bool = False,
    alpha: float = 0.05,
    metric: str = "",
    method: str | None = None,
) -> Result:
    """Treatment effect adjusted on ``p`` pre-period covariates, from sufficient statistics.

    ``interacted=False`` is ANCOVA, i.e. CUPED with several covariates: one slope vector
    ``theta = W_xx^-1 W_xy`` from the pooled *within-arm* sums of squares and cross-products, and
    the effect ``(ybar_t - ybar_c) - theta'(xbar_t - xbar_c)``; each arm's adjusted mean is
    ``ybar_a - theta'(xbar_a - xbar)`` with ``xbar`` the pooled covariate mean. This is exactly
    the coefficient on ``treat`` of the OLS fit ``y ~ 1 + treat + X``.

    ``interacted=True`` is Lin's (2013) estimator: a separate slope per arm, each arm's mean
    predicted at the pooled covariate mean, i.e. the coefficient on ``treat`` of
    ``y ~ treat * (X - xbar)``. Prefer it when arms differ in size and the covariates may act
    differently under treatment: ANCOVA's pooled slope can then lose precision (Freedman 2008),
    Lin's cannot do worse than the unadjusted difference asymptotically.

    Parameters
    ----------
    control, treatment : MultiRegressionAdjusted
        Both arms' statistics over the same ``p`` covariates.
    interacted : bool
        Separate slopes per arm (Lin 2013) instead of one pooled slope.
    cov_type : {"arm", "nonrobust", "HC0", "HC1"}
        Variance of the absolute effect.

        * ``"arm"`` (default, second moments only): each arm's residual variance over its own
          units, summed as for Welch's test. Pooled: ``Var_t(y - theta'x)/n_t +
          Var_c(y - theta'x)/n_c`` (``n - 1`` denominators, theta held fixed: gbstats' CUPED
          variance, Welch-Satterthwaite df on ``n_a - 1``). Interacted: the sum of the classical
          OLS variances of the intercept of ``y ~ 1 + (X - xbar)`` fitted in each arm alone,
          exactly, df by Satterthwaite on ``n_a - p - 1``. Both are consistent for the effect's
          variance under heterogeneous effects and unequal arms (Lin 2013, sec. 5); with no
          covariate they are Welch's variance, which is HC2 of ``y ~ treat``.
        * ``"nonrobust"``: statsmodels ``OLS(...).fit()`` exactly (one residual variance for
          all units, t on ``n - k`` df). Not robust to unequal arm variances with unequal arms.
        * ``"HC0"``, ``"HC1"``: statsmodels ``fit(cov_type="HC0" | "HC1")`` exactly (t on
          ``n - k`` df: statsmodels' ``fit(cov_type=..., use_t=True)``, which is also Stata's
          ``regress, robust`` convention); both arms need ``fourth_moments=True``.
    relative : bool
        ``False``: the effect in metric units. ``True``: the effect divided by the *unadjusted*
        control mean (gbstats' and :func:`~insightroi.stats.cuped`'s convention), with the
        delta-method variance ``(V_d - 2 r C + r^2 V_c) / ybar_c^2``, ``r`` the relative effect,
        ``V_d`` the absolute effect's variance under ``cov_type``, ``V_c = s_c^2 / n_c`` and
        ``C = -Cov_c(e, y) / n_c`` the covariance of the effect with the control mean from the
        control residuals ``e`` (the arm-wise term, asymptotically the same under every
        ``cov_type``).
    alpha : float
        Two-sided level of the interval.
    metric, method : str
        Labels stored on the Result (``method`` defaults to ``"regression_adjusted"`` or
        ``"regression_adjusted_interacted"``).

    Returns
    -------
    Result
        ``extra`` holds ``control_mean``, ``treatment_mean`` (unadjusted), the
        ``*_mean_adjusted`` means, ``control_n``, ``treatment_n``, ``df``, ``theta`` (the pooled
        slopes; for ``interacted`` also ``theta_control`` and ``theta_treatment``),
        ``covariate_means``, ``unadjusted_se`` (Welch, same ``relative`` scale),
        ``variance_reduction`` (``1 - var / var_unadjusted``), ``cov_type``, ``interacted``, ``p``.

    Raises
    ------
    DataError
        Mismatched covariates, fewer than two units in an arm, too few units for the
        parameters, collinear covariates, missing fourth moments for HC0/HC1, a zero control
        mean with ``relative``.
    """
    check_option("cov_type", cov_type, _COV_TYPES)
    if not (isinstance(control, MultiRegressionAdjusted) and isinstance(treatment, MultiRegressionAdjusted)):
        raise DataError("control and treatment must both be MultiRegressionAdjusted, got "
                        f"{type(control).__name__} and {type(treatment).__name__}")
    if control.p != treatment.p:
        raise DataError(f"control has {control.p} covariates and treatment {treatment.p}; they must match")
    for name, s in (("control", control), ("treatment", treatment)):
        if s.n < 2:
            raise DataError(TOO_FEW_UNITS.format(arm=name, n=s.n))
    p = control.p
    q = p + 2
    nc, nt = control.n, treatment.n
    n = nc + nt
    mc, mt = control.second(), treatment.second()
    xbar = (np.asarray(control.x_sum) + np.asarray(treatment.x_sum)) / n
    e0, ey = np.eye(q)[0], np.eye(q)[-1]
    ex = np.eye(q)[1:p + 1]  # rows pick x_j out of w

    # Design row z = A_arm w within each arm (treat is constant there), so every cross-product
    # of the full regression is A M A' summed over arms.
    def design(t: float) -> np.ndarray:
        if interacted:
            centred = ex - np.outer(xbar, e0)
            return np.vstack([e0, t * e0, centred, t * centred])
        return np.vstack([e0, t * e0, ex])

    A = {"c": design(0.0), "t": design(1.0)}
    M = {"c": mc, "t": mt}
    k = A["c"].shape[0]
    if n - k < 1 or (interacted and min(nc, nt) - p - 1 < 1):
        raise DataError(f"{n} units ({nc} control, {nt} treatment) are too few for {k} regression parameters")
    zz = A["c"] @ mc @ A["c"].T + A["t"] @ mt @ A["t"].T
    _check_rank(zz, "regression_adjusted")
    zy = A["c"] @ mc @ ey + A["t"] @ mt @ ey
    beta = np.linalg.solve(zz, zy)
    zz_inv = np.linalg.inv(zz)
    estimate = float(beta[1])
    # Residual e = g'w in each arm; the effect's influence is u'w with u = A' (Z'Z)^-1 e_treat.
    g = {a: ey - A[a].T @ beta for a in "ct"}
    rss = {a: float(g[a] @ M[a] @ g[a]) for a in "ct"}

    if interacted:
        theta_c = beta[2:p + 2]
        theta_t = beta[2:p + 2] + beta[p + 2:]
        resid = {"c": ey - ex.T @ theta_c, "t": ey - ex.T @ theta_t}
    else:
        theta_c = theta_t = beta[2:]
        resid = {a: ey - ex.T @ theta_c for a in "ct"}

    arm_var = {}
    if cov_type == "arm":
        if interacted:
            for a, s in (("c", control), ("t", treatment)):
                B = np.vstack([e0, ex - np.outer(xbar, e0)])
                za = B @ M[a] @ B.T
                arm_var[a] = rss[a] / (s.n - p - 1) * float(np.linalg.inv(za)[0, 0])
            dofs = [nc - p - 1, nt - p - 1]
        else:
            for a, s in (("c", control), ("t", treatment)):
                arm_var[a] = _sample_cov_forms(M[a], resid[a], resid[a]) / s.n
            dofs = [nc - 1, nt - 1]
        var = arm_var["c"] + arm_var["t"]
        df = None  # Satterthwaite on the arms' components, once their scale (relative or not) is known
    elif cov_type == "nonrobust":
        var = (rss["c"] + rss["t"]) / (n - k) * float(zz_inv[1, 1])
        df = float(n - k)
    else:
        f = {"c": control.fourth_array(), "t": treatment.fourth_array()}
        if f["c"] is None or f["t"] is None:
            raise DataError(f"cov_type={cov_type!r} needs fourth moments: build both arms with "
                            "MultiRegressionAdjusted.from_arrays(..., fourth_moments=True)")
        var = 0.0
        for a in "ct":
            u = A[a].T @ zz_inv[:, 1]
            var += float(np.einsum("ijkl,i,j,k,l->", f[a], g[a], g[a], u, u))
        if cov_type == "HC1":
            var *= n / (n - k)
        df = float(n - k)

    if interacted:
        # Reported for comparison with ANCOVA: the pooled within-arm slopes.
        w_within = sum(M[a] - np.outer(M[a][:, 0], M[a][:, 0]) / M[a][0, 0] for a in "ct")
        theta_pooled = np.linalg.solve(w_within[1:p + 1, 1:p + 1], w_within[1:p + 1, -1])
    else:
        theta_pooled = theta_c
    yc, yt = control.mean, treatment.mean
    vyc = _sample_cov_forms(mc, ey, ey) / nc
    vyt = _sample_cov_forms(mt, ey, ey) / nt
    raw_var = vyc + vyt
    if relative:
        if yc == 0:
            raise DataError(ZERO_CONTROL_MEAN)
        diff = estimate
        estimate = diff / yc
        cov_dc = -_sample_cov_forms(mc, resid["c"], ey) / nc
        var = (var - 2 * estimate * cov_dc + estimate**2 * vyc) / yc**2
        if cov_type == "arm":
            # Every control-arm term of the delta method belongs to the control component, as in
            # two_arm, so the df of a relative lift weighs the arms as its variance does.
            arm_var = {"t": arm_var["t"] / yc**2, "c": var - arm_var["t"] / yc**2}
        # Welch variance of the unadjusted relative lift, as two_arm computes it.
        raw_var = vyt / yc**2 + (yt / yc**2) ** 2 * vyc
    if cov_type == "arm":
        df = _satterthwaite([arm_var["t"], arm_var["c"]], [dofs[1], dofs[0]])
    se = math.sqrt(var) if var >= 0 else math.nan
    half, pval = _t_or_z(estimate, se, df, alpha)
    adj_c = yc - float(theta_c @ (control.x_mean - xbar))
    adj_t = yt - float(theta_t @ (treatment.x_mean - xbar))
    extra = {
        "control_mean": yc, "treatment_mean": yt, "control_mean_adjusted": adj_c, "treatment_mean_adjusted": adj_t,
        "control_n": nc, "treatment_n": nt, "df": df if math.isfinite(df) else None,
        "reference": "t" if math.isfinite(df) else "z",
        "theta": [float(v) for v in theta_pooled],
        "covariate_means": {"control": control.x_mean.tolist(), "treatment": treatment.x_mean.tolist(),
                            "pooled": xbar.tolist()},
        "unadjusted_se": math.sqrt(raw_var),
        "variance_reduction": 1 - var / raw_var if raw_var > 0 else math.nan,
        "cov_type": cov_type, "interacted": interacted, "p": p,
    }
    if interacted:
        extra.update(theta_control=[float(v) for v in theta_c], theta_treatment=[float(v) for v in theta_t])
    return Result(
        estimate=float(estimate), se=se, ci=(float(estimate - half), float(estimate + half)), p_value=pval,
        method=method or ("regression_adjusted_interacted" if interacted else "regression_adjusted"), n=n,
        unit="relative" if relative else "absolute", alpha=alpha, metric=metric, extra=extra,
    )


def cupac(
    control_y,
    control_pred,
    treatment_y,
    treatment_pred,
    extra_covariates=None,
    *,
    interacted: bool = False,
    cov_type: CovType = "arm",
    relative: bool = False,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """CUPAC: regression adjustment with a model's prediction of the outcome as covariate.

    Tang et al. (2020, DoorDash) replace CUPED's single pre-period metric by the prediction of
    ``y`` from a model fed only pre-period features; the variance falls by roughly the share of
    the outcome's variance the prediction explains within arm, so a model that combines many
    features beats any one raw pre-period value. Statistically it is nothing else than
    :func:`regression_adjusted` with the prediction as (one of the) covariates, and it inherits
    that estimator's unbiasedness *only if the prediction is unaffected by treatment*.

    Leakage rule: the model and its inputs must be fixed before assignment -- trained on
    pre-period outcomes only, with features measured before exposure, and applied identically to
    both arms. A model trained on (or fed) treatment-period outcomes or post-exposure behaviour
    absorbs part of the effect into the covariate and biases the estimate, typically towards
    zero. This function cannot detect that; a balance check of ``pred`` across arms (it should
    differ only by chance) is the cheap guard.

    Parameters
    ----------
    control_y, treatment_y : array
        Outcomes per unit.
    control_pred, treatment_pred : array
        The pre-period model's prediction of each unit's outcome.
    extra_covariates : (array, array), optional
        Further covariates ``(control_X, treatment_X)``, each (n,) or (n, p), added beside the
        prediction (e.g. the raw pre-period value, as Tang et al. do).
    interacted, cov_type, relative, alpha, metric :
        As in :func:`regression_adjusted`.

    Returns
    -------
    Result
        ``method="cupac"``; ``extra`` as in :func:`regression_adjusted`, the prediction's slope first.
    """
    def covariates(pred, extra):
        pred = np.asarray(pred, dtype=float)
        return pred if extra is None else np.column_stack([pred, np.asarray(extra, dtype=float)])

    xc_extra, xt_extra = (None, None) if extra_covariates is None else extra_covariates
    fourth = cov_type in ("HC0", "HC1")
    c = MultiRegressionAdjusted.from_arrays(control_y, covariates(control_pred, xc_extra), fourth_moments=fourth)
    t = MultiRegressionAdjusted.from_arrays(treatment_y, covariates(treatment_pred, xt_extra), fourth_moments=fourth)
    return regression_adjusted(c, t, interacted=interacted, cov_type=cov_type, relative=relative, alpha=alpha,
                               metric=metric, method="cupac")


def post_stratified(
    cells: Mapping[object, tuple[SampleMean | Proportion, SampleMean | Proportion]],
    *,
    weights: Mapping[object, float] | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    metric: str = "",
) -> Result:
    """Post-stratified difference in means: per-stratum effects averaged with stratum weights.

    ``sum_s w_s (ybar_ts - ybar_cs)``, with variance conditional on the realised stratum and arm
    sizes ``sum_s w_s^2 (s_cs^2 / n_cs + s_ts^2 / n_ts)`` (Miratrix, Sekhon & Yu 2013, the
    conditional variance of their sec. 3; the unconditional one adds O(1/n^2) terms for random
    stratum sizes). With the default weights, the pooled stratum shares ``n_s / n``, this is the
    coefficient on ``treat`` of ``y ~ treat * (D - Dbar)`` for stratum dummies ``D`` centred at
    their shares (Lin 2013 with indicator covariates), and for :class:`SampleMean` cells the
    variance equals that regression's HC2 exactly: the regression is saturated, each unit's
    leverage is ``1 / n_cell``, and HC2 turns each cell's ``sum e^2 / n_cell^2`` into
    ``s^2 / n_cell``.

    Parameters
    ----------
    cells : mapping
        stratum -> (control statistic, treatment statistic); :class:`SampleMean` or
        :class:`Proportion` (whose variance is ``p (1 - p)``).
    weights : mapping, optional
        stratum -> weight (e.g. population shares known from outside the experiment), normalised
        to sum to one; the same keys as ``cells``. Default: pooled stratum shares.
    relative : bool
        Divide by the post-stratified control mean ``sum_s w_s ybar_cs``, delta-method variance
        ``(V - 2 r C + r^2 V_c) / mu_c^2`` with ``V_c = sum w_s^2 s_cs^2 / n_cs`` and
        ``C = -V_c`` the covariance of the effect with the control mean, i.e.
        ``sum_s w_s^2 (s_ts^2 / n_ts + (1 + r)^2 s_cs^2 / n_cs) / mu_c^2``.
    alpha : float
        Two-sided level; t reference on Welch-Satterthwaite df over the ``2 S`` cell components.
    metric : str
        Label stored on the Result.

    Returns
    -------
    Result
        ``method="post_stratified"``; ``extra`` holds ``weights``, ``stratum_effects``,
        ``control_mean`` / ``treatment_mean`` (unadjusted, all strata pooled),
        ``control_mean_adjusted`` / ``treatment_mean_adjusted`` (stratum-weighted), ``df``,
        ``unadjusted_se`` (Welch on the pooled arms) and ``variance_reduction``.

    Raises
    ------
    DataError
        No strata, a cell with fewer than two units, weights with other keys or not positive
        in total, or a zero control mean with ``relative``.
    """
    if not cells:
        raise DataError("post_stratified needs at least one stratum")
    keys = list(cells)
    for s in keys:
        for name, stat in zip(("control", "treatment"), cells[s]):
            if stat.n < 2:
                raise DataError(f"stratum {s!r}: " + TOO_FEW_UNITS.format(arm=name, n=stat.n))
    if weights is None:
        raw_w = np.array([cells[s][0].n + cells[s][1].n for s in keys], dtype=float)
    else:
        if set(weights) != set(keys):
            missing, unknown = sorted(map(str, set(keys) - set(weights))), sorted(map(str, set(weights) - set(keys)))
            raise DataError(f"weights must have the strata of cells as keys: missing {missing}, unknown {unknown}")
        raw_w = np.array([float(weights[s]) for s in keys])
        if np.any(raw_w < 0) or not raw_w.sum() > 0:
            raise DataError("weights must be non-negative with a positive sum")
    w = raw_w / raw_w.sum()
    mc = np.array([cells[s][0].mean for s in keys])
    mt = np.array([cells[s][1].mean for s in keys])
    vc = np.array([cells[s][0].variance / cells[s][0].n for s in keys])
    vt = np.array([cells[s][1].variance / cells[s][1].n for s in keys])
    nc = np.array([cells[s][0].n for s in keys])
    nt = np.array([cells[s][1].n for s in keys])
    effects = mt - mc
    estimate = float(w @ effects)
    comps_c, comps_t = w**2 * vc, w**2 * vt
    var = float(comps_c.sum() + comps_t.sum())
    pooled_c = reduce(add, (cells[s][0] for s in keys))
    pooled_t = reduce(add, (cells[s][1] for s in keys))
    yc, yt = pooled_c.mean, pooled_t.mean
    raw_vc, raw_vt = pooled_c.variance / pooled_c.n, pooled_t.variance / pooled_t.n
    raw_var = raw_vc + raw_vt
    mu_c = float(w @ mc)
    if relative:
        if mu_c == 0 or yc == 0:
            raise DataError(ZERO_CONTROL_MEAN)
        estimate = estimate / mu_c
        # d(D / mu_c) puts (1 + r) / mu_c on each control cell mean and 1 / mu_c on each
        # treatment one; the per-cell components then give both the variance and the df.
        comps_c = comps_c * (1 + estimate) ** 2 / mu_c**2
        comps_t = comps_t / mu_c**2
        var = float(comps_c.sum() + comps_t.sum())
        raw_var = raw_vt / yc**2 + (yt / yc**2) ** 2 * raw_vc
    df = welch_df(list(comps_c) + list(comps_t), list(nc) + list(nt))
    se = math.sqrt(var)
    half, pval = _t_or_z(estimate, se, df, alpha)
    extra = {
        "weights": {str(s): float(v) for s, v in zip(keys, w)},
        "stratum_effects": {str(s): float(v) for s, v in zip(keys, effects)},
        "control_mean": yc, "treatment_mean": yt, "control_mean_adjusted": mu_c,
        "treatment_mean_adjusted": float(w @ mt), "control_n": int(nc.sum()), "treatment_n": int(nt.sum()),
        "n_strata": len(keys), "df": df if math.isfinite(df) else None,
        "reference": "t" if math.isfinite(df) else "z", "unadjusted_se": math.sqrt(raw_var),
        "variance_reduction": 1 - var / raw_var if raw_var > 0 else math.nan,
        "weighting": "pooled_shares" if weights is None else "given",
    }
    return Result(
        estimate=estimate, se=se, ci=(estimate - half, estimate + half), p_value=pval, method="post_stratified",
        n=int(nc.sum() + nt.sum()), unit="relative" if relative else "absolute", alpha=alpha, metric=metric,
        extra=extra,
    )

"""Sufficient statistics: frozen dataclasses that add together (to pool strata or chunks).

As in GrowthBook's ``gbstats/models/statistics.py``: data access computes ``n``, sums, sums of
squares and cross-products once (in the warehouse); every estimator works from these alone, so
the analysis of thousands of KPI x segment cells costs microseconds each.

Internally each statistic is reduced to its *moments*: a mean vector of four components
``(post numerator, post denominator, pre numerator, pre denominator)`` and their sample
covariance matrix (``n - 1`` denominator). A plain mean has denominator 1 (variance 0); a
statistic without a pre-period has zero pre components. One delta-method engine
(:mod:`insightroi.stats._twoarm`) then covers means, proportions, ratios and CUPED.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np

from insightroi.errors import DataError


def _fieldwise_sum(a, b):
    """Pool two strata: every field of these statistics is a plain sum over units."""
    if type(a) is not type(b):
        return NotImplemented
    return type(a)(*(x + y for x, y in zip(astuple(a), astuple(b))))


def _pair_sums(x, y, x_name: str, y_name: str) -> tuple[int, float, float, float, float, float]:
    """``n, sum x, sum x^2, sum y, sum y^2, sum xy`` of two per-unit arrays of one shape."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise DataError(f"{x_name} and {y_name} must have the same shape, got {x.shape} and {y.shape}")
    return (int(x.size), float(x.sum()), float((x * x).sum()), float(y.sum()), float((y * y).sum()),
            float((x * y).sum()))

__all__ = ["SampleMean", "Proportion", "Ratio", "RegressionAdjusted", "RatioRegressionAdjusted", "Moments"]


@dataclass(frozen=True)
class Moments:
    """Mean vector and sample covariance of ``(num, den, num_pre, den_pre)`` per unit."""

    n: int
    mean: np.ndarray  # shape (4,)
    cov: np.ndarray  # shape (4, 4), sample covariance (n - 1 denominator)
    has_pre: bool

    @property
    def ratio(self) -> float:
        return _safe_div(self.mean[0], self.mean[1])

    @property
    def ratio_pre(self) -> float:
        return _safe_div(self.mean[2], self.mean[3])


def _safe_div(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


def _sample_cov(n: int, sums: np.ndarray, products: np.ndarray) -> np.ndarray:
    if n < 2:
        return np.full((len(sums), len(sums)), math.nan)
    # Welford-free form is exact enough here: sums come from float64 warehouse aggregates.
    return (products - np.outer(sums, sums) / n) / (n - 1)


@dataclass(frozen=True)
class SampleMean:
    """``n`` units with values summing to ``sum`` and squares to ``sum_sq``."""

    n: int
    sum: float
    sum_sq: float

    def __add__(self, other: "SampleMean") -> "SampleMean":
        return _fieldwise_sum(self, other)

    @classmethod
    def from_array(cls, x) -> "SampleMean":
        """Statistics of the values ``x`` (one per unit)."""
        x = np.asarray(x, dtype=float)
        return cls(int(x.size), float(x.sum()), float((x * x).sum()))

    @property
    def mean(self) -> float:
        return _safe_div(self.sum, self.n)

    @property
    def variance(self) -> float:
        """Sample variance (``n - 1`` denominator)."""
        if self.n < 2:
            return math.nan
        return max((self.sum_sq - self.sum**2 / self.n) / (self.n - 1), 0.0)

    def moments(self) -> Moments:
        mean = np.array([self.mean, 1.0, 0.0, 0.0])
        cov = np.zeros((4, 4))
        cov[0, 0] = self.variance
        return Moments(self.n, mean, cov, False)


@dataclass(frozen=True)
class Proportion:
    """``successes`` out of ``n`` units (variance ``p (1 - p)``, as gbstats)."""

    n: int
    successes: float

    def __add__(self, other: "Proportion") -> "Proportion":
        return _fieldwise_sum(self, other)

    @classmethod
    def from_array(cls, x) -> "Proportion":
        """Statistics of 0/1 outcomes ``x``."""
        x = np.asarray(x, dtype=float)
        return cls(int(x.size), float(x.sum()))

    @property
    def mean(self) -> float:
        return _safe_div(self.successes, self.n)

    @property
    def variance(self) -> float:
        p = self.mean
        return p * (1 - p)

    def moments(self) -> Moments:
        mean = np.array([self.mean, 1.0, 0.0, 0.0])
        cov = np.zeros((4, 4))
        cov[0, 0] = self.variance
        return Moments(self.n, mean, cov, False)


@dataclass(frozen=True)
class Ratio:
    """A ratio metric over ``n`` units (clusters): sum(num) / sum(den).

    E.g. negative reviews per order when the analysis unit is a SKU family: each family
    contributes its count of negative reviews (``num``) and of orders (``den``). The cross sum
    ``sum(num * den)`` is what the delta method needs (Deng, Knoblich & Lu 2018, KDD).
    """

    n: int
    num_sum: float
    num_sum_sq: float
    den_sum: float
    den_sum_sq: float
    cross_sum: float

    def __add__(self, other: "Ratio") -> "Ratio":
        return _fieldwise_sum(self, other)

    @classmethod
    def from_arrays(cls, num, den) -> "Ratio":
        """Statistics of per-unit numerators ``num`` and denominators ``den``."""
        return cls(*_pair_sums(num, den, "num", "den"))

    @property
    def mean(self) -> float:
        """The ratio of sums."""
        return _safe_div(self.num_sum, self.den_sum)

    def moments(self) -> Moments:
        sums = np.array([self.num_sum, self.den_sum])
        prods = np.array([[self.num_sum_sq, self.cross_sum], [self.cross_sum, self.den_sum_sq]])
        cov = np.zeros((4, 4))
        cov[:2, :2] = _sample_cov(self.n, sums, prods)
        mean = np.array([sums[0] / self.n, sums[1] / self.n, 0.0, 0.0]) if self.n else np.full(4, math.nan)
        return Moments(self.n, mean, cov, False)


@dataclass(frozen=True)
class RegressionAdjusted:
    """Post-period values and a pre-period covariate per unit, for CUPED (Deng et al. 2013)."""

    n: int
    post_sum: float
    post_sum_sq: float
    pre_sum: float
    pre_sum_sq: float
    cross_sum: float

    def __add__(self, other: "RegressionAdjusted") -> "RegressionAdjusted":
        return _fieldwise_sum(self, other)

    @classmethod
    def from_arrays(cls, post, pre) -> "RegressionAdjusted":
        """Statistics of per-unit outcomes ``post`` and pre-period covariate ``pre``."""
        return cls(*_pair_sums(post, pre, "post", "pre"))

    @property
    def mean(self) -> float:
        return _safe_div(self.post_sum, self.n)

    @property
    def correlation(self) -> float:
        """Pearson correlation of post and pre values."""
        c = self.moments().cov
        return _safe_div(c[0, 2], math.sqrt(c[0, 0] * c[2, 2]))

    def moments(self) -> Moments:
        sums = np.array([self.post_sum, self.pre_sum])
        prods = np.array([[self.post_sum_sq, self.cross_sum], [self.cross_sum, self.pre_sum_sq]])
        c = _sample_cov(self.n, sums, prods)
        cov = np.zeros((4, 4))
        cov[0, 0], cov[0, 2], cov[2, 0], cov[2, 2] = c[0, 0], c[0, 1], c[1, 0], c[1, 1]
        mean = np.array([self.post_sum / self.n, 1.0, self.pre_sum / self.n, 1.0])
        return Moments(self.n, mean, cov, True)


_RRA_FIELDS = ("num", "den", "num_pre", "den_pre")


@dataclass(frozen=True)
class RatioRegressionAdjusted:
    """A ratio metric with its pre-period ratio as CUPED covariate (gbstats' regression-adjusted ratio).

    ``sums`` are the totals of ``(num, den, num_pre, den_pre)`` over units, ``products`` the 4 x 4
    matrix of cross-product sums (as nested tuples, so the dataclass stays hashable and frozen).
    """

    n: int
    sums: tuple[float, float, float, float]
    products: tuple[tuple[float, ...], ...]

    def __add__(self, other: "RatioRegressionAdjusted") -> "RatioRegressionAdjusted":
        s = tuple(a + b for a, b in zip(self.sums, other.sums))
        p = tuple(tuple(a + b for a, b in zip(r1, r2)) for r1, r2 in zip(self.products, other.products))
        return RatioRegressionAdjusted(self.n + other.n, s, p)

    @classmethod
    def from_arrays(cls, num, den, num_pre, den_pre) -> "RatioRegressionAdjusted":
        """Statistics of per-unit post and pre numerators and denominators."""
        x = np.vstack([np.asarray(a, dtype=float) for a in (num, den, num_pre, den_pre)])
        prods = x @ x.T
        return cls(int(x.shape[1]), tuple(float(v) for v in x.sum(axis=1)),
                   tuple(tuple(float(v) for v in row) for row in prods))

    @property
    def mean(self) -> float:
        return _safe_div(self.sums[0], self.sums[1])

    @property
    def post(self) -> Ratio:
        """The post-period ratio statistic alone."""
        p = self.products
        return Ratio(self.n, self.sums[0], p[0][0], self.sums[1], p[1][1], p[0][1])

    @property
    def pre(self) -> Ratio:
        """The pre-period ratio statistic alone."""
        p = self.products
        return Ratio(self.n, self.sums[2], p[2][2], self.sums[3], p[3][3], p[2][3])

    def moments(self) -> Moments:
        sums = np.array(self.sums, dtype=float)
        prods = np.array(self.products, dtype=float)
        return Moments(self.n, sums / self.n if self.n else np.full(4, math.nan), _sample_cov(self.n, sums, prods), True)


Statistic = SampleMean | Proportion | Ratio | RegressionAdjusted | RatioRegressionAdjusted

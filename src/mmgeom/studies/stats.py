"""The one significance rule of every study results file: a seed-paired two-sided t-test.

Two configurations ``a`` and ``b`` of a study are trained with the same seeds (same initialisation and
batch order per seed), so their results are *paired* by seed. The rule compares them on one metric:

* ``d_s = a_s - b_s`` for every seed ``s`` both have (``n`` seeds);
* the mean ``d̄`` and the sample standard deviation ``sd`` (``ddof=1``) of the ``d_s``;
* the paired t statistic ``t = d̄ / (sd / sqrt(n))`` with ``n - 1`` degrees of freedom and its two-sided
  p-value, from :func:`scipy.stats.ttest_rel` (no hand-written t table);
* verdict ``"higher"`` (``a > b``) or ``"lower"`` when ``p < alpha`` (``alpha = 0.05``), else ``"tie"``
  (no clear difference).

Edge cases: fewer than two seeds gives no test (``t`` and ``p`` NaN, verdict ``"tie"``); differences
that are all equal and non-zero (``sd = 0``) count as clear (``t = ±inf``, ``p = 0``); all-zero
differences are a tie (``t = 0``, ``p = 1``); a NaN difference makes the whole test NaN and a tie.

Example:
    >>> d = paired_difference([0.91, 0.93, 0.92], [0.90, 0.91, 0.905])
    >>> d.verdict, round(d.mean, 3)
    ('higher', 0.015)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as _scipy_stats

#: Two-sided significance level of every study verdict.
ALPHA = 0.05

HIGHER, LOWER, TIE = "higher", "lower", "tie"

__all__ = ["ALPHA", "HIGHER", "LOWER", "TIE", "PairedDifference", "paired_difference"]


@dataclass(frozen=True)
class PairedDifference:
    """The seed-paired difference ``a - b`` of one metric and its t-test verdict.

    Attributes:
        mean: mean of the per-seed differences.
        std: their sample standard deviation (``ddof=1``; 0 for one seed).
        n: number of paired seeds.
        se: standard error ``std / sqrt(n)`` (NaN for one seed).
        t: paired t statistic (NaN for one seed).
        p: two-sided p-value (NaN for one seed).
        verdict: ``"higher"``, ``"lower"`` or ``"tie"``.
        values: the per-seed differences, seed order.
    """

    mean: float
    std: float
    n: int
    se: float
    t: float
    p: float
    verdict: str
    values: tuple[float, ...]

    @property
    def sign(self) -> int:
        """``+1`` / ``-1`` for a clear difference, ``0`` for a tie."""
        return {HIGHER: 1, LOWER: -1}.get(self.verdict, 0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"mean", "std", "n", "se", "t", "p", "verdict", "values"}``."""
        out = asdict(self)
        out["values"] = list(self.values)
        return out


def paired_difference(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> PairedDifference:
    """Seed-paired difference ``a - b`` with a two-sided paired t-test (see the module docstring).

    Args:
        a: per-seed values of configuration ``a``.
        b: per-seed values of configuration ``b``, same seeds in the same order.
        alpha: two-sided significance level.

    Returns:
        The :class:`PairedDifference`.

    Raises:
        ValueError: ``a`` and ``b`` differ in length or are empty, or ``alpha`` is not in ``(0, 1)``.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"a, b: expected two non-empty sequences of equal length, got {len(a)} and {len(b)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a value in (0, 1), got {alpha!r}")
    diffs = tuple(float(x) - float(y) for x, y in zip(a, b, strict=True))
    n = len(diffs)
    mean = math.fsum(diffs) / n
    if n < 2:
        return PairedDifference(mean, 0.0, n, math.nan, math.nan, math.nan, TIE, diffs)
    std = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = std / math.sqrt(n)
    if not math.isfinite(mean):
        t, p = math.nan, math.nan
    elif std == 0.0:
        # scipy answers NaN for zero variance; identical non-zero differences are as clear as it gets.
        t, p = (math.copysign(math.inf, mean), 0.0) if mean != 0 else (0.0, 1.0)
    else:
        res = _scipy_stats.ttest_rel([float(x) for x in a], [float(y) for y in b])
        t, p = float(res.statistic), float(res.pvalue)
    verdict = TIE if not p < alpha else (HIGHER if mean > 0 else LOWER)
    return PairedDifference(mean, std, n, se, t, p, verdict, diffs)

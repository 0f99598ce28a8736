"""The studies' one significance rule: a seed-paired two-sided t-test (``mmgeom.studies.stats``)."""

from __future__ import annotations

import math

import pytest

from mmgeom.studies.stats import ALPHA, paired_difference


def _paired_t_loop(a: list[float], b: list[float]) -> float:
    """Hand computation: mean of the differences / (their sample sd / sqrt(n))."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    var = 0.0
    for x in d:
        var += (x - mean) ** 2
    return mean / (math.sqrt(var / (n - 1)) / math.sqrt(n))


def test_t_statistic_matches_a_hand_computation() -> None:
    a = [0.91, 0.93, 0.90, 0.95, 0.92]
    b = [0.90, 0.90, 0.91, 0.91, 0.90]
    res = paired_difference(a, b)
    assert res.t == pytest.approx(_paired_t_loop(a, b), rel=1e-12)
    assert res.n == 5 and res.mean == pytest.approx(0.018)
    assert res.se == pytest.approx(res.std / math.sqrt(5))
    assert res.values == pytest.approx((0.01, 0.03, -0.01, 0.04, 0.02))


def test_known_p_value() -> None:
    # Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3 with 2 degrees of freedom;
    # for df = 2 the two-sided p-value has the closed form 1 - t / sqrt(t^2 + 2).
    res = paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    t = 2 * math.sqrt(3)
    assert res.t == pytest.approx(t)
    assert res.p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)  # = 0.0742
    assert res.verdict == "tie"  # p > 0.05
    assert ALPHA == 0.05


def test_verdicts_and_edge_cases() -> None:
    up = paired_difference([2.0, 3.1, 4.0, 5.2], [1.0, 2.0, 3.1, 4.0])
    assert up.verdict == "higher" and up.p < 0.05 and up.sign == 1
    down = paired_difference([1.0, 2.0, 3.1, 4.0], [2.0, 3.1, 4.0, 5.2])
    assert down.verdict == "lower" and down.sign == -1
    one = paired_difference([0.9], [0.1])
    assert one.verdict == "tie" and math.isnan(one.t) and math.isnan(one.p) and one.mean == pytest.approx(0.8)
    same = paired_difference([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])  # identical differences: sd = 0
    assert same.verdict == "higher" and same.t == math.inf and same.p == 0.0
    zero = paired_difference([1.0, 2.0], [1.0, 2.0])
    assert zero.verdict == "tie" and zero.p == 1.0
    assert paired_difference([float("nan"), 1.0], [0.0, 0.0]).verdict == "tie"
    with pytest.raises(ValueError, match="equal length"):
        paired_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        paired_difference([1.0, 2.0], [0.0, 0.0], alpha=1.5)

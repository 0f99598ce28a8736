"""Summaries of repeated classification runs: mean ± std over seeds, paired differences, markdown tables
and per-epoch curve panels.

A *run* is a dict ``{"seed": int, "final": {metric: float}, "curves": {metric: [value per epoch]}}``
(what :mod:`mmgeom.studies.dagr` records); metric names are those of :mod:`mmgeom.classify.evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..studies import common
from ..studies.common import PlotPanel, aggregate, format_mean_std, mean_std

Summary = dict[str, dict[str, float]]


def summarize(runs: Sequence[Mapping[str, Any]]) -> Summary:
    """Per final metric, ``{"mean", "std", "n"}`` over the runs (sample std, ``ddof=1``)."""
    return aggregate([r["final"] for r in runs])


def paired_delta(
    runs_a: Sequence[Mapping[str, Any]], runs_b: Sequence[Mapping[str, Any]], key: str
) -> dict[str, Any]:
    """Per-seed differences ``a - b`` of ``final[key]`` over the seeds both have.

    Returns:
        ``{"mean", "std", "n", "wins", "values"}``: mean and sample std of the differences, the number of
        seeds, how many differences are > 0, and the differences themselves (seed order).
    """
    b_by_seed = {r["seed"]: r["final"][key] for r in runs_b}
    values = [r["final"][key] - b_by_seed[r["seed"]] for r in runs_a if r["seed"] in b_by_seed]
    if not values:
        raise ValueError(f"paired_delta: no common seeds for {key!r}")
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values), "wins": sum(v > 0 for v in values), "values": values}


def describe_delta(delta: Mapping[str, Any], digits: int = 3) -> str:
    """``"+0.012 ± 0.004 (5/5 seeds up)"``."""
    return f"{delta['mean']:+.{digits}f} ± {delta['std']:.{digits}f} ({delta['wins']}/{delta['n']} seeds up)"


def clear_sign(delta: Mapping[str, Any]) -> int:
    """+1 / -1 when the mean difference is beyond two standard errors (and the seeds agree by a majority),
    else 0 ("no clear difference")."""
    n = int(delta["n"])
    if n < 2:
        return 0
    se = delta["std"] / math.sqrt(n)
    if abs(delta["mean"]) <= 2 * se or delta["mean"] == 0:
        return 0
    up = delta["mean"] > 0
    agree = delta["wins"] if up else n - delta["wins"]
    return (1 if up else -1) if agree > n / 2 else 0


def cell(summary: Summary, key: str, digits: int = 3) -> str:
    """``"mean ± std"`` of ``key`` (``"–"`` when absent)."""
    if key not in summary:
        return "–"
    return format_mean_std(summary[key]["mean"], summary[key]["std"], digits)


def metric_table(
    summaries: Mapping[str, Summary], columns: Sequence[tuple[str, str]], first: str = "setting"
) -> str:
    """Markdown table: one row per setting, one ``(title, metric key)`` column each (``mean ± std``).

    A thin adapter over :func:`mmgeom.studies.common.metric_table`.
    """
    entries = [{"name": name, "metrics": s} for name, s in summaries.items()]
    return common.metric_table(entries, "name", [(key, title) for title, key in columns], corner=first)


def modality_table(summaries: Mapping[str, Summary], prefix: str, modalities: Sequence[str]) -> str:
    """Markdown table of ``prefix/m`` for every modality ``m`` (plus ``prefix/mean``)."""
    cols = [(m, f"{prefix}/{m}") for m in modalities] + [("mean", f"{prefix}/mean")]
    return metric_table(summaries, cols)


def curve_panel(
    runs_by_setting: Mapping[str, Sequence[Mapping[str, Any]]], key: str, *, title: str, ylabel: str
) -> PlotPanel:
    """A :class:`~mmgeom.studies.common.PlotPanel` of ``curves[key]`` per epoch, one series per setting
    (mean ± std over seeds)."""
    series: dict[str, list[list[float]]] = {}
    epochs = 0
    for name, runs in runs_by_setting.items():
        curves = [r["curves"][key] for r in runs if key in r.get("curves", {})]
        if not curves:
            continue
        epochs = len(curves[0])
        series[name] = [[c[e] for c in curves] for e in range(epochs)]
    return PlotPanel(x=list(range(epochs)), series=series, xlabel="epoch", ylabel=ylabel, title=title)

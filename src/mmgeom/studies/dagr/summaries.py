"""Summaries of repeated classification runs: mean ± std over seeds, seed-paired differences (tested with
:mod:`mmgeom.studies.stats`), markdown tables and per-epoch curve panels (moved from
``mmgeom.classify.report``).

A *run* is a dict ``{"seed": int, "final": {metric: float}, "curves": {metric: [value per epoch]}}``
(what :mod:`mmgeom.studies.dagr` records); metric names are those of :mod:`mmgeom.classify.evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import tables
from ..plots import PlotPanel
from ..stats import paired_difference
from ..tables import aggregate, format_mean_std

Summary = dict[str, dict[str, float]]


def summarize(runs: Sequence[Mapping[str, Any]]) -> Summary:
    """Per final metric, ``{"mean", "std", "n"}`` over the runs (sample std, ``ddof=1``)."""
    return aggregate([r["final"] for r in runs])


def paired_delta(
    runs_a: Sequence[Mapping[str, Any]], runs_b: Sequence[Mapping[str, Any]], key: str
) -> dict[str, Any]:
    """Per-seed differences ``a - b`` of ``final[key]`` over the seeds both have, with the studies' paired
    t-test (:func:`mmgeom.studies.stats.paired_difference`).

    Returns:
        ``{"mean", "std", "n", "wins", "values", "t", "p", "verdict"}``: mean and sample std of the
        differences, the number of seeds, how many differences are > 0, the differences themselves (seed
        order), the paired t statistic, its two-sided p-value and the verdict (``higher``/``lower``/``tie``).
    """
    b_by_seed = {r["seed"]: r["final"][key] for r in runs_b}
    common = [r for r in runs_a if r["seed"] in b_by_seed]
    if not common:
        raise ValueError(f"paired_delta: no common seeds for {key!r}")
    d = paired_difference([r["final"][key] for r in common], [b_by_seed[r["seed"]] for r in common])
    values = list(d.values)
    return {
        "mean": d.mean,
        "std": d.std,
        "n": d.n,
        "wins": sum(v > 0 for v in values),
        "values": values,
        "t": d.t,
        "p": d.p,
        "verdict": d.verdict,
    }


def describe_delta(delta: Mapping[str, Any], digits: int = 3) -> str:
    """``"+0.012 ± 0.004 (5/5 seeds up)"``."""
    return f"{delta['mean']:+.{digits}f} ± {delta['std']:.{digits}f} ({delta['wins']}/{delta['n']} seeds up)"


def clear_sign(delta: Mapping[str, Any]) -> int:
    """+1 / -1 when :func:`paired_delta`'s paired t-test finds a clear difference (p < 0.05), else 0."""
    return {"higher": 1, "lower": -1}.get(str(delta["verdict"]), 0)


def cell(summary: Summary, key: str, digits: int = 3) -> str:
    """``"mean ± std"`` of ``key`` (``"–"`` when absent)."""
    if key not in summary:
        return "–"
    return format_mean_std(summary[key]["mean"], summary[key]["std"], digits)


def metric_table(
    summaries: Mapping[str, Summary], columns: Sequence[tuple[str, str]], first: str = "setting"
) -> str:
    """Markdown table: one row per setting, one ``(title, metric key)`` column each (``mean ± std``).

    A thin adapter over :func:`mmgeom.studies.tables.metric_table`.
    """
    entries = [{"name": name, "metrics": s} for name, s in summaries.items()]
    return tables.metric_table(entries, "name", [(key, title) for title, key in columns], corner=first)


def modality_table(summaries: Mapping[str, Summary], prefix: str, modalities: Sequence[str]) -> str:
    """Markdown table of ``prefix/m`` for every modality ``m`` (plus ``prefix/mean``)."""
    cols = [(m, f"{prefix}/{m}") for m in modalities] + [("mean", f"{prefix}/mean")]
    return metric_table(summaries, cols)


def curve_panel(
    runs_by_setting: Mapping[str, Sequence[Mapping[str, Any]]], key: str, *, title: str, ylabel: str
) -> PlotPanel:
    """A :class:`~mmgeom.studies.plots.PlotPanel` of ``curves[key]`` per epoch, one series per setting
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

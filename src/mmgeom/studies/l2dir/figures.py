"""The L2Dir study's bar plots (PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .settings import METHODS, SCORES, TASKS


def bar_plot(
    path: Path,
    panels: Sequence[tuple[str, Sequence[str], Mapping[str, Sequence[tuple[float, float]]]]],
    ylabel: str,
    hline: float | None = None,
) -> Path:
    """Grouped bar charts with error bars: one panel per ``(title, groups, {series: [(mean, std)]})``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, groups, series) in zip(axes, panels, strict=True):
        width = 0.8 / max(1, len(series))
        x = np.arange(len(groups))
        for j, (label, points) in enumerate(series.items()):
            ax.bar(
                x + (j - (len(series) - 1) / 2) * width,
                [p[0] for p in points],
                width,
                yerr=[p[1] for p in points],
                capsize=2,
                label=label,
            )
        if hline is not None:
            ax.axhline(hline, color="grey", lw=0.8, ls="--")
        ax.set_xticks(x, list(groups), rotation=20, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def _points(task: Mapping[str, Any], key: str) -> list[tuple[float, float]]:
    return [(task["summary"][m][key]["mean"], task["summary"][m][key]["std"]) for m in METHODS]


#: The PNGs :func:`make_plots` writes, in the order the report shows them.
PLOT_FILES = ("map.png", "ndcg10.png", "magnitude_auc.png")


def make_plots(out: Path, tasks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The study's PNGs (file names, relative to ``out``)."""
    files = []
    for metric, label in (("map", "mAP"), ("ndcg@10", "nDCG@10")):
        panels = [
            (TASKS[name], list(METHODS), {s: _points(t, f"{s}/{metric}") for s in SCORES})
            for name, t in tasks.items()
        ]
        name = f"{metric.replace('@', '')}.png"
        bar_plot(out / name, panels, f"{label} (mean ± std over seeds)")
        files.append(name)
    panels = [
        (
            TASKS[name],
            list(METHODS),
            {"whole gallery": _points(t, "mag/auc"), "top K by cosine": _points(t, "mag/auc_top")},
        )
        for name, t in tasks.items()
    ]
    bar_plot(out / "magnitude_auc.png", panels, "AUC of document magnitude (relevant vs not)", hline=0.5)
    files.append("magnitude_auc.png")
    return files


#: Rows of the summary table: comparison key → question.

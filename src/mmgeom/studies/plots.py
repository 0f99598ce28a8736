"""Error-bar line plots (mean ± std over seeds) saved as PNG with Agg, without pyplot's global state."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tables import mean_std

__all__ = ["PlotPanel", "line_plots"]


@dataclass
class PlotPanel:
    """One subplot of :func:`line_plots`.

    Attributes:
        x: x positions shared by every series.
        series: label -> per-x list of per-seed values (mean ± std error bars are drawn), or label ->
            per-x values (one value each: a plain line).
        xlabel: x-axis title.
        ylabel: y-axis title.
        title: panel title.
        logy: logarithmic y axis.
        hline: draw a dashed horizontal reference line at this y (e.g. ``1.0`` for zeta).
    """

    x: Sequence[float]
    series: Mapping[str, Sequence[Any]]
    xlabel: str = ""
    ylabel: str = ""
    title: str = ""
    logy: bool = False
    hline: float | None = None
    xticks: Sequence[float] | None = field(default=None)


def _mean_and_err(points: Sequence[Any]) -> tuple[list[float], list[float]]:
    means, errs = [], []
    for p in points:
        if isinstance(p, (int, float)):
            means.append(float(p))
            errs.append(0.0)
        else:
            m, s = mean_std(list(p))
            means.append(m)
            errs.append(s)
    return means, errs


def line_plots(
    path: str | Path, panels: Sequence[PlotPanel], *, ncols: int | None = None, width: float = 4.2
) -> Path:
    """Save error-bar line plots (one subplot per panel, legend on each) as a PNG, Agg backend.

    Args:
        path: output ``.png``.
        panels: the subplots.
        ncols: subplots per row (default: all in one row).
        width: inches per subplot (height is ``0.8 * width``).

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("panels: expected at least one panel")
    ncols = len(panels) if ncols is None else int(ncols)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(width * ncols, 0.8 * width * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        p = panels[i]
        for label, points in p.series.items():
            if len(points) != len(p.x):
                raise ValueError(f"series {label!r}: expected {len(p.x)} points, got {len(points)}")
            means, errs = _mean_and_err(points)
            ax.errorbar(
                list(p.x), means, yerr=errs if any(errs) else None, marker="o", ms=3, capsize=2, label=label
            )
        if p.hline is not None:
            ax.axhline(p.hline, color="grey", lw=0.8, ls="--")
        if p.logy:
            ax.set_yscale("log")
        if p.xticks is not None:
            ax.set_xticks(list(p.xticks))
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel)
        ax.set_title(p.title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out

"""``mmgeom compare RUN [RUN ...]``: one self-contained HTML page comparing runs.

The page overlays the runs' training loss and loss terms, their retrieval and their geometry over
training (PNG figures inline as base64, one colour per run), tabulates each run's first -> last
evaluation with the best last value of each column marked, and lists the config keys whose values differ
between the runs. Runs are read by :func:`mmgeom.report.compare_runs.load_runs` (run directories and study
folders).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .compare_runs import CompareRun, config_differences, load_runs
from .html import _CSS, _fmt, _img, _table
from .plots import GEOMETRY_PANELS, _figure, _png, geometry_summary
from .runlog import number

COMPARE_FILE = "compare.html"

#: Columns of the first -> last table: label -> (event key or geometry-panel label, higher is better).
#: ``None``: no better direction (the column is shown, nothing is marked).
COLUMNS: dict[str, tuple[str, bool | None]] = {
    "hit@1": ("retrieval/mean/hit@1", True),
    "hit@10": ("retrieval/mean/hit@10", True),
    "mAP": ("retrieval/mean/map", True),
    "MRR": ("retrieval/mean/mrr", True),
    "modality gap": ("modality gap (pairs)", False),
    "positive cosine": ("positive cosine (pairs)", True),
    "uniformity": ("uniformity (views; lower = more spread)", False),
    "effective rank": ("effective rank (views)", True),
    "Hölder divergence": ("geometry/holder", None),
    "ζ": ("geometry/zeta", None),
    "χ": ("geometry/chi", None),
}
_EXTRA_CSS = (
    "td.best { font-weight: bold; background: #e6f4e6; } .swatch { display: inline-block; width: 1em; }"
)
_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8",
]  # fmt: skip


def _value(event: Mapping[str, Any], key: str) -> float | None:
    """An event's value of a column: a raw key, or the mean of a geometry family (``geometry_summary``)."""
    if key in GEOMETRY_PANELS:
        return geometry_summary(dict(event)).get(key)
    return number(event.get(key))


def _series(run: CompareRun, key: str) -> tuple[list[int], list[float]]:
    pts = [(int(e["step"]), v) for e in run.log.evals if (v := _value(e, key)) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def first_last_table(runs: Sequence[CompareRun]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first -> last table; the best last value of each column has ``class=best``."""
    cols = [
        c
        for c, (key, _) in COLUMNS.items()
        if any(r.log.evals and _value(r.log.evals[-1], key) is not None for r in runs)
    ]
    last = {
        c: [(_value(r.log.evals[-1], COLUMNS[c][0]) if r.log.evals else None) for r in runs] for c in cols
    }
    rows = []
    for i, r in enumerate(runs):
        steps = f"{r.log.evals[0]['step']} → {r.log.evals[-1]['step']}" if r.log.evals else "–"
        cells = [
            f'<span class="swatch" style="background:{_COLOURS[i]}">&nbsp;</span> {html.escape(r.name)}',
            steps,
        ]
        for c in cols:
            after = last[c][i]
            before = _value(r.log.evals[0], COLUMNS[c][0]) if len(r.log.evals) > 1 else None
            text = f"{_fmt(before)} → {_fmt(after)}" if before is not None else _fmt(after)
            higher = COLUMNS[c][1]
            present = [v for v in last[c] if v is not None]
            best = (
                higher is not None
                and after is not None
                and after == (max(present) if higher else min(present))
            )
            cells.append(f"<!--best-->{text}" if best else text)
        rows.append(cells)
    return ["run", "steps", *cols], rows


def _table_with_best(header: list[str], rows: list[list[str]]) -> str:
    text = _table(header, rows)
    return text.replace("<td><!--best-->", '<td class="best">')


def _legend(ax: Any) -> None:
    ax.legend(fontsize=6, loc="best")


def loss_plot(runs: Sequence[CompareRun]) -> bytes | None:
    """Each run's total loss (thick) and loss terms (thin, dashed), one colour per run."""
    if not any(r.log.train for r in runs):
        return None
    fig = _figure(8.0, 3.8, right=0.97)
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(runs):
        s, v = r.log.series(r.log.train, "loss")
        ax.plot(s, v, color=_COLOURS[i], linewidth=1.8, label=r.name)
        terms = sorted({k for e in r.log.train for k in e if k.startswith("loss/")})
        for k in terms[:8]:
            if not k.endswith(("temperature", "delta", "logit_scale", "logit_bias")):
                s, v = r.log.series(r.log.train, k)
                ax.plot(s, v, color=_COLOURS[i], linewidth=0.7, linestyle="--", alpha=0.7)
    ax.set_xlabel("step")
    ax.set_title("training loss (thick) and loss terms (dashed)", fontsize=9)
    ax.grid(alpha=0.3)
    _legend(ax)
    return _png(fig)


def _small_multiples(
    runs: Sequence[CompareRun], panels: Sequence[tuple[str, str]], cols: int
) -> bytes | None:
    shown = [(title, key) for title, key in panels if any(_series(r, key)[0] for r in runs)]
    if not shown:
        return None
    rows = (len(shown) + cols - 1) // cols
    fig = _figure(9.0, 2.5 * rows, left=0.06, right=0.98, bottom=0.12 / rows, top=1 - 0.12 / rows, wspace=0.3)
    for j, (title, key) in enumerate(shown):
        ax = fig.add_subplot(rows, cols, j + 1)
        for i, r in enumerate(runs):
            s, v = _series(r, key)
            ax.plot(s, v, color=_COLOURS[i], marker="o", markersize=2.5, linewidth=1.2, label=r.name)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return _png(fig)


def retrieval_plot(runs: Sequence[CompareRun]) -> bytes | None:
    """Mean hit@1, hit@10 and mAP over training, one line per run."""
    keys = [("hit@1 (mean over pairs)", "retrieval/mean/hit@1"), ("hit@10", "retrieval/mean/hit@10")]
    return _small_multiples(runs, [*keys, ("mAP", "retrieval/mean/map")], 3)


def geometry_plot(runs: Sequence[CompareRun]) -> bytes | None:
    """The geometry families of the run report, plus Hölder, ζ and χ, over training."""
    panels = [(label, label) for label in GEOMETRY_PANELS]
    panels += [
        ("Hölder divergence", "geometry/holder"),
        ("ζ (conflict)", "geometry/zeta"),
        ("χ", "geometry/chi"),
    ]
    return _small_multiples(runs, panels, 3)


def _config_table(runs: Sequence[CompareRun]) -> str:
    diff = config_differences([r.config for r in runs])
    if not diff:
        return "<p>The configs are identical.</p>"
    rows = [
        [html.escape(k), *(html.escape("–" if v is None else str(v)) for v in values)]
        for k, values in diff.items()
    ]
    return _table(["config key", *(r.name for r in runs)], rows, "configdiff")


def build_compare(runs: Sequence[CompareRun]) -> str:
    """The HTML text comparing ``runs`` (every figure inline)."""
    figures = {"loss": loss_plot(runs), "retrieval": retrieval_plot(runs), "geometry": geometry_plot(runs)}

    def figure(name: str) -> str:
        png = figures[name]
        return _img(name, png, True, None) if png is not None else ""

    title = f"mmgeom compare: {len(runs)} runs"
    header, rows = first_last_table(runs)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}{_EXTRA_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>First → last evaluation</h2>",
        '<p class="muted">Highlighted: the best last value of each column (higher hit@K, mAP, MRR, positive '
        "cosine, effective rank; lower gap and uniformity); Hölder, ζ and χ are not ranked.</p>",
        _table_with_best(header, rows),
        '<p class="muted">Each run keeps its colour (the swatch above) in every figure below.</p>',
        "<h2>Training loss</h2>",
        figure("loss") or "<p>No training events.</p>",
        "<h2>Retrieval over training</h2>",
        figure("retrieval") or "<p>No retrieval evaluations.</p>",
        "<h2>Geometry over training</h2>",
        figure("geometry") or "<p>No geometry diagnostics.</p>",
        "<h2>Config differences</h2>",
        _config_table(runs),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def write_compare(
    paths: Sequence[str | Path], out: str | Path | None = None, select: Mapping[str, str] | None = None
) -> Path:
    """Write the comparison page of ``paths`` and return its path.

    Args:
        paths: run directories and/or study folders (see :func:`~mmgeom.report.compare_runs.load_runs`).
        out: the HTML file; default ``compare.html`` in the current folder.
        select: filters of a study folder's records (``{"M": "6", "seed": "0"}``).

    Raises:
        ReportError: unreadable inputs, fewer than two or too many runs, matplotlib missing.
    """
    runs = load_runs(paths, select)
    return atomic_write_text(Path(out) if out is not None else Path(COMPARE_FILE), build_compare(runs))

"""The report's figures, as PNG bytes (matplotlib, imported lazily; no pyplot global state)."""

from __future__ import annotations

import io
import re
import statistics
from collections.abc import Sequence
from typing import Any

from .runlog import ReportError, RunLog, number

PLOT_INSTALL = "pip install 'mmgeom[plot]'  (or: pip install matplotlib)"

#: Geometry summaries plotted over training: label -> key prefix (means over views / pairs).
GEOMETRY_PANELS = {
    "modality gap (pairs)": "geometry/gap/",
    "alignment E||z_m - z_n||^2 (pairs)": "geometry/align/",
    "positive cosine (pairs)": "geometry/pos_cos/",
    "uniformity (views; lower = more spread)": "geometry/uniform/",
    "effective rank (views)": "geometry/erank/",
    "semantic margin (views)": "geometry/margin/",
}


def _figure(width: float = 7.0, height: float = 3.6, **margins: float) -> Any:
    """A figure on the Agg canvas with fixed margins (automatic layout engines cost twice the time)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError(f"mmgeom report draws its plots with matplotlib: {PLOT_INSTALL}") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    spacing = {"left": 0.08, "right": 0.97, "bottom": 0.14, "top": 0.9, "wspace": 0.25, "hspace": 0.55}
    spacing.update(margins)
    fig.subplots_adjust(**spacing)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _mark_events(ax: Any, log: RunLog) -> None:
    """Dashed lines at resumes, dotted at skipped steps."""
    for e in log.events("resume"):
        ax.axvline(e["step"], color="0.4", linestyle="--", linewidth=0.8)
    for e in log.events("skip"):
        ax.axvline(e["step"], color="tab:red", linestyle=":", linewidth=0.8)


def loss_plot(log: RunLog) -> bytes | None:
    """Total loss and each scalar term over steps (interval means), plus the learning rate."""
    if not log.train:
        return None
    fig = _figure(7.0, 4.2, right=0.88, bottom=0.12)
    ax = fig.add_subplot(1, 1, 1)
    terms = sorted({k for e in log.train for k in e if k.startswith("loss/")})
    steps, total = log.series(log.train, "loss")
    ax.plot(steps, total, color="black", linewidth=2.0, label="loss (total)")
    for k in terms[:12]:
        s, v = log.series(log.train, k)
        if s and not k.endswith(("temperature", "delta", "logit_scale", "logit_bias")):
            ax.plot(s, v, linewidth=1.0, label=k.removeprefix("loss/"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    _mark_events(ax, log)
    lr_steps, lr = log.series(log.train, "lr")
    if lr:
        ax2 = ax.twinx()
        ax2.plot(lr_steps, lr, color="tab:gray", linestyle="--", linewidth=1.0, label="lr")
        ax2.set_ylabel("learning rate", color="tab:gray")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    ax.set_title("Training loss (means over each logging interval)")
    return _png(fig)


def optimisation_plot(log: RunLog) -> bytes | None:
    """Gradient norm (before clipping) and throughput."""
    g_steps, grad = log.series(log.train, "grad_norm")
    t_steps, thr = log.series(log.train, "examples_per_s")
    if not grad and not thr:
        return None
    fig = _figure(7.0, 2.8, bottom=0.18, wspace=0.3)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(g_steps, grad, color="tab:purple")
    ax.set_title("gradient norm (before clipping)", fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(t_steps, thr, color="tab:green")
    ax.set_title("throughput (examples / s)", fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    return _png(fig)


def _metric_names(evals: Sequence[dict[str, Any]], prefix: str) -> list[str]:
    return sorted({k.removeprefix(prefix) for e in evals for k in e if k.startswith(prefix)})


def retrieval_plot(log: RunLog) -> bytes | None:
    """Mean retrieval metrics over the evaluations, and hit@1 of every view pair."""
    if not log.evals or not any(k.startswith("retrieval/mean/") for k in log.evals[-1]):
        return None
    fig = _figure(7.5, 3.4, left=0.07, wspace=0.2)
    ax = fig.add_subplot(1, 2, 1)
    for name in _metric_names(log.evals, "retrieval/mean/"):
        if re.match(r"^(hit@\d+|map|mrr)$", name):
            s, v = log.series(log.evals, f"retrieval/mean/{name}")
            ax.plot(s, v, marker="o", markersize=3, label=name)
    s, chance = log.series(log.evals, "chance/hit@1")
    if chance:
        ax.plot(s, chance, color="0.5", linestyle=":", label="chance hit@1")
    ax.set_ylim(0, 1.02)
    ax.set_title("retrieval, mean over view pairs", fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    pairs = sorted({k.split("/")[1] for k in log.evals[-1] if k.startswith("retrieval/") and "<->" in k})
    if not pairs:
        pairs = sorted({k.split("/")[1] for k in log.evals[-1] if k.startswith("retrieval/") and "->" in k})
    for pair in pairs[:21]:
        s, v = log.series(log.evals, f"retrieval/{pair}/hit@1")
        ax.plot(s, v, linewidth=1.0, label=pair)
    ax.set_ylim(0, 1.02)
    ax.set_title("hit@1 per view pair", fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)


def classification_plot(log: RunLog) -> bytes | None:
    """Nearest-centroid accuracy of each view and of the fused embedding over the evaluations."""
    names = _metric_names(log.evals, "classification/")
    if not names:
        return None
    fig = _figure(6.0, 3.2, left=0.1, bottom=0.15)
    ax = fig.add_subplot(1, 1, 1)
    for name in names:
        s, v = log.series(log.evals, f"classification/{name}")
        style = {"linewidth": 2.2, "color": "black"} if name.startswith("fused/") else {"linewidth": 1.0}
        ax.plot(s, v, marker="o", markersize=3, label=name.removesuffix("/accuracy"), **style)
    s, chance = log.series(log.evals, "chance/accuracy")
    if chance:
        ax.plot(s, chance, color="0.5", linestyle=":", label="majority class")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_title("classification (nearest class centroid of the training split)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def geometry_summary(event: dict[str, Any]) -> dict[str, float]:
    """Means of each :data:`GEOMETRY_PANELS` family in one evaluation event."""
    out = {}
    for label, prefix in GEOMETRY_PANELS.items():
        vals = [
            v
            for k, raw in event.items()
            if k.startswith(prefix) and k != "geometry/uniform/centroid" and (v := number(raw)) is not None
        ]
        if vals:
            out[label] = statistics.fmean(vals)
    return out


def geometry_plot(log: RunLog) -> bytes | None:
    """Small multiples of the geometry diagnostics over the evaluations."""
    summaries = [(int(e["step"]), geometry_summary(e)) for e in log.evals]
    labels = [lab for lab in GEOMETRY_PANELS if any(lab in s for _, s in summaries)]
    if not labels:
        return None
    cols = 3
    rows = (len(labels) + cols - 1) // cols
    fig = _figure(9.0, 2.4 * rows, left=0.06, right=0.98, bottom=0.1 / rows, top=1 - 0.12 / rows, wspace=0.3)
    for i, label in enumerate(labels):
        ax = fig.add_subplot(rows, cols, i + 1)
        pts = [(step, s[label]) for step, s in summaries if label in s]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, color="tab:blue")
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return _png(fig)


def all_plots(log: RunLog) -> dict[str, bytes]:
    """Every figure that has data: ``{"loss": png, "optimisation": ..., "retrieval": ..., ...}``."""
    makers = {
        "loss": loss_plot,
        "optimisation": optimisation_plot,
        "retrieval": retrieval_plot,
        "classification": classification_plot,
        "geometry": geometry_plot,
    }
    out = {}
    for name, make in makers.items():
        png = make(log)
        if png is not None:
            out[name] = png
    return out

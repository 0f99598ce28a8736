"""Terminal tables of evaluation results: the ones ``mmgeom train``/``demo``/``eval``/``generate`` print.

Each function turns numbers the library already computed (an evaluation event, a metrics mapping) into a
:class:`rich.table.Table`; nothing here evaluates anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.table import Table

from ..train import ExperimentConfig, TrainResult

if TYPE_CHECKING:  # the offline evaluation (feature stores) is loaded only by `mmgeom eval`
    from ..evaluation import EvalSource

#: Retrieval metrics shown per view pair (keys of :func:`mmgeom.retrieval.retrieval_metrics`).
PAIR_METRICS = ("hit@1", "hit@5", "hit@10", "map")

#: Diagnostic summaries: label -> (key prefix in ``diagnose``'s output, what is averaged and what it means).
DIAGNOSTIC_SUMMARY: dict[str, tuple[str, str]] = {
    "modality gap": ("geometry/gap/", "pairs; ||mean z_m - mean z_n||"),
    "alignment": ("geometry/align/", "pairs; E||z_m,i - z_n,i||^2"),
    "positive cosine": ("geometry/pos_cos/", "pairs; cos(z_m,i, z_n,i)"),
    "uniformity": ("geometry/uniform/", "views; lower = more spread"),
    "effective rank": ("geometry/erank/", "views; at most the dimension"),
    "semantic margin": ("geometry/margin/", "views; > 0 = nearer own class"),
}


@dataclass(frozen=True)
class PairRow:
    """Before/after retrieval numbers of one view pair.

    Attributes:
        pair: ``"a<->b"`` (mean of both directions) or ``"a->b"`` (forward only).
        before: metric -> value of the untrained model.
        after: metric -> value of the trained model.
    """

    pair: str
    before: dict[str, float]
    after: dict[str, float]


def _pair_key(q: str, g: str, directions: str) -> str:
    return f"{q}<->{g}" if directions == "both" else f"{q}->{g}"


def pair_rows(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    pairs: Sequence[tuple[str, str]],
    directions: str = "both",
    metrics: Sequence[str] = PAIR_METRICS,
) -> list[PairRow]:
    """Per-pair retrieval values from two evaluation events (see :mod:`mmgeom.evaluation.split` keys)."""
    rows = []
    for q, g in pairs:
        key = _pair_key(q, g, directions)
        pick = {
            name: {m: float(ev[f"retrieval/{key}/{m}"]) for m in metrics if f"retrieval/{key}/{m}" in ev}
            for name, ev in (("before", before), ("after", after))
        }
        rows.append(PairRow(key, pick["before"], pick["after"]))
    return rows


def diagnostic_summary(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Means of the main diagnostics (:data:`DIAGNOSTIC_SUMMARY`) present in an evaluation event.

    Per-modality ``uniform/<view>`` entries are averaged; ``uniform/centroid`` is excluded.
    """
    out = {}
    for label, (prefix, _) in DIAGNOSTIC_SUMMARY.items():
        values = [
            float(v)
            for k, v in metrics.items()
            if k.startswith(prefix) and k != "geometry/uniform/centroid" and isinstance(v, (int, float))
        ]
        if values:
            out[label] = statistics.fmean(values)
    return out


def _fmt(x: float | None) -> str:
    """Three decimals, or ``-`` for a missing value."""
    return "-" if x is None else f"{x:.3f}"


def pairs_table(result: TrainResult, cfg: ExperimentConfig) -> Table:
    """Cross-view retrieval of a finished run per view pair: untrained -> trained (or trained only)."""
    after = result.final_eval
    before = result.initial_eval
    pairs = cfg.eval.resolve_pairs(cfg.data.view_names())
    rows = pair_rows(before or {}, after, pairs, cfg.eval.directions, PAIR_METRICS)
    n = round(1.0 / float(after["chance/hit@1"]))
    how = "mean of both directions" if cfg.eval.directions == "both" else "query view -> gallery view"
    stages = "untrained -> trained" if before else "trained"
    title = f"Cross-view retrieval on the {cfg.eval.split} split ({stages})"
    caption = (
        f"instance-level: each of the {n} {cfg.eval.split} digits seen in one view must find itself among "
        f"the {n} in the other view; {how}; chance hit@1 = 1/{n} = {1.0 / n:.4f}"
    )
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    table.add_column("view pair", no_wrap=True)
    for m in PAIR_METRICS:
        table.add_column("mAP" if m == "map" else m, justify="right", no_wrap=True)

    def cell(row_before: dict[str, float], row_after: dict[str, float], m: str) -> str:
        a = row_after.get(m)
        return f"{_fmt(row_before.get(m))} → {_fmt(a)}" if before else _fmt(a)

    for r in rows:
        table.add_row(r.pair, *(cell(r.before, r.after, m) for m in PAIR_METRICS))
    mean_before = {
        m: float(v) for m in PAIR_METRICS if (v := (before or {}).get(f"retrieval/mean/{m}")) is not None
    }
    mean_after = {m: float(v) for m in PAIR_METRICS if (v := after.get(f"retrieval/mean/{m}")) is not None}
    table.add_section()
    table.add_row("mean", *(cell(mean_before, mean_after, m) for m in PAIR_METRICS), style="bold")
    return table


def diagnostics_table(result: TrainResult) -> Table | None:
    """The geometry diagnostics of a finished run (untrained and trained), or None when none were run."""
    after = diagnostic_summary(result.final_eval)
    if not after:
        return None
    before = diagnostic_summary(result.initial_eval) if result.initial_eval else {}
    table = Table(title="Geometry diagnostics (mmgeom.geometry.diagnose)", title_justify="left")
    table.add_column("diagnostic", no_wrap=True)
    if before:
        table.add_column("untrained", justify="right")
    table.add_column("trained", justify="right")
    table.add_column("mean over: meaning")
    for label, (_, meaning) in DIAGNOSTIC_SUMMARY.items():
        if label in after:
            values = ([_fmt(before.get(label))] if before else []) + [_fmt(after[label])]
            table.add_row(label, *values, meaning)
    return table


def eval_table(
    source: EvalSource, metrics: Mapping[str, float], pairs: Sequence[tuple[str, str]], how: Mapping[str, Any]
) -> Table:
    """Offline retrieval evaluation: one row per evaluated direction and the mean over the pairs.

    Args:
        source: the evaluated run or feature store.
        metrics: ``retrieval/<q>-><g>/<metric>`` and ``retrieval/mean/<metric>`` values (and ``chance/*``).
        pairs: the evaluated (query, gallery) pairs.
        how: ``relevance``, ``score``, ``backend``, ``ks`` (sorted) and ``directions`` of the evaluation.
    """
    ks = how["ks"]
    if how["relevance"] == "label":
        wanted = [f"precision@{k}" for k in ks] + [f"recall@{ks[-1]}", "map", "mrr"]
    else:
        wanted = [f"hit@{k}" for k in ks] + ["mrr", "map", "median_rank"]
    columns = [c for c in wanted if f"retrieval/mean/{c}" in metrics]
    where = f"{source.split} split" if source.split is not None else "all rows"
    table = Table(
        title=f"Retrieval: {source.kind} {source.path} ({where}, {source.num_rows} rows)",
        title_justify="left",
    )
    table.add_column("query -> gallery", no_wrap=True)
    for c in columns:
        header = {"map": "mAP", "mrr": "MRR", "median_rank": "med. rank"}.get(
            c, c.replace("precision", "prec")
        )
        table.add_column(header, justify="right", no_wrap=True)
    directions = [
        d for q, g in pairs for d in ([(q, g), (g, q)] if how["directions"] == "both" else [(q, g)])
    ]

    def cell(key: str) -> str:
        value = metrics.get(key)
        return f"{value:.1f}" if key.endswith("rank") and value is not None else _fmt(value)

    for q, g in directions:
        table.add_row(f"{q} -> {g}", *(cell(f"retrieval/{q}->{g}/{c}") for c in columns))
    table.add_section()
    table.add_row("mean", *(cell(f"retrieval/mean/{c}") for c in columns), style="bold")
    if how["relevance"] == "label":
        chance = metrics["chance/precision"]
        relevance = f"label: every row of the query's class is a positive (chance precision {chance:.3f})"
    else:
        relevance = f"instance: row i's one positive is row i (chance hit@1 = 1/{source.num_rows})"
    score = "magnitude (L2Dir: <q/|q|, |g| g/|g|>)" if how["score"] == "magnitude" else "cosine"
    table.caption = f"relevance {relevance}; score {score}; backend {how['backend']}"
    table.caption_justify = "left"
    return table


def generation_table(decoder: str, image_view: str, metrics: Mapping[str, Mapping[str, float]]) -> Table:
    """Scores of decoded images per condition: classifier-space FID, precision/recall, accuracy, pixel MSE.

    Args:
        decoder: the decoder kind (``conv`` or ``diffusion``).
        image_view: the view that is an image.
        metrics: condition -> ``fid``, ``precision``, ``recall`` and optionally ``accuracy``, ``pixel_mse``.
    """
    table = Table(title=f"{decoder} decoder, {image_view} images (test split)")
    for col in ("condition", "FID", "precision", "recall", "accuracy", "pixel MSE"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for name, m in metrics.items():
        table.add_row(
            name,
            f"{m['fid']:.2f}",
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m.get('accuracy', float('nan')):.3f}",
            f"{m.get('pixel_mse', float('nan')):.4f}",
        )
    return table

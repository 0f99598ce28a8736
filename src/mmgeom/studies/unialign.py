"""UniAlign modality-scaling study on the six real views of UCI Multiple Features (``mmgeom study unialign``).

UniAlign (Yin et al., arXiv 2602.09507) claims that with more modalities InfoNCE's alignment and
uniformity forces cancel (``zeta -> 1``) and multi-way positives disagree (``chi`` grows), and that
intra-modal uniformity + anchor alignment fixes it. This study measures that on real data:

* **scaling**: ``M = 2..6`` views added in the fixed order :data:`VIEW_ORDER` (anchor ``pix``, the image
  view, first), six losses (:data:`LOSSES`), several seeds each; test-split cross-view retrieval
  (anchor <-> each other view), linear-probe accuracy on frozen embeddings, and the geometry (``zeta``,
  ``chi``, Hölder divergence, modality gap, uniformity, effective rank as a collapse check);
* **ablation** of each UniAlign term at ``M = 6`` (:data:`ABLATIONS`);
* **anchor sweep** over all six views at ``M = 6`` (UniAlign anchor and InfoNCE anchor);
* **training curves**: ``zeta``, ``chi``, Hölder and hit@1 every few steps of every ``M = 6`` run.

Outputs in ``out``: ``results.md`` (tables of mean ± std over seeds, answers, embedded plots),
``results.json`` (settings, aggregates, every run) and the PNG plots. Every sentence of ``results.md``
that states a finding is generated from the numbers (:func:`write_report`), so a re-run cannot leave
stale claims behind.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as F
from .._validation import validation
from ..data import SplitDataset, load_dataset, split_and_standardize
from ..evaluation import cross_view_retrieval, embed_views
from ..geometry import conflict_metrics, effective_rank, holder_divergence, modality_gap
from ..losses import LossOutput, UniAlignLoss, create_loss
from ..models import MultiViewEncoder
from .common import (
    PlotPanel,
    aggregate,
    format_mean_std,
    line_plots,
    linear_probe_accuracy,
    markdown_table,
    metric_table,
    pivot_table,
    run_seeds,
    study_command,
    torch_threads,
    train_loop,
    write_json,
)

#: Anchor first (``pix``, the 16x15 image), then the other views in the dataset's canonical order.
VIEW_ORDER: tuple[str, ...] = ("pix", "fou", "fac", "kar", "zer", "mor")
ANCHOR = "pix"


@dataclass(frozen=True)
class Settings:
    """Everything that defines a run of the study (stored in ``results.json``).

    Attributes:
        ms: numbers of views ``M`` (the first ``M`` of :data:`VIEW_ORDER`).
        seeds: seeds per setting (model init and batch order; the data split is fixed).
        steps: updates per training.
        batch_size: rows per batch.
        lr: AdamW peak learning rate (linear warm-up, then cosine to 0).
        weight_decay: AdamW weight decay.
        warmup_steps: warm-up updates.
        grad_clip: global gradient-norm clip.
        hidden: MLP head hidden width (2 layers, LayerNorm, GELU).
        out_dim: embedding dimension.
        curve_every: evaluate ``zeta``/``chi``/Hölder every this many steps in the ``M = max`` runs.
        temperature: InfoNCE training temperature, also the ``tau`` of ``zeta`` for every loss.
        bandwidth: Hölder KDE bandwidth on the unit sphere.
        probe_l2: weight penalty of the linear probe.
        probe_tolerance: L-BFGS tolerance of the probe (at 1e-6 the test accuracies agree with 1e-10's).
        holder_samples: Monte-Carlo samples per term of the Hölder estimate (M >= 3).
        split_seed: seed of the stratified 70/10/20 split.
    """

    ms: tuple[int, ...] = (2, 3, 4, 5, 6)
    seeds: int = 5
    steps: int = 200
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    grad_clip: float = 1.0
    hidden: int = 128
    out_dim: int = 64
    curve_every: int = 20
    temperature: float = 0.1
    bandwidth: float = 0.5
    probe_l2: float = 1e-3
    probe_tolerance: float = 1e-6
    holder_samples: int = 2048
    split_seed: int = 0

    @property
    def max_m(self) -> int:
        """The largest ``M``: where the ablation, the anchor sweep and the curves run."""
        return max(self.ms)


FULL = Settings()
QUICK = Settings(
    ms=(2, 3),
    seeds=1,
    steps=20,
    batch_size=128,
    warmup_steps=2,
    curve_every=10,
    probe_tolerance=1e-4,
    holder_samples=256,
)

#: ``(anchor, M, settings) -> loss``.
LossFactory = Callable[[str, int, Settings], nn.Module]


class UniAlignPlus(nn.Module):
    """UniAlign (anchor) plus centroid uniformity and/or the mean Gram determinant, weighted separately.

    ``lambda_vol`` in :class:`~mmgeom.losses.UniAlignLoss` weighs ``U_tc(C) + mean_i det G_i`` together;
    this splits the two pieces for the ablation, from the same functional code
    (``F.uniformity(F.centroid(...))`` and ``F.gram_det``).

    Args:
        anchor: anchor modality.
        centroid_weight: weight of ``U_tc(C)``.
        volume_weight: weight of ``mean_i det G_i``.
        t_c: centroid uniformity scale.
    """

    def __init__(self, anchor: str, centroid_weight: float, volume_weight: float, t_c: float = 2.0) -> None:
        super().__init__()
        self.base = UniAlignLoss(anchor=anchor)
        self.centroid_weight, self.volume_weight, self.t_c = centroid_weight, volume_weight, t_c

    def forward(self, batch: Mapping[str, Tensor]) -> LossOutput:
        """UniAlign's output with the extra terms added to ``total`` (and logged in ``terms``)."""
        out = self.base(batch)
        zs = list(batch.values())
        u_c = F.uniformity(F.centroid(*zs), self.t_c)
        vol = F.gram_det(*zs).mean()
        terms = dict(out.terms, **{"uniform/centroid": u_c.detach(), "volume": vol.detach()})
        return LossOutput(out.total + self.centroid_weight * u_c + self.volume_weight * vol, terms)


#: Loss label -> factory ``(anchor, M) -> loss``; library defaults unless stated (docs/losses.md).
LOSSES: dict[str, LossFactory] = {
    "InfoNCE (all pairs)": lambda a, m, s: create_loss("infonce", temperature=s.temperature, pairs="all"),
    "InfoNCE (anchor)": lambda a, m, s: create_loss("infonce", temperature=s.temperature, anchor=a),
    "GRAM": lambda a, m, s: create_loss("gram", anchor=a),
    "Align+Uniform": lambda a, m, s: create_loss("align_uniform"),
    "UniAlign (anchor)": lambda a, m, s: create_loss("unialign", anchor=a),
    "UniAlign (centroid)": lambda a, m, s: create_loss("unialign", anchor=a, alignment="centroid"),
}

#: Ablation label -> factory, all at ``M = max``; the first is the full default UniAlign (anchor).
ABLATIONS: dict[str, LossFactory] = {
    "UniAlign (anchor), default": LOSSES["UniAlign (anchor)"],
    "- U(Z) (lambda_uni = 0)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_uni=0.0),
    "- alignment (lambda_align = 0)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_align=0.0),
    "+ U(C) + volume (lambda_vol = 1)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_vol=1.0),
    "+ U(C) only": lambda a, m, s: UniAlignPlus(a, centroid_weight=1.0, volume_weight=0.0),
    "+ volume only": lambda a, m, s: UniAlignPlus(a, centroid_weight=0.0, volume_weight=1.0),
    "lambda_uni = 1/M (mean over views)": lambda a, m, s: create_loss(
        "unialign", anchor=a, lambda_uni=1.0 / m
    ),
}

#: Losses of the anchor sweep.
ANCHOR_LOSSES = ("UniAlign (anchor)", "InfoNCE (anchor)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- metrics


def geometry_metrics(emb: Mapping[str, Tensor], anchor: str, settings: Settings) -> dict[str, float]:
    """``zeta``, ``chi`` (on ``anchor``, ``tau = settings.temperature``) and the Hölder divergence."""
    out = dict(conflict_metrics(emb, anchor, settings.temperature))
    out["holder"] = holder_divergence(emb, settings.bandwidth, n_samples=settings.holder_samples)
    return out


def evaluate_run(encoder: nn.Module, data: SplitDataset, anchor: str, settings: Settings) -> dict[str, float]:
    """Every metric of one trained encoder on the test split (probes fitted on the training split).

    Keys: ``hit@1/5/10`` and ``map`` (anchor <-> each other view, both directions, mean over the other
    views), ``all/hit@1`` and ``all/map`` (mean over all view pairs), ``pos_cos`` (mean positive cosine,
    anchor pairs), ``probe/anchor`` and ``probe/mean`` (linear-probe test accuracy on the anchor's
    embedding and on the normalised mean of the normalised view embeddings), ``zeta``, ``chi``,
    ``holder``, ``gap`` (mean modality gap over all pairs), ``uniformity`` (mean Wang–Isola uniformity
    over views, t = 2), ``erank`` and ``erank_min`` (mean and smallest effective rank over views).
    """
    test = embed_views(encoder, data.test)
    train = embed_views(encoder, data.train)
    names = list(test)
    others = [n for n in names if n != anchor]
    ret = cross_view_retrieval(test, [(anchor, n) for n in others], "both", (1, 5, 10))
    out = {k: ret[f"retrieval/mean/{k}"] for k in ("hit@1", "hit@5", "hit@10", "map")}
    every = cross_view_retrieval(test, list(itertools.combinations(names, 2)), "both", (1,))
    out["all/hit@1"], out["all/map"] = every["retrieval/mean/hit@1"], every["retrieval/mean/map"]
    z = {k: F.normalize(v) for k, v in test.items()}
    out["pos_cos"] = sum(float((z[anchor] * z[n]).sum(1).mean()) for n in others) / len(others)
    y_tr, y_te = data.train.labels, data.test.labels
    kw = {"l2": settings.probe_l2, "tolerance": settings.probe_tolerance}
    out["probe/anchor"] = linear_probe_accuracy(F.normalize(train[anchor]), y_tr, z[anchor], y_te, **kw)
    c_tr, c_te = F.centroid(*train.values()), F.centroid(*test.values())
    out["probe/mean"] = linear_probe_accuracy(c_tr, y_tr, c_te, y_te, **kw)
    out.update(geometry_metrics(test, anchor, settings))
    pairs = list(itertools.combinations(names, 2))
    out["gap"] = sum(modality_gap(test[a], test[b]) for a, b in pairs) / len(pairs)
    out["uniformity"] = sum(float(F.uniformity(z[n], 2.0)) for n in names) / len(names)
    ranks = [effective_rank(test[n]) for n in names]
    out["erank"], out["erank_min"] = sum(ranks) / len(ranks), min(ranks)
    return out


# ------------------------------------------------------------------------------------------ runs


def train_one(
    data: SplitDataset,
    make_loss: LossFactory,
    anchor: str,
    seed: int,
    settings: Settings,
    curves: bool = False,
) -> dict[str, Any]:
    """Train one encoder (lean loop of :func:`mmgeom.studies.common.train_loop`) and evaluate it.

    Returns:
        ``{"metrics": {...}, "seconds": training wall time (curve evaluations excluded), "curve":
        [{"step", "zeta", "chi", "holder", "hit@1"}, ...]}`` (the curve only with ``curves=True``).
    """
    torch.manual_seed(seed)
    dims = data.train.view_dims
    encoder = MultiViewEncoder.from_dims(
        dims, "mlp", settings.out_dim, hidden=settings.hidden, layer_norm=True
    )
    loss_fn = make_loss(anchor, len(dims), settings)
    views = data.train.views
    others = [n for n in dims if n != anchor]
    curve: list[dict[str, float]] = []

    eval_seconds = [0.0]

    def probe_geometry(step: int) -> None:
        tic = time.perf_counter()
        test = embed_views(encoder, data.test)
        point = {"step": float(step), **geometry_metrics(test, anchor, settings)}
        ret = cross_view_retrieval(test, [(anchor, n) for n in others], "both", (1,))
        point["hit@1"] = ret["retrieval/mean/hit@1"]
        curve.append(point)
        eval_seconds[0] += time.perf_counter() - tic

    def loss_at(idx: Tensor) -> Tensor:
        out: LossOutput = loss_fn(encoder({v: x[idx] for v, x in views.items()}))
        return out.total

    encoder.train()
    start = time.perf_counter()
    with validation(False):  # the batches are our own encoder's outputs: skip the per-step value checks
        train_loop(
            list(encoder.parameters()) + list(loss_fn.parameters()),
            loss_at,
            num_rows=len(data.train),
            steps=settings.steps,
            batch_size=settings.batch_size,
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            warmup_steps=settings.warmup_steps,
            grad_clip=settings.grad_clip,
            seed=seed,
            every=settings.curve_every if curves else 0,
            callback=probe_geometry if curves else None,
        )
    seconds = time.perf_counter() - start - eval_seconds[0]
    if curves and (not curve or curve[-1]["step"] != settings.steps):
        probe_geometry(settings.steps)
    return {"metrics": evaluate_run(encoder, data, anchor, settings), "seconds": seconds, "curve": curve}


def _setting(
    runs: list[dict[str, Any]],
    group: str,
    label: str,
    m: int,
    anchor: str,
    data: SplitDataset,
    factory: LossFactory,
    settings: Settings,
    curves: bool = False,
) -> dict[str, Any]:
    """Run every seed of one setting; append per-run records to ``runs``; return the aggregate entry."""
    start = time.perf_counter()
    results = run_seeds(lambda s: train_one(data, factory, anchor, s, settings, curves), settings.seeds)
    for seed, r in enumerate(results):
        runs.append({"group": group, "loss": label, "M": m, "anchor": anchor, "seed": seed, **r})
    entry = {
        "loss": label,
        "M": m,
        "anchor": anchor,
        "metrics": aggregate([r["metrics"] for r in results]),
        "train_seconds": sum(r["seconds"] for r in results) / len(results),
    }
    if curves:
        entry["curve"] = _aggregate_curves([r["curve"] for r in results])
    hit = entry["metrics"]["hit@1"]["mean"]
    took = time.perf_counter() - start
    _log(f"  {group:8s} {label:38s} M={m} anchor={anchor:3s} hit@1={hit:.3f} ({took:.1f} s)")
    return entry


def _aggregate_curves(curves: Sequence[list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Per step: ``{"step", key: {"mean", "std", "n", "values"}}`` over the seeds' curves."""
    out = []
    for points in zip(*curves, strict=True):
        row: dict[str, Any] = {"step": points[0]["step"]}
        agg = aggregate([{k: v for k, v in p.items() if k != "step"} for p in points])
        for k, v in agg.items():
            row[k] = dict(v, values=[p[k] for p in points])
        out.append(row)
    return out


def run_grid(settings: Settings) -> dict[str, Any]:
    """Train and evaluate every setting of the study; returns the ``results.json`` payload (minus meta)."""
    data_all = load_dataset("mfeat", list(VIEW_ORDER))
    splits = {
        m: split_and_standardize(data_all.select_views(VIEW_ORDER[:m]), seed=settings.split_seed)
        for m in settings.ms
    }
    top = settings.max_m
    runs: list[dict[str, Any]] = []
    scaling = []
    _log(f"unialign study: M in {list(settings.ms)}, {settings.seeds} seed(s), {settings.steps} steps")
    for label, factory in LOSSES.items():
        for m in settings.ms:
            curves = m == top
            scaling.append(_setting(runs, "scaling", label, m, ANCHOR, splits[m], factory, settings, curves))
    full_default = next(e for e in scaling if e["loss"] == "UniAlign (anchor)" and e["M"] == top)
    ablation = [dict(full_default, loss=next(iter(ABLATIONS)))]
    for label, factory in list(ABLATIONS.items())[1:]:
        ablation.append(_setting(runs, "ablation", label, top, ANCHOR, splits[top], factory, settings))
    anchors = []
    for label in ANCHOR_LOSSES:
        for a in VIEW_ORDER[:top]:
            if a == ANCHOR:
                anchors.append(next(e for e in scaling if e["loss"] == label and e["M"] == top))
            else:
                anchors.append(_setting(runs, "anchors", label, top, a, splits[top], LOSSES[label], settings))
    for r in runs:
        if r["group"] != "scaling" or r["M"] != top:
            r.pop("curve", None)
    return {"scaling": scaling, "ablation": ablation, "anchors": anchors, "runs": runs}


def run(*, out: Path, seeds: int | None, quick: bool) -> Path:
    """Run the study (``quick``: 1 seed, M in {2, 3}, 20 steps) and write its results into ``out``.

    Args:
        out: results folder (created).
        seeds: seeds per setting (``None``: 5, or 1 with ``quick``).
        quick: the tiny smoke-test version.

    Returns:
        The path of ``results.md``.
    """
    settings = QUICK if quick else FULL
    if seeds is not None:
        settings = replace(settings, seeds=int(seeds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch_threads(1):
        results = run_grid(settings)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    meta = {
        "command": study_command("unialign", out, seeds, quick),
        "settings": asdict(settings),
        "view_order": list(VIEW_ORDER),
        "anchor": ANCHOR,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "torch": torch.__version__,
        "quick": quick,
        "seeds_arg": seeds,
    }
    return write_report(out, {**meta, **results})


# ---------------------------------------------------------------------------------------- report

#: Metrics of the scaling tables: key -> title.
SCALING_METRICS: dict[str, str] = {
    "hit@1": "hit@1, anchor <-> other views",
    "hit@5": "hit@5, anchor <-> other views",
    "hit@10": "hit@10, anchor <-> other views",
    "map": "mAP, anchor <-> other views",
    "all/hit@1": "hit@1, mean over all view pairs",
    "probe/anchor": "linear-probe accuracy, anchor (pix) embedding",
    "probe/mean": "linear-probe accuracy, mean embedding",
    "zeta": "zeta (force cancellation; 1 = InfoNCE's forces cancel)",
    "chi": "chi (disagreement of the positives; 0 for M = 2)",
    "holder": "Hölder divergence D_H (bandwidth 0.5)",
    "gap": "modality gap, mean over pairs",
    "uniformity": "uniformity, mean over views (lower = more uniform)",
    "erank": "effective rank, mean over views (collapse check; at most 64)",
    "erank_min": "effective rank, smallest view",
    "pos_cos": "positive-pair cosine, anchor pairs",
}

#: Columns of the ablation and anchor tables.
SUMMARY_COLUMNS: list[tuple[str, str]] = [
    ("hit@1", "hit@1 (anchor)"),
    ("all/hit@1", "hit@1 (all pairs)"),
    ("map", "mAP (anchor)"),
    ("probe/anchor", "probe (anchor)"),
    ("probe/mean", "probe (mean)"),
    ("zeta", "zeta"),
    ("chi", "chi"),
    ("holder", "Hölder"),
    ("uniformity", "uniformity"),
    ("erank_min", "erank (min)"),
]

BASELINES = ("InfoNCE (all pairs)", "InfoNCE (anchor)", "GRAM", "Align+Uniform")
UNIALIGNS = ("UniAlign (anchor)", "UniAlign (centroid)")


def _stat(entry: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    s = entry["metrics"][key]
    return s["mean"], s["std"], s["n"]


def compare(a: Mapping[str, Any], b: Mapping[str, Any], key: str) -> tuple[float, float, str]:
    """``a - b`` on ``key``, its standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)`` and a verdict.

    The verdict is ``"higher"``/``"lower"`` when the difference exceeds two standard errors (about a
    95% two-sided normal test; with 1 seed there is no error estimate and every difference counts), else
    ``"tie"``.
    """
    ma, sa, na = _stat(a, key)
    mb, sb, nb = _stat(b, key)
    diff = ma - mb
    se = math.sqrt(sa**2 / na + sb**2 / nb)
    if abs(diff) > 2 * se and diff != 0:
        return diff, se, "higher" if diff > 0 else "lower"
    return diff, se, "tie"


def _per_seed(runs: Sequence[Mapping[str, Any]], group: str, loss: str, m: int, key: str) -> list[float]:
    return [r["metrics"][key] for r in runs if r["group"] == group and r["loss"] == loss and r["M"] == m]


def _plots(out: Path, payload: Mapping[str, Any]) -> dict[str, str]:
    s = payload["settings"]
    ms = list(s["ms"])
    runs = [r for r in payload["runs"] if r["group"] == "scaling"]

    def series(key: str) -> dict[str, list[list[float]]]:
        return {loss: [_per_seed(runs, "scaling", loss, m, key) for m in ms] for loss in LOSSES}

    files = {}
    panels = [
        PlotPanel(ms, series("zeta"), "M (views)", "zeta", "zeta vs M (test split)", hline=1.0, xticks=ms),
        PlotPanel(ms, series("chi"), "M (views)", "chi", "chi vs M", xticks=ms),
        PlotPanel(
            ms,
            series("holder"),
            "M (views)",
            "Hölder D_H (log)",
            "Hölder divergence vs M",
            logy=True,
            xticks=ms,
        ),
    ]
    files["zeta_chi"] = line_plots(out / "zeta_chi_vs_m.png", panels).name
    panels = [
        PlotPanel(ms, series("hit@1"), "M (views)", "hit@1", "hit@1, anchor <-> others", xticks=ms),
        PlotPanel(
            ms, series("probe/mean"), "M (views)", "accuracy", "linear probe, mean embedding", xticks=ms
        ),
    ]
    files["hit1"] = line_plots(out / "hit1_vs_m.png", panels).name
    curves = [e for e in payload["scaling"] if "curve" in e]
    if curves:
        steps = [p["step"] for p in curves[0]["curve"]]
        panels = [
            PlotPanel(
                steps,
                {e["loss"]: [p[key]["values"] for p in e["curve"]] for e in curves},
                "training step",
                title,
                f"{title} over training steps (M = {s['ms'][-1]}, test split)",
                hline=1.0 if key == "zeta" else None,
                logy=key == "holder",
            )
            for key, title in (("holder", "Hölder D_H"), ("zeta", "zeta"), ("chi", "chi"), ("hit@1", "hit@1"))
        ]
        files["curves"] = line_plots(out / "holder_over_steps.png", panels, ncols=2).name
    return files


def _fmt(entry: Mapping[str, Any], key: str, digits: int = 3) -> str:
    m, sd, _ = _stat(entry, key)
    return format_mean_std(m, sd, digits)


INFONCES = ("InfoNCE (all pairs)", "InfoNCE (anchor)")

#: Mean uniformity above this counts as collapsed (a uniform 64-d sphere gives about -3.9, one point 0).
COLLAPSE_UNIFORMITY = -0.5

_WORD = {"higher": "grows", "lower": "shrinks", "tie": "does not change beyond 2 s.e."}
_OUTCOME = {"higher": "better", "lower": "worse", "tie": "tie"}


def _mean(entry: Mapping[str, Any], key: str) -> float:
    return float(entry["metrics"][key]["mean"])


def _series(scale: Mapping[tuple[str, int], Any], loss: str, ms: Sequence[int], key: str) -> str:
    return " → ".join(f"{_mean(scale[(loss, m)], key):.3f}" for m in ms)


def _verdict(outcomes: Sequence[str], want: str) -> str:
    """``reproduced`` (every outcome as claimed), ``not reproduced`` (fewer than half), else ``mixed``."""
    hits = sum(o == want for o in outcomes)
    if outcomes and hits == len(outcomes):
        return "reproduced"
    return "not reproduced" if 2 * hits < len(outcomes) else "mixed"


def _answer_conflict(scale: Mapping[tuple[str, int], Any], ms: list[int]) -> list[str]:
    lo, top = ms[0], ms[-1]
    chi_lo = 3 if 3 in ms else lo
    lines = ["### 1. Do zeta and chi grow with M under InfoNCE?", ""]
    for loss in INFONCES:
        dz, sz, vz = compare(scale[(loss, top)], scale[(loss, lo)], "zeta")
        dc, sc, vc = compare(scale[(loss, top)], scale[(loss, chi_lo)], "chi")
        zs = [_mean(scale[(loss, m)], "zeta") for m in ms]
        steps = ", ".join(f"{b - a:+.3f}" for a, b in itertools.pairwise(zs))
        chi_change = (
            f"from M = {chi_lo} to {top} it {_WORD[vc]} (Δ = {dc:+.3f} ± {sc:.3f})"
            if chi_lo < top
            else "(chi is 0 by definition at M = 2, so its growth needs two values of M ≥ 3)"
        )
        lines.append(
            f"- **{loss}**: zeta over M = {lo}..{top}: {_series(scale, loss, ms, 'zeta')}; it {_WORD[vz]} "
            f"from M = {lo} to {top} (Δ = {dz:+.3f} ± {sz:.3f} s.e.; step by step {steps}) and stays "
            f"{'below' if max(zs) < 1 else 'at or above'} 1 (largest mean {max(zs):.3f}). "
            f"chi: {_series(scale, loss, ms, 'chi')}; {chi_change}."
        )
    for loss in UNIALIGNS:
        e = scale[(loss, top)]
        lines.append(
            f"- For comparison, **{loss}** at M = {top}: zeta {_fmt(e, 'zeta')}, chi {_fmt(e, 'chi')} "
            "(zeta is measured with the same InfoNCE gradient formula, although UniAlign does not train it)."
        )
    return lines


def _answer_baselines(scale: Mapping[tuple[str, int], Any], ms: list[int]) -> list[str]:
    keys = [("hit@1", "hit@1 (anchor)"), ("all/hit@1", "hit@1 (all pairs)"), ("probe/mean", "probe (mean)")]
    rows, verdicts = [], []
    for m in [m for m in ms if m >= 3]:
        for key, title in keys:
            best_u = max(UNIALIGNS, key=lambda n: _mean(scale[(n, m)], key))
            best_b = max(BASELINES, key=lambda n: _mean(scale[(n, m)], key))
            diff, se, verdict = compare(scale[(best_u, m)], scale[(best_b, m)], key)
            verdicts.append(verdict)
            rows.append(
                [
                    m,
                    title,
                    f"{best_u}: {_fmt(scale[(best_u, m)], key)}",
                    f"{best_b}: {_fmt(scale[(best_b, m)], key)}",
                    f"{diff:+.3f} ± {se:.3f}",
                    {"higher": "UniAlign better", "lower": "baseline better", "tie": "tie"}[verdict],
                ]
            )
    header = ["M", "metric", "best UniAlign", "best baseline", "Δ ± s.e.", "verdict (2 s.e.)"]
    return [
        "### 2. Does UniAlign beat the baselines at M ≥ 3?",
        "",
        markdown_table(header, rows, "rllllc"),
        "",
        f"UniAlign (its better variant in each cell) is better than the best baseline in "
        f"{verdicts.count('higher')}, worse in {verdicts.count('lower')} and tied in {verdicts.count('tie')} "
        f"of the {len(rows)} (M, metric) cells above.",
    ]


def _answer_anchors(payload: Mapping[str, Any], top: int) -> list[str]:
    lines = [f"### 3. Which anchor is best (M = {top}), and how big is the spread?", ""]
    for loss in ANCHOR_LOSSES:
        entries = {e["anchor"]: e for e in payload["anchors"] if e["loss"] == loss}
        for key, title in (
            ("all/hit@1", "hit@1 over all pairs"),
            ("probe/mean", "probe (mean)"),
            ("hit@1", "hit@1 anchor <-> others"),
        ):
            means = {a: _mean(e, key) for a, e in entries.items()}
            best, worst = max(means, key=means.__getitem__), min(means, key=means.__getitem__)
            tied = [a for a in entries if a != best and compare(entries[best], entries[a], key)[2] == "tie"]
            tie_text = f", tied within 2 s.e. with {', '.join(tied)}" if tied else ""
            lines.append(
                f"- **{loss}**, {title}: best anchor **{best}** ({means[best]:.3f}{tie_text}), worst {worst} "
                f"({means[worst]:.3f}); spread {means[best] - means[worst]:.3f}."
            )
    return lines


def _answer_ablation(payload: Mapping[str, Any], scale: Mapping[tuple[str, int], Any], top: int) -> list[str]:
    abl = {e["loss"]: e for e in payload["ablation"]}
    default = abl[next(iter(ABLATIONS))]
    lines = [f"### 4. What does each UniAlign term do (M = {top}, anchor pix)?", ""]
    for label, e in list(abl.items())[1:]:
        parts = []
        for key, title in (("hit@1", "hit@1"), ("probe/mean", "probe (mean)"), ("uniformity", "uniformity")):
            d, se, _ = compare(e, default, key)
            parts.append(f"{title} {_mean(e, key):.3f} (Δ {d:+.3f} ± {se:.3f})")
        collapsed = _mean(e, "uniformity") > COLLAPSE_UNIFORMITY
        lines.append(
            f"- **{label}** vs default: {'; '.join(parts)}{' — **collapsed**' if collapsed else ''}."
        )
    best = max(abl.values(), key=lambda e: _mean(e, "hit@1"))
    ref = scale[("InfoNCE (anchor)", top)]
    d, se, v = compare(best, ref, "hit@1")
    lines.append(
        f"- The best variant by hit@1, **{best['loss']}** ({_fmt(best, 'hit@1')}), vs InfoNCE (anchor) "
        f"({_fmt(ref, 'hit@1')}): Δ {d:+.3f} ± {se:.3f} ({_OUTCOME[v]})."
    )
    lines.append(
        f"- Collapse check: 'collapsed' = mean per-view uniformity above {COLLAPSE_UNIFORMITY} (a uniform "
        "64-d sphere gives about -3.9, a single point 0). The effective rank does not detect collapse "
        "here: it is computed on the centred, rescaled spectrum, so a cloud shrunk to a point keeps the "
        "rank of its residual spread."
    )
    return lines


def _answers(payload: Mapping[str, Any]) -> list[str]:
    """The answers to the study's questions, generated from the aggregates."""
    ms = list(payload["settings"]["ms"])
    scale = {(e["loss"], e["M"]): e for e in payload["scaling"]}
    lines = ["## Answers", ""]
    lines += [*_answer_conflict(scale, ms), ""]
    lines += [*_answer_baselines(scale, ms), ""]
    lines += [*_answer_anchors(payload, ms[-1]), ""]
    lines += [*_answer_ablation(payload, scale, ms[-1]), ""]
    lines += ["### 5. Where the paper's claims are (not) reproduced here", ""]
    lines += _claims(payload, scale, ms)
    return lines


def _claims(payload: Mapping[str, Any], scale: Mapping[tuple[str, int], Any], ms: list[int]) -> list[str]:
    lo, top = ms[0], ms[-1]
    out = []
    z_grow = [compare(scale[(n, top)], scale[(n, lo)], "zeta")[2] for n in INFONCES]
    z_top = max(_mean(scale[(n, top)], "zeta") for n in INFONCES)
    grows = _verdict(z_grow, "higher")
    near_one = z_top > 0.9
    out.append(
        f"- *InfoNCE's alignment and uniformity forces cancel as M grows (zeta → 1)*: zeta growth "
        f"**{grows}** (InfoNCE all pairs / anchor: {', '.join(z_grow)} from M = {lo} to {top}, 2 s.e.); "
        f"zeta → 1 **{'reproduced' if near_one else 'not reproduced'}**: the largest InfoNCE mean at "
        f"M = {top} is {z_top:.3f}."
    )
    mid = 3 if 3 in ms else lo
    c_grow = [compare(scale[(n, top)], scale[(n, mid)], "chi")[2] for n in INFONCES]
    verdict = _verdict(c_grow, "higher") if mid < top else "not testable with one M ≥ 3"
    out.append(
        f"- *Multi-way positives disagree more as M grows (chi grows)*: **{verdict}** — chi "
        f"{', '.join(c_grow)} from M = {mid} to {top} (InfoNCE all pairs / anchor)."
    )
    cells = []
    for m in [m for m in ms if m >= 3]:
        for key in ("hit@1", "probe/mean"):
            v = compare(scale[("UniAlign (anchor)", m)], scale[("InfoNCE (anchor)", m)], key)[2]
            cells.append((m, key, v))
    outcomes = [v for _, _, v in cells]
    better = [f"{key} at M = {m}" for m, key, v in cells if v == "higher"]
    out.append(
        f"- *UniAlign (anchor) improves over InfoNCE (anchor) at M ≥ 3* (hit@1 anchor and probe (mean), "
        f"{len(cells)} comparisons): **{_verdict(outcomes, 'higher')}** — better in "
        f"{outcomes.count('higher')}{' (' + ', '.join(better) + ')' if better else ''}, worse in "
        f"{outcomes.count('lower')}, tied in "
        f"{outcomes.count('tie')}."
    )
    big = [m for m in ms if m >= 3] or ms
    h = [compare(scale[("UniAlign (anchor)", m)], scale[("InfoNCE (anchor)", m)], "holder") for m in big]
    lowest = min(LOSSES, key=lambda n: _mean(scale[(n, top)], "holder"))
    out.append(
        "- *UniAlign lowers the Hölder divergence between modalities (M ≥ 3)*: "
        f"**{_verdict([v for *_, v in h], 'lower')}** — UniAlign (anchor) − InfoNCE (anchor) per M: "
        + ", ".join(f"M = {m}: {d:+.3f} ± {se:.3f} ({v})" for m, (d, se, v) in zip(big, h, strict=True))
        + f"; the lowest D_H at M = {top} is {lowest}'s ({_fmt(scale[(lowest, top)], 'holder')})."
    )
    abl = {e["loss"]: e for e in payload["ablation"]}
    default, no_u = abl[next(iter(ABLATIONS))], abl["- U(Z) (lambda_uni = 0)"]
    collapsed = _mean(no_u, "uniformity") > COLLAPSE_UNIFORMITY
    out.append(
        "- *Intra-modal uniformity is what prevents collapse*: "
        f"**{'reproduced' if collapsed else 'not reproduced'}** — without U(Z) the mean uniformity is "
        f"{_fmt(no_u, 'uniformity')} (default {_fmt(default, 'uniformity')}), zeta {_fmt(no_u, 'zeta')}, "
        f"hit@1 (anchor) {_fmt(no_u, 'hit@1')} vs {_fmt(default, 'hit@1')}."
    )
    return out


def render(out: Path) -> Path:
    """Re-write ``results.md`` and the plots of a finished study from its ``results.json`` (no training)."""
    payload = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    payload["rendered"] = "re-rendered from results.json by mmgeom.studies.unialign.render"
    return write_report(Path(out), payload)


def write_report(out: Path, payload: dict[str, Any]) -> Path:
    """Write ``results.json``, the plots and ``results.md`` into ``out``; return the markdown path."""
    s = payload["settings"]
    top = max(s["ms"])
    command = payload.get("command", "")
    # Render from what results.json holds (rounded floats), so a later ``render`` gives the same text.
    payload = json.loads(write_json(out / "results.json", payload).read_text(encoding="utf-8"))
    files = _plots(out, payload)
    n_runs = len(payload["runs"])
    lines = [
        "# UniAlign modality-scaling study (UCI Multiple Features, real six-view digits)",
        "",
        f"Command: `{command}`  ",
        *(
            [f"Text and plots {payload['rendered']} after the run (same numbers, newer report code).  "]
            if payload.get("rendered")
            else []
        ),
        f"Wall time: {payload['wall_seconds'] / 60:.1f} min for {n_runs} trainings "
        f"(CPU time of the process {payload.get('cpu_seconds', float('nan')) / 60:.1f} min: the 2-core "
        f"machine was shared with other jobs), torch {payload['torch']} on CPU, 1 intra-op thread.",
        "",
        "## Setup",
        "",
        f"- Data: UCI Multiple Features (2000 digits, 10 classes), stratified 70/10/20 split (seed "
        f"{s['split_seed']}), views standardised with training statistics; all numbers on the **test split** "
        f"(400 digits), linear probes fitted on the training split (1400).",
        f"- Views are added in the order {' → '.join(payload['view_order'])}: M = k uses the first k. "
        f"Anchor: **{payload['anchor']}** (the 16x15 pixel image) except in the anchor sweep.",
        f"- Model: one MLP head per view (2 layers, hidden {s['hidden']}, LayerNorm, GELU) into a shared "
        f"{s['out_dim']}-d space. AdamW lr {s['lr']}, weight decay {s['weight_decay']}, {s['warmup_steps']} "
        f"warm-up steps then cosine, {s['steps']} steps of batch {s['batch_size']}, grad clip "
        f"{s['grad_clip']}. {s['seeds']} seed(s) per setting (init + batch order; the split is fixed).",
        f"- Losses (library defaults, `docs/losses.md`): InfoNCE τ = {s['temperature']} over all pairs or "
        "anchor pairs; GRAM (anchor, learnable τ from 0.07, label smoothing 0.1); Wang–Isola align + "
        "uniform (all pairs, t = 2); UniAlign λ_uni = λ_align = 1, λ_vol = 0, t = 2, anchor or centroid "
        "alignment. The paper's λ and τ are not public; nothing was tuned.",
        "- Metrics: cross-view instance retrieval by cosine (row i of the query view must find row i of "
        "the gallery view), anchor → other and other → anchor averaged over the other views (`all pairs`: "
        "over every view pair); linear probe = multinomial logistic regression (L-BFGS, L2 "
        f"{s['probe_l2']}) on the L2-normalised frozen embeddings of the anchor view or of the normalised "
        f"mean of all views; zeta/chi on the anchor with τ = {s['temperature']} for every loss; Hölder "
        f"divergence with KDE bandwidth {s['bandwidth']} (exact for M = 2, Monte-Carlo with "
        f"{s.get('holder_samples', 2048)} samples for M ≥ 3); effective rank exp(entropy of the singular "
        "values) per view and the mean per-view uniformity as collapse checks.",
        "- ± is the sample standard deviation over seeds; 'better'/'worse' below means the difference of "
        "means exceeds two standard errors.",
    ]
    if s["steps"] == FULL.steps and not payload.get("quick"):
        lines.append(
            f"- {s['steps']} steps, not more: a first attempt at 300 steps was too slow on the 2-core "
            "machine shared with two other jobs (the study must stay well under an hour), so steps were cut "
            "rather than seeds; the curves at the end show how flat every metric is by then."
        )
    lines.append("")
    lines += _answers(payload)
    lines += ["", "## Plots", ""]
    lines.append(f"![zeta, chi and Hölder vs M]({files['zeta_chi']})")
    lines.append("")
    lines.append(f"![hit@1 and probe accuracy vs M]({files['hit1']})")
    if "curves" in files:
        lines += ["", f"![Hölder, zeta, chi, hit@1 over training steps]({files['curves']})"]
    lines += ["", "## Scaling with M (anchor pix): mean ± std over seeds", ""]
    for key, title in SCALING_METRICS.items():
        lines += [
            f"### {title}",
            "",
            pivot_table(payload["scaling"], "loss", "M", key, corner="loss", col_format="M = {}"),
            "",
        ]
    lines += [f"## Ablation of UniAlign's terms (M = {top}, anchor pix)", ""]
    lines += [
        "`+ U(C) only` and `+ volume only` add the centroid uniformity U_tc(C) (t_c = 2) or the mean Gram "
        "determinant to default UniAlign with weight 1, computed with `F.uniformity(F.centroid(...))` and "
        "`F.gram_det` (the library's `lambda_vol` weighs the two together). `lambda_uni = 1/M` averages the "
        "per-view uniformities instead of summing them.",
        "",
        metric_table(payload["ablation"], "loss", SUMMARY_COLUMNS, corner="variant"),
        "",
        f"## Anchor sweep (M = {top})",
        "",
        "hit@1 (anchor) depends on which view is the anchor; hit@1 over all pairs and the mean-embedding "
        "probe are comparable across anchors.",
        "",
    ]
    for loss in ANCHOR_LOSSES:
        entries = [e for e in payload["anchors"] if e["loss"] == loss]
        lines += [f"### {loss}", "", metric_table(entries, "anchor", SUMMARY_COLUMNS, corner="anchor"), ""]
    curves = [e for e in payload["scaling"] if "curve" in e]
    if curves:
        lines += [f"## Over training steps (M = {top}, every {s['curve_every']} steps, test split)", ""]
        for key, title in (("holder", "Hölder D_H"), ("zeta", "zeta"), ("chi", "chi"), ("hit@1", "hit@1")):
            steps = [int(p["step"]) for p in curves[0]["curve"]]
            body = [
                [e["loss"], *[format_mean_std(p[key]["mean"], p[key]["std"]) for p in e["curve"]]]
                for e in curves
            ]
            lines += [f"### {title}", "", markdown_table(["loss", *[f"step {t}" for t in steps]], body), ""]
        if len(curves[0]["curve"]) >= 3:
            late = {
                e["loss"]: e["curve"][-1]["hit@1"]["mean"] - e["curve"][-3]["hit@1"]["mean"] for e in curves
            }
            worst = max(late, key=lambda k: abs(late[k]))
            steps = [int(p["step"]) for p in curves[0]["curve"]]
            lines += [
                f"Convergence: from step {steps[-3]} to {steps[-1]} the mean hit@1 moves by at most "
                f"{abs(late[worst]):.3f} ({worst}: {late[worst]:+.3f}).",
                "",
            ]
    lines += [
        "## Training time per run (mean over seeds, seconds)",
        "",
        pivot_table(
            [dict(e, metrics={"t": {"mean": e["train_seconds"], "std": 0.0}}) for e in payload["scaling"]],
            "loss",
            "M",
            "t",
            digits=1,
            corner="loss",
            col_format="M = {}",
        ).replace(" ± 0.0", ""),
        "",
        "## Caveats",
        "",
        "- One dataset (small MLP heads on fixed hand-crafted features), one split, short trainings and "
        "untuned library-default weights: the study tests the claims in this regime, not the paper's.",
        "- GRAM's volume is unchanged when a view's embedding flips sign and is already zero when any two "
        "views of a tuple are collinear; its cosine retrieval can therefore be poor even when its own "
        "volume scores rank well (see its positive-pair cosine).",
        "- The Hölder estimate for M ≥ 3 is a Monte-Carlo estimate (fixed sampling seed); it is not "
        "comparable across M in absolute terms (the divergence itself changes with M).",
        "",
    ]
    md = out / "results.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return md

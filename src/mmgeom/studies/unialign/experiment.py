"""The UniAlign study's runs: train one encoder per (loss, M, anchor, seed) and measure it."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ... import functional as F
from ..._validation import validation
from ...data import SplitDataset, load_dataset, split_and_standardize
from ...evaluation.probe import linear_probe_accuracy
from ...geometry import conflict_metrics, effective_rank, holder_divergence, modality_gap
from ...losses import LossOutput
from ...models import MultiViewEncoder
from ...train import cross_view_retrieval, embed_views
from ...train.lean import train_loop
from ..runner import run_seeds, study_command, torch_threads
from ..tables import aggregate
from .report import write_report
from .settings import (
    ABLATIONS,
    ANCHOR,
    ANCHOR_LOSSES,
    BASELINES,
    FULL,
    GRID,
    LOSSES,
    QUICK,
    SELECTION_KEY,
    VIEW_ORDER,
    LossFactory,
    Settings,
)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def geometry_metrics(emb: Mapping[str, Tensor], anchor: str, settings: Settings) -> dict[str, float]:
    """``zeta``, ``chi`` (on ``anchor``, ``tau = settings.temperature``) and the Hölder divergence.

    ``holder`` uses the fixed bandwidth ``settings.bandwidth`` (comparable across losses and M);
    ``holder_tied`` the bandwidth tied to the UniAlign losses' ``t`` (``s = sqrt((M - 1) / (4 t))``, where
    such a loss bounds ``D_H``; the same bandwidth for every loss so that the column stays comparable).
    """
    out = dict(conflict_metrics(emb, anchor, settings.temperature))
    out["holder"] = holder_divergence(emb, settings.bandwidth, n_samples=settings.holder_samples)
    out["holder_tied"] = holder_divergence(emb, t=settings.uniformity_t, n_samples=settings.holder_samples)
    return out


def validation_metrics(encoder: nn.Module, data: SplitDataset, anchor: str) -> dict[str, float]:
    """The selection metrics on the **validation** split: ``val/hit@1`` (anchor <-> each other view, both
    directions, mean over the other views) and ``val/all/hit@1`` (mean over all view pairs)."""
    val = embed_views(encoder, data.val)
    names = list(val)
    ret = cross_view_retrieval(val, [(anchor, n) for n in names if n != anchor], "both", (1,))
    every = cross_view_retrieval(val, list(itertools.combinations(names, 2)), "both", (1,))
    return {"val/hit@1": ret["retrieval/mean/hit@1"], "val/all/hit@1": every["retrieval/mean/hit@1"]}


def evaluate_run(encoder: nn.Module, data: SplitDataset, anchor: str, settings: Settings) -> dict[str, float]:
    """Every metric of one trained encoder on the test split (probes fitted on the training split).

    Keys: ``hit@1/5/10`` and ``map`` (anchor <-> each other view, both directions, mean over the other
    views), ``all/hit@1`` and ``all/map`` (mean over all view pairs), ``pos_cos`` (mean positive cosine,
    anchor pairs), ``probe/anchor`` and ``probe/mean`` (linear-probe test accuracy on the anchor's
    embedding and on the normalised mean of the normalised view embeddings), ``zeta``, ``chi``,
    ``holder``, ``gap`` (mean modality gap over all pairs), ``uniformity`` (mean Wang–Isola uniformity
    over views, t = 2), ``erank`` and ``erank_min`` (mean and smallest effective rank over views), and the
    validation-split selection metrics of :func:`validation_metrics`.
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
    out.update(validation_metrics(encoder, data, anchor))
    return out


def train_one(
    data: SplitDataset,
    make_loss: LossFactory,
    anchor: str,
    seed: int,
    settings: Settings,
    curves: bool = False,
    full: bool = True,
) -> dict[str, Any]:
    """Train one encoder (lean loop of :func:`mmgeom.train.lean.train_loop`) and evaluate it.

    ``full=False`` measures only the validation metrics (:func:`validation_metrics`): the sensitivity
    grid's runs, which choose configurations and report nothing on the test split.

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
    metrics = (
        evaluate_run(encoder, data, anchor, settings) if full else validation_metrics(encoder, data, anchor)
    )
    return {"metrics": metrics, "seconds": seconds, "curve": curve}


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
    seeds: int | None = None,
    full: bool = True,
) -> dict[str, Any]:
    """Run every seed of one setting (``seeds``: default ``settings.seeds``); append per-run records to
    ``runs``; return the aggregate entry."""
    start = time.perf_counter()
    n_seeds = settings.seeds if seeds is None else seeds
    results = run_seeds(lambda s: train_one(data, factory, anchor, s, settings, curves, full), n_seeds)
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
    key = "hit@1" if full else SELECTION_KEY
    took = time.perf_counter() - start
    score = entry["metrics"][key]["mean"]
    _log(f"  {group:8s} {label:44s} M={m} anchor={anchor:3s} {key}={score:.3f} ({took:.1f} s)")
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
    grid, selection, chosen = _grid_and_selection(runs, scaling, splits, settings)
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
                anchors.append(
                    _setting(
                        runs,
                        "anchors",
                        label,
                        top,
                        a,
                        splits[top],
                        LOSSES[label],
                        settings,
                        seeds=settings.anchor_seeds,
                    )
                )
    for r in runs:
        if r["group"] != "scaling" or r["M"] != top:
            r.pop("curve", None)
    return {
        "scaling": scaling,
        "grid": grid,
        "selection": selection,
        "chosen": chosen,
        "ablation": ablation,
        "anchors": anchors,
        "runs": runs,
    }


def _val_score(runs: Sequence[Mapping[str, Any]], group: str, label: str, m: int, seeds: int) -> list[float]:
    """The selection metric of the first ``seeds`` seeds of one setting (seed order)."""
    got = {
        int(r["seed"]): float(r["metrics"][SELECTION_KEY])
        for r in runs
        if r["group"] == group and r["loss"] == label and r["M"] == m and r["anchor"] == ANCHOR
    }
    return [got[s] for s in range(seeds)]


def _grid_and_selection(
    runs: list[dict[str, Any]],
    scaling: Sequence[Mapping[str, Any]],
    splits: Mapping[int, SplitDataset],
    settings: Settings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The validation phase and the evaluation of its choices, at every M.

    1. Every :data:`GRID` configuration is trained with ``settings.val_seeds`` seeds and measured on the
       validation split only (the two library-default configurations are the scaling runs, whose first
       ``val_seeds`` seeds are used).
    2. Per M, the UniAlign configuration and the baseline (:data:`BASELINES`, scaling runs) with the
       highest mean validation :data:`SELECTION_KEY` over those seeds are chosen; the test split plays no
       part.
    3. A chosen UniAlign configuration that is not a scaling run is re-trained with ``settings.seeds``
       seeds and fully evaluated (group ``"chosen"``; its first seeds reproduce the grid runs' models).

    Returns:
        ``grid`` (per configuration and M: the validation scores), ``selection`` (per M: the chosen
        UniAlign and baseline labels, their groups and validation means) and ``chosen`` (aggregate
        entries of the re-trained choices).
    """
    nv = min(settings.val_seeds, settings.seeds)
    in_scaling = {e["loss"] for e in scaling}
    grid: list[dict[str, Any]] = []
    selection: list[dict[str, Any]] = []
    chosen: list[dict[str, Any]] = []
    for m in settings.ms:
        scores: dict[str, tuple[str, list[float]]] = {}
        for point in GRID:
            label = point.label
            if label in in_scaling:
                scores[label] = ("scaling", _val_score(runs, "scaling", label, m, nv))
            else:
                _setting(
                    runs, "grid", label, m, ANCHOR, splits[m], point.factory(), settings, seeds=nv, full=False
                )
                scores[label] = ("grid", _val_score(runs, "grid", label, m, nv))
            grid.append(
                {
                    "loss": label,
                    "M": m,
                    "alignment": point.alignment,
                    "reduction": point.reduction,
                    "align_weight": point.align_weight,
                    "lambda_vol": point.lambda_vol,
                    "val": scores[label][1],
                }
            )
        base = {b: _val_score(runs, "scaling", b, m, nv) for b in BASELINES}
        best_u = max(scores, key=lambda k: sum(scores[k][1]) / nv)
        best_b = max(base, key=lambda k: sum(base[k]) / nv)
        group = "scaling"
        if best_u not in in_scaling:
            point = next(p for p in GRID if p.label == best_u)
            chosen.append(_setting(runs, "chosen", best_u, m, ANCHOR, splits[m], point.factory(), settings))
            group = "chosen"
        selection.append(
            {
                "M": m,
                "unialign": best_u,
                "unialign_group": group,
                "unialign_val": sum(scores[best_u][1]) / nv,
                "baseline": best_b,
                "baseline_val": sum(base[best_b]) / nv,
                "val_seeds": nv,
                "key": SELECTION_KEY,
            }
        )
    for r in runs:  # the grid runs' seeds are in "grid"; keep the curves only where they are plotted
        if r["group"] == "grid":
            r.pop("curve", None)
    return grid, selection, chosen


def run(*, out: Path, seeds: int | None, quick: bool) -> Path:
    """Run the study (``quick``: 1 seed, M in {2, 3}, 20 steps) and write its results into ``out``.

    Full run: at most 370 trainings — 150 scaling, 140 validation-only grid runs (``val_seeds = 2``),
    up to 25 re-trained choices (5 seeds), 25 ablation, 30 anchor-sweep (3 seeds). One training at
    ``M = 6`` took 5.5 s with the full evaluation and 4.7 s validation-only (3.6 / 2.1 s at ``M = 2``),
    measured with ``train_one`` at the FULL settings on the shared 2-core machine (load about 3.5), so
    the run should take 25–40 min with one torch thread.

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

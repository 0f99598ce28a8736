"""The UniAlign study's runs: train one encoder per (loss, M, anchor, seed) and measure it."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ... import functional as F
from ..._validation import validation
from ...data import SplitDataset
from ...evaluation.probe import linear_probe_accuracy
from ...geometry import conflict_metrics, effective_rank, holder_divergence, modality_gap
from ...losses import LossOutput
from ...models import MultiViewEncoder
from ...train import cross_view_retrieval, embed_views
from ...train.lean import train_loop
from ..runner import run_seeds
from ..tables import aggregate
from .settings import SELECTION_KEY, LossFactory, Settings


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


def evaluate_run(
    encoder: nn.Module, data: SplitDataset, anchor: str, settings: Settings, probe: bool = True
) -> dict[str, float]:
    """Every metric of one trained encoder on the test split (probes fitted on the training split).

    Keys: ``hit@1/5/10`` and ``map`` (anchor <-> each other view, both directions, mean over the other
    views), ``all/hit@1`` and ``all/map`` (mean over all view pairs), ``pos_cos`` (mean positive cosine,
    anchor pairs), ``probe/anchor`` and ``probe/mean`` (linear-probe test accuracy on the anchor's
    embedding and on the normalised mean of the normalised view embeddings), ``zeta``, ``chi``,
    ``holder``, ``gap`` (mean modality gap over all pairs), ``uniformity`` (mean Wang–Isola uniformity
    over views, t = 2), ``erank`` and ``erank_min`` (mean and smallest effective rank over views), and the
    validation-split selection metrics of :func:`validation_metrics`. ``probe=False`` (data without
    class labels) leaves out the two probe keys.
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
    if probe:
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
    probe: bool = True,
) -> dict[str, Any]:
    """Train one encoder (lean loop of :func:`mmgeom.train.lean.train_loop`) and evaluate it.

    ``full=False`` measures only the validation metrics (:func:`validation_metrics`): the sensitivity
    grid's runs, which choose configurations and report nothing on the test split. ``probe=False``: no
    linear probes (data without class labels).

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
        evaluate_run(encoder, data, anchor, settings, probe)
        if full
        else validation_metrics(encoder, data, anchor)
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
    probe: bool = True,
) -> dict[str, Any]:
    """Run every seed of one setting (``seeds``: default ``settings.seeds``); append per-run records to
    ``runs``; return the aggregate entry (``probe=False``: no linear probes, see :func:`evaluate_run`)."""
    start = time.perf_counter()
    n_seeds = settings.seeds if seeds is None else seeds
    results = run_seeds(lambda s: train_one(data, factory, anchor, s, settings, curves, full, probe), n_seeds)
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

"""Training loop of fusion classifiers: joint, DGL (shared head or auxiliary heads) and OGM-GE-style modes,
optional DAGR."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as nnf

from .._validation import validation
from ..data import BatchSampler, MultiViewDataset
from ..errors import NonFiniteLossError
from ..losses import create_loss
from ..losses.dagr import DAGRRegularizer
from ..models.fusion import FusionClassifier
from ..train.schedule import build_scheduler
from .config import ClassifyConfig
from .evaluate import accuracy_metrics, check_views, embed, geometry_metrics
from .modulation import add_gradient_noise, modality_scores, ogm_ge_coefficients, scale_grad


@dataclass
class ClassifyResult:
    """What :func:`train_classifier` returns.

    Attributes:
        model: the trained classifier (eval mode).
        history: one dict per epoch, epoch 0 = before training: ``epoch``, ``loss`` (mean training loss
            of the epoch), the DAGR terms (``dagr/...``), mean OGM-GE coefficients (``ogm/k/m``) and, with
            a ``monitor`` dataset, its accuracies and geometry (keys of :mod:`mmgeom.classify.evaluate`).
        regularizer: the DAGR module (its calibrated ``delta`` is a buffer), or ``None``.
        steps_per_epoch: optimiser steps per epoch.
        seconds: wall time of the training loop (monitoring included).
    """

    model: FusionClassifier
    history: list[dict[str, float]] = field(default_factory=list)
    regularizer: DAGRRegularizer | None = None
    steps_per_epoch: int = 0
    seconds: float = 0.0


def build_regularizer(config: ClassifyConfig, steps_per_epoch: int) -> DAGRRegularizer | None:
    """The DAGR module of ``config.dagr`` (``None`` without one).

    ``delta="auto"`` without ``calibration_steps`` calibrates on the first epoch.
    """
    if config.dagr is None:
        return None
    kwargs: dict[str, Any] = dict(config.dagr)
    if kwargs.get("delta") == "auto":
        kwargs.setdefault("calibration_steps", steps_per_epoch)
    reg = create_loss("dagr", **kwargs)
    if not isinstance(reg, DAGRRegularizer):  # pragma: no cover - registry invariant
        raise TypeError(f"dagr: the registry returned {type(reg).__name__}")
    return reg


def shared_head_unimodal_logits(model: FusionClassifier, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Modality -> the fusion head's logits given that modality alone, with the head's parameters detached.

    The DGL protocol's unimodal logits: the shared head (zero-padding the other modalities in the
    concatenation head, omitting them in late fusion), whose gradient flows into ``h_m`` but not into the
    head, as the public DGL code does by clearing the fusion module's gradient of the unimodal losses.
    """
    frozen = {name: p.detach() for name, p in model.fusion.named_parameters()}
    return {m: torch.func.functional_call(model.fusion, frozen, ({m: h},)) for m, h in features.items()}


def task_loss(
    model: FusionClassifier, features: dict[str, Tensor], labels: Tensor, config: ClassifyConfig
) -> tuple[Tensor, dict[str, float]]:
    """The task loss of ``config.mode`` from pre-fusion ``features`` (see :class:`ClassifyConfig`).

    Returns:
        ``(loss, logs)``; ``logs`` holds the OGM-GE coefficients ``ogm/k/m`` in that mode.
    """
    if config.mode == "joint":
        return nnf.cross_entropy(model.fuse(features), labels), {}
    if config.mode in ("dgl", "dgl-aux"):
        fused = nnf.cross_entropy(model.fuse({m: h.detach() for m, h in features.items()}), labels)
        heads = model.aux_logits(features) if config.mode == "dgl-aux" else None
        if heads is None:
            heads = shared_head_unimodal_logits(model, features)
        uni = sum(nnf.cross_entropy(o, labels) for o in heads.values())
        return fused + config.dgl_alpha * uni, {"dgl/fused_ce": float(fused.detach())}
    # ogm_ge: coefficients from this batch's per-modality shares of the fused output.
    with torch.no_grad():
        shares = model.fusion.modality_logits({m: h.detach() for m, h in features.items()})
    coeffs = ogm_ge_coefficients(modality_scores(shares, labels), config.ogm_alpha)
    logits = model.fuse({m: scale_grad(h, coeffs[m]) for m, h in features.items()})
    return nnf.cross_entropy(logits, labels), {f"ogm/k/{m}": k for m, k in coeffs.items()}


def _optimizer(model: torch.nn.Module, config: ClassifyConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _monitor(model: FusionClassifier, data: MultiViewDataset, aux: bool) -> dict[str, float]:
    feats = embed(model, data)
    out = accuracy_metrics(model, feats, data.labels, aux=aux)
    out.update(geometry_metrics(feats, data.labels))
    return out


def train_classifier(
    model: FusionClassifier,
    train: MultiViewDataset,
    config: ClassifyConfig,
    *,
    monitor: MultiViewDataset | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> ClassifyResult:
    """Train ``model`` on ``train`` as ``config`` says; record per-epoch history.

    Each step draws ``config.batch_size`` rows (seeded, shuffled epochs, last partial batch dropped),
    encodes them, adds the DAGR regulariser (if any) to the task loss of the mode, back-propagates, adds
    OGM-GE noise to the encoder gradients (``"ogm_ge"`` mode), clips and steps the optimiser and the
    warm-up + cosine schedule. Model initialisation is the caller's (seed torch before building it).

    Args:
        model: the classifier; its modalities must be the views of ``train``.
        train: training rows with labels.
        config: the run settings.
        monitor: rows on which accuracies and geometry are measured after every epoch (and before
            training), e.g. the test split; ``None`` to skip.
        on_epoch: called with each history record as it is made.

    Raises:
        ValueError: views that do not match the model, or fewer rows than one batch.
        NonFiniteLossError: the loss became NaN/Inf (names the step and the term).
    """
    check_views(model, train, "train")
    if monitor is not None:
        check_views(model, monitor, "monitor")
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size: {config.batch_size} exceeds the {len(train)} training rows")
    total = steps_per_epoch * config.epochs
    reg = build_regularizer(config, steps_per_epoch)
    sampler = BatchSampler(len(train), config.batch_size, seed=config.seed, drop_last=True)
    optimizer = _optimizer(model, config)
    scheduler = build_scheduler(optimizer, total, round(config.warmup_epochs * steps_per_epoch))
    noise = torch.Generator().manual_seed(10_007 + config.seed)
    encoder_params = list(model.encoder.parameters())
    aux = config.mode == "dgl-aux"
    result = ClassifyResult(model, regularizer=reg, steps_per_epoch=steps_per_epoch)
    start = time.perf_counter()

    def record(epoch: int, logs: dict[str, list[float]]) -> None:
        rec: dict[str, float] = {"epoch": float(epoch)}
        rec.update({k: sum(v) / len(v) for k, v in logs.items()} if logs else {"loss": math.nan})
        if reg is not None:
            rec["dagr/delta"] = float(reg.delta)
        if monitor is not None:
            rec.update(_monitor(model, monitor, aux))
        result.history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)

    record(0, {})
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        logs: dict[str, list[float]] = {}
        for _ in range(steps_per_epoch):
            step += 1
            idx = sampler.next_batch()
            batch, labels = train.batch(idx), train.labels[idx]
            features = model.encode(batch)
            loss, extra = task_loss(model, features, labels, config)
            terms = {"task": loss}
            if reg is not None:
                with validation(False):  # shapes are still checked; finiteness is checked below
                    out = reg(features)
                loss = loss + out.total
                extra["dagr/total"] = float(out.total.detach())
                if "anchor" in out.terms:
                    extra["dagr/anchor"] = float(out.terms["anchor"])
                terms["dagr"] = out.total
            for name, value in terms.items():
                if not math.isfinite(float(value.detach())):
                    raise NonFiniteLossError(step, name, float(value.detach()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.mode == "ogm_ge":
                add_gradient_noise(encoder_params, config.ogm_noise, noise)
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            extra["loss"] = float(loss.detach())
            for k, v in extra.items():
                logs.setdefault(k, []).append(v)
        model.eval()
        record(epoch, logs)
    result.seconds = time.perf_counter() - start
    model.eval()
    return result

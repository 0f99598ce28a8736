"""The L2Dir study's model on frozen features and its training."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...losses import create_loss
from ...models import MagnitudeHead, MLPHead, weight_decay_groups
from ...seeding import seed_everything
from ...train.lean import train_loop
from .data import TaskData
from .settings import METHODS, StudySettings


class FrozenFeatureModel(nn.Module):
    """One projection head per modality (directions) and, for L2Dir, one MagnitudeHead per modality."""

    def __init__(
        self,
        dims: Mapping[str, int],
        settings: StudySettings,
        magnitude_heads: bool,
        head_init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        s = settings
        self.heads = nn.ModuleDict(
            {
                m: MLPHead(d, s.dim, hidden=s.hidden, depth=2, layer_norm=True, modality=m)
                for m, d in dims.items()
            }
        )
        self.magnitude_heads = nn.ModuleDict(
            {
                m: MagnitudeHead(d, hidden=s.mag_hidden, init_scale=head_init_scale, modality=m)
                for m, d in dims.items()
            }
            if magnitude_heads
            else {}
        )

    def forward(self, feats: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """Raw head outputs and (if any) MagnitudeHead magnitudes of each modality."""
        emb = {m: self.heads[m](x) for m, x in feats.items()}
        if not len(self.magnitude_heads):
            return emb, None
        return emb, {m: self.magnitude_heads[m](x) for m, x in feats.items()}

    @torch.no_grad()
    def document_magnitudes(self, modality: str, feats: Tensor, emb: Tensor) -> Tensor:
        """What magnitude scoring uses: the MagnitudeHead output, or the raw embedding norm."""
        if len(self.magnitude_heads):
            return self.magnitude_heads[modality](feats)
        return emb.norm(dim=1)


def _fashion_sampler(data: TaskData, seed: int) -> Callable[[Tensor], dict[str, Tensor]]:
    """Batch builder: each training image is paired with a random training phrasing of its class."""
    by_class = [torch.nonzero(data.train_labels["text"] == c).flatten() for c in range(10)]
    gen = torch.Generator().manual_seed(10_000 + seed)

    def batch(idx: Tensor) -> dict[str, Tensor]:
        y = data.train_labels["image"][idx]
        pick = torch.stack(
            [by_class[int(c)][torch.randint(len(by_class[int(c)]), (1,), generator=gen)][0] for c in y]
        )
        return {"text": data.train["text"][pick], "image": data.train["image"][idx], "labels": y}

    return batch


def loss_kwargs(
    method: str, settings: StudySettings, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The loss's keyword arguments for ``method``: temperature, the study's ``lambda_n`` (L2Dir only),
    then the method's own, then the grid point's ``overrides``."""
    spec = METHODS[method]
    kw: dict[str, Any] = {"temperature": settings.temperature}
    if spec.loss == "l2dir":
        kw["lambda_n"] = settings.lambda_n
    return {**kw, **spec.loss_kwargs, **dict(overrides or {})}


def train_model(
    data: TaskData,
    method: str,
    seed: int,
    settings: StudySettings,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[FrozenFeatureModel, float, float]:
    """Train one method from seed ``seed`` with the grid point ``overrides`` of its loss arguments;
    returns the model, the wall seconds and the last loss."""
    spec = METHODS[method]
    loss_name = spec.loss
    seed_everything(seed)
    dims = {m: int(x.shape[1]) for m, x in data.train.items()}
    model = FrozenFeatureModel(dims, settings, spec.magnitude_head, spec.head_init_scale)
    loss = create_loss(loss_name, **loss_kwargs(method, settings, overrides))
    if data.name == "fashion":
        make_batch = _fashion_sampler(data, seed)
        rows, steps, bs = len(data.train_labels["image"]), settings.fashion_steps, settings.fashion_batch
    else:
        views = data.train

        def make_batch(idx: Tensor) -> dict[str, Tensor]:
            return {v: x[idx] for v, x in views.items()}

        rows, steps, bs = (
            len(data.train_labels[next(iter(views))]),
            settings.mfeat_steps,
            settings.mfeat_batch,
        )

    def loss_at(idx: Tensor) -> Tensor:
        batch = make_batch(idx)
        labels = batch.pop("labels", None)
        emb, mags = model(batch)
        if labels is not None:
            emb["labels"] = labels
        if loss_name != "l2dir":
            return loss(emb).total
        # the reconstruction target: each frozen input feature's own L2 norm (what the head should recover)
        targets = (
            {m: x.norm(dim=1).clamp(min=1e-6) for m, x in batch.items()} if spec.reconstruction else None
        )
        return loss(emb, magnitudes=mags, magnitude_targets=targets).total

    start = time.perf_counter()
    model.train()
    decay = settings.weight_decay if spec.weight_decay is None else spec.weight_decay
    history = train_loop(
        # the magnitude heads are exempt from weight decay (it would pull their scale to a constant)
        weight_decay_groups(model, decay),
        loss_at,
        num_rows=rows,
        steps=steps,
        batch_size=min(bs, rows),
        lr=settings.lr,
        weight_decay=decay,
        warmup_steps=settings.warmup_steps,
        grad_clip=settings.grad_clip,
        seed=seed,
    )
    model.eval()
    last = float(np.mean(history[-20:])) if history else float("nan")
    return model, time.perf_counter() - start, last

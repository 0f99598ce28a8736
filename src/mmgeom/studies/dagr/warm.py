"""The DAGR study's warm-started regime: encoders pre-aligned by a cross-modal InfoNCE phase.

Trained from scratch, the paired pre-fusion embeddings of ``facmor`` drift by about 2 (unrelated unit
vectors), so a band calibrated on the first epoch sits near 2 and the anchor barely acts. A short
contrastive phase before classification brings the drift well below 2, the regime in which a band can
separate "agreeing" from "drifting" pairs (issue 17).
"""

from __future__ import annotations

import torch

from ...data import BatchSampler, MultiViewDataset
from ...geometry import drift
from ...losses import create_loss
from ...models import FusionClassifier


def mean_drift(model: FusionClassifier, data: MultiViewDataset) -> float:
    """Mean over modality pairs of ``E ||z^m - z^n||^2`` (normalised embeddings) on ``data``, eval mode."""
    was = model.training
    model.eval()
    with torch.no_grad():
        feats = model.encode(data.batch(torch.arange(len(data))))
    model.train(was)
    names = list(feats)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    return sum(drift(feats[a], feats[b]) for a, b in pairs) / len(pairs)


def warm_start(
    model: FusionClassifier,
    train: MultiViewDataset,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    lr: float = 1e-3,
    temperature: float = 0.1,
) -> float:
    """Train the encoders alone with all-pairs InfoNCE (AdamW) for ``epochs``; returns the drift after.

    Labels are not used: the phase only aligns the paired views, as contrastive pre-training would.
    """
    if epochs < 0:
        raise ValueError(f"epochs: expected an integer >= 0, got {epochs!r}")
    loss = create_loss("infonce", temperature=temperature, pairs="all")
    sampler = BatchSampler(len(train), batch_size, seed=50_000 + seed, drop_last=True)
    opt = torch.optim.AdamW(model.encoder.parameters(), lr=lr)
    model.train()
    for _ in range(epochs * max(1, len(train) // batch_size)):
        feats = model.encode(train.batch(sampler.next_batch()))
        opt.zero_grad(set_to_none=True)
        loss(feats).total.backward()
        opt.step()
    return mean_drift(model, train)

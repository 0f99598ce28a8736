"""Train a decoder on frozen ``(embedding, image)`` pairs of the image modality."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..train.lean import train_loop
from .base import ImageDecoder


def fit_decoder(
    decoder: ImageDecoder,
    embeddings: Tensor,
    images: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    every: int = 0,
    callback: Callable[[int], None] | None = None,
) -> list[float]:
    """Fit ``decoder`` to reconstruct ``images`` from ``embeddings`` (AdamW, warm-up + cosine schedule).

    The embeddings are the *image* modality's own embeddings from a trained, frozen space; at test time
    the decoder is fed other modalities' embeddings (:func:`~mmgeom.generation.decode`), which is the
    UnCLIP recipe without a prior (Ramesh et al., 2022, "Hierarchical Text-Conditional Image Generation
    with CLIP Latents"): in an aligned space the other modality's embedding is already where the image's
    would be.

    Args:
        decoder: a :class:`~mmgeom.generation.ImageDecoder` (its :meth:`loss` is minimised).
        embeddings: ``(N, embed_dim)`` frozen image embeddings (detached here).
        images: ``(N, C, H, W)`` or ``(N, C*H*W)`` targets in ``[0, 1]``, row i paired with embedding i.
        steps: number of updates.
        batch_size: rows per update (clipped to ``N``).
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up updates.
        grad_clip: max global gradient norm (``None``: no clipping).
        seed: seed of the batch order (the caller seeds weight init and the decoder's own noise).
        every: call ``callback(step)`` every ``every`` updates (``0``: never).
        callback: progress hook.

    Returns:
        The training loss of every update.

    Raises:
        ValueError: shapes that do not match the decoder, or different row counts.

    Example:
        >>> dec = ConvDecoder(8, (4, 4), channels=(8,))
        >>> losses = fit_decoder(dec, torch.randn(16, 8), torch.rand(16, 1, 4, 4), steps=5, batch_size=8)
        >>> len(losses)
        5
    """
    cond = decoder.check_condition(embeddings, "embeddings").detach()
    target = decoder.check_images(images, batch=cond.shape[0]).detach()
    if steps < 0:
        raise ValueError(f"steps: expected >= 0, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    decoder.train()

    def loss_at(idx: Tensor) -> Tensor:
        return decoder.loss(cond[idx], target[idx])

    return train_loop(
        decoder.parameters(),
        loss_at,
        num_rows=cond.shape[0],
        steps=steps,
        batch_size=min(batch_size, cond.shape[0]),
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        grad_clip=grad_clip,
        seed=seed,
        every=every,
        callback=callback,
    )


def mix_embeddings(*embeddings: Tensor, weights: list[float] | None = None) -> Tensor:
    """A weighted mean of several modalities' L2-normalised embeddings (rows paired), the condition for
    decoding "from a mix" of modalities; the decoder normalises the result again.

    Args:
        embeddings: two or more ``(B, D)`` tensors of the same shape.
        weights: non-negative weights, one per tensor (default equal); they need not sum to 1.

    Raises:
        ValueError: fewer than two inputs, different shapes, or bad weights.
    """
    if len(embeddings) < 2:
        raise ValueError(f"mix_embeddings: expected at least 2 embedding tensors, got {len(embeddings)}")
    shape = tuple(embeddings[0].shape)
    for i, e in enumerate(embeddings):
        if e.dim() != 2 or tuple(e.shape) != shape:
            raise ValueError(f"mix_embeddings: input {i} has shape {tuple(e.shape)}, expected {shape}")
    w = [1.0] * len(embeddings) if weights is None else [float(x) for x in weights]
    if len(w) != len(embeddings) or any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(
            f"weights: expected {len(embeddings)} non-negative values with a positive sum, got {weights}"
        )
    total = torch.zeros_like(embeddings[0], dtype=torch.float32)
    for wi, e in zip(w, embeddings, strict=True):
        total = total + wi * torch.nn.functional.normalize(e.float(), dim=1)
    return total / sum(w)

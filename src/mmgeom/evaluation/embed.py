"""Embed every row of a multi-view dataset once: the one embedding loop of mmgeom.

Everything that scores embeddings (retrieval evaluation, nearest-centroid and linear-probe accuracy,
offline evaluation of a run, generation, the studies) gets them from :func:`embed`: eval mode (dropout
off, normalisation layers frozen), no autograd graph, fixed-size batches of rows in dataset order, float32
results on the CPU, and the module's previous train/eval mode restored afterwards, so that an evaluation
in the middle of training leaves the model exactly as it found it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..data import MultiViewDataset

__all__ = ["embed", "embed_views"]

#: Turns one batch (view -> ``(B, D_v)`` rows) into named embeddings (name -> ``(B, D)``).
EncodeFn = Callable[[Mapping[str, Tensor]], Mapping[str, Tensor]]


@torch.no_grad()
def embed(
    module: nn.Module,
    data: MultiViewDataset,
    *,
    encode: EncodeFn | None = None,
    keys: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 4096,
) -> dict[str, Tensor]:
    """Embed every row of ``data`` in eval mode, without gradients, ``batch_size`` rows at a time.

    Args:
        module: the model; put in eval mode for the loop, its previous mode restored afterwards.
        data: the rows to embed.
        encode: batch -> named embeddings (default: ``module`` itself, i.e. its ``forward``).
        keys: which outputs to keep, in this order (default: ``data.view_names``).
        device: where each batch goes before ``encode`` (``None``: left where the dataset holds it).
        batch_size: rows per forward pass.

    Returns:
        Name -> ``(N, D)`` float32 CPU tensor, rows in dataset order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    run = encode if encode is not None else module
    names = list(keys) if keys is not None else list(data.view_names)
    was_training = module.training
    module.eval()
    try:
        parts: dict[str, list[Tensor]] = {name: [] for name in names}
        for start in range(0, len(data), batch_size):
            batch = data.batch(torch.arange(start, min(start + batch_size, len(data))))
            if device is not None:
                batch = {v: x.to(device) for v, x in batch.items()}
            out = run(batch)
            for name in names:
                parts[name].append(out[name].float().cpu())
        return {name: torch.cat(p) for name, p in parts.items()}
    finally:
        module.train(was_training)


def embed_views(
    encoder: nn.Module, data: MultiViewDataset, device: str | torch.device = "cpu", chunk: int = 4096
) -> dict[str, Tensor]:
    """Encode every view of ``data`` with a multi-view encoder (see :func:`embed`).

    Args:
        encoder: maps a batch ``view -> (B, D_v)`` to ``view -> (B, D)`` (e.g.
            :class:`~mmgeom.models.MultiViewEncoder`).
        data: the rows to embed.
        device: where the encoder runs.
        chunk: rows per forward pass.

    Returns:
        View -> ``(N, D)`` float32 CPU tensor.
    """
    return embed(encoder, data, device=device, batch_size=chunk)

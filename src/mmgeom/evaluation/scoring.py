"""Re-scoring a trained encoder's retrieval with L2Dir magnitude scoring ``<ẑ_q, ‖h_d‖ ẑ_d>``.

A plain encoder has no MagnitudeHead, so each gallery item's magnitude is taken as the L2 norm of its raw
embedding; queries stay normalised (their scale never changes a ranking). ``mmgeom train/demo --score
magnitude`` reports its final retrieval this way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..data import MultiViewDataset
from .cross_view import cross_view_retrieval
from .embed import embed_views


def magnitude_scored_retrieval(
    embeddings: Mapping[str, Tensor],
    pairs: Sequence[tuple[str, str]],
    directions: str = "both",
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Cross-view retrieval where each gallery item keeps the L2 norm of its embedding as its magnitude.

    Args:
        embeddings: view -> ``(N, D)`` raw (unnormalised) embeddings, rows aligned across views.
        pairs: (query view, gallery view) pairs.
        directions: ``"both"`` or ``"forward"``, as in :func:`~mmgeom.train.cross_view_retrieval`.
        ks: cut-offs of the hit@K metrics.

    Returns:
        The ``retrieval/...`` and ``chance/...`` metrics of :func:`~mmgeom.train.cross_view_retrieval`.
    """
    magnitudes = {v: z.norm(dim=1) for v, z in embeddings.items()}
    return cross_view_retrieval(embeddings, pairs, directions, ks, gallery_magnitudes=magnitudes)


def magnitude_rescored_event(
    event: Mapping[str, Any],
    encoder: nn.Module,
    data: MultiViewDataset,
    device: str | torch.device,
    *,
    pairs: Sequence[tuple[str, str]],
    directions: str = "both",
    ks: Sequence[int] = (1, 5, 10),
    step: int,
) -> dict[str, Any]:
    """An evaluation event with its retrieval re-scored by magnitude scoring.

    ``data`` is embedded again (eval mode, no gradient) and scored by :func:`magnitude_scored_retrieval`;
    every ``retrieval/`` key of ``event`` is replaced, the other keys (diagnostics, classification) kept.

    Args:
        event: the evaluation event to re-score (e.g. a run's final evaluation).
        encoder: the trained encoder (unwrapped from DDP).
        data: the split to embed.
        device: where to run the encoder.
        pairs: (query view, gallery view) pairs.
        directions: ``"both"`` or ``"forward"``.
        ks: cut-offs of the hit@K metrics.
        step: the training step recorded in the new event.

    Returns:
        A new event dict; ``event`` is not modified.
    """
    embeddings = embed_views(encoder, data, device)
    out = {k: v for k, v in event.items() if not str(k).startswith("retrieval/")}
    out["step"] = step
    out.update(magnitude_scored_retrieval(embeddings, pairs, directions, ks))
    return out

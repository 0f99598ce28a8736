"""Semantic margin: how much closer each embedding is to its own class mean than to any other."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_embeddings, check_labels
from ..functional import normalize
from ..functional._common import EPS


@torch.no_grad()
def semantic_margins(z: Tensor, labels: Tensor) -> Tensor:
    """``(B,)`` margins ``cos(z_i, mu_{y_i}) - max_{c != y_i} cos(z_i, mu_c)``, in ``[-2, 2]``.

    ``mu_c`` is the mean of the L2-normalised rows of class ``c`` in this batch (row ``i`` included in its
    own class mean). It is not re-normalised: a cosine does not depend on the length of ``mu_c``. A class
    whose mean is the zero vector has cosine 0 with everything.

    Args:
        z: ``(B, D)`` raw embeddings.
        labels: ``(B,)`` integer class ids (any values); at least two classes must be present.
    """
    check_embeddings(z, "z", normalised=True)
    if labels is None:
        raise ValueError("labels: the semantic margin needs (B,) class ids, got None")
    check_labels(labels, z.shape[0])
    classes, inverse = torch.unique(labels.to(z.device), return_inverse=True)
    if classes.numel() < 2:
        raise ValueError(f"labels: the semantic margin needs at least 2 classes, got {classes.numel()}")
    zn = normalize(z)
    onehot = torch.zeros(zn.shape[0], classes.numel(), dtype=zn.dtype, device=zn.device)
    onehot[torch.arange(zn.shape[0], device=zn.device), inverse] = 1.0
    means = (onehot.T @ zn) / onehot.sum(dim=0)[:, None]
    cos = (zn @ means.T) / means.norm(dim=1).clamp_min(EPS)[None, :]
    own = cos.gather(1, inverse[:, None])[:, 0]
    rival = cos.masked_fill(onehot.bool(), float("-inf")).amax(dim=1)
    return own - rival


@torch.no_grad()
def semantic_margin(z: Tensor, labels: Tensor) -> float:
    """Semantic margin ``mean_i [cos(z_i, mu_{y_i}) - max_{c != y_i} cos(z_i, mu_c)]`` of one modality.

    Positive when every embedding is closer (in angle) to its own class mean than to any other class mean.

    A nearest-class-mean reading of class separation, computed per modality; classes are those present in
    the batch, so small batches with few rows per class give noisy values.

    Args:
        z: ``(B, D)`` raw embeddings.
        labels: ``(B,)`` integer class ids; at least two classes must be present.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
        >>> semantic_margin(z, torch.tensor([0, 0, 1])) > 0
        True
    """
    return float(semantic_margins(z, labels).mean())

"""Contrastive objectives over paired rows: InfoNCE (CLIP) and SigLIP."""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor

from .._validation import check_labels, check_pair, check_positive, validation_enabled
from ._common import normalize


def _check_temperature(temperature: float | Tensor) -> None:
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(f"temperature: expected a scalar, got shape {tuple(temperature.shape)}")
        if validation_enabled() and not bool(temperature.detach() > 0):
            raise ValueError(f"temperature: expected a value > 0, got {float(temperature):.4g}")
    else:
        check_positive(temperature, "temperature")


def positive_targets(labels: Tensor, dtype: torch.dtype) -> Tensor:
    """Row-stochastic target matrix: row i spreads its mass evenly over the rows sharing its label."""
    same = (labels[:, None] == labels[None, :]).to(dtype)
    return same / same.sum(dim=1, keepdim=True)


def info_nce_from_logits(logits: Tensor, labels: Tensor | None = None) -> Tensor:
    """Symmetric cross-entropy ``(CE(S, T) + CE(S^T, T)) / 2`` of a square logit matrix.

    ``T`` is the identity, or the same-label target distribution when ``labels`` are given.
    """
    if labels is None:
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (nnf.cross_entropy(logits, target) + nnf.cross_entropy(logits.T, target))
    soft = positive_targets(labels, logits.dtype)
    row = -(soft * logits.log_softmax(dim=1)).sum(dim=1).mean()
    col = -(soft * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return 0.5 * (row + col)


def info_nce(
    za: Tensor,
    zb: Tensor,
    temperature: float | Tensor = 0.07,
    labels: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE / CLIP loss between paired rows.

    ``S = z_a z_b^T / tau`` on L2-normalised rows; ``L = (CE(S, I) + CE(S^T, I)) / 2``. With ``labels``,
    every row sharing a label is a positive and the target mass is spread evenly over them
    (supervised / multi-positive variant).

    Reference: Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018;
    Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021.

    Args:
        za: ``(B, D)`` raw embeddings of the first modality (B >= 2).
        zb: ``(B, D)`` raw embeddings of the second modality, row i paired with ``za[i]``.
        temperature: ``tau > 0``; a float or a scalar tensor (learnable temperatures).
        labels: optional ``(B,)`` class ids for multi-positive targets.

    Returns:
        Scalar loss in the accumulation dtype (float32, or float64 for float64 inputs).

    Example:
        >>> za, zb = torch.randn(8, 16), torch.randn(8, 16)
        >>> info_nce(za, zb, temperature=0.1).shape
        torch.Size([])
    """
    check_pair(za, zb, min_rows=2)
    _check_temperature(temperature)
    check_labels(labels, za.shape[0])
    return info_nce_unit(normalize(za), normalize(zb), temperature, labels)


def info_nce_unit(a: Tensor, b: Tensor, temperature: float | Tensor, labels: Tensor | None = None) -> Tensor:
    """:func:`info_nce` of rows that are already unit vectors, without any check (the loss modules
    validate a batch and normalise each modality once, then call this per pair)."""
    return info_nce_from_logits((a @ b.T) / temperature, labels)


def siglip_loss(
    za: Tensor,
    zb: Tensor,
    logit_scale: float | Tensor,
    logit_bias: float | Tensor,
) -> Tensor:
    """Pairwise sigmoid loss of SigLIP.

    ``L = -(1/B) sum_ij log sigmoid(y_ij (t z_a,i . z_b,j + b))`` with ``t = exp(logit_scale)``,
    ``y = +1`` on the diagonal and ``-1`` elsewhere. The sum over all ``B^2`` pairs is divided by ``B``,
    as in the paper.

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023.

    Args:
        za: ``(B, D)`` raw embeddings.
        zb: ``(B, D)`` raw embeddings paired with ``za``.
        logit_scale: ``t'``; the logit scale is ``exp(t')`` (the paper initialises ``t' = ln 10``).
        logit_bias: ``b`` (the paper initialises ``b = -10``).

    Example:
        >>> siglip_loss(torch.randn(4, 8), torch.randn(4, 8), 2.3026, -10.0).shape
        torch.Size([])
    """
    check_pair(za, zb, min_rows=1)
    return siglip_unit(normalize(za), normalize(zb), logit_scale, logit_bias)


def siglip_unit(a: Tensor, b: Tensor, logit_scale: float | Tensor, logit_bias: float | Tensor) -> Tensor:
    """:func:`siglip_loss` of rows that are already unit vectors, without any check."""
    scale = torch.as_tensor(logit_scale, dtype=a.dtype, device=a.device).exp()
    bias = torch.as_tensor(logit_bias, dtype=a.dtype, device=a.device)
    logits = scale * (a @ b.T) + bias
    n = logits.shape[0]
    sign = 2.0 * torch.eye(n, dtype=a.dtype, device=a.device) - 1.0
    return -nnf.logsigmoid(sign * logits).sum() / n

"""UniAlign's alignment–uniformity conflict measures from the multimodal InfoNCE gradient on an anchor.

With anchor modality ``a`` and the other modalities ``n != a``, the gradient of the summed InfoNCE losses
``sum_{n != a} InfoNCE(z^a, z^n)`` with respect to the anchor row ``z_i^a`` is ``(Phi_i - V_i) / tau`` with

* alignment force ``V_i = sum_{n != a} z_i^n`` (pulls the anchor towards its positives),
* uniformity force ``Phi_i = sum_{n != a} sum_j p_ij^n z_j^n``, ``p_ij^n = softmax_j(z_i^a . z_j^n / tau)``
  (pushes it away from everything, positives included).

``zeta_i = <Phi_i, V_i> / ||V_i||^2`` is the uniformity force's component along the alignment force
(large when the two forces cancel), and ``chi_i = 1 - ||sum_n z_i^n|| / sum_n ||z_i^n||`` measures how
much the positives themselves disagree in direction (0 when all non-anchor modalities agree, always 0 for
``M = 2``).

Reference: Yin et al., "Towards Uniformity and Alignment for Multimodal Representation Learning",
arXiv 2602.09507.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_pair, check_positive
from ._common import EPS, normalize

#: Elements of one ``(chunk, B)`` block of softmax weights (peak memory of the chunked loop).
BLOCK_ELEMENTS = 1 << 22


def _check(anchor: Tensor, others: tuple[Tensor, ...], temperature: float, what: str) -> None:
    if len(others) < 1:
        raise ValueError(f"{what}: expected at least one non-anchor modality, got none")
    for k, z in enumerate(others):
        check_pair(anchor, z, ("anchor", f"other{k}"))
    check_positive(temperature, "temperature")


def alignment_force(*others: Tensor) -> Tensor:
    """``(B, D)`` alignment force ``V_i = sum_{n != a} z_i^n`` (sum of the anchor's normalised positives)."""
    if len(others) < 1:
        raise ValueError("alignment_force: expected at least one non-anchor modality, got none")
    for k, z in enumerate(others[1:], start=1):
        check_pair(others[0], z, ("other0", f"other{k}"))
    total = normalize(others[0])
    for z in others[1:]:
        total = total + normalize(z)
    return total


def uniformity_force(anchor: Tensor, *others: Tensor, temperature: float) -> Tensor:
    """``(B, D)`` uniformity force ``Phi_i = sum_{n != a} sum_j softmax_j(z_i^a . z_j^n / tau) z_j^n``.

    Rows are processed in chunks so that peak memory is ``O(chunk B)`` rather than ``O(B^2)``.
    """
    _check(anchor, others, temperature, "uniformity_force")
    a = normalize(anchor)
    zs = [normalize(z) for z in others]
    chunk = max(1, BLOCK_ELEMENTS // a.shape[0])
    blocks = []
    for start in range(0, a.shape[0], chunk):
        rows = a[start : start + chunk]
        phi = rows.new_zeros(rows.shape)
        for z in zs:
            phi = phi + ((rows @ z.T) / temperature).softmax(dim=1) @ z
        blocks.append(phi)
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)


def conflict_scores(
    anchor: Tensor, *others: Tensor, temperature: float, eps: float = EPS
) -> tuple[Tensor, Tensor]:
    """Per-row conflict measures ``(zeta, chi)``, each ``(B,)``, of the InfoNCE gradient on the anchor.

    ``zeta_i = <Phi_i, V_i> / ||V_i||^2`` and ``chi_i = 1 - ||V_i|| / sum_{n != a} ||z_i^n||`` on
    L2-normalised rows (so the denominator of ``chi`` is ``M - 1``). Differentiable.

    Reference: Yin et al., arXiv 2602.09507.

    Args:
        anchor: ``(B, D)`` raw embeddings of the anchor modality.
        *others: the ``M - 1 >= 1`` other modalities, ``(B, D)`` each, rows paired with the anchor.
        temperature: InfoNCE temperature ``tau > 0``.
        eps: guard under ``||V_i||^2``.

    Example:
        >>> a, b = torch.randn(4, 8), torch.randn(4, 8)
        >>> zeta, chi = conflict_scores(a, b, b, temperature=0.1)
        >>> chi.abs().max() < 1e-6  # identical non-anchor modalities never disagree
        tensor(True)
    """
    phi = uniformity_force(anchor, *others, temperature=temperature)
    v = alignment_force(*others)
    v_sq = v.pow(2).sum(dim=1)
    zeta = (phi * v).sum(dim=1) / v_sq.clamp_min(eps)
    chi = 1.0 - v.norm(dim=1) / len(others)
    return zeta, chi

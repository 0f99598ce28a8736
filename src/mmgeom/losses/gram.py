"""GRAM: contrastive learning on the volume spanned by a k-modality tuple."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor

from .. import functional as F
from .._validation import check_anchor, check_positive
from .base import LossOutput, MultimodalLoss, detach_terms
from .registry import register_loss
from .temperature import Temperature


@register_loss("gram")
class GRAMLoss(MultimodalLoss):
    """Volume-based contrastive loss: logits ``-V[i, j] / tau`` with ``V[i, j]`` the Gram volume of
    (anchor row i, every other modality's row j); cross-entropy in both directions with label smoothing.

    A small volume means the k modalities of a tuple nearly coincide, so the true tuples (the diagonal)
    should have the smallest volume in their row and column.

    Reference: Cicchetti et al., "Gramian Multimodal Representation Learning and Alignment", ICLR 2025.

    Args:
        temperature: initial ``tau`` (learnable by default, init 0.07).
        learnable_temperature: learn ``ln(1/tau)``, clamped to ``[0, ln 100]``.
        label_smoothing: in ``[0, 1)`` (0.1 in the paper).
        anchor: anchor modality (default: the first modality of the batch).

    Example:
        >>> batch = {"t": torch.randn(8, 5), "v": torch.randn(8, 5), "a": torch.randn(8, 5)}
        >>> out = GRAMLoss(anchor="t")(batch)
        >>> sorted(out.terms)
        ['temperature', 'volume_neg', 'volume_pos']
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        label_smoothing: float = 0.1,
        anchor: str | None = None,
    ) -> None:
        super().__init__()
        self.temperature = Temperature(temperature, learnable_temperature)
        ls = check_positive(label_smoothing, "label_smoothing", allow_zero=True)
        if ls >= 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = ls
        self.anchor = anchor

    def compute(self, mods: dict[str, Tensor], labels: Tensor | None = None, **kwargs: Any) -> LossOutput:
        if labels is not None:
            raise ValueError("gram: labels are not supported (targets are the paired diagonal)")
        anchor = check_anchor(self.anchor, list(mods))
        others = [F.normalize(z) for m, z in mods.items() if m != anchor]
        volume = F.gram_volume_matrix_unit(F.normalize(mods[anchor]), *others)
        tau = self.temperature()
        # One (B, B) product by the scalar -1/tau: ``-volume / tau`` costs a negation and a division whose
        # backward (for the tensor tau) takes four (B, B) operations instead of two. The reciprocal is
        # taken in the volumes' dtype (a float32 tau must not round float64 logits to float32 precision).
        logits = volume * (-1.0 / tau.to(volume.dtype))
        target = torch.arange(logits.shape[0], device=logits.device)
        ce = nnf.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        ce_t = nnf.cross_entropy(logits.T, target, label_smoothing=self.label_smoothing)
        total = 0.5 * (ce + ce_t)
        n = volume.shape[0]
        # Sum minus trace rather than ``volume[~eye]``: boolean indexing has a data-dependent shape
        # (a device synchronisation); these are detached logging terms.
        with torch.no_grad():
            trace = volume.diagonal().sum()
            terms = {
                "volume_pos": trace / n,
                "volume_neg": (volume.sum() - trace) / (n * (n - 1)),
                "temperature": tau,
            }
        return LossOutput(total, detach_terms(terms))

"""InfoNCE / CLIP loss over one or several modality pairs."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import functional as F
from .._validation import check_anchor
from .base import LossOutput, MultimodalLoss, detach_terms
from .pairs import PairSpec, resolve_pairs, validate_pair_spec, weighted_pair_mean
from .registry import register_loss
from .temperature import Temperature


@register_loss("infonce")
class InfoNCELoss(MultimodalLoss):
    """Symmetric InfoNCE (CLIP) averaged over modality pairs.

    Modes: ``pairs="all"`` (mean over the M(M-1)/2 pairs), ``anchor=NAME`` (the anchor against every other
    modality, ImageBind style), or explicit weighted pairs ``[("image", "text", 1.0), ...]`` (weighted
    mean). ``labels`` turn on multi-positive targets (same label = positive).

    Reference: Radford et al., ICML 2021; Girdhar et al., "ImageBind", CVPR 2023 (anchor mode).

    Args:
        temperature: initial ``tau > 0``.
        learnable_temperature: learn ``ln(1/tau)``, clamped to ``[0, ln 100]``.
        pairs: ``"all"``, ``"anchor"`` or explicit pairs.
        anchor: anchor modality; giving one selects ``pairs="anchor"`` unless pairs are explicit.

    Example:
        >>> loss = InfoNCELoss(temperature=0.1, anchor="image")
        >>> out = loss({"image": torch.randn(8, 4), "text": torch.randn(8, 4), "audio": torch.randn(8, 4)})
        >>> sorted(out.terms)
        ['pair/image-audio', 'pair/image-text', 'temperature']
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        pairs: PairSpec = "all",
        anchor: str | None = None,
    ) -> None:
        super().__init__()
        validate_pair_spec(pairs)
        if anchor is not None and pairs == "all":
            pairs = "anchor"
        self.pairs = pairs
        self.anchor = anchor
        self.temperature = Temperature(temperature, learnable_temperature)

    def compute(self, mods: dict[str, Tensor], labels: Tensor | None = None, **kwargs: Any) -> LossOutput:
        names = list(mods)
        if self.anchor is not None:
            check_anchor(self.anchor, names)
        tau = self.temperature()
        triples = resolve_pairs(self.pairs, names, self.anchor)
        # Each modality normalised once (not once per pair); the batch is already validated.
        unit = {m: F.normalize(mods[m]) for m in {name for t in triples for name in t[:2]}}
        total, terms = weighted_pair_mean(
            triples, lambda m, n: F.info_nce_unit(unit[m], unit[n], tau, labels)
        )
        terms["temperature"] = tau
        return LossOutput(total, detach_terms(terms))

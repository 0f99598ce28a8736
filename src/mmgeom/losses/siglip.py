"""SigLIP pairwise sigmoid loss."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as F
from .base import LossOutput, MultimodalLoss, detach_terms
from .pairs import PairSpec, resolve_pairs, validate_pair_spec, weighted_pair_mean
from .registry import register_loss


@register_loss("siglip")
class SigLIPLoss(MultimodalLoss):
    """Sigmoid loss with learnable logit scale ``t = exp(t')`` and bias ``b``, averaged over pairs.

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023.

    Args:
        init_logit_scale: ``t'`` at initialisation (the paper: ``ln 10``).
        init_logit_bias: ``b`` at initialisation (the paper: ``-10``).
        learnable: learn ``t'`` and ``b``.
        pairs: ``"all"``, ``"anchor"`` or explicit pairs (see :class:`InfoNCELoss`).
        anchor: anchor modality for ``pairs="anchor"``.

    Example:
        >>> out = SigLIPLoss()({"a": torch.randn(4, 8), "b": torch.randn(4, 8)})
        >>> out.total.shape
        torch.Size([])
    """

    min_rows = 1

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        learnable: bool = True,
        pairs: PairSpec = "all",
        anchor: str | None = None,
    ) -> None:
        super().__init__()
        validate_pair_spec(pairs)
        for name, v in (("init_logit_scale", init_logit_scale), ("init_logit_bias", init_logit_bias)):
            if not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite value, got {v!r}")
        if anchor is not None and pairs == "all":
            pairs = "anchor"
        self.pairs, self.anchor = pairs, anchor
        scale, bias = torch.tensor(float(init_logit_scale)), torch.tensor(float(init_logit_bias))
        if learnable:
            self.logit_scale = nn.Parameter(scale)
            self.logit_bias = nn.Parameter(bias)
        else:
            self.register_buffer("logit_scale", scale)
            self.register_buffer("logit_bias", bias)

    def compute(self, mods: dict[str, Tensor], labels: Tensor | None = None, **kwargs: Any) -> LossOutput:
        if labels is not None:
            raise ValueError("siglip: labels are not supported (targets are the paired diagonal)")
        triples = resolve_pairs(self.pairs, list(mods), self.anchor)
        unit = {m: F.normalize(mods[m]) for m in {name for t in triples for name in t[:2]}}
        total, terms = weighted_pair_mean(
            triples, lambda m, n: F.siglip_unit(unit[m], unit[n], self.logit_scale, self.logit_bias)
        )
        terms["logit_scale"] = self.logit_scale.exp()
        terms["logit_bias"] = self.logit_bias
        return LossOutput(total, detach_terms(terms))

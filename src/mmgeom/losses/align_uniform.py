"""Wang–Isola alignment + uniformity loss, for any number of modalities."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import functional as F
from .._validation import check_positive
from .base import LossOutput, MultimodalLoss, detach_terms
from .pairs import PairSpec, resolve_pairs, validate_pair_spec, weighted_pair_mean
from .registry import register_loss


@register_loss("align_uniform")
class AlignUniformLoss(MultimodalLoss):
    """``L = w_a * mean_pairs align_alpha(m, n) + w_u * mean_m uniformity_t(Z^m)``.

    With two modalities and unit weights this is the paper's ``align + (unif(x) + unif(y)) / 2``.

    Reference: Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere", ICML 2020.

    Args:
        align_weight: ``w_a >= 0``.
        uniform_weight: ``w_u >= 0``.
        alpha: alignment exponent ``> 0``.
        t: uniformity scale ``> 0``.
        pairs: which modality pairs are aligned (``"all"``, ``"anchor"`` or explicit pairs).
        anchor: anchor for ``pairs="anchor"``.

    Example:
        >>> out = AlignUniformLoss()({"a": torch.randn(6, 3), "b": torch.randn(6, 3)})
        >>> sorted(out.terms)
        ['align', 'align/a-b', 'uniform/a', 'uniform/b']
    """

    def __init__(
        self,
        align_weight: float = 1.0,
        uniform_weight: float = 1.0,
        alpha: float = 2.0,
        t: float = 2.0,
        pairs: PairSpec = "all",
        anchor: str | None = None,
    ) -> None:
        super().__init__()
        self.align_weight = check_positive(align_weight, "align_weight", allow_zero=True)
        self.uniform_weight = check_positive(uniform_weight, "uniform_weight", allow_zero=True)
        self.alpha = check_positive(alpha, "alpha")
        self.t = check_positive(t, "t")
        validate_pair_spec(pairs)
        if anchor is not None and pairs == "all":
            pairs = "anchor"
        self.pairs, self.anchor = pairs, anchor

    def compute(self, mods: dict[str, Tensor], labels: Tensor | None = None, **kwargs: Any) -> LossOutput:
        triples = resolve_pairs(self.pairs, list(mods), self.anchor)
        unit = {m: F.normalize(z) for m, z in mods.items()}  # once per modality; the batch is validated
        align, terms = weighted_pair_mean(
            triples, lambda m, n: F.alignment_unit(unit[m], unit[n], self.alpha), prefix="align"
        )
        uniform = {f"uniform/{m}": F.gaussian_potential_unit(z, self.t) for m, z in unit.items()}
        uniform_mean = sum(uniform.values()) / len(uniform)
        terms.update(uniform)
        terms["align"] = align
        total = self.align_weight * align + self.uniform_weight * uniform_mean
        return LossOutput(total, detach_terms(terms))

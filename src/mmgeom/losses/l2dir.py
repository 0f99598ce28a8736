"""L2Dir: InfoNCE on directions plus L2-norm alignment of positive pairs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .. import functional as F
from .._validation import check_choice, check_positive, validation_enabled
from .base import LossOutput, MultimodalLoss, detach_terms
from .pairs import PairSpec, resolve_pairs, validate_pair_spec
from .registry import register_loss
from .temperature import Temperature


def _check_magnitudes(magnitudes: Mapping[str, Tensor], mods: Mapping[str, Tensor]) -> None:
    if not isinstance(magnitudes, Mapping):
        raise ValueError(
            f"magnitudes: expected a dict modality -> (B,) tensor, got {type(magnitudes).__name__}"
        )
    for name, r in magnitudes.items():
        if name not in mods:
            raise ValueError(f"magnitudes: unknown modality {name!r}; the batch has {list(mods)}")
        rows = mods[name].shape[0]
        if not isinstance(r, Tensor) or tuple(r.shape) != (rows,):
            got = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ValueError(f"magnitudes[{name!r}]: expected shape ({rows},), got {got}")
        if validation_enabled() and not bool((torch.isfinite(r) & (r > 0)).all()):
            raise ValueError(f"magnitudes[{name!r}]: expected finite values > 0 (softplus output)")


@register_loss("l2dir")
class L2DirLoss(MultimodalLoss):
    """``L = InfoNCE(ẑ_q, ẑ_p; tau) + lambda_n * mean_i ||u_i - v_i|| / (||u_i|| + ||v_i||)``.

    The inputs are the raw outputs of the projection heads; their directions ``ẑ`` are trained by InfoNCE.
    Each example's magnitude ``r`` comes from ``magnitudes`` (the :class:`~mmgeom.models.MagnitudeHead`
    output, reconstructed from frozen backbone features) or, when absent, from the L2 norm of the raw
    input. The full vectors ``u = r_q ẑ_q`` and ``v = r_p ẑ_p`` of row i's positive pair are pulled
    together by the TN distance, which is zero only for equal norms *and* directions; gradients flow into
    the magnitudes.

    ``norm_term="logcos"`` weights the TN distance by ``-log cos`` (the TNCSE form). ``variant="release"``
    reproduces the authors' public code so that the difference can be measured: the magnitudes are
    detached (no gradient) and the norm term pairs row ``2k`` with row ``2k + 1`` of the stacked
    ``[u; v]`` instead of each query with its own positive (mostly two different examples of the same
    modality). With more than two modalities the loss averages over modality pairs like
    :class:`InfoNCELoss`.

    Reference: Zong et al., "L2-norm alignment and Directional consistency", ACL 2026.

    Args:
        temperature: InfoNCE ``tau``.
        learnable_temperature: learn ``ln(1/tau)`` clamped to ``[0, ln 100]``.
        lambda_n: weight of the norm-alignment term.
        norm_term: ``"tn"`` or ``"logcos"``.
        variant: ``"paper"`` (as described) or ``"release"`` (the public code's behaviour).
        pairs: ``"all"``, ``"anchor"`` or explicit pairs.
        anchor: anchor for ``pairs="anchor"``.

    Example:
        >>> loss = L2DirLoss(lambda_n=0.5)
        >>> q, p = torch.randn(8, 16), torch.randn(8, 16)
        >>> out = loss({"query": q, "doc": p}, magnitudes={"query": q.norm(dim=1), "doc": p.norm(dim=1)})
        >>> sorted(out.terms)
        ['infonce/query-doc', 'magnitude/doc', 'magnitude/query', 'norm/query-doc', 'temperature']
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        lambda_n: float = 1.0,
        norm_term: str = "tn",
        variant: str = "paper",
        pairs: PairSpec = "all",
        anchor: str | None = None,
    ) -> None:
        super().__init__()
        self.temperature = Temperature(temperature, learnable_temperature)
        self.lambda_n = check_positive(lambda_n, "lambda_n", allow_zero=True)
        self.norm_term = check_choice(norm_term, "norm_term", ["tn", "logcos"])
        self.variant = check_choice(variant, "variant", ["paper", "release"])
        validate_pair_spec(pairs)
        if anchor is not None and pairs == "all":
            pairs = "anchor"
        self.pairs, self.anchor = pairs, anchor

    def _norm_distance(self, u: Tensor, v: Tensor) -> Tensor:
        if self.variant == "release":
            stacked = torch.cat([u, v], dim=0)
            u, v = stacked[0::2], stacked[1::2]
        if self.norm_term == "tn":
            return F.tn_distance(u, v).mean()
        return F.logcos_distance(u, v).mean()

    def compute(
        self,
        mods: dict[str, Tensor],
        labels: Tensor | None = None,
        magnitudes: Mapping[str, Tensor] | None = None,
        **kwargs: Any,
    ) -> LossOutput:
        given = dict(magnitudes or {})
        if given:
            _check_magnitudes(given, mods)
        full: dict[str, Tensor] = {}
        radius: dict[str, Tensor] = {}
        for m, z in mods.items():
            direction = F.normalize(z)
            r = given[m] if m in given else z.to(direction.dtype).norm(dim=1)
            # The public code never back-propagates into the magnitudes.
            radius[m] = r.detach() if self.variant == "release" else r
            full[m] = direction * radius[m].to(direction.dtype).unsqueeze(1)

        tau = self.temperature()
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        triples = resolve_pairs(self.pairs, list(mods), self.anchor)
        for m, n, w in triples:
            nce = F.info_nce(mods[m], mods[n], tau, labels)
            norm = self._norm_distance(full[m], full[n])
            terms[f"infonce/{m}-{n}"] = nce
            terms[f"norm/{m}-{n}"] = norm
            value = w * (nce + self.lambda_n * norm)
            total = value if total is None else total + value
        assert total is not None
        for m, r in radius.items():
            terms[f"magnitude/{m}"] = r.mean()
        terms["temperature"] = tau
        return LossOutput(total / sum(w for _, _, w in triples), detach_terms(terms))

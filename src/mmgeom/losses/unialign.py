"""UniAlign: intra-modal uniformity + anchor (or centroid) alignment, optional centroid/volume terms."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import functional as F
from .._validation import check_anchor, check_choice, check_positive, validation_enabled
from .base import LossOutput, MultimodalLoss, detach_terms
from .registry import register_loss

#: ``lambda_vol`` of each preset.
PRESETS = {"retrieval": 1.0, "generation": 0.1}
#: How the per-modality uniformities combine.
REDUCTIONS = ("mean", "sum")
#: How the alignment weight is set: ``lambda_align`` as given, or ``lambda_align`` times the Hölder weight.
ALIGN_WEIGHTS = ("fixed", "holder")


@register_loss("unialign")
class UniAlignLoss(MultimodalLoss):
    """UniAlign for M >= 2 modalities; there is no InfoNCE term.

    ``L = lambda_uni * R_m U_t(Z^m) + w_align * A + lambda_centroid * U_tc(C)
    + lambda_det * mean_i det G_i`` with ``lambda_centroid = lambda_det = lambda_vol`` unless given, i.e.
    ``lambda_vol * (U_tc(C) + mean_i det G_i)`` by default, and

    * ``R_m`` the mean over the modalities (``uniformity_reduction="mean"``, the default: the Hölder
      argument weights each modality's own term by ``1/M``, so the balance between uniformity and
      alignment does not drift with ``M``) or their sum (``"sum"``, the reading used before 0.x: the
      uniformity pull grows like ``M`` against a mean alignment);
    * ``w_align = lambda_align`` (``align_weight="fixed"``), or ``lambda_align * kappa_M / (2 M s^2)``
      times ``M`` under ``"sum"`` (``align_weight="holder"``), the weight that makes the loss an upper
      bound of the Hölder divergence of the modalities' KDEs of bandwidth ``s`` up to a constant
      (:func:`mmgeom.functional.holder_alignment_weight`; derivation in docs/losses.md). ``s`` is
      ``holder_bandwidth``, or by default tied to ``t`` by ``t = (M - 1) / (4 s^2)``
      (:func:`mmgeom.functional.holder_tied_bandwidth`), where the pairwise uniformity bounds the own term;

    * ``U_t`` the Wang–Isola uniformity of each modality (uniformity *inside* a modality, so the
      cross-modal alignment and uniformity forces no longer act on the same pairs);
    * ``A = 1/(B(M-1)) sum_i sum_{n != a} ||z_i^a - z_i^n||^2`` (``alignment="anchor"``), or the
      anchor-free ``1/(BM) sum_i sum_m ||z_i^m - c̄_i||^2`` (``alignment="centroid"``), ``c̄_i`` the
      unnormalised tuple mean;
    * ``C`` the centroids ``normalize(mean_m z_i^m)`` and ``G_i`` the M x M Gram matrix of row i's own
      tuple (positives only; its determinant is 0 when the tuple is collinear).

    Missing modalities (``mask={"audio": present_bool}``): a row missing a modality drops out of every term
    that needs it — that modality's uniformity, the anchor-alignment pairs involving it (averages run over
    the remaining (row, modality) pairs), the centroid is the mean of the present modalities, and the
    volume term uses only complete rows. A term with too few rows (< 2 for uniformity, 0 otherwise)
    contributes 0. Each term is computed over all rows with weights, ``-inf`` logits for absent pairs and
    tensor counts — the value of the selected rows without selecting them — so a masked call reads nothing
    on the host (no device synchronisation with ``check_values=False``) and absent rows get zero gradient.

    The paper does not publish its lambda and tau values; the defaults here are t = 2 (Wang–Isola) and unit
    weights, with ``preset="retrieval"`` (lambda_vol = 1) or ``"generation"`` (lambda_vol = 0.1).

    Reference: Yin et al., "Towards Uniformity and Alignment for Multimodal Representation Learning",
    arXiv 2602.09507.

    Args:
        anchor: anchor modality (default: the first modality of the batch).
        lambda_uni: weight of the per-modality uniformity (mean or sum).
        lambda_align: weight of the alignment term (a multiplier of the Hölder weight under
            ``align_weight="holder"``).
        lambda_vol: weight of centroid uniformity + volume; default 0, or the preset's value.
        lambda_centroid: weight of the centroid uniformity ``U_tc(C)`` alone (``None``: ``lambda_vol``).
        lambda_det: weight of the mean Gram determinant alone (``None``: ``lambda_vol``).
        t: uniformity scale for each modality.
        t_c: uniformity scale for the centroids.
        alignment: ``"anchor"`` or ``"centroid"``.
        preset: ``None``, ``"retrieval"`` or ``"generation"``.
        uniformity_reduction: ``"mean"`` (default) or ``"sum"`` over the modalities.
        align_weight: ``"fixed"`` (default) or ``"holder"``.
        holder_bandwidth: KDE bandwidth ``s`` of ``align_weight="holder"`` (``None``: tied to ``t``); an
            error with ``align_weight="fixed"``, where it would do nothing.

    Example:
        >>> loss = UniAlignLoss(anchor="text", preset="retrieval")
        >>> out = loss({"text": torch.randn(8, 4), "image": torch.randn(8, 4), "audio": torch.randn(8, 4)})
        >>> sorted(out.terms)[:3]
        ['align', 'align/text-audio', 'align/text-image']
    """

    supports_mask = True

    def __init__(
        self,
        anchor: str | None = None,
        lambda_uni: float = 1.0,
        lambda_align: float = 1.0,
        lambda_vol: float | None = None,
        t: float = 2.0,
        t_c: float = 2.0,
        alignment: str = "anchor",
        preset: str | None = None,
        lambda_centroid: float | None = None,
        lambda_det: float | None = None,
        uniformity_reduction: str = "mean",
        align_weight: str = "fixed",
        holder_bandwidth: float | None = None,
    ) -> None:
        super().__init__()
        if preset is not None:
            check_choice(preset, "preset", list(PRESETS))
        if lambda_vol is None:
            lambda_vol = PRESETS[preset] if preset is not None else 0.0
        elif preset is not None and lambda_vol != PRESETS[preset]:
            raise ValueError(
                f"lambda_vol: preset {preset!r} sets lambda_vol = {PRESETS[preset]}, got {lambda_vol!r}; "
                "give one or the other"
            )
        self.anchor = anchor
        self.lambda_uni = check_positive(lambda_uni, "lambda_uni", allow_zero=True)
        self.lambda_align = check_positive(lambda_align, "lambda_align", allow_zero=True)
        self.lambda_vol = check_positive(lambda_vol, "lambda_vol", allow_zero=True)
        # Separate weights for the two pieces of lambda_vol (ablations); None follows lambda_vol.
        self.lambda_centroid = (
            self.lambda_vol
            if lambda_centroid is None
            else check_positive(lambda_centroid, "lambda_centroid", allow_zero=True)
        )
        self.lambda_det = (
            self.lambda_vol
            if lambda_det is None
            else check_positive(lambda_det, "lambda_det", allow_zero=True)
        )
        self.t = check_positive(t, "t")
        self.t_c = check_positive(t_c, "t_c")
        self.alignment = check_choice(alignment, "alignment", ["anchor", "centroid"])
        self.preset = preset
        self.uniformity_reduction = check_choice(uniformity_reduction, "uniformity_reduction", REDUCTIONS)
        self.align_weight = check_choice(align_weight, "align_weight", ALIGN_WEIGHTS)
        if holder_bandwidth is not None and self.align_weight != "holder":
            raise ValueError(
                f"holder_bandwidth: only used with align_weight='holder', got {holder_bandwidth!r} with "
                f"align_weight={align_weight!r}"
            )
        self.holder_bandwidth = (
            None if holder_bandwidth is None else check_positive(holder_bandwidth, "holder_bandwidth")
        )

    def bandwidth(self, num_modalities: int) -> float:
        """KDE bandwidth ``s`` of the Hölder weight at ``M`` modalities (``holder_bandwidth``, else tied)."""
        if self.holder_bandwidth is not None:
            return self.holder_bandwidth
        return F.holder_tied_bandwidth(self.t, num_modalities)

    def alignment_weight(self, num_modalities: int) -> float:
        """The weight ``w_align`` of the alignment term at ``M`` modalities (see the class docstring)."""
        if self.align_weight == "fixed":
            return self.lambda_align
        w = F.holder_alignment_weight(self.bandwidth(num_modalities), num_modalities, self.alignment)
        # Under "sum" the uniformity is M times the mean: scale alignment alike to keep the bound's ratio.
        scale = num_modalities if self.uniformity_reduction == "sum" else 1
        return self.lambda_align * w * scale

    def compute(
        self,
        mods: dict[str, Tensor],
        labels: Tensor | None = None,
        mask: dict[str, Tensor] | None = None,
        **kwargs: Any,
    ) -> LossOutput:
        names = list(mods)
        anchor = check_anchor(self.anchor, names)
        if mask is None:
            return self._compute_full(mods, anchor)
        return self._compute_masked(mods, anchor, mask)

    def _compute_masked(self, mods: dict[str, Tensor], anchor: str, mask: dict[str, Tensor]) -> LossOutput:
        """The loss of a batch with missing modalities, by weights rather than row selection.

        Every term is the one of the rows it needs (see the class docstring), computed over all ``B`` rows
        with the absent rows zeroed (:func:`mmgeom.functional.normalize_present`), ``-inf`` logits for
        absent pairs and tensor counts: shapes never depend on the mask's values, so nothing is read on
        the host (no device synchronisation when value checks are off), and absent rows get zero gradient.
        """
        names = list(mods)
        unit = {m: F.normalize_present(z, mask[m]) for m, z in mods.items()}
        terms: dict[str, Tensor] = {}
        uniform = self._uniformities(unit, terms, mask)  # 0 for a modality with < 2 present rows
        stacked_mask = torch.stack([mask[m] for m in names], dim=1)
        needs_stack = self.alignment == "centroid" or self.lambda_centroid > 0 or self.lambda_det > 0
        if needs_stack and validation_enabled():
            F.check_rows_present(stacked_mask)  # a centroid needs a present modality (a value check)
        stacked = torch.stack(list(unit.values()), dim=1) if needs_stack else None
        weight = stacked_mask.to(unit[anchor].dtype)
        if self.alignment == "anchor":
            align = self._anchor_alignment(unit, anchor, mask, terms)
        else:
            assert stacked is not None
            align = F.centroid_alignment_unit(stacked, weight)
        centroid_volume = None
        if self.lambda_centroid > 0 or self.lambda_det > 0:
            assert stacked is not None
            # Centroids of the present modalities; a row with none (value checks off) drops out.
            c = F.normalize(F.tuple_mean_unit(stacked, weight))
            u_c = F.gaussian_potential_unit(c, self.t_c, mask=stacked_mask.any(dim=1))
            # Volume: the mean determinant over complete rows (0 without one).
            centroid_volume = (u_c, F.masked_mean(F.gram_det_unit(stacked), stacked_mask.all(dim=1)))
        return self._combine(terms, uniform, align, len(names), centroid_volume)

    def _compute_full(self, mods: dict[str, Tensor], anchor: str) -> LossOutput:
        """The loss of a batch without missing modalities: each modality normalised once, and the
        centroid, centroid alignment and Gram determinants all read one ``(B, M, D)`` stack."""
        unit = {m: F.normalize(z) for m, z in mods.items()}
        terms: dict[str, Tensor] = {}
        uniform = self._uniformities(unit, terms, None)
        stacked = torch.stack(list(unit.values()), dim=1) if self.alignment == "centroid" else None
        if self.alignment == "anchor":
            align: Tensor | None = None
            for n, z in unit.items():
                if n != anchor:
                    value = F.alignment_unit(unit[anchor], z, 2.0)
                    terms[f"align/{anchor}-{n}"] = value
                    align = value if align is None else align + value
            assert align is not None
            align = align / (len(unit) - 1)  # every pair has all B rows: the mean over pairs
        else:
            assert stacked is not None
            align = F.centroid_alignment_unit(stacked)
        centroid_volume = None
        if self.lambda_centroid > 0 or self.lambda_det > 0:
            if stacked is None:
                stacked = torch.stack(list(unit.values()), dim=1)
            u_c = F.gaussian_potential_unit(F.normalize(stacked.mean(dim=1)), self.t_c)
            centroid_volume = (u_c, F.gram_det_unit(stacked).mean())
        return self._combine(terms, uniform, align, len(unit), centroid_volume)

    def _uniformities(
        self, unit: dict[str, Tensor], terms: dict[str, Tensor], mask: dict[str, Tensor] | None
    ) -> Tensor:
        """The sum of every modality's uniformity (each also logged as ``uniform/<m>``)."""
        uniform: Tensor | None = None
        for m, z in unit.items():
            u = F.gaussian_potential_unit(z, self.t, mask=None if mask is None else mask[m])
            terms[f"uniform/{m}"] = u
            uniform = u if uniform is None else uniform + u
        assert uniform is not None
        return uniform

    def _combine(
        self,
        terms: dict[str, Tensor],
        uniform: Tensor,
        align: Tensor,
        num_modalities: int,
        centroid_volume: tuple[Tensor, Tensor] | None,
    ) -> LossOutput:
        """The weighted total of the terms (masked or not), and the logged terms."""
        terms["align"] = align
        if self.uniformity_reduction == "mean":
            uniform = uniform / num_modalities
        terms["uniform"] = uniform
        total = self.lambda_uni * uniform + self.alignment_weight(num_modalities) * align
        if centroid_volume is not None:
            u_c, vol = centroid_volume
            terms["uniform/centroid"] = u_c
            terms["volume"] = vol
            if self.lambda_centroid == self.lambda_det:
                # One weight on the sum: bit-identical to the lambda_vol-only loss.
                total = total + self.lambda_centroid * (u_c + vol)
            else:
                total = total + self.lambda_centroid * u_c + self.lambda_det * vol
        return LossOutput(total, detach_terms(terms))

    @staticmethod
    def _anchor_alignment(
        unit: dict[str, Tensor], anchor: str, mask: dict[str, Tensor], terms: dict[str, Tensor]
    ) -> Tensor:
        """``1/(#pairs) sum ||z_i^a - z_i^n||^2`` over present (row, n != a) pairs (0 without one).

        Each pair's term is its mean over the rows where both modalities are present, weighted by that
        row count; the counts stay tensors (no host read).
        """
        weighted: Tensor | None = None
        count: Tensor | None = None
        for n, z in unit.items():
            if n == anchor:
                continue
            both = mask[anchor] & mask[n]
            value = F.alignment_unit(unit[anchor], z, 2.0, mask=both)  # 0 without a common row
            terms[f"align/{anchor}-{n}"] = value
            rows = both.sum()
            weighted = value * rows if weighted is None else weighted + value * rows
            count = rows if count is None else count + rows
        assert weighted is not None and count is not None
        return weighted / count.clamp_min(1)

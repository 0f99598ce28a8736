"""L2Dir: a contrastive term on directions plus L2-norm alignment of positive pairs; the public release."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor

from .. import functional as F
from .._validation import check_choice, check_positive, validation, validation_enabled
from ..functional.l2dir import RELEASE_TEMPERATURE, directions_and_norms, tn_distance_from_norms
from .base import LossOutput, MultimodalLoss, detach_terms
from .pairs import PairSpec, resolve_pairs, validate_pair_spec
from .registry import register_loss
from .temperature import Temperature


def _check_magnitudes(
    magnitudes: Mapping[str, Tensor], mods: Mapping[str, Tensor], name: str = "magnitudes"
) -> None:
    if not isinstance(magnitudes, Mapping):
        raise ValueError(f"{name}: expected a dict modality -> (B,) tensor, got {type(magnitudes).__name__}")
    for mod, r in magnitudes.items():
        if mod not in mods:
            raise ValueError(f"{name}: unknown modality {mod!r}; the batch has {list(mods)}")
        rows = mods[mod].shape[0]
        if not isinstance(r, Tensor) or tuple(r.shape) != (rows,):
            got = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ValueError(f"{name}[{mod!r}]: expected shape ({rows},), got {got}")
        if validation_enabled() and not bool((torch.isfinite(r) & (r > 0)).all()):
            raise ValueError(f"{name}[{mod!r}]: expected finite values > 0")


@register_loss("l2dir")
class L2DirLoss(MultimodalLoss):
    """L2Dir: directions by a contrastive term, L2 norms of positive pairs aligned; or the public release.

    ``variant="paper"`` (default), for each modality pair (query side ``q``, target side ``p``)::

        L = C + lambda_n * mean_i d(u_i, v_i)  (+ reconstruction_weight * R, once per batch)

    with ``ẑ = h / ||h||`` the direction of the raw input ``h``, ``r`` its magnitude and ``u = r_q ẑ_q``,
    ``v = r_p ẑ_p`` the full vectors; gradients flow into the magnitudes.

    * ``objective="infonce"``: ``C = InfoNCE(ẑ_q, ẑ_p; τ)`` (cosine logits; magnitudes play no part in
      the ranking). ``objective="infotn"``: ``C = (CE(S_TN/τ, T) + CE(S_TNᵀ/τ, T)) / 2`` with
      ``S_TN[i, j] = 1 - ||u_i - v_j|| / (||u_i|| + ||v_j||)`` and ``T`` the identity (or the same-label
      targets) — each example's magnitude takes part in the ranking, so a magnitude that varies can pay.
    * ``d`` is the TN distance ``||u_i - v_i|| / (||u_i|| + ||v_i||)`` (``norm_term="tn"``) or
      ``-log(max(cos_i, 1e-4)) · ||u_i - v_i|| / (2(||u_i|| + ||v_i||))`` (``"logcos"``, TNCSE form).
    * ``r``: ``magnitude_source="auto"`` takes ``magnitudes[m]`` (e.g. a
      :class:`~mmgeom.models.MagnitudeHead` on frozen features) where given and otherwise the
      pre-normalisation norm ``||h||`` of the input; ``"head_norm"`` always takes ``||h||`` (the head's
      own output carries the magnitude, as in the release) and refuses ``magnitudes``.
    * ``R = mean_m magnitude_reconstruction(r_m, t_m)`` over the modalities in ``magnitude_targets`` (e.g.
      the frozen features' own L2 norms): the squared error of log-magnitudes, centred
      (``reconstruction="centered"``, relative pattern only) or not (``"absolute"``).

    ``variant="release"`` is the public code's returned objective (``src/loss.py`` of
    ``tianyuzong/L2Dir_ACL2026``, ``InfoTNLoss``), per modality pair::

        L = 0.5 * L_pair + 0.5 * CE(N / τ_r, diagonal targets),   τ_r = release_temperature = 0.02
        L_pair = mean_k -log(clamp(cos(q̂_{2k}, p̂_{2k+1}), 1e-6, 1))
                        * ||u_{2k} - v_{2k+1}|| / (2(||u_{2k}|| + ||v_{2k+1}||))
        N[i, j] = ||q̂_i|| - ||p̂_j||

    Query row ``2k`` meets target row ``2k + 1`` *across* the two sides (``k < floor(B/2)``; with an odd
    ``B`` the last row is unpaired and left out of ``L_pair``). ``N`` is computed on the already
    normalised directions, so it is ≈ 0 everywhere and that CE is ≈ ``log B`` — transcribed as published.
    The CE is one-directional (query rows), with diagonal targets even when ``labels`` are given. ``u``,
    ``v`` are the full vectors ``r ẑ`` taken as constants (detached): the public gradient cache keeps only
    the gradient of the normalised embeddings, so neither the magnitudes nor the un-normalised vectors
    receive one; the directions train through ``-log cos`` (and the ≈ 0 gradient of the CE). InfoNCE
    ``CE(q̂ p̂ᵀ / τ_r)`` and InfoTN ``CE(S_TN / τ_r)`` (one-directional, as the public code) are returned
    in ``terms`` only, for logging. ``temperature``, ``lambda_n`` and ``norm_term`` are not used there.

    With more than two modalities the loss averages over modality pairs like :class:`InfoNCELoss`.

    Reference: Zong et al., "L2-norm alignment and Directional consistency", ACL 2026.

    Args:
        temperature: ``τ`` of the paper variant's contrastive term.
        learnable_temperature: learn ``ln(1/τ)`` clamped to ``[0, ln 100]``.
        lambda_n: weight of the norm-alignment term (paper variant).
        norm_term: ``"tn"`` or ``"logcos"`` (paper variant).
        variant: ``"paper"`` or ``"release"`` (the public code's objective, above).
        pairs: ``"all"``, ``"anchor"`` or explicit pairs.
        anchor: anchor for ``pairs="anchor"``.
        objective: ``"infonce"`` or ``"infotn"`` — the paper variant's contrastive term.
        magnitude_source: ``"auto"`` or ``"head_norm"`` (where ``r`` comes from).
        reconstruction_weight: weight of ``R`` (>= 0; > 0 needs ``magnitude_targets`` at call time).
        reconstruction: ``"centered"`` or ``"absolute"``
            (:func:`mmgeom.functional.magnitude_reconstruction`).
        release_temperature: ``τ_r`` of the release variant (> 0).

    Raises:
        ValueError: an unknown option or a bad value, naming the argument; ``objective="infotn"`` or
            ``reconstruction_weight > 0`` with ``variant="release"`` (the release has neither).

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
        objective: str = "infonce",
        magnitude_source: str = "auto",
        reconstruction_weight: float = 0.0,
        reconstruction: str = "centered",
        release_temperature: float = RELEASE_TEMPERATURE,
    ) -> None:
        super().__init__()
        self.temperature = Temperature(temperature, learnable_temperature)
        self.lambda_n = check_positive(lambda_n, "lambda_n", allow_zero=True)
        self.norm_term = check_choice(norm_term, "norm_term", ["tn", "logcos"])
        self.variant = check_choice(variant, "variant", ["paper", "release"])
        self.objective = check_choice(objective, "objective", ["infonce", "infotn"])
        self.magnitude_source = check_choice(magnitude_source, "magnitude_source", ["auto", "head_norm"])
        self.reconstruction_weight = check_positive(
            reconstruction_weight, "reconstruction_weight", allow_zero=True
        )
        self.reconstruction = check_choice(reconstruction, "reconstruction", ["centered", "absolute"])
        self.release_temperature = check_positive(release_temperature, "release_temperature")
        if self.variant == "release" and self.objective != "infonce":
            raise ValueError(
                f"objective: {objective!r} applies to variant='paper'; the release has its own objective"
            )
        if self.variant == "release" and self.reconstruction_weight > 0:
            raise ValueError(
                "reconstruction_weight: must be 0 with variant='release' (its magnitudes get no gradient)"
            )
        validate_pair_spec(pairs)
        if anchor is not None and pairs == "all":
            pairs = "anchor"
        self.pairs, self.anchor = pairs, anchor

    def _norm_distance(self, u: Tensor, v: Tensor, norm_u: Tensor | None, norm_v: Tensor | None) -> Tensor:
        """Mean norm term of the full vectors ``u``, ``v``; ``norm_*``: their row norms where known."""
        if self.norm_term == "tn":
            if norm_u is not None and norm_v is not None:
                return tn_distance_from_norms(u, v, norm_u, norm_v).mean()
            return F.tn_distance(u, v).mean()
        return F.logcos_distance(u, v).mean()

    def _radius(
        self,
        mods: Mapping[str, Tensor],
        magnitudes: Mapping[str, Tensor] | None,
        norms: Mapping[str, Tensor],
    ) -> dict[str, Tensor]:
        """Each modality's magnitude ``r``: given, or the pre-normalisation norm of the input (``norms``)."""
        given = dict(magnitudes or {})
        if given and self.magnitude_source == "head_norm":
            raise ValueError(
                "magnitudes: not accepted with magnitude_source='head_norm' (r is the input's own norm)"
            )
        if given:
            _check_magnitudes(given, mods)
        return {m: given[m] if m in given else norms[m] for m in mods}

    def compute(
        self,
        mods: dict[str, Tensor],
        labels: Tensor | None = None,
        magnitudes: Mapping[str, Tensor] | None = None,
        magnitude_targets: Mapping[str, Tensor] | None = None,
        **kwargs: Any,
    ) -> LossOutput:
        targets = dict(magnitude_targets or {})
        if targets:
            if self.reconstruction_weight == 0:
                raise ValueError("magnitude_targets: given but reconstruction_weight is 0")
            _check_magnitudes(targets, mods, "magnitude_targets")
        elif self.reconstruction_weight > 0:
            raise ValueError("reconstruction_weight: > 0 needs magnitude_targets (e.g. frozen feature norms)")
        # One norm per modality gives the direction, the magnitude r = ||h|| and (paper variant, u = h)
        # the norms in the TN distance.
        unit = {m: directions_and_norms(z) for m, z in mods.items()}
        direction = {m: d for m, (d, _) in unit.items()}
        norms = {m: n for m, (_, n) in unit.items()}
        radius = self._radius(mods, magnitudes, norms)
        # Everything below derives from the validated batch and magnitudes, so the functional layer's
        # own value checks would only repeat them (a sync each); shapes are still checked there.
        with validation(False):
            if self.variant == "release":
                return self._release(direction, radius)
            given = set(magnitudes or {})
            full_norms = {m: n for m, n in norms.items() if m not in given}
            return self._paper(mods, direction, radius, full_norms, labels, targets, given)

    def _paper(
        self,
        mods: Mapping[str, Tensor],
        direction: Mapping[str, Tensor],
        radius: Mapping[str, Tensor],
        full_norms: Mapping[str, Tensor],
        labels: Tensor | None,
        targets: Mapping[str, Tensor],
        given: set[str],
    ) -> LossOutput:
        """The paper variant; see the class docstring (``given``: modalities with given magnitudes;
        ``full_norms``: the row norms of the full vectors where known, i.e. where ``u = h``)."""
        full = {
            # r = ||h|| (no magnitude given) makes u = ||h|| h / ||h|| = h: the input itself, exactly in
            # value and gradient up to rounding, without two B x D products and their backward.
            m: mods[m].to(direction[m].dtype)
            if m not in given
            else direction[m] * radius[m].to(direction[m].dtype).unsqueeze(1)
            for m in mods
        }
        tau = self.temperature()
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        triples = resolve_pairs(self.pairs, list(mods), self.anchor)
        for m, n, w in triples:
            if self.objective == "infonce":
                # The directions are computed once above; the batch is already validated.
                contrast = F.info_nce_unit(direction[m], direction[n], tau, labels)
            else:
                contrast = F.info_tn(full[m], full[n], tau, labels)
            norm = self._norm_distance(full[m], full[n], full_norms.get(m), full_norms.get(n))
            terms[f"{self.objective}/{m}-{n}"] = contrast
            terms[f"norm/{m}-{n}"] = norm
            # Weights of 1 (the defaults) are skipped: multiplying by 1.0 is exact, and each product by
            # a Python float is a scalar-tensor conversion, a kernel and a backward node per pair.
            value = contrast + (norm if self.lambda_n == 1.0 else self.lambda_n * norm)
            if w != 1.0:
                value = w * value
            total = value if total is None else total + value
        assert total is not None
        total = total / sum(w for _, _, w in triples)
        if targets:
            recon = {
                m: F.magnitude_reconstruction(radius[m], t, centered=self.reconstruction == "centered")
                for m, t in targets.items()
            }
            terms.update({f"reconstruction/{m}": v for m, v in recon.items()})
            total = total + self.reconstruction_weight * torch.stack(list(recon.values())).mean()
        for m, r in radius.items():
            terms[f"magnitude/{m}"] = r.detach().mean()  # logged only: no graph to record
        terms["temperature"] = tau
        return LossOutput(total, detach_terms(terms))

    def _release(self, direction: Mapping[str, Tensor], radius: Mapping[str, Tensor]) -> LossOutput:
        """The public code's objective; see the class docstring (``direction``: the unit rows)."""
        tau_r = self.release_temperature
        # u = r·ẑ as constants: the public gradient cache back-propagates only the normalised embeddings.
        full = {m: (direction[m] * radius[m].to(direction[m].dtype).unsqueeze(1)).detach() for m in direction}
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        triples = resolve_pairs(self.pairs, list(direction), self.anchor)
        for m, n, w in triples:
            value, pair, norm_ce = F.release_objective(direction[m], direction[n], full[m], full[n], tau_r)
            terms[f"pair/{m}-{n}"] = pair
            terms[f"norm_ce/{m}-{n}"] = norm_ce
            with torch.no_grad():  # logged only, as in the public code
                target = torch.arange(direction[m].shape[0], device=direction[m].device)
                cos = direction[m] @ direction[n].T
                terms[f"infonce/{m}-{n}"] = nnf.cross_entropy(cos / tau_r, target)
                stn = F.tn_similarity(full[m], full[n])
                terms[f"infotn/{m}-{n}"] = nnf.cross_entropy(stn / tau_r, target)
            total = w * value if total is None else total + w * value
        assert total is not None
        for m, r in radius.items():
            terms[f"magnitude/{m}"] = r.detach().mean()
        terms["temperature"] = radius[next(iter(radius))].new_full((), tau_r)  # on the batch's device
        return LossOutput(total / sum(w for _, _, w in triples), detach_terms(terms))

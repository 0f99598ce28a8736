"""Multimodal fusion classifiers: per-modality encoders, a fusion head, optional unimodal heads.

Two fusion heads, both over pre-fusion embeddings ``h_m`` of one shared width ``D``:

* ``"concat"``: one shared linear head on the concatenation, ``logits = W [h_1; ...; h_M] + b``. A missing
  modality is zero-padded, so the unimodal logits of modality ``m`` are ``W_m h_m + b`` (``W_m`` the
  columns of ``W`` that read ``h_m``) — the unimodal protocol of DGL (Wei et al., "Boosting Multimodal
  Learning via Disentangled Gradient Learning", ICCV 2025).
* ``"late"``: one linear head per modality, ``logits = sum_m (W_m h_m + b_m)``; a missing modality's term
  is omitted.

Example:
    >>> from mmgeom.models import FusionClassifier, create_head
    >>> enc = {"fac": create_head("mlp", 216, 32, modality="fac"), "mor": create_head("mlp", 6, 32)}
    >>> model = FusionClassifier(enc, num_classes=10, fusion="concat")
    >>> out = model({"fac": torch.randn(8, 216), "mor": torch.randn(8, 6)})
    >>> out.logits.shape, sorted(out.features)
    (torch.Size([8, 10]), ['fac', 'mor'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._validation import RESERVED_KEYS
from .encoder import MultiViewEncoder

#: Fusion heads accepted by :func:`create_fusion_head`.
FUSIONS = ("concat", "late")


def _check_features(
    features: Mapping[str, Tensor], modalities: Sequence[str], dim: int, who: str
) -> dict[str, Tensor]:
    """Pre-fusion features: known modalities, ``(B, dim)`` each, one shared ``B``, at least one."""
    feats = {m: h for m, h in features.items() if m not in RESERVED_KEYS}
    if not feats:
        raise ValueError(f"{who}: no modality given; expected some of {list(modalities)}")
    first: tuple[str, int] | None = None
    for m, h in feats.items():
        if m not in modalities:
            raise ValueError(f"{m}: unknown modality; the {who} was built for {list(modalities)}")
        if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[1] != dim:
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(f"{m}: expected pre-fusion features of shape (B, {dim}), got {got}")
        if first is None:
            first = (m, int(h.shape[0]))
        elif h.shape[0] != first[1]:
            raise ValueError(
                f"{m}: expected {first[1]} rows to pair with {first[0]}, got shape {tuple(h.shape)}"
            )
    return feats


def _check_setup(modalities: Sequence[str], embed_dim: int, num_classes: int, who: str) -> list[str]:
    mods = list(modalities)
    if len(mods) < 1 or len(set(mods)) != len(mods):
        raise ValueError(f"{who}: expected distinct modality names, got {mods}")
    for name, value, low in (("embed_dim", embed_dim, 1), ("num_classes", num_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{who}: {name} must be an integer >= {low}, got {value!r}")
    return mods


class ConcatFusionHead(nn.Module):
    """``logits = W [h_1; ...; h_M] + b`` with missing modalities zero-padded.

    Args:
        modalities: modality names in concatenation order.
        embed_dim: width ``D`` of every ``h_m``.
        num_classes: number of classes ``C``.
    """

    def __init__(self, modalities: Sequence[str], embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(_check_setup(modalities, embed_dim, num_classes, "concat fusion head"))
        self.embed_dim, self.num_classes = embed_dim, num_classes
        self.linear = nn.Linear(len(self.modalities) * embed_dim, num_classes)

    def weight_block(self, modality: str) -> Tensor:
        """``W_m``: the ``(C, D)`` columns of the shared weight that read modality ``modality``."""
        k = self.modalities.index(modality)
        return self.linear.weight[:, k * self.embed_dim : (k + 1) * self.embed_dim]

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        """``(B, C)`` logits from the given modalities (the others are zeros)."""
        feats = _check_features(features, self.modalities, self.embed_dim, "concat fusion head")
        ref = next(iter(feats.values()))
        blocks = [
            feats[m] if m in feats else ref.new_zeros(ref.shape[0], self.embed_dim) for m in self.modalities
        ]
        out: Tensor = self.linear(torch.cat(blocks, dim=1))
        return out

    def modality_logits(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-modality share of the fused logits, ``W_m h_m + b / M`` (they sum to the fused logits).

        This is the per-modality output OGM-GE scores (Peng et al., CVPR 2022, which splits the bias
        equally between the two modalities).
        """
        feats = _check_features(features, self.modalities, self.embed_dim, "concat fusion head")
        bias = self.linear.bias / len(self.modalities)
        return {m: h @ self.weight_block(m).T + bias for m, h in feats.items()}

    def extra_repr(self) -> str:
        return f"modalities={list(self.modalities)}, embed_dim={self.embed_dim}, classes={self.num_classes}"


class LateFusionHead(nn.Module):
    """``logits = sum_m (W_m h_m + b_m)`` over the modalities given (a missing one is omitted).

    Args:
        modalities: modality names.
        embed_dim: width ``D`` of every ``h_m``.
        num_classes: number of classes ``C``.
    """

    def __init__(self, modalities: Sequence[str], embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(_check_setup(modalities, embed_dim, num_classes, "late fusion head"))
        self.embed_dim, self.num_classes = embed_dim, num_classes
        self.heads = nn.ModuleDict({m: nn.Linear(embed_dim, num_classes) for m in self.modalities})

    def modality_logits(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``W_m h_m + b_m`` for every given modality."""
        feats = _check_features(features, self.modalities, self.embed_dim, "late fusion head")
        return {m: self.heads[m](h) for m, h in feats.items()}

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        """``(B, C)``: the sum of the given modalities' logits."""
        parts = list(self.modality_logits(features).values())
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out

    def extra_repr(self) -> str:
        return f"modalities={list(self.modalities)}, embed_dim={self.embed_dim}, classes={self.num_classes}"


FusionHead = ConcatFusionHead | LateFusionHead


def create_fusion_head(kind: str, modalities: Sequence[str], embed_dim: int, num_classes: int) -> FusionHead:
    """``"concat"`` → :class:`ConcatFusionHead`, ``"late"`` → :class:`LateFusionHead`.

    Raises:
        ValueError: an unknown ``kind`` (the message lists :data:`FUSIONS`).
    """
    if kind == "concat":
        return ConcatFusionHead(modalities, embed_dim, num_classes)
    if kind == "late":
        return LateFusionHead(modalities, embed_dim, num_classes)
    raise ValueError(f"fusion: unknown kind {kind!r}; expected one of {list(FUSIONS)}")


@dataclass
class FusionOutput:
    """What :class:`FusionClassifier` returns.

    Attributes:
        logits: ``(B, C)`` fused logits of the modalities that were given.
        features: modality -> ``(B, D)`` pre-fusion embedding (raw, un-normalised; where DAGR applies).
    """

    logits: Tensor
    features: dict[str, Tensor]


class FusionClassifier(nn.Module):
    """Per-modality encoders → pre-fusion embeddings ``h_m`` → fusion head → class logits.

    Also holds one linear *unimodal head* per modality (``aux``), used by DGL-style training (Wei et al.,
    ICCV 2025) and ignored otherwise. Any number ``M >= 2`` of modalities; every encoder must output the
    same width ``D`` (the space where cross-modal drift is measured and anchored).

    Args:
        encoders: modality -> encoder module with an ``out_dim`` attribute (e.g. from
            :func:`~mmgeom.models.create_head`: ``"mlp"`` for feature views, ``"cnn"`` for images), or a
            :class:`~mmgeom.models.MultiViewEncoder`.
        num_classes: number of classes ``C >= 2``.
        fusion: ``"concat"`` or ``"late"``.

    Raises:
        ValueError: fewer than two modalities, encoders of different or unknown width, unknown fusion.
    """

    def __init__(
        self, encoders: Mapping[str, nn.Module] | MultiViewEncoder, num_classes: int, fusion: str = "concat"
    ) -> None:
        super().__init__()
        self.encoder = encoders if isinstance(encoders, MultiViewEncoder) else MultiViewEncoder(encoders)
        mods = self.encoder.modalities
        if len(mods) < 2:
            raise ValueError(f"fusion classifier: expected at least 2 modalities, got {list(mods)}")
        if self.encoder.out_dim is None:
            raise ValueError("fusion classifier: every encoder must declare its output width (out_dim)")
        self.embed_dim = int(self.encoder.out_dim)
        self.fusion_kind = fusion
        self.fusion = create_fusion_head(fusion, mods, self.embed_dim, num_classes)
        self.aux = nn.ModuleDict({m: nn.Linear(self.embed_dim, num_classes) for m in mods})
        self.num_classes = num_classes

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names, in order."""
        return self.encoder.modalities

    def encode(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Pre-fusion embeddings of the modalities present in ``batch`` (``labels``/``mask`` ignored)."""
        return self.encoder(batch)

    def fuse(self, features: Mapping[str, Tensor], drop: Iterable[str] = ()) -> Tensor:
        """Fused logits of ``features`` without the modalities in ``drop`` (zero-padded / omitted)."""
        dropped = set(drop)
        unknown = dropped - set(self.modalities)
        if unknown:
            raise ValueError(
                f"drop: unknown modalities {sorted(unknown)}; the model has {list(self.modalities)}"
            )
        kept = {m: h for m, h in features.items() if m not in dropped}
        if not kept:
            raise ValueError(f"drop: cannot drop every modality ({sorted(dropped)})")
        out: Tensor = self.fusion(kept)
        return out

    def unimodal_logits(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Modality -> logits of the fusion head given that modality alone (the others zero / omitted)."""
        return {m: self.fuse({m: h}) for m, h in features.items() if m not in RESERVED_KEYS}

    def aux_logits(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Modality -> logits of its own unimodal linear head (DGL-style training)."""
        feats = _check_features(features, self.modalities, self.embed_dim, "fusion classifier")
        return {m: self.aux[m](h) for m, h in feats.items()}

    def forward(self, batch: Mapping[str, Tensor], drop: Iterable[str] = ()) -> FusionOutput:
        """Encode the modalities in ``batch`` and fuse them (minus ``drop``)."""
        features = self.encode(batch)
        return FusionOutput(self.fuse(features, drop), features)

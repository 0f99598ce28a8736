"""One projection head per modality, applied to a batch dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .._validation import RESERVED_KEYS
from .heads import ProjectionHead, create_head


class MultiViewEncoder(nn.Module):
    """Maps ``{modality: (B, D_m)}`` to ``{modality: (B, out_dim)}`` with one head per modality.

    The batch may hold any subset of the encoder's modalities (plus the reserved ``labels``/``mask``
    entries, which are ignored); every given modality must share the batch size.

    Args:
        heads: modality -> head; all heads must have the same ``out_dim``.

    Raises:
        ValueError: no heads, or heads with different output dimensions.
    """

    def __init__(self, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("encoder: expected at least one modality head, got none")
        out_dims = {m: getattr(h, "out_dim", None) for m, h in heads.items()}
        known = {d for d in out_dims.values() if d is not None}
        if len(known) > 1:
            raise ValueError(f"encoder: heads must share one output dimension, got {out_dims}")
        for m in heads:
            if m in RESERVED_KEYS:
                raise ValueError(f"encoder: modality name {m!r} is reserved for batch metadata")
        self.heads = nn.ModuleDict(dict(heads))
        self.out_dim: int | None = known.pop() if known else None

    @classmethod
    def from_dims(
        cls, dims: Mapping[str, int], kind: str = "mlp", out_dim: int = 64, **head_kwargs: Any
    ) -> MultiViewEncoder:
        """One ``kind`` head per modality: ``MultiViewEncoder.from_dims({"pix": 240, "fou": 76}, "mlp")``."""
        return cls({m: create_head(kind, d, out_dim, modality=m, **head_kwargs) for m, d in dims.items()})

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names, in order."""
        return tuple(self.heads.keys())

    @property
    def in_dims(self) -> dict[str, int | None]:
        """Modality -> expected input dimension (``None`` for a head that does not declare one)."""
        return {m: getattr(h, "in_dim", None) for m, h in self.heads.items()}

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Encode every modality in ``batch``.

        Raises:
            ValueError: an unknown modality, an empty batch, mismatched row counts, or a wrong input
                dimension (the message names the modality and the expected shape).
        """
        mods = {k: v for k, v in batch.items() if k not in RESERVED_KEYS}
        if not mods:
            raise ValueError(f"encoder: the batch has no modality; expected some of {list(self.modalities)}")
        rows: tuple[str, int] | None = None
        out: dict[str, Tensor] = {}
        for m, x in mods.items():
            if m not in self.heads:
                raise ValueError(f"{m}: unknown modality; the encoder has heads for {list(self.modalities)}")
            if isinstance(x, Tensor) and x.dim() >= 1:
                if rows is None:
                    rows = (m, int(x.shape[0]))
                elif x.shape[0] != rows[1]:
                    raise ValueError(
                        f"{m}: expected {rows[1]} rows to pair with {rows[0]}, got shape {tuple(x.shape)}"
                    )
            out[m] = self.heads[m](x)
        return out


__all__ = ["MultiViewEncoder", "ProjectionHead"]

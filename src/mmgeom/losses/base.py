"""The loss interface: ``loss(batch, **optional) -> LossOutput``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .._validation import check_batch, check_labels, check_mask


@dataclass
class LossOutput:
    """What every mmgeom loss returns.

    Attributes:
        total: the scalar to back-propagate.
        terms: named, detached parts of the loss for logging (``"align"``, ``"uniform/text"``, ...).
    """

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """``{"total": ..., **terms}`` as Python floats (one device sync)."""
        out = {"total": float(self.total.detach())}
        out.update({k: float(v) for k, v in self.terms.items()})
        return out


class MultimodalLoss(nn.Module):
    """Base class: validates the batch, then calls :meth:`compute` on the modality tensors.

    Subclasses set ``min_modalities`` / ``min_rows`` and implement ``compute(mods, labels=..., **kw)``.
    ``labels`` may be passed as a keyword or as a ``"labels"`` entry of the batch dict.
    """

    min_modalities: int = 2
    min_rows: int = 2
    normalised: bool = True
    #: Whether ``compute`` understands a missing-modality ``mask`` (passed on as ``mask=``).
    supports_mask: bool = False

    def forward(self, batch: Mapping[str, Tensor], **kwargs: Any) -> LossOutput:
        if not isinstance(batch, Mapping):
            # Checked first: ``batch.get`` below would fail with an AttributeError on a list.
            raise ValueError(
                f"batch: expected a dict modality -> (B, D) tensor, got {type(batch).__name__}; "
                'e.g. loss({"text": zt, "image": zi})'
            )
        mask = kwargs.pop("mask", None)
        if mask is None:
            mask = batch.get("mask")
        if mask is not None and not self.supports_mask:
            raise ValueError(f"{type(self).__name__}: missing-modality masks are not supported")
        mods = check_batch(
            batch,
            min_modalities=self.min_modalities,
            min_rows=self.min_rows,
            normalised=self.normalised and mask is None,
        )
        labels = kwargs.pop("labels", None)
        if labels is None:
            labels = batch.get("labels")
        first = next(iter(mods.values()))
        labels = check_labels(labels, first.shape[0])
        unknown = sorted(set(kwargs) - self._keywords())
        if unknown:
            raise ValueError(f"{type(self).__name__}: unexpected arguments {unknown}")
        if self.supports_mask:
            kwargs["mask"] = check_mask(mask, mods) if mask is not None else None
        return self.compute(mods, labels=labels, **kwargs)

    def _keywords(self) -> set[str]:
        """Optional keywords this loss's ``compute`` accepts (``labels``/``mask`` are handled here)."""
        params = inspect.signature(self.compute).parameters
        return {
            n for n, p in params.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
        } - {
            "mods",
            "labels",
            "mask",
        }

    def compute(self, mods: dict[str, Tensor], labels: Tensor | None = None, **kwargs: Any) -> LossOutput:
        raise NotImplementedError


def detach_terms(terms: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of the named parts, so logging never keeps the graph alive."""
    return {k: v.detach() for k, v in terms.items()}

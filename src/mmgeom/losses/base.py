"""The loss interface: ``loss(batch, **optional) -> LossOutput``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .. import _validation
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


#: ``MultimodalLoss._keywords`` per class.
_KEYWORDS: dict[type, set[str]] = {}


class MultimodalLoss(nn.Module):
    """Base class: validates the batch, then calls :meth:`compute` on the modality tensors.

    Subclasses set ``min_modalities`` / ``min_rows`` and implement ``compute(mods, labels=..., **kw)``.
    ``labels`` may be passed as a keyword or as a ``"labels"`` entry of the batch dict.

    Attributes:
        check_values: run the checks that read tensor *values* (NaN/Inf, all-zero rows, mask contents,
            magnitudes > 0, ...). ``True`` (default) keeps them, subject to the global switch
            :func:`mmgeom.set_validation`. ``False`` turns them off for this loss only: shapes, dtypes,
            devices, modality names and arguments (host-side metadata) are still checked, but nothing in
            forward or backward reads a tensor's value on the host, so a call never synchronises with
            the device (``tests/test_loss_sync.py`` counts). Set it with
            ``create_loss(name, check_values=False)`` or ``loss.check_values = False``. A training loop
            that turns it off covers the same faults once per step instead: ``mmgeom train`` checks
            the embeddings, the loss terms and the gradient norm for NaN/Inf before the optimizer
            moves (``faults.on_non_finite``: stop or skip).
    """

    min_modalities: int = 2
    min_rows: int = 2
    normalised: bool = True
    #: Whether ``compute`` understands a missing-modality ``mask`` (passed on as ``mask=``).
    supports_mask: bool = False
    #: See the class docstring; an instance attribute once assigned.
    check_values: bool = True

    def forward(self, batch: Mapping[str, Tensor], **kwargs: Any) -> LossOutput:
        if self.check_values or not _validation.validation_enabled():
            return self._checked_forward(batch, kwargs)
        # Value checks off for this call on this thread only (what the functional layer reads).
        with _validation.values_unchecked():
            return self._checked_forward(batch, kwargs)

    def _checked_forward(self, batch: Mapping[str, Tensor], kwargs: dict[str, Any]) -> LossOutput:
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
        if kwargs:
            unknown = sorted(set(kwargs) - self._keywords())
            if unknown:
                raise ValueError(f"{type(self).__name__}: unexpected arguments {unknown}")
        if self.supports_mask:
            kwargs["mask"] = check_mask(mask, mods) if mask is not None else None
        return self.compute(mods, labels=labels, **kwargs)

    def _keywords(self) -> set[str]:
        """Optional keywords this loss's ``compute`` accepts (``labels``/``mask`` are handled here).

        Read once per class: ``inspect.signature`` costs tens of microseconds, a visible share of a
        small-batch loss call.
        """
        cls = type(self)
        cached = _KEYWORDS.get(cls)
        if cached is None:
            params = inspect.signature(self.compute).parameters
            cached = {
                n for n, p in params.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
            } - {"mods", "labels", "mask"}
            _KEYWORDS[cls] = cached
        return cached

    def compute(self, mods: dict[str, Tensor], labels: Tensor | None = None, **kwargs: Any) -> LossOutput:
        raise NotImplementedError

    def deferred_checks(self) -> None:
        """Run the value checks a call skipped because they read a tensor on the host.

        With ``check_values=False`` a loss reads nothing on the host; a check that needs a value (DAGR's
        inactive-band warning) is kept pending instead. A training loop calls this where it reads values
        anyway (the trainer: at every ``train`` event). Follows :func:`mmgeom.set_validation`; a no-op
        for losses without such checks.
        """


def detach_terms(terms: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of the named parts, so logging never keeps the graph alive."""
    return {k: v.detach() for k, v in terms.items()}

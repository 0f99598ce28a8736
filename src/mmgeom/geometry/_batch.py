"""Batch handling shared by the diagnostics: validation, the presence mask, pair names, row subsets."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import torch
from torch import Tensor

from .._validation import check_batch, validation_enabled


def pair_key(m: str, n: str) -> str:
    """Name of the pair ``(m, n)`` in diagnostic keys: ``"m-n"`` in batch order."""
    return f"{m}-{n}"


def modality_pairs(names: list[str]) -> list[tuple[str, str]]:
    """All unordered pairs in batch order (``combinations``)."""
    return list(combinations(names, 2))


def _check_mask(mask: object, mods: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if not isinstance(mask, Mapping):
        raise ValueError(f"mask: expected a dict modality -> (B,) bool tensor, got {type(mask).__name__}")
    rows = next(iter(mods.values())).shape[0]
    out = {}
    for name, m in mask.items():
        if name not in mods:
            raise ValueError(f"mask: unknown modality {name!r}; the batch has {list(mods)}")
        if not isinstance(m, Tensor) or m.dtype != torch.bool or tuple(m.shape) != (rows,):
            got = f"{m.dtype} {tuple(m.shape)}" if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"mask[{name!r}]: expected a bool tensor of shape ({rows},), got {got}")
        out[name] = m.to(mods[name].device)
    return out


def split_batch(
    batch: Mapping[str, Tensor], *, min_modalities: int = 2, min_rows: int = 2
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Validated modality tensors and the presence mask (``{}`` when the batch has none).

    ``batch["mask"]`` (optional) maps a modality to a ``(B,)`` bool tensor, ``True`` where the row is
    present; modalities it does not name are present in every row. Absent rows must be finite but may be
    all zeros.
    """
    raw_mask = batch.get("mask") if isinstance(batch, Mapping) else None
    mods = check_batch(batch, min_modalities=min_modalities, min_rows=min_rows, normalised=raw_mask is None)
    if raw_mask is None:
        return mods, {}
    mask = _check_mask(raw_mask, mods)
    if validation_enabled():
        for name, z in mods.items():
            present = mask.get(name)
            zero = z.detach().abs().amax(dim=1) == 0
            if present is not None:
                zero &= present
            bad = zero.nonzero()
            if bad.numel():
                raise ValueError(
                    f"{name}: row {int(bad[0])} is present but all zeros; its direction is undefined "
                    f"(shape {tuple(z.shape)})"
                )
    return mods, mask


def present_rows(mask: Mapping[str, Tensor], names: list[str] | tuple[str, ...]) -> Tensor | None:
    """``(B,)`` bool: rows where every named modality is present (``None``: all rows, no mask)."""
    masks = [mask[n] for n in names if n in mask]
    if not masks:
        return None
    rows = masks[0].clone()
    for m in masks[1:]:
        rows &= m
    return rows


def select_rows(
    mods: Mapping[str, Tensor],
    names: list[str] | tuple[str, ...],
    rows: Tensor | None,
    *,
    min_rows: int,
    what: str,
) -> dict[str, Tensor]:
    """The named modalities restricted to ``rows``; at least ``min_rows`` must remain."""
    out = {n: mods[n] if rows is None else mods[n][rows] for n in names}
    count = next(iter(out.values())).shape[0]
    if count < min_rows:
        raise ValueError(
            f"{what}: expected at least {min_rows} rows where {list(names)} are all present, got {count}"
        )
    return out


def even_subsample(n: int, max_rows: int | None, device: torch.device) -> Tensor | None:
    """Indices of ``max_rows`` evenly spaced rows out of ``n`` (deterministic); ``None`` keeps all rows."""
    if max_rows is None or n <= max_rows:
        return None
    return torch.linspace(0, n - 1, max_rows, device=device).round().long()

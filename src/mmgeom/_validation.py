"""Input checks shared by functional code, losses and diagnostics.

Every check raises ``ValueError`` with a message that names the offending modality or argument, the shape
it got and the shape it expected. Checks that need a device synchronisation (finiteness, zero rows) can be
switched off for production loops with :func:`mmgeom.validation_enabled` / :func:`mmgeom.set_validation`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor

_STATE = {"deep": True}
#: Per-thread override: a loss with ``check_values=False`` turns value checks off for its own call on its
#: own thread, without touching the process-wide switch another thread may be relying on.
_LOCAL = threading.local()

#: Keys of a batch dict that are not modalities.
RESERVED_KEYS = ("labels", "mask")


def validation_enabled() -> bool:
    """Whether value checks (finite entries, non-zero rows) run; shape checks always run."""
    return _STATE["deep"] and not getattr(_LOCAL, "values_off", False)


@contextlib.contextmanager
def values_unchecked() -> Iterator[None]:
    """Value checks off for the calling thread only, inside the block (``check_values=False``)."""
    previous = getattr(_LOCAL, "values_off", False)
    _LOCAL.values_off = True
    try:
        yield
    finally:
        _LOCAL.values_off = previous


def set_validation(enabled: bool) -> None:
    """Switch value checks on or off globally (they cost one device sync per tensor)."""
    _STATE["deep"] = bool(enabled)


@contextlib.contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """Context manager form of :func:`set_validation`."""
    previous = _STATE["deep"]
    _STATE["deep"] = bool(enabled)
    try:
        yield
    finally:
        _STATE["deep"] = previous


def check_embeddings(
    x: object, name: str, *, min_rows: int = 1, normalised: bool = False, values: bool = True
) -> Tensor:
    """Check one ``(B, D)`` embedding matrix and return it.

    Args:
        x: the candidate tensor.
        name: modality or argument name used in error messages.
        min_rows: smallest allowed batch size (2 where negatives or pairs are needed).
        normalised: whether the caller will L2-normalise the rows; then all-zero rows are rejected.
        values: run the value checks (when the switch is on); ``False`` leaves them to the caller, as
            :func:`check_batch` does to check every modality with one synchronisation.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (B, D), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected shape (B, D), got {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(
            f"{name}: expected at least {min_rows} rows (B >= {min_rows}), got shape {tuple(x.shape)}"
        )
    if x.shape[1] < 1:
        raise ValueError(f"{name}: expected D >= 1, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if values and validation_enabled():
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).any(dim=1).sum())
            raise ValueError(f"{name}: {bad} row(s) contain NaN or Inf (shape {tuple(x.shape)})")
        if normalised:
            zero = (x.detach().abs().amax(dim=1) == 0).nonzero()
            if zero.numel():
                raise ValueError(
                    f"{name}: row {int(zero[0])} is all zeros; its direction is undefined "
                    f"(shape {tuple(x.shape)})"
                )
    return x


def check_pair(
    za: Tensor,
    zb: Tensor,
    names: tuple[str, str] = ("za", "zb"),
    *,
    min_rows: int = 1,
    normalised: bool = True,
) -> None:
    """Check two paired ``(B, D)`` matrices: same B (paired rows) and same D (one space)."""
    check_embeddings(za, names[0], min_rows=min_rows, normalised=normalised)
    check_embeddings(zb, names[1], min_rows=min_rows, normalised=normalised)
    if za.shape != zb.shape:
        raise ValueError(
            f"{names[1]}: expected shape {tuple(za.shape)} to match {names[0]} "
            f"(rows are paired and share one space), got {tuple(zb.shape)}"
        )


def check_batch(
    batch: Mapping[str, Tensor],
    *,
    min_modalities: int = 2,
    min_rows: int = 2,
    normalised: bool = True,
    same_dim: bool = True,
) -> dict[str, Tensor]:
    """Check a batch dict ``modality -> (B, D)`` and return its modality entries (reserved keys dropped)."""
    if not isinstance(batch, Mapping):
        raise ValueError(f"batch: expected a dict modality -> (B, D) tensor, got {type(batch).__name__}")
    mods = {k: v for k, v in batch.items() if k not in RESERVED_KEYS}
    if len(mods) < min_modalities:
        raise ValueError(
            f"batch: expected at least {min_modalities} modalities, got {len(mods)} ({sorted(mods)})"
        )
    first_name: str | None = None
    first: Tensor | None = None
    for name, z in mods.items():
        check_embeddings(z, name, min_rows=min_rows, normalised=normalised, values=False)
        if first is None:
            first_name, first = name, z
            continue
        if z.dtype != first.dtype:
            # Mixed precisions would fail deep inside a matmul ("expected both ... same dtype"), or
            # silently promote; one dtype per batch is the contract.
            raise ValueError(
                f"{name}: expected dtype {first.dtype} as {first_name}, got {z.dtype}; cast every modality "
                "to one dtype (e.g. .float())"
            )
        if z.device != first.device:
            raise ValueError(f"{name}: expected device {first.device} as {first_name}, got {z.device}")
        if z.shape[0] != first.shape[0]:
            raise ValueError(
                f"{name}: expected {first.shape[0]} rows to pair with {first_name} "
                f"{tuple(first.shape)}, got shape {tuple(z.shape)}"
            )
        if same_dim and z.shape[1] != first.shape[1]:
            raise ValueError(
                f"{name}: expected dimension D = {first.shape[1]} as {first_name} "
                f"{tuple(first.shape)}, got shape {tuple(z.shape)}"
            )
    if validation_enabled():
        check_values(mods, normalised=normalised)
    return mods


def check_values(mods: Mapping[str, Tensor], *, normalised: bool = True) -> None:
    """Value checks of already shape-checked ``(B, D)`` matrices with one device synchronisation in all.

    A row's largest absolute entry is NaN or Inf exactly when the row holds a non-finite entry (``amax``
    propagates NaN) and 0 exactly when the row is all zeros, so one reduction per modality answers both
    questions, and one ``tolist()`` of the stacked flags reads all modalities at once (instead of two
    synchronisations per tensor). Only when a flag is set are the modalities re-checked one by one, for
    the detailed message of :func:`check_embeddings`.
    """
    flags = []
    for z in mods.values():
        peak = z.detach().abs().amax(dim=1)
        flags.append(~torch.isfinite(peak).all())
        if normalised:
            flags.append((peak == 0).any())
    if any(torch.stack(flags).tolist()):
        for name, z in mods.items():
            check_embeddings(z, name, normalised=normalised)


def check_labels(labels: Tensor | None, rows: int) -> Tensor | None:
    """Check optional class ids ``(B,)``."""
    if labels is None:
        return None
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != rows:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected shape ({rows},), got {shape}")
    if labels.is_floating_point():
        raise ValueError(f"labels: expected integer class ids, got dtype {labels.dtype}")
    return labels


def check_anchor(anchor: str | None, modalities: Sequence[str]) -> str:
    """Resolve the anchor modality: default the first one, else it must be present."""
    if anchor is None:
        return modalities[0]
    if anchor not in modalities:
        raise ValueError(f"anchor: unknown modality {anchor!r}; the batch has {list(modalities)}")
    return anchor


def check_number(value: object, name: str) -> float:
    """``value`` as a float, refusing booleans and non-numbers.

    ``float(True)`` is 1.0, so a flag passed where a number belongs (``temperature=True``) would silently
    become 1; it is rejected instead. Integers, floats, NumPy scalars and one-element tensors are numbers.
    """
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise ValueError(f"{name}: expected a number, got the boolean {value!r}")
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name}: expected a number, got the string {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__} {value!r}") from None


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Check a finite positive (or non-negative) hyper-parameter (booleans are not numbers)."""
    v = check_number(value, name)
    ok = v >= 0 if allow_zero else v > 0
    if not math.isfinite(v) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite value {bound}, got {value!r}")
    return v


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """Check a string option against its allowed values."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_mask(mask: Mapping[str, Tensor], mods: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Check a missing-modality mask ``modality -> (B,) bool`` (True = present) and fill absent keys.

    Modalities not named in the mask are present in every row. Rows marked present must have a direction.
    """
    if not isinstance(mask, Mapping):
        raise ValueError(f"mask: expected a dict modality -> (B,) bool tensor, got {type(mask).__name__}")
    first = next(iter(mods.values()))
    rows = first.shape[0]
    out: dict[str, Tensor] = {}
    for name in mask:
        if name not in mods:
            raise ValueError(f"mask: unknown modality {name!r}; the batch has {list(mods)}")
    for name, z in mods.items():
        m = mask.get(name)
        if m is None:
            m = torch.ones(rows, dtype=torch.bool, device=z.device)
        elif not isinstance(m, Tensor) or m.dtype != torch.bool or tuple(m.shape) != (rows,):
            got = f"{m.dtype} {tuple(m.shape)}" if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"mask[{name!r}]: expected a bool tensor of shape ({rows},), got {got}")
        if validation_enabled():
            zero = ((z.detach().abs().amax(dim=1) == 0) & m).nonzero()
            if zero.numel():
                raise ValueError(f"{name}: row {int(zero[0])} is marked present but is all zeros")
        out[name] = m
    if validation_enabled() and len(out) >= 2:
        # A row takes part in a cross-modal term only when two of its modalities are present. With no
        # such row every term is empty and the loss would be a silent 0 with no gradient: an error.
        present = torch.stack(list(out.values()), dim=1).sum(dim=1)
        if not bool((present >= 2).any()):
            raise ValueError(
                f"mask: no row has two present modalities (B = {rows}); every row is masked out of every "
                "pair, so the loss is undefined; drop this batch or fix the mask"
            )
    return out

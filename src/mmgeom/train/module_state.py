"""Module state that ``state_dict()`` does not hold, so that a resumed run continues exactly.

``state_dict()`` has parameters and buffers (a learnable temperature, DAGR's calibrated ``delta`` and its
call counter). A few modules keep more in plain attributes — :class:`~mmgeom.losses.DAGRRegularizer`
collects the drift of its first ``calibration_steps`` calls in ``_recorded`` before it fixes
``delta="auto"``. Those attributes are listed here (or by the module itself in a
``checkpoint_attributes`` tuple) and saved in the checkpoint's state file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..losses import DAGRRegularizer

_ATTRIBUTES: dict[type, tuple[str, ...]] = {DAGRRegularizer: ("_recorded",)}


def register_checkpoint_attributes(cls: type, *names: str) -> None:
    """Declare plain attributes of ``cls`` (and its subclasses) that checkpoints must save."""
    _ATTRIBUTES[cls] = tuple(dict.fromkeys((*_ATTRIBUTES.get(cls, ()), *names)))


def _attributes(module: nn.Module) -> tuple[str, ...]:
    names: list[str] = list(getattr(module, "checkpoint_attributes", ()))
    for cls, attrs in _ATTRIBUTES.items():
        if isinstance(module, cls):
            names.extend(attrs)
    return tuple(dict.fromkeys(names))


def _copy(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return copy.deepcopy(value)


def module_extra_state(module: nn.Module) -> dict[str, dict[str, Any]]:
    """``{submodule name: {attribute: copy}}`` of every declared attribute."""
    out: dict[str, dict[str, Any]] = {}
    for name, sub in module.named_modules():
        attrs = {a: _copy(getattr(sub, a)) for a in _attributes(sub) if hasattr(sub, a)}
        if attrs:
            out[name] = attrs
    return out


def load_module_extra_state(module: nn.Module, state: Mapping[str, Mapping[str, Any]]) -> None:
    """Put back what :func:`module_extra_state` saved (tensors stay on the CPU, as they were saved)."""
    subs = dict(module.named_modules())
    for name, attrs in state.items():
        if name not in subs:
            raise ValueError(f"checkpoint: no submodule {name!r} in {type(module).__name__} to restore")
        for attr, value in attrs.items():
            setattr(subs[name], attr, _copy(value))


def split_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A ``state_dict`` split into tensors (for safetensors) and anything else (``get_extra_state``)."""
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    others = {k: v for k, v in state.items() if not isinstance(v, Tensor)}
    return tensors, others

"""A module's ``state_dict`` split for a checkpoint: tensors go to safetensors, the rest to the state file.

A module keeps state that is not a parameter or buffer (DAGR's drift recorded while ``delta="auto"``
calibrates) through ``nn.Module.get_extra_state`` / ``set_extra_state``; ``state_dict()`` then holds it
under ``<submodule>._extra_state``. The trainer names no module: whatever a module returns there is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

#: Key suffix under which ``state_dict()`` holds ``get_extra_state()`` (torch's ``_EXTRA_STATE_KEY_SUFFIX``).
EXTRA_STATE_KEY = "_extra_state"


def split_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A ``state_dict`` split into tensors (for safetensors) and anything else (``get_extra_state``)."""
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    others = {k: v for k, v in state.items() if not isinstance(v, Tensor)}
    return tensors, others


def legacy_extra_state(module: nn.Module, attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Extra-state entries for ``module.load_state_dict`` from a checkpoint written before modules carried
    their own extra state (its ``loss_attributes``: ``{submodule: {attribute: value}}``).

    Each submodule's saved attributes become its ``<submodule>._extra_state`` entry, for the submodules
    whose ``state_dict()`` now has one; their ``set_extra_state`` reads the old attribute names.
    """
    expected = {k for k in module.state_dict() if k.rsplit(".", 1)[-1] == EXTRA_STATE_KEY}
    out: dict[str, Any] = {}
    for name, attrs in attributes.items():
        key = f"{name}.{EXTRA_STATE_KEY}" if name else EXTRA_STATE_KEY
        if key in expected:
            out[key] = dict(attrs)
    return out

"""Keep the scalar entries of a metrics dict as plain floats (what results files and logs record)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric scalar entries of ``metrics`` as floats: one-element tensors, ints and floats.

    Booleans and tensors of more than one element are left out (they are flags and per-row values, not
    metrics to log).
    """
    out = {}
    for k, v in metrics.items():
        if isinstance(v, Tensor):
            if v.numel() != 1:
                continue
            v = v.item()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(k)] = float(v)
    return out

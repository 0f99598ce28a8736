"""JSON of the results files: floats rounded (small files, stable diffs), non-finite floats as ``null``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = ["read_json", "write_json"]


def _clean(obj: Any, digits: int) -> Any:
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, Mapping):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, digits) for v in obj]
    if isinstance(obj, Tensor):
        return _clean(obj.tolist(), digits)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: Any, digits: int = 6) -> Path:
    """Write ``data`` as indented JSON: floats to ``digits`` significant digits, NaN/Inf as ``null``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(data, digits), indent=1) + "\n", encoding="utf-8")
    return out


def read_json(path: str | Path) -> Any:
    """The JSON document at ``path`` (``null`` stays ``None``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))

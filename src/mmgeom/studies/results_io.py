"""JSON of the results files: floats rounded (small files, stable diffs), non-finite floats as ``null``.

Writing is :func:`mmgeom._io.write_json` (atomic: a failed run never leaves half a results file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._io import write_json

__all__ = ["read_json", "write_json"]


def read_json(path: str | Path) -> Any:
    """The JSON document at ``path`` (``null`` stays ``None``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))

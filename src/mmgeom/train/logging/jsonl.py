"""``metrics.jsonl``: one JSON object per event, flushed as it is written."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from torch import Tensor


def to_jsonable(value: Any) -> Any:
    """Tensors and numbers to JSON values; non-finite floats become ``"nan"``, ``"inf"`` or ``"-inf"``."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().tolist() if value.numel() != 1 else float(value.detach().cpu())
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return to_jsonable(value.item())
    return str(value)


class JsonlWriter:
    """Appends events to a JSON Lines file.

    Every event is one object ``{"event": kind, "step": step, **fields}`` on its own line, flushed at
    once, so a crashed run keeps everything logged before the crash.

    Args:
        path: the file; parent folders are created.
        append: keep existing events (a continued run) instead of starting the file afresh.
    """

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, event: str, step: int, **fields: Any) -> dict[str, Any]:
        """Write one event and return the JSON-ready object."""
        if self._fh is None:
            raise ValueError(f"{self.path}: writer is closed")
        record = {"event": event, "step": int(step), **to_jsonable(fields)}
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self._fh.flush()
        return record

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All events of a JSONL file, in order."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]

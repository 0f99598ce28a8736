"""``metrics.jsonl``: one JSON object per event, flushed as it is written."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from torch import Tensor

from ...errors import FileFormatError


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
        try:
            self._fh.write(json.dumps(record, allow_nan=False) + "\n")
            self._fh.flush()
        except OSError as err:
            if err.filename is not None:
                raise
            # A buffered write names no file (ENOSPC while flushing): say which one.
            raise OSError(err.errno, err.strerror or str(err), str(self.path)) from err
        return record

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError as err:
                if err.filename is not None:
                    raise
                raise OSError(err.errno, err.strerror or str(err), str(self.path)) from err

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class TornLineWarning(UserWarning):
    """The last line of a ``metrics.jsonl`` was cut short (the run was killed mid-write) and is ignored."""


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All events of a ``metrics.jsonl`` file, in order, each checked.

    Every non-blank line must be a JSON object with a string ``"event"`` and an integer ``"step"``.
    One exception: a malformed **last** line with no newline after it is what a crash in the middle of a
    write leaves (:class:`JsonlWriter` writes each event and its newline in one call); it is dropped with
    a :class:`TornLineWarning`. Any other bad line is an error: dropping it would silently lose events.

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: naming the file and the 1-based line number, and what is wrong there.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such metrics file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        at = raw[: err.start].count(b"\n") + 1
        raise FileFormatError(f"{p}: line {at}: not UTF-8 text; the file is corrupt") from None
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")
    events: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problem = _event_problem(line)
        if problem is None:
            events.append(json.loads(line))
            continue
        if torn_tail and number == len(lines):
            warnings.warn(
                f"{p}: line {number} is cut short (the run stopped mid-write); ignored",
                TornLineWarning,
                stacklevel=2,
            )
            continue
        raise FileFormatError(
            f"{p}: line {number}: {problem}; the file is corrupt (edit or remove that line to read the rest)"
        )
    return events


def _event_problem(line: str) -> str | None:
    """What is wrong with one line of ``metrics.jsonl``, or ``None``."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError as err:
        return f"not JSON ({err.msg} at column {err.colno})"
    if not isinstance(event, dict):
        return f"expected a JSON object, got {type(event).__name__}"
    if not isinstance(event.get("event"), str):
        return 'no "event" name'
    step = event.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        return f'"step" must be an integer, got {step!r}'
    return None

"""Reading a run directory back: its config and the events of ``metrics.jsonl``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..train.logging import read_jsonl


class ReportError(ValueError):
    """The run directory cannot be reported on (no metrics file, matplotlib missing...)."""


@dataclass
class RunLog:
    """The events of one run, by kind, in order.

    Attributes:
        run_dir: the run directory.
        config_text: ``config.yaml`` as written (empty if absent).
        start: the ``start`` event (``{}`` if absent).
        train: ``train`` events (interval means of the loss terms, lr, grad norm, throughput).
        evals: ``eval`` events.
        other: ``skip``, ``resume``, ``interrupted``, ``error`` and ``end`` events.
    """

    run_dir: Path
    config_text: str = ""
    start: dict[str, Any] = field(default_factory=dict)
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)

    @property
    def end(self) -> dict[str, Any] | None:
        """The last ``end`` event, if the run finished."""
        ends = [e for e in self.other if e["event"] == "end"]
        return ends[-1] if ends else None

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The events of one of the ``other`` kinds."""
        return [e for e in self.other if e["event"] == kind]

    def series(self, events: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of ``key`` over ``events`` (missing and non-finite values left out)."""
        steps, values = [], []
        for e in events:
            v = number(e.get(key))
            if v is not None:
                steps.append(int(e["step"]))
                values.append(v)
        return steps, values


def number(value: Any) -> float | None:
    """A finite float, or ``None`` (strings such as ``"nan"`` written for non-finite values included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def read_run(run_dir: str | Path) -> RunLog:
    """Read ``config.yaml`` and ``metrics.jsonl`` of a run directory.

    ``metrics.jsonl`` is read by :func:`mmgeom.train.logging.read_jsonl`: a torn last line (a crash
    mid-write) is ignored with a warning; any other malformed line is an error naming its line.

    Raises:
        ReportError: no ``metrics.jsonl`` in the directory, or it is not a directory.
        FileFormatError: a malformed line of ``metrics.jsonl`` (file and line named).
    """
    root = Path(run_dir)
    if root.exists() and not root.is_dir():
        raise ReportError(f"{root}: is a file, not a run directory (one holds metrics.jsonl)")
    metrics = root / "metrics.jsonl"
    if not metrics.is_file():
        raise ReportError(f"{root}: no metrics.jsonl (is it a run directory?)")
    log = RunLog(root)
    config = root / "config.yaml"
    if config.is_file():
        log.config_text = config.read_text(encoding="utf-8")
    for event in read_jsonl(metrics):
        kind = event["event"]
        if kind == "start":
            log.start = event
        elif kind == "train":
            log.train.append(event)
        elif kind == "eval":
            log.evals.append(event)
        else:
            log.other.append(event)
    return log

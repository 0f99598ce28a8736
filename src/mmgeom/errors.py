"""Every exception class that more than one floor of mmgeom raises or catches.

They live on the ground floor so that any module can raise or catch them without importing the floor
that happens to raise them first (``models`` catches data errors, the CLI catches training errors).
The old import paths keep working: :mod:`mmgeom.data` exports :class:`DataUnavailableError` and
:mod:`mmgeom.train` the training errors.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataUnavailableError",
    "FileFormatError",
    "NonFiniteLossError",
    "TrainingInterrupted",
]


class DataUnavailableError(RuntimeError):
    """A bundled data source is not installed; the message carries the install command."""


class FileFormatError(ValueError):
    """A file mmgeom reads back (``metrics.jsonl``, a run folder) is malformed.

    The message names the file, the line or key, what was found and what to do; it is a ``ValueError``
    so callers that catch bad input keep catching it.
    """


class ConfigError(ValueError):
    """An invalid experiment config; the message names every offending key path (``loss.temprature``)."""


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN or Inf.

    Attributes:
        step: the 1-based step at which it happened.
        term: the loss term (or ``"embeddings/<modality>"``) that went non-finite first.
        value: that term's value.
        skipped: steps skipped before this one (``faults.on_non_finite: skip``).
    """

    def __init__(
        self, step: int, term: str, value: float, skipped: int = 0, max_skips: int | None = None
    ) -> None:
        self.step, self.term, self.value = int(step), str(term), float(value)
        self.skipped = int(skipped)
        message = f"non-finite loss at step {self.step}: {self.term} = {self.value}"
        if max_skips is not None:
            message += f"; {self.skipped} non-finite steps skipped already (faults.max_skips = {max_skips})"
        super().__init__(message)


class CheckpointError(RuntimeError):
    """No usable checkpoint: none written yet, or every one is corrupt (the message lists why)."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run between two steps after a checkpoint was written.

    Attributes:
        step: updates done.
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        checkpoint: the checkpoint directory written on the way out.
        run_dir: the run directory (``--resume`` it).
    """

    def __init__(self, step: int, signal_name: str, checkpoint: Path | None, run_dir: Path) -> None:
        self.step, self.signal_name, self.checkpoint, self.run_dir = (
            int(step),
            signal_name,
            checkpoint,
            run_dir,
        )
        where = f"; checkpoint {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"{signal_name} received: stopped after step {self.step}{where}")

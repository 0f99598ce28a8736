"""The run directory: where ``config.yaml``, ``metrics.jsonl`` and the weights go."""

from __future__ import annotations

import time
from pathlib import Path

#: Default parent of run directories.
RUNS_ROOT = Path("runs")

#: The files of a run directory (checkpoints go to ``checkpoints/``, see :mod:`.checkpoint_store`).
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_FILE = "model.safetensors"
LOSS_WEIGHTS_FILE = "loss.safetensors"


def resolve_run_dir(name: str, out: str | Path | None = None, root: str | Path = RUNS_ROOT) -> Path:
    """``out`` when given, else a fresh ``<root>/<name>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken).

    The directory is created. An explicit ``out`` may exist when it is empty or a run directory (it
    holds ``config.yaml``, ``metrics.jsonl`` or ``checkpoints/``); its ``metrics.jsonl`` and
    ``config.yaml`` are then replaced by the new run's. Any other non-empty folder is refused: the run
    would write, and prune checkpoints, among files it did not create.

    Raises:
        ValueError: ``out`` is a file, or a non-empty folder that is not a run directory.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: exists and is not a directory")
        if path.is_dir() and not is_run_folder(path) and any(path.iterdir()):
            raise ValueError(
                f"{path}: exists, is not empty and is not an mmgeom run directory (no {CONFIG_FILE}, "
                f"{METRICS_FILE} or checkpoints/); give a new or empty folder (--out)"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` holds what a run writes (``config.yaml``, ``metrics.jsonl`` or ``checkpoints/``)."""
    p = Path(path)
    return (p / CONFIG_FILE).is_file() or (p / METRICS_FILE).is_file() or (p / "checkpoints").is_dir()

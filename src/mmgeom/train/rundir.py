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

    The directory is created. An explicit ``out`` may exist; its ``metrics.jsonl`` and ``config.yaml``
    are then replaced by the new run's.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: exists and is not a directory")
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

"""Resuming a run: which run directory, whether the config still matches, and the metrics file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..errors import CheckpointError, ConfigError
from .checkpoint_store import CHECKPOINTS_DIR, CheckpointStore
from .config import ExperimentConfig
from .logging.jsonl import TornLineWarning, read_jsonl
from .rundir import RUNS_ROOT

#: Config keys that may differ between the interrupted and the resumed run: they change how the run is
#: watched, evaluated, saved or where it runs, not the sequence of updates.
RESUMABLE_CHANGES = (
    "train.progress",
    "train.num_threads",
    "train.eval_every",
    "train.eval_before",
    "train.log_every",
    "train.device",
    "eval.",
    "run.",
    "checkpoint.",
    "logging.",
    "faults.",
    "distributed.backend",
    "distributed.timeout_s",
)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and not prefix.endswith("kwargs."):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: ExperimentConfig, current: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two configs (``loss.kwargs`` compared as a whole)."""
    a, b = _flatten(saved.to_dict()), _flatten(current.to_dict())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def check_resume_config(
    saved: ExperimentConfig | dict[str, Any],
    current: ExperimentConfig,
    source: str = "the run's config.yaml",
) -> None:
    """Refuse to resume when a key that shapes the updates changed (data, model, loss, optim, steps...).

    Args:
        saved: the run's config (``config.yaml``), or the plain dict a checkpoint recorded.
        current: the config of the resumed run.
        source: what ``saved`` came from, for the message.

    Raises:
        ConfigError: naming each such key with its saved and current value.
    """
    a = _flatten(saved.to_dict() if isinstance(saved, ExperimentConfig) else saved)
    b = _flatten(current.to_dict())
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    bad = [k for k in changed if not k.startswith(RESUMABLE_CHANGES)]
    if bad:
        lines = [f"{k}: run has {a.get(k)!r}, now {b.get(k)!r}" for k in bad]
        raise ConfigError(
            f"cannot resume: the config differs from {source} in keys that change training "
            "(resume with the same config, or start a new run):\n  " + "\n  ".join(lines)
        )


def trim_metrics(path: str | Path, step: int) -> int:
    """Drop the events an interrupted run logged after its checkpoint at ``step`` (and any ``end``).

    Returns:
        The number of events removed. A missing file is left missing; a torn last line (the process was
        killed mid-write) is dropped.

    Raises:
        FileFormatError: a malformed line before the last one (:func:`~.logging.read_jsonl`); the file is
            then left as it was.
    """
    p = Path(path)
    if not p.is_file():
        return 0
    lines = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TornLineWarning)  # a torn tail is expected after a crash
        events = read_jsonl(p)
    kept = [e for e in events if int(e["step"]) <= step and e["event"] != "end"]
    atomic_write_text(p, "".join(json.dumps(e) + "\n" for e in kept))
    return len(lines) - len(kept)


def find_resumable_run(name: str, root: str | Path = RUNS_ROOT) -> Path:
    """The newest ``<root>/<name>-*`` directory that holds a checkpoint (``--resume`` without a path).

    Raises:
        CheckpointError: no such directory.
    """
    base = Path(root)
    runs = [
        p for p in base.glob(f"{name}-*") if p.is_dir() and CheckpointStore(p / CHECKPOINTS_DIR).candidates()
    ]
    if not runs:
        raise CheckpointError(
            f"--resume: no run directory {base}/{name}-* with a checkpoint; give the run directory: "
            "mmgeom train CONFIG --resume RUN_DIR"
        )
    return max(runs, key=lambda p: (p.stat().st_mtime, p.name))

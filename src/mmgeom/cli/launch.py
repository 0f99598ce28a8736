"""What ``mmgeom train`` does around the trainer: find the run to resume, join torchrun."""

from __future__ import annotations

from pathlib import Path

from ..distributed import DistributedInfo, init_distributed, launched_by_torchrun
from ..errors import CheckpointError, ConfigError
from ..train import ExperimentConfig, find_resumable_run
from ..train.checkpoint_store import CHECKPOINTS_DIR, CheckpointStore

#: The value ``--resume`` takes when given without a run directory.
RESUME_LATEST = "@latest"


def resolve_resume_dir(resume: str, out: Path | None, cfg: ExperimentConfig) -> Path:
    """The run directory ``--resume [RUN_DIR]`` continues.

    ``RUN_DIR`` when given; otherwise ``--out``, then ``run.out_dir``, then the newest
    ``runs/<run.name>-*`` directory holding a checkpoint.

    Raises:
        CheckpointError: the directory does not exist or has no checkpoint.
        ConfigError: both ``RUN_DIR`` and a different ``--out`` are given.
    """
    if resume != RESUME_LATEST:
        run_dir = Path(resume)
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise ConfigError(f"--resume {run_dir} and --out {out}: give one run directory")
    elif out is not None:
        run_dir = Path(out)
    elif cfg.run.out_dir is not None:
        run_dir = Path(cfg.run.out_dir)
    else:
        return find_resumable_run(cfg.run.name)
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume: {run_dir} is not a run directory")
    if not CheckpointStore(run_dir / CHECKPOINTS_DIR).candidates():
        raise CheckpointError(
            f"--resume: {run_dir} has no checkpoint (set checkpoint.every, or stop a run with Ctrl-C)"
        )
    return run_dir


def join_distributed(cfg: ExperimentConfig) -> DistributedInfo:
    """Under ``torchrun``, initialise the process group from its variables (``distributed`` section);
    otherwise a single process."""
    if not launched_by_torchrun():
        return DistributedInfo()
    d = cfg.distributed
    try:
        return init_distributed(d.backend, cfg.train.device, d.timeout_s)
    except ValueError as err:
        raise ConfigError(f"distributed.backend: {err}") from None

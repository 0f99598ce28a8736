"""What ``mmgeom train`` does around the trainer: find the config and the run to resume, join torchrun."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..distributed import DistributedInfo, init_distributed, launched_by_torchrun
from ..errors import CheckpointError, ConfigError
from .checkpoint_store import CHECKPOINTS_DIR, CheckpointStore
from .config import ExperimentConfig
from .config_load import load_config
from .demo import list_packaged_configs, packaged_config_path
from .resume import find_resumable_run
from .yaml_io import parse_value, read_yaml

#: The value ``--resume`` takes when given without a run directory.
RESUME_LATEST = "@latest"


def resolve_config_path(config: str) -> Path:
    """A YAML file, or the name of a packaged config (``demo``).

    Raises:
        ConfigError: neither exists.
    """
    path = Path(config)
    if path.exists():
        return path
    if config.removesuffix(".yaml") in list_packaged_configs():
        return packaged_config_path(config)
    raise ConfigError(f"{config}: config file not found (packaged: {', '.join(list_packaged_configs())})")


def load_cli_config(config: str, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """:func:`resolve_config_path` then :func:`~mmgeom.train.load_config` with the overrides.

    A packaged config shortened with ``--set train.steps=N`` (and no warm-up override) gets the warm-up
    :func:`~mmgeom.train.demo_config` gives ``mmgeom demo --steps N``: at most ``N // 10`` steps, so
    ``mmgeom train demo --set train.steps=20`` is valid. A YAML file of your own is taken as written.
    """
    items = list(overrides)
    path = resolve_config_path(config)
    if not Path(config).exists():
        items = _scaled_warmup(path, items)
    return load_config(path, items)


def _scaled_warmup(path: Path, overrides: list[str]) -> list[str]:
    keys = [o.partition("=")[0].strip() for o in overrides]
    if "train.steps" not in keys or "optim.warmup_steps" in keys:
        return overrides
    try:
        steps = int(parse_value(overrides[len(keys) - 1 - keys[::-1].index("train.steps")].partition("=")[2]))
        raw = read_yaml(path) or {}
        warmup = int(raw.get("optim", {}).get("warmup_steps", 0))
    except (TypeError, ValueError, AttributeError):
        return overrides  # validation reports the bad value
    if steps < 1 or warmup <= steps // 10:
        return overrides
    return [*overrides, f"optim.warmup_steps={steps // 10}"]


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

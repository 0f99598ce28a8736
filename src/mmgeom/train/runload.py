"""Load a finished (or interrupted) run back: its config, its trained encoder and its data.

A run directory is what ``mmgeom train`` / ``mmgeom demo`` write (``config.yaml``, ``metrics.jsonl``,
``model.safetensors``, ``checkpoints/``; see ``docs/training.md``). :func:`load_run` rebuilds the same
encoder from ``config.yaml``, loads the chosen weights into it (eval mode) and rebuilds the data exactly as
training saw it (the same seeded split, standardised with the training statistics), so that anything
evaluated afterwards — ``mmgeom eval RUN``, generation — runs on the rows and the features the run used.

Example:
    >>> run = load_run("runs/demo-20261123-113702")
    >>> emb = embed_views(run.encoder, run.data.part("test"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ..data import SplitDataset
from ..errors import CheckpointError
from ..models import MultiViewEncoder
from .builders import build_data, build_encoder
from .checkpoint import load_tensors
from .checkpoint_store import BEST_NAME, CHECKPOINTS_DIR, MODEL_FILE, CheckpointStore
from .config import ExperimentConfig
from .config_load import load_config
from .rundir import CONFIG_FILE, WEIGHTS_FILE

__all__ = ["CHECKPOINT_CHOICES", "LoadedRun", "is_run_dir", "load_run"]

#: Named values of ``load_run(checkpoint=...)`` (besides ``None`` and a path).
CHECKPOINT_CHOICES = ("final", "best", "latest")


@dataclass
class LoadedRun:
    """A run read back from disk.

    Attributes:
        run_dir: the run directory.
        config: its resolved ``config.yaml``.
        encoder: the :class:`~mmgeom.models.MultiViewEncoder` built from ``config.model`` with the chosen
            weights loaded, in eval mode, on the requested device.
        data: the train / val / test data built with ``build_data(config.data)`` (the split and
            standardisation training used).
        weights: the file or checkpoint directory the weights came from.
        step: updates done when those weights were saved (``None`` when the file does not say).
    """

    run_dir: Path
    config: ExperimentConfig
    encoder: MultiViewEncoder
    data: SplitDataset
    weights: Path
    step: int | None


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a run's ``config.yaml``."""
    return (Path(path) / CONFIG_FILE).is_file()


def _file_step(path: Path) -> int | None:
    try:
        with safe_open(str(path), framework="pt") as fh:
            step = (fh.metadata() or {}).get("step")
    except Exception as err:  # SafetensorError: truncated or not safetensors
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    return int(step) if step is not None and str(step).isdigit() else None


def _weights(
    run_dir: Path, checkpoint: str | Path | None
) -> tuple[dict[str, torch.Tensor], Path, int | None]:
    """The encoder tensors chosen by ``checkpoint``, where they came from, and their step."""
    store = CheckpointStore(run_dir / CHECKPOINTS_DIR)
    final = run_dir / WEIGHTS_FILE
    if checkpoint is None:
        if final.is_file():
            return load_tensors(final), final, _file_step(final)
        if not store.candidates():
            raise FileNotFoundError(
                f"{run_dir}: no weights: neither {WEIGHTS_FILE} (the run did not finish, or "
                "run.save_weights was false) nor a checkpoint in checkpoints/"
            )
        checkpoint = "latest"
    if checkpoint == "final":
        if not final.is_file():
            raise FileNotFoundError(
                f"{run_dir}: no {WEIGHTS_FILE} (the run did not finish, or run.save_weights was false); "
                "use checkpoint 'latest' or a checkpoint directory"
            )
        return load_tensors(final), final, _file_step(final)
    if checkpoint == "latest":
        ckpt = store.load_latest()
        return ckpt.model, ckpt.path, ckpt.step
    if checkpoint == "best":
        best = store.root / BEST_NAME
        if not best.is_dir():
            raise FileNotFoundError(
                f"{best}: no best checkpoint (train with checkpoint.best_metric set to keep one)"
            )
        ckpt = store.load(best)
        return ckpt.model, ckpt.path, ckpt.step
    path = Path(checkpoint)
    if not path.exists() and (run_dir / path).exists():
        path = run_dir / path
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{path}: not a checkpoint directory (no {MODEL_FILE})")
        ckpt = store.load(path)
        return ckpt.model, ckpt.path, ckpt.step
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(
                f"checkpoint: expected a .safetensors file or a checkpoint directory, got {path}"
            )
        return load_tensors(path), path, _file_step(path)
    raise FileNotFoundError(
        f"checkpoint: {checkpoint!s} is neither {', '.join(map(repr, CHECKPOINT_CHOICES))} nor an existing "
        f"file or directory (also looked in {run_dir})"
    )


def load_run(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    data: SplitDataset | None = None,
) -> LoadedRun:
    """Rebuild a run's encoder with trained weights, and its data.

    Args:
        run_dir: a directory written by ``mmgeom train`` / ``mmgeom demo`` (it holds ``config.yaml``).
        checkpoint: which weights: ``None`` — ``model.safetensors`` (saved at the end of training), or the
            newest checkpoint that verifies when the run has none; ``"final"`` — ``model.safetensors``
            only; ``"best"`` — ``checkpoints/best`` (``checkpoint.best_metric``); ``"latest"`` — the newest
            checkpoint that verifies; or a path: a checkpoint directory or a ``.safetensors`` file
            (relative paths are also looked up inside ``run_dir``).
        device: where the encoder goes.
        data: the run's data when already built (skips ``build_data(config.data)``).

    Returns:
        A :class:`LoadedRun`; its encoder is in eval mode.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or is not a run (no ``config.yaml``), or the
            requested weights are not there.
        ConfigError: ``config.yaml`` is not a valid config.
        CheckpointError: a checkpoint is corrupt (or none verifies).
        ValueError: the weights do not fit the encoder the config describes.
        DataUnavailableError: the dataset's package is missing.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run directory")
    if not is_run_dir(root):
        raise FileNotFoundError(
            f"{root}: not a run directory (no {CONFIG_FILE}; runs are written by mmgeom train / mmgeom demo)"
        )
    cfg = load_config(root / CONFIG_FILE)
    split_data = data if data is not None else build_data(cfg.data)
    encoder = build_encoder(cfg.model, split_data.train.view_dims)
    tensors, source, step = _weights(root, checkpoint)
    try:
        encoder.load_state_dict(tensors)
    except RuntimeError as err:
        raise ValueError(
            f"{source}: the weights do not fit the encoder of {root / CONFIG_FILE}: {err}"
        ) from None
    encoder.to(device).eval()
    return LoadedRun(root, cfg, encoder, split_data, source, step)

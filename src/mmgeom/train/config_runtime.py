"""Config sections for how a run is executed: checkpoints, logging, distributed training, faults.

They all have defaults, so configs written before these sections existed stay valid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .config_base import Section

#: Prefixes of the evaluation keys a best checkpoint can be chosen by.
METRIC_PREFIXES = ("retrieval/", "classification/", "geometry/", "chance/")


class CheckpointConfig(Section):
    """Resumable checkpoints under ``RUN_DIR/checkpoints/``.

    Attributes:
        every: write a checkpoint every N steps (and after the last step); 0 writes none, except the one
            a SIGINT/SIGTERM always writes.
        keep_last: how many step checkpoints to keep (the oldest are deleted first).
        best_metric: an evaluation key (``retrieval/mean/hit@1``); when set, the checkpoint of the best
            evaluation so far is kept in ``checkpoints/best``.
        best_mode: ``"max"`` (higher is better) or ``"min"``.
    """

    every: int = Field(default=0, ge=0)
    keep_last: int = Field(default=2, ge=1)
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"

    @field_validator("best_metric")
    @classmethod
    def _metric_key(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(METRIC_PREFIXES):
            raise ValueError(
                f"expected an evaluation key starting with one of {list(METRIC_PREFIXES)} "
                f"(e.g. retrieval/mean/hit@1), got {v!r}"
            )
        return v


class LoggingConfig(Section):
    """Optional loggers besides ``metrics.jsonl`` (which is always written).

    Attributes:
        tensorboard: also write TensorBoard event files (needs the ``tensorboard`` package).
        tensorboard_dir: where; default ``RUN_DIR/tensorboard``.
    """

    tensorboard: bool = False
    tensorboard_dir: str | None = None


class DistributedConfig(Section):
    """Data-parallel training under ``torchrun`` (ignored in a single process).

    Attributes:
        backend: ``"auto"`` (nccl on CUDA, gloo on CPU), ``"gloo"`` or ``"nccl"``.
        loss_regime: ``"global"`` (every rank evaluates the loss on the gathered global batch; any loss)
            or ``"local"`` (each rank its own rows against the gathered columns; infonce only).
        timeout_s: how long a collective waits for the other ranks.
    """

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    loss_regime: Literal["global", "local"] = "global"
    timeout_s: float = Field(default=1800.0, gt=0.0)


class FaultsConfig(Section):
    """What a NaN/Inf embedding, loss term or gradient norm does.

    Attributes:
        on_non_finite: ``"stop"`` the run (naming the step and the term) or ``"skip"`` the update.
        max_skips: with ``"skip"``, the run stops at the non-finite step after ``max_skips`` skipped ones.
    """

    on_non_finite: Literal["stop", "skip"] = "stop"
    max_skips: int = Field(default=10, ge=0)

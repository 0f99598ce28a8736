"""The experiment config schema: pydantic v2 sections (reading YAML and overrides: :mod:`.config_load`).

Every section forbids unknown keys, so a typo is an error that names its key path::

    ConfigError: invalid config demo.yaml:
      loss.temprature: unknown key; allowed keys: name, kwargs, use_labels

Example:
    >>> from mmgeom.train import load_config
    >>> cfg = load_config("configs/demo.yaml", overrides=["optim.lr=1e-3", "train.steps=200"])
    >>> cfg.optim.lr
    0.001
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from itertools import combinations
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from ..losses import create_loss, get_loss_class, list_losses
from ..models import list_heads
from .config_base import Section, _error
from .config_data import DataConfig
from .config_runtime import CheckpointConfig, DistributedConfig, FaultsConfig, LoggingConfig
from .yaml_io import dump_yaml


class ModelConfig(Section):
    """One projection head per view into a shared ``out_dim``-dimensional space.

    Attributes:
        head: registered head kind, ``"mlp"`` or ``"linear"``.
        out_dim: dimension of the shared space.
        hidden: hidden width (mlp).
        depth: number of linear layers (mlp).
        dropout: dropout after hidden activations (mlp).
        layer_norm: LayerNorm after hidden linear layers (mlp).
        activation: ``gelu``, ``relu``, ``silu`` or ``tanh`` (mlp).
    """

    head: str = "mlp"
    out_dim: int = Field(default=64, ge=1)
    hidden: int = Field(default=256, ge=1)
    depth: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    layer_norm: bool = True
    activation: Literal["gelu", "relu", "silu", "tanh"] = "gelu"

    @field_validator("head")
    @classmethod
    def _known_head(cls, v: str) -> str:
        if v not in list_heads():
            raise ValueError(f"unknown head {v!r}; registered heads: {list_heads()}")
        return v

    def head_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`mmgeom.models.create_head` (beyond in/out dims)."""
        if self.head == "linear":
            return {}
        return {
            "hidden": self.hidden,
            "depth": self.depth,
            "dropout": self.dropout,
            "layer_norm": self.layer_norm,
            "activation": self.activation,
        }


def _accepted_arguments(cls: type) -> tuple[list[str], bool]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


class LossConfig(Section):
    """A registered loss and its constructor arguments: ``create_loss(name, **kwargs)``.

    Attributes:
        name: a registered loss name (``mmgeom losses`` lists them).
        kwargs: constructor arguments; checked against the loss's signature and by building it once.
        use_labels: pass the class labels to the loss (multi-positive / supervised variants).
    """

    name: str = "infonce"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    use_labels: bool = False

    @field_validator("name")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        if v not in list_losses():
            raise ValueError(f"unknown loss {v!r}; registered losses: {list_losses()}")
        return v

    @model_validator(mode="after")
    def _kwargs_build(self) -> LossConfig:
        loss_cls = get_loss_class(self.name)
        accepted, open_ended = _accepted_arguments(loss_cls)
        if not open_ended:
            for key in self.kwargs:
                if key not in accepted:
                    close = difflib.get_close_matches(key, accepted, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise _error(
                        f"{self.name} has no argument {key!r}; {hint}accepted: {', '.join(accepted)}",
                        key=f"kwargs.{key}",
                    )
        try:
            create_loss(self.name, **self.kwargs)
        except (ValueError, TypeError) as err:
            raise _error(f"{self.name}: {err}", key="kwargs") from None
        return self


class OptimConfig(Section):
    """AdamW with linear warm-up then cosine decay (or constant), and gradient-norm clipping.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW betas.
        warmup_steps: linear warm-up length (``<= train.steps``).
        schedule: ``"cosine"`` decay to ``min_lr`` after warm-up, or ``"constant"``.
        min_lr: floor of the cosine decay (``<= lr``).
        grad_clip: max global gradient L2 norm; ``None`` disables clipping.
    """

    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(default=0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr: float = Field(default=0.0, ge=0.0)
    grad_clip: float | None = Field(default=1.0, gt=0.0)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"expected two values in [0, 1), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _min_lr(self) -> OptimConfig:
        if self.min_lr > self.lr:
            raise _error(f"min_lr={self.min_lr} exceeds lr={self.lr}", key="min_lr")
        return self


class TrainConfig(Section):
    """Loop length, batch, seed and logging cadence.

    Attributes:
        steps: optimizer updates.
        batch_size: rows per batch (>= 2: contrastive losses need negatives).
        seed: seeds model initialisation, batch order and dropout.
        eval_every: evaluate every N steps; 0 evaluates only before training and at the end.
        eval_before: evaluate the untrained model at step 0.
        log_every: write a ``train`` event (losses averaged since the previous one) every N steps.
        progress: show a tqdm progress bar.
        device: torch device string.
        num_threads: torch intra-op CPU threads during :meth:`Trainer.fit` (restored afterwards);
            ``None`` keeps torch's default. Small models train faster and far more steadily on a
            busy machine with 1 thread than with spinning OpenMP workers.
        precision: ``"fp32"``, or ``"bf16"`` autocast of the encoder and loss forward (CPU and CUDA;
            the losses still accumulate their O(B^2) reductions in float32).
        deterministic: ``torch.use_deterministic_algorithms(True)`` during :meth:`Trainer.fit`
            (bit-identical reruns on GPUs too, at some speed cost).
    """

    steps: int = Field(default=500, ge=1)
    batch_size: int = Field(default=256, ge=2)
    seed: int = 0
    eval_every: int = Field(default=0, ge=0)
    eval_before: bool = True
    log_every: int = Field(default=10, ge=1)
    progress: bool = True
    device: str = "cpu"
    num_threads: int | None = Field(default=None, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    deterministic: bool = False

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, v: str) -> str:
        # Only the spelling here: whether this machine has the device is checked when a run starts
        # (mmgeom.train.runtime.usable_device), so a GPU config still validates on a laptop.
        try:
            torch.device(v)
        except (RuntimeError, ValueError, TypeError):
            raise ValueError(f"{v!r} is not a torch device; e.g. cpu, cuda, cuda:1, mps") from None
        return v


class EvalConfig(Section):
    """Cross-view instance retrieval (the same row is the positive) and geometry diagnostics.

    Attributes:
        split: ``"val"`` or ``"test"``.
        pairs: ``"all"`` view pairs, or an explicit list of ``[query_view, gallery_view]``.
        directions: ``"both"`` (query→gallery and gallery→query, and their mean) or ``"forward"``.
        ks: cut-offs for hit@K.
        diagnostics: also run :func:`mmgeom.geometry.diagnose` on the embeddings.
        classification: also score nearest-class-centroid accuracy per view and of the fused embedding
            (centroids from the training split; ``classification/...`` keys).
    """

    split: Literal["val", "test"] = "val"
    pairs: Literal["all"] | list[tuple[str, str]] = "all"
    directions: Literal["both", "forward"] = "both"
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10])
    diagnostics: bool = True
    classification: bool = True

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError(f"expected a non-empty list of integers >= 1, got {v}")
        return sorted(set(v))

    def resolve_pairs(self, views: Iterable[str]) -> list[tuple[str, str]]:
        """The ``(query, gallery)`` pairs to score, in the forward direction."""
        names = list(views)
        if self.pairs == "all":
            return list(combinations(names, 2))
        return [(q, g) for q, g in self.pairs]


class RunConfig(Section):
    """Where results go.

    Attributes:
        name: run name; the default directory is ``runs/<name>-<timestamp>``.
        out_dir: explicit run directory (the CLI's ``--out`` overrides it).
        save_weights: write ``model.safetensors`` at the end.
    """

    name: str = "run"
    out_dir: str | None = None
    save_weights: bool = True


class ExperimentConfig(Section):
    """The whole experiment: ``data``, ``model``, ``loss``, ``optim``, ``train``, ``eval``, ``run``, and
    how it runs: ``checkpoint``, ``logging``, ``distributed``, ``faults``."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)

    @model_validator(mode="after")
    def _cross_section(self) -> ExperimentConfig:
        if self.optim.warmup_steps > self.train.steps:
            raise _error(
                f"warmup_steps={self.optim.warmup_steps} exceeds train.steps={self.train.steps}",
                path="optim.warmup_steps",
            )
        views = self.data.view_names()
        for q, g in self.eval.resolve_pairs(views):
            for v in (q, g):
                if v not in views:
                    raise _error(f"view {v!r} is not among the data views {list(views)}", path="eval.pairs")
            if q == g:
                raise _error(f"a pair needs two different views, got [{q}, {g}]", path="eval.pairs")
        if self.distributed.loss_regime == "local" and self.loss.name != "infonce":
            raise _error(
                f"the local loss regime is implemented for infonce only, not {self.loss.name!r}; use global",
                path="distributed.loss_regime",
            )
        metric = self.checkpoint.best_metric
        if metric is not None and metric.startswith("classification/") and not self.eval.classification:
            raise _error(f"{metric!r} needs eval.classification: true", path="checkpoint.best_metric")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples as lists): what ``config.yaml`` holds."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The resolved config as YAML text (loads back to an equal config)."""
        return dump_yaml(self.to_dict())


__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
]

"""The trainer: one update (:meth:`Trainer.train_step`), evaluation, and the resumable state.

The loop itself (logging, periodic evaluation, checkpoints, signals) is :mod:`mmgeom.train.loop`; it runs
behind :meth:`Trainer.fit`. The same trainer runs in one process or in every rank of a ``torchrun`` job:
when a process group is initialised, the encoder is wrapped in DDP, each rank takes its block of the
global batch (:func:`~mmgeom.distributed.shard_rows`) and the loss is evaluated on the gathered global
batch (:class:`~mmgeom.distributed.DistributedLoss`).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data import BatchSampler, SplitDataset
from ..data.store_training import StoreRows
from ..distributed import (
    DistributedLoss,
    all_gather_object,
    any_rank,
    average_gradients,
    distributed_info,
    shard_rows,
)
from ..errors import ConfigError, NonFiniteLossError
from ..evaluation import evaluate_split
from ..losses import LossOutput
from ..seeding import capture_rng_state, restore_rng_state, seed_everything
from ..version import __version__
from .builders import build_data, build_encoder, build_loss, build_optimizer
from .checkpoint_store import Checkpoint
from .config import ExperimentConfig
from .faults import Fault, embedding_fault, loss_fault
from .loop import run_fit
from .module_state import legacy_extra_state, split_state_dict
from .result import TrainResult
from .runtime import usable_device
from .schedule import build_scheduler
from .step_values import StepValues, from_floats, loss_values

__all__ = ["TrainResult", "Trainer", "train"]

#: Version of the trainer state layout inside checkpoints.
STATE_FORMAT = 1


class Trainer:
    """Trains a :class:`~mmgeom.models.MultiViewEncoder` with a registered loss on a split dataset.

    Args:
        config: the validated experiment config.
        run_dir: where ``config.yaml``, ``metrics.jsonl``, checkpoints and weights go; default
            ``runs/<run.name>-<timestamp>`` (or ``run.out_dir``).
        data: a prepared split (default: built from ``config.data``).
        encoder: maps ``{view: (B, D_view)}`` to ``{view: (B, D)}`` (default: from ``config.model``).
        loss: a loss called as ``loss(batch) -> LossOutput`` (default: ``create_loss`` from ``config.loss``).
        progress: show the tqdm bar (default ``config.train.progress``).
        resume: continue from the newest usable checkpoint in ``run_dir`` (see :meth:`fit`).

    Raises:
        ConfigError: the batch size exceeds the training rows or is not divisible by the number of
            processes, the evaluation split is empty, or TensorBoard is asked for but not installed.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: str | Path | None = None,
        *,
        data: SplitDataset | None = None,
        encoder: nn.Module | None = None,
        loss: nn.Module | None = None,
        progress: bool | None = None,
        resume: bool = False,
    ) -> None:
        self.config = config
        self.dist = distributed_info()
        self.progress = (config.train.progress if progress is None else bool(progress)) and self.dist.is_main
        self.device = usable_device(config.train.device)
        if self.device.type == "cuda" and self.device.index is None and self.dist.world_size > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        # Seeded for the run (weight init, dropout); fit() puts back the generators' states from here.
        self._caller_rng = capture_rng_state()
        seed_everything(config.train.seed)
        self.data = data if data is not None else build_data(config.data)
        train = self.data.train
        if config.train.batch_size > len(train):
            raise ConfigError(
                f"train.batch_size: {config.train.batch_size} exceeds the {len(train)} training rows"
            )
        if config.train.batch_size % self.dist.world_size:
            raise ConfigError(
                f"train.batch_size: {config.train.batch_size} is not divisible by the "
                f"{self.dist.world_size} processes (it is the global batch, split evenly across ranks)"
            )
        if len(self.data.part(config.eval.split)) < 2:
            raise ConfigError(f"eval.split: the {config.eval.split!r} split has fewer than 2 rows")
        if config.logging.tensorboard and self.dist.is_main:
            from .logging.tensorboard import require_tensorboard

            require_tensorboard()
        self.encoder = (encoder if encoder is not None else build_encoder(config.model, train.view_dims)).to(
            self.device
        )
        self.loss_fn = (loss if loss is not None else build_loss(config.loss)).to(self.device)
        self.params = [p for m in (self.encoder, self.loss_fn) for p in m.parameters() if p.requires_grad]
        # Every module of the encoder and the loss, flat: checking their modes costs 2 us, a train() 0.2 ms.
        self._modules = [*self.encoder.modules(), *self.loss_fn.modules()]
        self.loss_params = [p for p in self.loss_fn.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(config, [self.encoder, self.loss_fn])
        o = config.optim
        self.scheduler = build_scheduler(
            self.optimizer, config.train.steps, o.warmup_steps, o.min_lr, o.schedule
        )
        self.sampler = BatchSampler(len(train), config.train.batch_size, seed=config.train.seed)
        # A store's training rows stay on disk; train_step reads each batch's rows (and their mask).
        self.train_rows = train if isinstance(train, StoreRows) else None
        if (
            self.train_rows is not None
            and self.train_rows.has_masks
            and not getattr(self.loss_fn, "supports_mask", True)
        ):
            raise ConfigError(
                f"loss.name: {config.loss.name!r} does not accept missing-modality masks, and a modality of "
                f"{config.data.store} is absent from some rows; use unialign or dagr, or choose modalities "
                "present in every row"
            )
        self.train_views = {v: x.to(self.device) for v, x in train.views.items()}
        self.train_labels = train.labels.to(self.device)
        self.pairs = config.eval.resolve_pairs(train.view_names)
        self.model: nn.Module = self.encoder
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.encoder, device_ids=ids)
        self.loss_call = DistributedLoss(self.loss_fn, regime=config.distributed.loss_regime)
        # Only the local regime's logged values need a collective (the ranks' shares are averaged).
        self._collective_log = self.dist.world_size > 1 and config.distributed.loss_regime == "local"
        #: Keep each step's logged values on the device until a ``train`` event (no per-step sync); on
        #: the CPU reading them as floats is cheaper (:mod:`mmgeom.train.step_values`).
        self.values_on_device = self.device.type != "cpu"
        self.step = 0
        self.skipped = 0
        self.last_fault: Fault | None = None
        self.best: dict[str, Any] | None = None
        self.log_state: dict[str, Any] = {"sums": {}, "count": 0, "seconds": 0.0}
        self.resume = bool(resume)
        self._run_dir = run_dir

    # ------------------------------------------------------------------------------------ one step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.train.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _agree(self, fault: Fault | None) -> Fault | None:
        """The first rank's fault on every rank (ranks must take the same branch)."""
        if self.dist.world_size == 1 or not any_rank(fault is not None, self.device):
            return fault
        return next(f for f in all_gather_object(fault) if f is not None)

    def train_step(self) -> dict[str, float]:
        """One update on the next batch; returns ``loss``, ``loss/<term>``, ``lr`` and ``grad_norm``.

        When a value goes non-finite the step stops before the optimizer moves: with
        ``faults.on_non_finite: stop`` a :class:`NonFiniteLossError` is raised; with ``skip`` the
        gradients are dropped, the batch and the learning-rate schedule still advance, and
        ``{"skipped": 1.0, "lr": ...}`` is returned (:attr:`last_fault` says what went wrong).

        Raises:
            NonFiniteLossError: an embedding, a loss term or the gradient norm is NaN/Inf (stop mode, or
                more than ``faults.max_skips`` skips).
        """
        return self.update().as_floats()

    def update(self) -> StepValues:
        """:meth:`train_step` returning :class:`~mmgeom.train.step_values.StepValues` (what :meth:`fit` logs).

        Three host syncs per update, each deciding whether the optimizer may move: all embeddings
        finite (one fused check; the per-view search only runs when it fails), the loss finite, the
        gradient norm finite. With :attr:`values_on_device` (the default off the CPU) the logged values
        stay a tensor until a ``train`` event reads them.
        """
        step = self.step + 1
        self.last_fault = None
        idx = self.sampler.next_batch()
        if self.dist.world_size > 1:
            idx = shard_rows(idx, self.dist.rank, self.dist.world_size)
        idx = idx.to(self.device)
        # train() walks every submodule: only when a caller left one in eval mode (evaluate() restores
        # the mode it found).
        if not all(m.training for m in self._modules):
            self.encoder.train()
            self.loss_fn.train()
        kwargs: dict[str, Any] = {}
        if self.train_rows is not None:
            views, mask = self.train_rows.read(idx.cpu())
            views = {v: x.to(self.device) for v, x in views.items()}
            if mask:
                kwargs["mask"] = {v: m.to(self.device) for v, m in mask.items()}
        else:
            views = {v: x[idx] for v, x in self.train_views.items()}
        with self._autocast():
            emb = self.model(views)
        fault = self._agree(embedding_fault(emb))
        out: LossOutput | None = None
        if fault is None:
            if self.config.loss.use_labels:
                kwargs["labels"] = self.train_labels[idx]
            with self._autocast():
                out = self.loss_call(emb, **kwargs)
            fault = self._agree(loss_fault(out))
        self.optimizer.zero_grad(set_to_none=True)
        if fault is not None or out is None:
            if self.dist.world_size > 1:  # DDP expects a backward after every forward
                sum(z.float().sum() for z in emb.values()).mul(0.0).backward()
            return self._fault(step, fault)
        out.total.backward()
        if self.dist.world_size > 1:
            average_gradients(self.loss_params)
        clip = self.config.optim.grad_clip
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip if clip is not None else math.inf))
        if not math.isfinite(norm):
            return self._fault(step, Fault("gradient norm", norm))
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.step = step
        host = self.loss_call.log_scalars if self._collective_log else None
        names, values = loss_values(out, host, on_device=self.values_on_device)
        return StepValues(lr=lr, names=names, values=values, grad_norm=norm)

    def stepper(self) -> Callable[[], StepValues]:
        """What :meth:`fit` calls for each update: :meth:`update`, or :meth:`train_step` when a subclass or
        the instance replaces it (a hook that must keep running; its floats are logged as before)."""
        if "train_step" in vars(self) or type(self).train_step is not _TRAIN_STEP:
            return lambda: from_floats(self.train_step())
        return self.update

    def _fault(self, step: int, fault: Fault | None) -> StepValues:
        assert fault is not None
        self.optimizer.zero_grad(set_to_none=True)
        f = self.config.faults
        if f.on_non_finite == "stop":
            raise NonFiniteLossError(step, fault.term, fault.value)
        if self.skipped >= f.max_skips:
            raise NonFiniteLossError(step, fault.term, fault.value, self.skipped, f.max_skips)
        self.skipped += 1
        self.last_fault = fault
        lr = float(self.optimizer.param_groups[0]["lr"])
        with warnings.catch_warnings():
            # LambdaLR's rate is a closed form of the step: nothing is lost when no update preceded it
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        self.step = step
        return StepValues(lr=lr, skipped=True)

    # ----------------------------------------------------------------------------------- evaluation

    def evaluate(self, split: str | None = None) -> dict[str, float]:
        """Retrieval, diagnostics and classification of the current model on ``split``
        (default ``eval.split``)."""
        e = self.config.eval
        return evaluate_split(
            self.encoder,
            self.data.part(split or e.split),
            self.pairs,
            directions=e.directions,
            ks=e.ks,
            diagnostics=e.diagnostics,
            device=self.device,
            classification_reference=self.data.train if e.classification else None,
        )

    # ---------------------------------------------------------------------------------------- state

    def state_dict(self, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything besides the weights that a resumed run needs to continue bit for bit.

        Args:
            rng: every rank's RNG state (default: this process's only; under ``torchrun`` the loop
                gathers them).
        """
        _, loss_objects = split_state_dict(self.loss_fn.state_dict())
        return {
            "format": STATE_FORMAT,
            "mmgeom_version": __version__,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng if rng is not None else [capture_rng_state()],
            "world_size": self.dist.world_size,
            "skipped": self.skipped,
            "best": self.best,
            "log_state": self.log_state,
            "loss_objects": loss_objects,
            "config": self.config.to_dict(),  # checked by key when the run is resumed
        }

    def checkpoint_tensors(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The encoder's and the loss's ``state_dict`` tensors (what goes to safetensors)."""
        loss_tensors, _ = split_state_dict(self.loss_fn.state_dict())
        return dict(self.encoder.state_dict()), loss_tensors

    def load_checkpoint(self, ckpt: Checkpoint) -> None:
        """Restore weights, optimizer, scheduler, sampler, RNG and counters from a checkpoint.

        Raises:
            ConfigError: the checkpoint's weights do not fit this model (another config).
        """
        state = ckpt.state
        try:
            self.encoder.load_state_dict(ckpt.model)
            # "loss_attributes": the loss's extra state as checkpoints before get_extra_state saved it
            legacy = legacy_extra_state(self.loss_fn, state.get("loss_attributes", {}))
            self.loss_fn.load_state_dict({**ckpt.loss, **legacy, **state.get("loss_objects", {})})
        except RuntimeError as err:
            # torch lists every mismatching tensor on its own line: keep the first, count the rest.
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
            more = f" (+{len(lines) - 2} more)" if len(lines) > 2 else ""
            raise ConfigError(
                f"checkpoint {ckpt.path} does not fit this model (was the config edited? model, data "
                f"views and loss must match the run): {detail}{more}"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        rngs = state["rng"]
        restore_rng_state(rngs[self.dist.rank] if len(rngs) == self.dist.world_size else rngs[0])
        self.step = int(state["step"])
        self.skipped = int(state.get("skipped", 0))
        self.best = state.get("best")
        self.log_state = state.get("log_state", {"sums": {}, "count": 0, "seconds": 0.0})

    # ----------------------------------------------------------------------------------------- loop

    def fit(self) -> TrainResult:
        """Run the remaining updates up to ``train.steps`` with logging, evaluation and checkpoints.

        Writes ``config.yaml`` first, then ``metrics.jsonl`` events: ``start`` (or ``resume``), ``eval``
        (step 0 when ``train.eval_before``, every ``train.eval_every`` steps, and after the last step),
        ``train`` every ``train.log_every`` steps, ``skip`` for a skipped non-finite step, and ``end``
        (or ``error`` before a :class:`NonFiniteLossError`, ``interrupted`` before a
        :class:`~mmgeom.train.TrainingInterrupted`). See :func:`mmgeom.train.loop.run_fit`.

        When it returns or raises, the global random generators are back in the states they had before
        this trainer was built (construction seeds them with ``train.seed``), and the thread count,
        deterministic mode and ``CUBLAS_WORKSPACE_CONFIG`` are as before the call
        (:func:`~mmgeom.train.runtime.training_runtime`).
        """
        try:
            return run_fit(self, self._run_dir)
        finally:
            restore_rng_state(self._caller_rng)


#: The trainer's own train_step, to tell when a subclass, the class or an instance has replaced it.
_TRAIN_STEP = Trainer.train_step


def train(
    config: ExperimentConfig, run_dir: str | Path | None = None, progress: bool | None = None
) -> TrainResult:
    """Build a :class:`Trainer` from ``config`` and run it."""
    return Trainer(config, run_dir, progress=progress).fit()

"""The training loop behind :meth:`Trainer.fit`: logging, evaluation, checkpoints, signals, resume.

Under ``torchrun`` every rank runs this loop; rank 0 alone writes files (config, metrics, TensorBoard,
checkpoints, weights) and evaluates. Everything that needs the other ranks (their RNG states for a
checkpoint, the decision to stop on a signal) is a collective that every rank reaches at the same step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._io import atomic_write_text
from ..data import SplitDataset
from ..distributed import DistributedInfo, all_gather_object, any_rank, barrier, broadcast_object
from ..errors import ConfigError, NonFiniteLossError, TrainingInterrupted
from ..seeding import capture_rng_state
from ..version import __version__
from .checkpoint import save_module
from .checkpoint_store import CHECKPOINTS_DIR, Checkpoint, CheckpointStore
from .config import ExperimentConfig
from .config_load import load_config
from .faults import Fault, StopSignals
from .logging import JsonlWriter, read_jsonl
from .result import TrainResult
from .resume import check_resume_config, trim_metrics
from .rundir import CONFIG_FILE, LOSS_WEIGHTS_FILE, METRICS_FILE, WEIGHTS_FILE, resolve_run_dir
from .runtime import training_runtime
from .step_values import IntervalSums, StepValues


class LoopTrainer(Protocol):
    """What the loop needs of :class:`~mmgeom.train.Trainer`: its parts, counters and resumable state."""

    config: ExperimentConfig
    dist: DistributedInfo
    device: torch.device
    progress: bool
    resume: bool
    data: SplitDataset
    params: list[nn.Parameter]
    encoder: nn.Module
    loss_fn: nn.Module
    step: int
    skipped: int
    last_fault: Fault | None
    best: dict[str, Any] | None
    log_state: dict[str, Any]

    def train_step(self) -> dict[str, float]: ...
    def update(self) -> StepValues: ...
    def stepper(self) -> Callable[[], StepValues]: ...
    def evaluate(self, split: str | None = None) -> dict[str, float]: ...
    def state_dict(self, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]: ...
    def checkpoint_tensors(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]: ...
    def load_checkpoint(self, ckpt: Checkpoint) -> None: ...


class _NullLog:
    """What ranks other than 0 log to: nothing (the records are still returned)."""

    def write(self, event: str, step: int, **fields: Any) -> dict[str, Any]:
        return {"event": event, "step": int(step), **fields}

    def close(self) -> None:
        pass


class _Loop:
    """One call of :meth:`Trainer.fit`."""

    def __init__(self, trainer: LoopTrainer, requested: str | Path | None) -> None:
        self.t = trainer
        self.cfg = trainer.config
        self.main = trainer.dist.is_main
        run_dir = Path()
        if self.main:
            run_dir = resolve_run_dir(self.cfg.run.name, requested or self.cfg.run.out_dir)
        self.run_dir: Path = broadcast_object(run_dir)
        self.store = CheckpointStore(self.run_dir / CHECKPOINTS_DIR, self.cfg.checkpoint.keep_last)
        self.result = TrainResult(run_dir=self.run_dir, steps=0, seconds=0.0)
        self.tb: Any = None
        self.log: Any = _NullLog()
        # The interval's loss sums; on an accelerator they stay on the device until a train event reads them.
        self.sums = IntervalSums(lambda: self.t.log_state)

    # -------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self, kind: str, extra: dict[str, Any] | None = None) -> Path | None:
        """Collective: gather every rank's RNG state; rank 0 writes (and prunes). Returns the path."""
        self.sums.flush()  # the checkpointed log_state holds the interval's sums so far
        rngs = all_gather_object(capture_rng_state())
        if not self.main:
            return None
        model, loss = self.t.checkpoint_tensors()
        path = self.store.save(self.t.step, model, loss, self.t.state_dict(rngs), kind, extra)
        if kind != "best":
            self.store.prune()
            self.result.checkpoint = path
        return path

    def resume(self) -> dict[str, Any]:
        """Load the newest usable checkpoint (rank 0 chooses, every rank loads the same one)."""
        t = self.t
        info: dict[str, Any] = {}
        chosen: Checkpoint | None = None
        if self.main:
            old = self.run_dir / CONFIG_FILE
            if old.is_file():
                check_resume_config(load_config(old), self.cfg)
            chosen = self.store.load_latest(t.device)
            if isinstance(chosen.state.get("config"), dict):
                # The checkpoint records the config it was trained with: an edited config.yaml (resumed
                # with itself) is caught here by key, before the weights fail with size mismatches.
                check_resume_config(chosen.state["config"], self.cfg, f"the config of {chosen.path}")
            info = {"path": str(chosen.path), "skipped": [[str(p), why] for p, why in chosen.skipped]}
        info = broadcast_object(info)
        ckpt = chosen if chosen is not None else self.store.load(info["path"], t.device)
        t.load_checkpoint(ckpt)
        info.update(kind=ckpt.kind, saved_world_size=int(ckpt.state.get("world_size", 1)))
        return info

    # ------------------------------------------------------------------------------------ logging

    def eval_event(self) -> dict[str, Any] | None:
        """Rank 0 evaluates and logs; with ``checkpoint.best_metric`` a better score saves ``best/``."""
        record = None
        if self.main:
            metrics = self.t.evaluate()
            record = self.log.write("eval", self.t.step, split=self.cfg.eval.split, **metrics)
            self.result.evals.append(record)
            if self.tb is not None:
                self.tb.scalars(self.t.step, metrics, prefix="eval/")
        metric = self.cfg.checkpoint.best_metric
        if metric is None:
            return record
        improved = False
        if self.main:
            assert record is not None
            if metric not in record:
                raise ConfigError(
                    f"checkpoint.best_metric: {metric!r} is not an evaluation key; e.g. "
                    + ", ".join(k for k in record if k.startswith("retrieval/mean/"))
                )
            value = float(record[metric])
            best = self.t.best
            sign = 1.0 if self.cfg.checkpoint.best_mode == "max" else -1.0
            improved = best is None or sign * value > sign * float(best["value"])
            if improved:
                self.t.best = {"metric": metric, "value": value, "step": self.t.step}
        if broadcast_object(improved):
            self.t.best = broadcast_object(self.t.best)
            assert self.t.best is not None
            self.save_checkpoint("best", dict(self.t.best))
        return record

    def train_event(self, last: StepValues, bar: Any) -> None:
        self.sums.flush()
        # checks the loss left pending (it runs with value checks off): this event reads values anyway
        deferred = getattr(self.t.loss_fn, "deferred_checks", None)
        if deferred is not None:
            deferred()
        state = self.t.log_state
        sums, count = state["sums"], state["count"]
        means = {k: v / count for k, v in sums.items()}
        means["lr"], means["grad_norm"] = last.lr, last.grad_norm
        global_batch = self.cfg.train.batch_size
        means["examples_per_s"] = global_batch * count / state["seconds"] if state["seconds"] > 0 else 0.0
        record = self.log.write("train", self.t.step, **means)
        self.result.history.append(record)
        if self.tb is not None:
            self.tb.scalars(self.t.step, means, prefix="train/")
        bar.set_postfix(
            loss=f"{means.get('loss', float('nan')):.4f}",
            lr=f"{last.lr:.2e}",
            ex_s=f"{means['examples_per_s']:.0f}",
        )
        self.t.log_state = {"sums": {}, "count": 0, "seconds": 0.0}

    # ---------------------------------------------------------------------------------------- run

    def run(self, stop: StopSignals) -> TrainResult:
        t, cfg = self.t, self.cfg
        resumed: dict[str, Any] | None = self.resume() if t.resume else None
        if self.main:
            atomic_write_text(self.run_dir / CONFIG_FILE, cfg.to_yaml())
            metrics_path = self.run_dir / METRICS_FILE
            if resumed is not None:
                trim_metrics(metrics_path, t.step)
                earlier = read_jsonl(metrics_path) if metrics_path.is_file() else []
                self.result.history = [e for e in earlier if e["event"] == "train"]
                self.result.evals = [e for e in earlier if e["event"] == "eval"]
            self.log = JsonlWriter(metrics_path, append=resumed is not None)
            if cfg.logging.tensorboard:
                from .logging.tensorboard import TensorBoardLogger

                where = cfg.logging.tensorboard_dir or self.run_dir / "tensorboard"
                self.tb = TensorBoardLogger(where, purge_step=t.step + 1 if resumed is not None else None)
        try:
            return self._run(stop, resumed)
        finally:
            self.log.close()
            if self.tb is not None:
                self.tb.close()

    def _run(self, stop: StopSignals, resumed: dict[str, Any] | None) -> TrainResult:
        t, cfg, result = self.t, self.cfg, self.result
        start = time.perf_counter()
        total = cfg.train.steps
        if resumed is None:
            self.log.write(
                "start",
                0,
                version=__version__,
                run_dir=str(self.run_dir),
                views=list(t.data.train.view_names),
                rows={p: len(t.data.part(p)) for p in ("train", "val", "test")},
                parameters=sum(p.numel() for p in t.params),
                world_size=t.dist.world_size,
            )
            if cfg.train.eval_before:
                self.eval_event()
        else:
            result.resumed_from = t.step
            self.log.write("resume", t.step, version=__version__, world_size=t.dist.world_size, **resumed)
        every = cfg.checkpoint.every
        update = t.stepper()
        bar = tqdm(
            total=total, initial=t.step, desc="train", unit="step", disable=not t.progress, dynamic_ncols=True
        )
        try:
            while t.step < total:
                if any_rank(stop.requested is not None, t.device):
                    self._interrupt(stop)
                began = time.perf_counter()
                values = update()
                if values.skipped:
                    fault = t.last_fault
                    assert fault is not None
                    self.log.write("skip", t.step, term=fault.term, value=fault.value, skipped=t.skipped)
                else:
                    self.sums.add(values, time.perf_counter() - began)
                bar.update(1)
                if (t.step % cfg.train.log_every == 0 or t.step == total) and t.log_state["count"]:
                    self.train_event(values, bar)
                if cfg.train.eval_every and t.step % cfg.train.eval_every == 0 and t.step < total:
                    self.eval_event()
                if every and t.step % every == 0 and t.step < total:
                    self.save_checkpoint("periodic")
        except NonFiniteLossError as err:
            self.log.write("error", err.step, term=err.term, value=err.value, message=str(err))
            raise
        finally:
            self.sums.flush()  # log_state complete whatever stopped the loop
            bar.close()
        self.eval_event()
        if every:
            self.save_checkpoint("final")
        if self.main and cfg.run.save_weights:
            meta = {"mmgeom_version": __version__, "step": str(t.step)}
            result.weights = save_module(self.run_dir / WEIGHTS_FILE, t.encoder, meta)
            if any(True for _ in t.loss_fn.parameters()):
                save_module(self.run_dir / LOSS_WEIGHTS_FILE, t.loss_fn, meta)
        result.steps, result.skipped, result.best = t.step, t.skipped, t.best
        result.seconds = time.perf_counter() - start
        self.log.write("end", t.step, seconds=result.seconds, weights=str(result.weights), skipped=t.skipped)
        barrier()
        return result

    def _interrupt(self, stop: StopSignals) -> None:
        name = broadcast_object(stop.requested or "SIGTERM")
        path = self.save_checkpoint("signal")
        self.log.write("interrupted", self.t.step, signal=name, checkpoint=str(path))
        barrier()
        raise TrainingInterrupted(self.t.step, name, path, self.run_dir)


def run_fit(trainer: LoopTrainer, run_dir: str | Path | None = None) -> TrainResult:
    """What :meth:`Trainer.fit` does (see there); ``run_dir`` as given to the trainer."""
    with training_runtime(trainer.config.train), StopSignals() as stop:
        return _Loop(trainer, run_dir).run(stop)

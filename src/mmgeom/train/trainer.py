"""The training loop: AdamW, warm-up + cosine schedule, clipping, JSONL logging, periodic evaluation.

The loop is split into builders (data, encoder, loss, optimizer, scheduler, sampler) and
:meth:`Trainer.train_step` / :meth:`Trainer.evaluate`, so resuming (restore the builders' state),
distributed data parallelism (wrap the encoder, shard the sampler) and reports (read ``metrics.jsonl``)
can be added around them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data import BatchSampler, SplitDataset, load_dataset, split_and_standardize
from ..losses import LossOutput, create_loss
from ..models import MultiViewEncoder
from ..version import __version__
from .checkpoint import atomic_write_text, save_module
from .config import DataConfig, ExperimentConfig, LossConfig, ModelConfig
from .errors import ConfigError, NonFiniteLossError
from .evaluate import evaluate_split
from .logging import JsonlWriter
from .rundir import resolve_run_dir
from .schedule import build_scheduler
from .seeding import seed_everything

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_FILE = "model.safetensors"
LOSS_WEIGHTS_FILE = "loss.safetensors"


def build_data(cfg: DataConfig) -> SplitDataset:
    """Load the dataset's selected views, split (stratified, seeded) and standardise with train stats."""
    data = load_dataset(cfg.dataset, cfg.views)
    return split_and_standardize(data, cfg.fractions, cfg.split_seed, cfg.standardize)


def build_encoder(cfg: ModelConfig, view_dims: dict[str, int]) -> MultiViewEncoder:
    """One ``cfg.head`` head per view, all into ``cfg.out_dim``."""
    return MultiViewEncoder.from_dims(view_dims, cfg.head, cfg.out_dim, **cfg.head_kwargs())


def build_loss(cfg: LossConfig) -> nn.Module:
    """``create_loss(cfg.name, **cfg.kwargs)``."""
    return create_loss(cfg.name, **cfg.kwargs)


def build_optimizer(cfg: ExperimentConfig, params: list[nn.Parameter]) -> torch.optim.AdamW:
    """AdamW over ``params`` with the config's lr, betas and weight decay."""
    o = cfg.optim
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def _first_non_finite(x: Tensor) -> float | None:
    bad = ~torch.isfinite(x.detach())
    return float(x.detach()[bad].reshape(-1)[0]) if bool(bad.any()) else None


def check_loss_finite(out: LossOutput, step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first non-finite term (``"total"`` if only it is)."""
    if bool(torch.isfinite(out.total.detach()).all()):
        return
    for name, value in out.terms.items():
        bad = _first_non_finite(value)
        if bad is not None:
            raise NonFiniteLossError(step, f"loss term {name!r}", bad)
    raise NonFiniteLossError(step, "loss 'total'", float(out.total.detach()))


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run directory.
        steps: updates made.
        seconds: wall time of the loop (evaluations included).
        history: the ``train`` events (losses averaged over each logging interval).
        evals: the ``eval`` events, step 0 first when the untrained model was evaluated.
        weights: path of ``model.safetensors`` (``None`` when not saved).
    """

    run_dir: Path
    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    weights: Path | None = None

    @property
    def initial_eval(self) -> dict[str, Any] | None:
        """The step-0 evaluation (untrained model), if one ran."""
        return self.evals[0] if self.evals and self.evals[0]["step"] == 0 else None

    @property
    def final_eval(self) -> dict[str, Any]:
        """The last evaluation (after the final step)."""
        return self.evals[-1]


class Trainer:
    """Trains a :class:`~mmgeom.models.MultiViewEncoder` with a registered loss on a split dataset.

    Args:
        config: the validated experiment config.
        run_dir: where ``config.yaml``, ``metrics.jsonl`` and weights go; default
            ``runs/<run.name>-<timestamp>`` (or ``run.out_dir``).
        data: a prepared split (default: built from ``config.data``).
        encoder: maps ``{view: (B, D_view)}`` to ``{view: (B, D)}`` (default: from ``config.model``).
        loss: a loss called as ``loss(batch) -> LossOutput`` (default: ``create_loss`` from ``config.loss``).
        progress: show the tqdm bar (default ``config.train.progress``).

    Raises:
        ConfigError: the batch size exceeds the training rows, or the evaluation split is empty.
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
    ) -> None:
        self.config = config
        self.progress = config.train.progress if progress is None else bool(progress)
        self.device = torch.device(config.train.device)
        seed_everything(config.train.seed)
        self.data = data if data is not None else build_data(config.data)
        train = self.data.train
        if config.train.batch_size > len(train):
            raise ConfigError(
                f"train.batch_size: {config.train.batch_size} exceeds the {len(train)} training rows"
            )
        if len(self.data.part(config.eval.split)) < 2:
            raise ConfigError(f"eval.split: the {config.eval.split!r} split has fewer than 2 rows")
        self.encoder = (encoder if encoder is not None else build_encoder(config.model, train.view_dims)).to(
            self.device
        )
        self.loss_fn = (loss if loss is not None else build_loss(config.loss)).to(self.device)
        self.params = [p for m in (self.encoder, self.loss_fn) for p in m.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(config, self.params)
        o = config.optim
        self.scheduler = build_scheduler(
            self.optimizer, config.train.steps, o.warmup_steps, o.min_lr, o.schedule
        )
        self.sampler = BatchSampler(len(train), config.train.batch_size, seed=config.train.seed)
        self.train_views = {v: x.to(self.device) for v, x in train.views.items()}
        self.train_labels = train.labels.to(self.device)
        self.pairs = config.eval.resolve_pairs(train.view_names)
        self.step = 0
        self._run_dir = run_dir

    # ------------------------------------------------------------------------------------ one step

    def train_step(self) -> dict[str, float]:
        """One update on the next batch; returns ``loss``, ``loss/<term>``, ``lr`` and ``grad_norm``.

        Raises:
            NonFiniteLossError: an embedding, a loss term or the gradient norm is NaN/Inf.
        """
        step = self.step + 1
        idx = self.sampler.next_batch().to(self.device)
        self.encoder.train()
        self.loss_fn.train()
        emb = self.encoder({v: x[idx] for v, x in self.train_views.items()})
        for v, z in emb.items():
            bad = _first_non_finite(z)
            if bad is not None:
                raise NonFiniteLossError(step, f"embeddings of view {v!r}", bad)
        kwargs = {"labels": self.train_labels[idx]} if self.config.loss.use_labels else {}
        out: LossOutput = self.loss_fn(emb, **kwargs)
        check_loss_finite(out, step)
        self.optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        clip = self.config.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip is not None else math.inf)
        if not math.isfinite(float(grad_norm)):
            raise NonFiniteLossError(step, "gradient norm", float(grad_norm))
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.step = step
        scalars = {"loss": float(out.total.detach())}
        scalars.update({f"loss/{k}": float(v) for k, v in out.terms.items() if v.numel() == 1})
        scalars.update({"lr": lr, "grad_norm": float(grad_norm)})
        return scalars

    # ----------------------------------------------------------------------------------- evaluation

    def evaluate(self, split: str | None = None) -> dict[str, float]:
        """Retrieval (and diagnostics) of the current model on ``split`` (default ``eval.split``)."""
        e = self.config.eval
        return evaluate_split(
            self.encoder,
            self.data.part(split or e.split),
            self.pairs,
            directions=e.directions,
            ks=e.ks,
            diagnostics=e.diagnostics,
            device=self.device,
        )

    # ----------------------------------------------------------------------------------------- loop

    def fit(self) -> TrainResult:
        """Run ``train.steps`` updates with logging and evaluation; save the weights.

        Writes ``config.yaml`` first, then ``metrics.jsonl`` events: ``start``, ``eval`` (step 0 when
        ``train.eval_before``, every ``train.eval_every`` steps, and after the last step), ``train`` every
        ``train.log_every`` steps, and ``end`` (or ``error`` before a :class:`NonFiniteLossError` is
        re-raised).
        """
        threads = torch.get_num_threads()
        if self.config.train.num_threads is not None:
            torch.set_num_threads(self.config.train.num_threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)

    def _fit(self) -> TrainResult:
        cfg = self.config
        run_dir = resolve_run_dir(cfg.run.name, self._run_dir or cfg.run.out_dir)
        atomic_write_text(run_dir / CONFIG_FILE, cfg.to_yaml())
        result = TrainResult(run_dir=run_dir, steps=0, seconds=0.0)
        start = time.perf_counter()
        total = cfg.train.steps
        with JsonlWriter(run_dir / METRICS_FILE) as log:
            log.write(
                "start",
                0,
                version=__version__,
                run_dir=str(run_dir),
                views=list(self.data.train.view_names),
                rows={p: len(self.data.part(p)) for p in ("train", "val", "test")},
                parameters=sum(p.numel() for p in self.params),
            )
            if cfg.train.eval_before:
                result.evals.append(self._log_eval(log))
            bar = tqdm(total=total, desc="train", unit="step", disable=not self.progress, dynamic_ncols=True)
            sums: dict[str, float] = {}
            count = 0
            try:
                while self.step < total:
                    scalars = self.train_step()
                    for k, v in scalars.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
                    bar.update(1)
                    if self.step % cfg.train.log_every == 0 or self.step == total:
                        means = {k: v / count for k, v in sums.items()}
                        means["lr"], means["grad_norm"] = scalars["lr"], scalars["grad_norm"]
                        result.history.append(log.write("train", self.step, **means))
                        bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{scalars['lr']:.2e}")
                        sums, count = {}, 0
                    if cfg.train.eval_every and self.step % cfg.train.eval_every == 0 and self.step < total:
                        result.evals.append(self._log_eval(log))
            except NonFiniteLossError as err:
                log.write("error", err.step, term=err.term, value=err.value, message=str(err))
                raise
            finally:
                bar.close()
            result.evals.append(self._log_eval(log))
            if cfg.run.save_weights:
                meta = {"mmgeom_version": __version__, "step": str(self.step)}
                result.weights = save_module(run_dir / WEIGHTS_FILE, self.encoder, meta)
                if any(True for _ in self.loss_fn.parameters()):
                    save_module(run_dir / LOSS_WEIGHTS_FILE, self.loss_fn, meta)
            result.steps = self.step
            result.seconds = time.perf_counter() - start
            log.write("end", self.step, seconds=result.seconds, weights=str(result.weights))
        return result

    def _log_eval(self, log: JsonlWriter) -> dict[str, Any]:
        metrics = self.evaluate()
        return log.write("eval", self.step, split=self.config.eval.split, **metrics)


def train(
    config: ExperimentConfig, run_dir: str | Path | None = None, progress: bool | None = None
) -> TrainResult:
    """Build a :class:`Trainer` from ``config`` and run it."""
    return Trainer(config, run_dir, progress=progress).fit()

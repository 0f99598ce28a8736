"""Code that runs inside the gloo worker processes of tests/test_distributed.py (and its reference).

It holds no tests itself: it is a separate module so that the spawned children import only this code,
not the test module and its fixtures.
"""

from __future__ import annotations

import datetime
import os
import socket
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from mmgeom.distributed import DistributedLoss, average_gradients, gather_with_grad
from mmgeom.losses import create_loss, list_losses
from mmgeom.models import MultiViewEncoder

DIMS = {"a": 5, "b": 6, "c": 7}
GLOBAL_BATCH = 8


@dataclass(frozen=True)
class Case:
    """One loss configuration whose gradients are compared."""

    key: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    labels: bool = False
    mask: bool = False
    magnitudes: bool = False
    regime: str = "global"


LOSS_KWARGS: dict[str, dict[str, Any]] = {
    "dagr": {"delta": 0.3, "lambda_d": 0.5},  # a fixed band (not "auto")
    "unialign": {"lambda_vol": 1.0},
    "infonce": {"learnable_temperature": True},
    "l2dir": {"learnable_temperature": True, "lambda_n": 0.7},
}


def cases() -> list[Case]:
    """Every registered loss, plus labels / masks / the local regime."""
    out = [Case(name, name, LOSS_KWARGS.get(name, {}), magnitudes=name == "l2dir") for name in list_losses()]
    out += [
        Case("infonce+labels", "infonce", {"temperature": 0.2}, labels=True),
        Case("unialign+mask", "unialign", {"lambda_vol": 1.0}, mask=True),
        Case("dagr+mask", "dagr", {"delta": 0.3}, mask=True),
        Case("infonce/local", "infonce", {"learnable_temperature": True}, regime="local"),
        Case(
            "infonce/local+labels", "infonce", {"pairs": "anchor", "anchor": "b"}, labels=True, regime="local"
        ),
    ]
    return out


class Model(nn.Module):
    """A small encoder (one MLP head per view) plus L2Dir magnitude heads, in float64."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = MultiViewEncoder.from_dims(DIMS, "mlp", out_dim=4, hidden=8)
        self.magnitude = nn.ModuleDict({v: nn.Linear(d, 1) for v, d in DIMS.items()})

    def forward(self, x: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        mags = {v: nn.functional.softplus(self.magnitude[v](x[v])).squeeze(1) for v in x}
        return self.encoder(x), mags


def global_inputs() -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
    """The global batch: views, labels and a missing-modality mask (one row missing per rank)."""
    g = torch.Generator().manual_seed(123)
    x = {v: torch.randn(GLOBAL_BATCH, d, generator=g, dtype=torch.float64) for v, d in DIMS.items()}
    labels = torch.arange(GLOBAL_BATCH) % 3
    present = torch.ones(GLOBAL_BATCH, dtype=torch.bool)
    present[[1, 6]] = False
    return x, labels, {"c": present}


def build_model() -> Model:
    """The model, identically initialised in every process."""
    torch.manual_seed(7)
    return Model().double()


def build_loss(case: Case) -> nn.Module:
    """The loss of a case (identical in every process)."""
    return create_loss(case.name, **case.kwargs).double()


def run_case(case: Case, rows: slice, net: nn.Module | None = None) -> dict[str, Any]:
    """Forward/backward of ``case`` on the rows ``rows`` of the global batch (all rows: reference).

    Under a process group ``net`` is the DDP-wrapped model (reused across cases: no step is taken, the
    gradients are cleared) and the loss is wrapped in :class:`DistributedLoss`.
    """
    model = build_model() if net is None else net.module
    model.zero_grad(set_to_none=True)
    loss = build_loss(case)
    x_all, labels_all, mask_all = global_inputs()
    x = {v: t[rows].clone().requires_grad_(True) for v, t in x_all.items()}
    distributed = dist.is_initialized()
    emb, mags = (net if net is not None else model)(x)
    kwargs: dict[str, Any] = {}
    if case.labels:
        kwargs["labels"] = labels_all[rows]
    if case.mask:
        kwargs["mask"] = {k: m[rows] for k, m in mask_all.items()}
    if case.magnitudes:
        kwargs["magnitudes"] = mags
    wrapped = DistributedLoss(loss, regime=case.regime) if distributed else loss
    out = wrapped(emb, **kwargs)
    out.total.backward()
    if distributed:
        average_gradients([p for p in loss.parameters() if p.requires_grad])
    total = (
        wrapped.log_scalars(out)["total"]
        if isinstance(wrapped, DistributedLoss)
        else float(out.total.detach())
    )

    def grads(module: nn.Module) -> dict[str, Tensor | None]:
        return {n: None if p.grad is None else p.grad.detach().clone() for n, p in module.named_parameters()}

    return {
        "model": grads(model),
        "loss": grads(loss),
        "inputs": {v: t.grad.detach().clone() for v, t in x.items()},
        "total": total,
    }


def gather_check(rank: int, world: int) -> dict[str, Any]:
    """``gather_with_grad`` against a hand-computed gradient, and plain all_gather's lost gradient."""
    x = (torch.arange(6, dtype=torch.float64).reshape(3, 2) + 10 * rank).requires_grad_(True)
    gathered = gather_with_grad(x)
    weights = torch.arange(3 * world * 2, dtype=torch.float64).reshape(3 * world, 2) * (rank + 1)
    (weights * gathered).sum().backward()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().clone().requires_grad_(True))
    return {
        "gathered": gathered.detach(),
        "grad": x.grad.detach().clone(),
        "plain_requires_grad": any(p.requires_grad or p.grad_fn is not None for p in parts),
    }


# ----------------------------------------------------------------------------- the trainer under DDP


def synthetic_split(n: int = 96, seed: int = 0) -> Any:
    """Three noisy linear views of one 4-d latent; 4 classes (as in test_train_trainer)."""
    from mmgeom.data import MultiViewDataset, split_and_standardize

    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=g)
    views = {
        name: latent @ torch.randn(4, d, generator=g) + 0.05 * torch.randn(n, d, generator=g)
        for name, d in (("a", 6), ("b", 5), ("c", 7))
    }
    return split_and_standardize(
        MultiViewDataset(views, torch.arange(n) % 4, name="synthetic"), (0.5, 0.25, 0.25)
    )


def trainer_config(**sections: Any) -> Any:
    """A tiny experiment: global batch 16, 6 steps, no diagnostics."""
    from mmgeom.train import config_from_dict

    raw: dict[str, Any] = {
        "model": {"head": "mlp", "out_dim": 8, "hidden": 16},
        "loss": {"name": "unialign", "kwargs": {"lambda_vol": 1.0}},
        "optim": {"lr": 1e-2, "warmup_steps": 2, "weight_decay": 0.0},
        "train": {"steps": 6, "batch_size": 16, "log_every": 2, "progress": False, "eval_before": False},
        "eval": {"split": "test", "ks": [1], "diagnostics": False, "classification": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def encoder_state(trainer: Any) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in trainer.encoder.state_dict().items()}


class InfOnRankOne(MultiViewEncoder):
    """Produces an infinite embedding on rank 1's second training forward only."""

    calls = 0

    def forward(self, batch: Any) -> Any:
        out = super().forward(batch)
        if self.training:
            self.calls += 1
            if self.calls == 2 and dist.get_rank() == 1:
                out["c"] = out["c"] * float("inf")
        return out


def trainer_in_worker(rank: int, world: int, out: str) -> dict[str, Any]:
    """Trainer runs inside a rank: plain, interrupted by SIGINT on rank 1 then resumed, and skipping."""
    import signal

    from mmgeom.train import Trainer, TrainingInterrupted, read_jsonl

    root = Path(out)
    data = synthetic_split()
    result: dict[str, Any] = {}

    plain = Trainer(trainer_config(), root / "plain", data=data)
    plain.fit()
    result["plain"] = encoder_state(plain)

    cfg = trainer_config(model={"dropout": 0.2}, checkpoint={"every": 3})
    ref = Trainer(cfg, root / "ref", data=data)
    ref.fit()
    result["ref"] = encoder_state(ref)
    stopped = Trainer(cfg, root / "stopped", data=data)
    step = stopped.train_step

    def step_then_signal() -> dict[str, float]:
        scalars = step()
        if stopped.step == 2 and rank == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return scalars

    stopped.train_step = step_then_signal  # type: ignore[method-assign]
    try:
        stopped.fit()
    except TrainingInterrupted as err:
        result["interrupted_at"] = err.step
    resumed = Trainer(cfg, root / "stopped", data=data, resume=True)
    resumed.fit()
    result["resumed"] = encoder_state(resumed)
    dist.barrier()
    if rank == 0:
        result["stopped_events"] = [
            (e["event"], e["step"]) for e in read_jsonl(root / "stopped" / "metrics.jsonl")
        ]

    enc = InfOnRankOne.from_dims(data.train.view_dims, "mlp", 8, hidden=16)
    skipping = Trainer(
        trainer_config(faults={"on_non_finite": "skip"}), root / "skip", data=data, encoder=enc
    )
    res = skipping.fit()
    result["skip"] = {"skipped": res.skipped, "steps": res.steps}
    dist.barrier()
    if rank == 0:
        result["skip_events"] = [
            e for e in read_jsonl(root / "skip" / "metrics.jsonl") if e["event"] == "skip"
        ]
    return result


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(rank: int, world: int, port: int, out: str, extra: Any) -> None:
    """One gloo rank: every case, the gather check and ``extra(rank, world)`` if given."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result: dict[str, Any] = {}
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
        local = GLOBAL_BATCH // world
        rows = slice(rank * local, (rank + 1) * local)
        net = DistributedDataParallel(build_model(), find_unused_parameters=True)
        result["cases"] = {c.key: run_case(c, rows, net) for c in cases()}
        result["gather"] = gather_check(rank, world)
        if extra is not None:
            result["extra"] = extra(rank, world, out)
        dist.barrier()
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        torch.save(result, Path(out) / f"rank{rank}.pt")
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(out: Path, world: int = 2, extra: Any = None, timeout: float = 240.0) -> list[dict[str, Any]]:
    """Run :func:`worker` in ``world`` fresh processes; return each rank's results."""
    ctx = mp.start_processes(
        worker, args=(world, free_port(), str(out), extra), nprocs=world, join=False, start_method="spawn"
    )
    deadline = timeout
    import time

    start = time.monotonic()
    while not ctx.join(timeout=1.0):
        if time.monotonic() - start > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError(f"distributed workers did not finish in {timeout} s")
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for r, res in enumerate(results):
        if "error" in res:
            raise RuntimeError(f"rank {r} failed:\n{res['error']}")
    return results

"""Process-group set-up from the ``torchrun`` environment, and rank / world helpers.

Every helper works without an initialised process group (a single process): the rank is 0, the world
size 1, collectives are no-ops and objects are returned unchanged. So the same training code runs under
``python -m mmgeom train`` and ``torchrun --nproc-per-node N -m mmgeom train``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

#: The environment variables ``torchrun`` sets for every worker (``env://`` initialisation).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank, ``0 .. world_size - 1``.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        backend: ``"gloo"``, ``"nccl"`` or ``"none"`` for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs and writes checkpoints)."""
        return self.rank == 0


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def get_local_rank() -> int:
    """Rank on this machine: ``LOCAL_RANK`` (set by torchrun), else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 and in a single process."""
    return get_rank() == 0


def distributed_info() -> DistributedInfo:
    """The current :class:`DistributedInfo` (a single process when no group is initialised)."""
    if not is_initialized():
        return DistributedInfo()
    return DistributedInfo(get_rank(), get_world_size(), get_local_rank(), str(dist.get_backend()))


def launched_by_torchrun() -> bool:
    """Whether the torchrun variables (``RANK``, ``WORLD_SIZE``, ...) are in the environment."""
    return all(v in os.environ for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def resolve_backend(backend: str = "auto", device: str | torch.device = "cpu") -> str:
    """``"auto"`` becomes ``"nccl"`` for CUDA devices and ``"gloo"`` otherwise.

    Raises:
        ValueError: an unknown backend, or ``"nccl"`` for a CPU device or without NCCL.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
    kind = torch.device(device).type
    if backend == "auto":
        return "nccl" if kind == "cuda" else "gloo"
    if backend == "nccl":
        if kind != "cuda":
            raise ValueError(
                f"backend: nccl needs a CUDA device, got device {str(device)!r}; use gloo on CPU"
            )
        if not dist.is_nccl_available():
            raise ValueError("backend: this torch build has no NCCL; use gloo")
    return backend


def init_distributed(
    backend: str = "auto", device: str | torch.device = "cpu", timeout_s: float = 1800.0
) -> DistributedInfo:
    """Join the job described by the torchrun variables (``env://``); a no-op for a single process.

    With a CUDA device, this process's GPU is set to ``cuda:LOCAL_RANK`` first.

    Args:
        backend: ``"auto"``, ``"gloo"`` or ``"nccl"`` (see :func:`resolve_backend`).
        device: the training device (decides ``"auto"``).
        timeout_s: how long a collective waits for the other ranks before failing.

    Returns:
        Where this process sits; ``DistributedInfo()`` when the variables are absent or
        ``WORLD_SIZE`` is 1 (or a group already exists: its info).
    """
    if is_initialized():
        return distributed_info()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistributedInfo()
    name = resolve_backend(backend, device)
    local = get_local_rank()
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(
        backend=name, init_method="env://", timeout=datetime.timedelta(seconds=float(timeout_s))
    )
    return distributed_info()


def shutdown_distributed() -> None:
    """Wait for every rank, then destroy the default process group (no-op without one)."""
    if is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_initialized():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small values such as a run directory)."""
    if not is_initialized():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: T) -> list[T]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, device: str | torch.device = "cpu") -> bool:
    """True on every rank when ``flag`` is true on at least one rank (one tiny all-reduce)."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce the gradients of ``params`` and divide by the world size (what DDP does for its module).

    For parameters outside the DDP-wrapped module, such as a loss's learnable temperature. One flat
    all-reduce carries the gradients and a has-gradient flag per parameter: a parameter without a
    gradient on some rank counts as zero there, and one without a gradient on every rank keeps
    ``grad = None`` (so the optimizer skips it, as in a single process). No-op in a single process.
    """
    if not is_initialized() or not params:
        return
    device = params[0].device
    parts = [
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(torch.float64) for p in params
    ]
    flags = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], dtype=torch.float64, device=device)
    flat = torch.cat([*parts, flags])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    world = get_world_size()
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if flat[flat.numel() - len(params) + i] > 0:
            p.grad = (flat[offset : offset + n] / world).reshape(p.shape).to(p.dtype)
        offset += n

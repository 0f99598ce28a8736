"""Data-parallel training helpers: gather with gradient, one loss wrapper for every loss, rank helpers.

Example (inside a ``torchrun --nproc-per-node N`` worker):
    >>> from mmgeom.distributed import DistributedLoss, init_distributed, shard_rows
    >>> info = init_distributed("auto", device="cpu")            # gloo on CPU, nccl on CUDA
    >>> loss = DistributedLoss(create_loss("infonce"))           # every rank: the global batch's loss
    >>> idx = shard_rows(sampler.next_batch(), info.rank, info.world_size)

See ``docs/distributed.md`` for the gradient identity these pieces implement.
"""

from .env import (
    BACKENDS,
    DistributedInfo,
    all_gather_object,
    any_rank,
    average_gradients,
    barrier,
    broadcast_object,
    distributed_info,
    get_local_rank,
    get_rank,
    get_world_size,
    init_distributed,
    is_initialized,
    is_main_process,
    launched_by_torchrun,
    resolve_backend,
    shutdown_distributed,
)
from .gather import gather_many, gather_rows, gather_sizes, gather_with_grad
from .local_infonce import local_info_nce_output, supports_local
from .loss import REGIMES, DistributedLoss
from .sharding import shard_rows

__all__ = [
    "BACKENDS",
    "REGIMES",
    "DistributedInfo",
    "DistributedLoss",
    "all_gather_object",
    "any_rank",
    "average_gradients",
    "barrier",
    "broadcast_object",
    "distributed_info",
    "gather_many",
    "gather_rows",
    "gather_sizes",
    "gather_with_grad",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_initialized",
    "is_main_process",
    "launched_by_torchrun",
    "local_info_nce_output",
    "resolve_backend",
    "shard_rows",
    "shutdown_distributed",
    "supports_local",
]

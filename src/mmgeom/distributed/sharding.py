"""Sharding one global batch across ranks."""

from __future__ import annotations

from torch import Tensor


def shard_rows(indices: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s contiguous block of a global batch of row indices.

    Every rank draws the same global batch from the same seeded sampler and keeps rows
    ``[rank * b, (rank + 1) * b)`` with ``b = B / W``, so the ranks' blocks concatenated in rank order —
    which is what :func:`~mmgeom.distributed.gather_with_grad` returns — are exactly the batch a single
    process would use. (``torch.utils.data.DistributedSampler`` shards a dataset by striding; here the
    unit is the global batch, so W ranks x local batch = the same global batch as 1 rank.)

    Raises:
        ValueError: the batch size is not divisible by ``world_size``, or a bad rank.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_rows: rank {rank} is not in [0, {world_size})")
    total = int(indices.shape[0])
    if total % world_size:
        raise ValueError(
            f"batch size {total} is not divisible by the {world_size} ranks; "
            "choose train.batch_size as a multiple of the number of processes"
        )
    local = total // world_size
    return indices[rank * local : (rank + 1) * local]

"""Code that runs inside the gloo ranks of tests/test_store_sharded.py.

A separate module so that the spawned children import only this code, not the test module and its
fixtures. Each rank records every store row it reads (by wrapping :meth:`FeatureStore.take`, the only
way the training code reads feature rows), computes the sharded standardisation statistics, and trains a
few steps of a store run, evaluating on rank 0 only (as :class:`mmgeom.train.Trainer` does).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(rank: int, world: int, port: int, out: str, store: str, chunk_rows: int, config: dict) -> None:
    """One gloo rank: statistics on the rows it owns, then a short training run from the store."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result: dict[str, Any] = {}
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
        from mmgeom.data.features import FeatureStore
        from mmgeom.data.store_training import load_store_split, streaming_standardizer

        read: dict[str, list[int]] = {}
        take = FeatureStore.take

        def recording_take(self: FeatureStore, modality: str, rows: np.ndarray, out: Any = None) -> Any:
            read.setdefault(modality, []).extend(np.asarray(rows).tolist())
            return take(self, modality, rows, out)

        FeatureStore.take = recording_take  # type: ignore[method-assign]
        s = FeatureStore.open(store)
        scaler = streaming_standardizer(s, list(s.modalities), s.indices("train"), chunk_rows=chunk_rows)
        result["mean"] = {m: t.clone() for m, t in scaler.mean.items()}
        result["scale"] = {m: t.clone() for m, t in scaler.scale.items()}
        result["stats_rows"] = {m: sorted(v) for m, v in read.items()}
        read.clear()
        parts = load_store_split(store, chunk_rows=chunk_rows)
        result["parts_rows"] = {m: sorted(v) for m, v in read.items()}  # val/test not read yet
        result["val_loaded_after_load"] = bool(parts.val.loaded or parts.test.loaded)
        read.clear()
        from mmgeom.train import Trainer, config_from_dict

        trainer = Trainer(config_from_dict(config), Path(out) / "run", progress=False)
        trainer.fit()
        result["val_loaded_after_fit"] = bool(trainer.data.val.loaded)
        result["test_loaded_after_fit"] = bool(trainer.data.test.loaded)
        result["fit_rows"] = {m: sorted(set(v)) for m, v in read.items()}
        dist.barrier()
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        torch.save(result, Path(out) / f"rank{rank}.pt")
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(out: Path, store: Path, chunk_rows: int, config: dict, world: int = 2) -> list[dict[str, Any]]:
    """Run :func:`worker` in ``world`` fresh processes; return each rank's results."""
    args = (world, free_port(), str(out), str(store), chunk_rows, config)
    ctx = mp.start_processes(worker, args=args, nprocs=world, join=False, start_method="spawn")
    start = time.monotonic()
    while not ctx.join(timeout=1.0):
        if time.monotonic() - start > 240:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError("store workers did not finish in 240 s")
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for r, res in enumerate(results):
        if "error" in res:
            raise RuntimeError(f"rank {r} failed:\n{res['error']}")
    return results

"""Process-wide settings a training run changes for its duration, and puts back when it ends.

:meth:`mmgeom.train.Trainer.fit` runs inside :func:`training_runtime`: the intra-op thread count,
PyTorch's deterministic-algorithms switch and ``CUBLAS_WORKSPACE_CONFIG`` (which deterministic cuBLAS
needs) are set from the config and restored on exit, whether the run returns or raises.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from ..errors import ConfigError
from .config import TrainConfig

#: The environment variable deterministic cuBLAS reads, and the value set when it is unset.
CUBLAS_ENV, CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG", ":4096:8"


def usable_device(name: str, key: str = "train.device") -> torch.device:
    """``torch.device(name)`` after checking that this machine has it.

    Raises:
        ConfigError: naming ``key``: an unknown device string, CUDA asked for on a machine without a
            usable CUDA device (or with fewer devices than the index), or MPS where it is not available.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {name!r} is not a torch device ({err}); e.g. cpu, cuda, cuda:1") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key}: {name!r} requested but CUDA is not available on this machine "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); set {key}=cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{key}: {name!r} requested but this machine has {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}: {name!r} requested but MPS is not available here; set {key}=cpu")
    return device


@contextlib.contextmanager
def training_runtime(cfg: TrainConfig) -> Iterator[None]:
    """Run the block with ``cfg.num_threads`` and ``cfg.deterministic``; restore everything after.

    A value of ``CUBLAS_WORKSPACE_CONFIG`` that the user set is kept (and left in place); one this
    function set is removed again on exit.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    cublas = os.environ.get(CUBLAS_ENV)
    try:
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        if cfg.deterministic:
            os.environ.setdefault(CUBLAS_ENV, CUBLAS_WORKSPACE)
            torch.use_deterministic_algorithms(True)
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        if cublas is None:
            os.environ.pop(CUBLAS_ENV, None)
        else:
            os.environ[CUBLAS_ENV] = cublas

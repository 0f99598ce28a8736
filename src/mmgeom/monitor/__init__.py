"""Geometry monitoring inside any training loop: plain PyTorch, PyTorch Lightning, Hugging Face ``Trainer``.

:class:`GeometryMonitor` embeds a fixed held-out subset every N steps and logs cross-view retrieval and
every geometry diagnostic (the keys of a run's ``metrics.jsonl`` evaluation events) to TensorBoard, a JSONL
file or a callback. :func:`lightning_callback` and :func:`hf_callback` wrap it for the two frameworks,
whose packages are imported only when those functions are called. See ``docs/monitor.md``.
"""

from typing import Any

from .core import GeometryMonitor, MonitorCallback

__all__ = ["GeometryMonitor", "MonitorCallback", "hf_callback", "lightning_callback"]


def lightning_callback(monitor: GeometryMonitor) -> Any:
    """A PyTorch Lightning ``Callback`` for ``monitor`` (:func:`.lightning.lightning_callback`)."""
    from .lightning import lightning_callback as make

    return make(monitor)


def hf_callback(monitor: GeometryMonitor) -> Any:
    """A ``transformers.TrainerCallback`` for ``monitor`` (see :func:`mmgeom.monitor.hf.hf_callback`)."""
    from .hf import hf_callback as make

    return make(monitor)

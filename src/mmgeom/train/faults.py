"""Fault handling: finding the first non-finite value of a step, and stopping cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

import torch
from torch import Tensor

from ..errors import NonFiniteLossError
from ..losses import LossOutput


@dataclass(frozen=True)
class Fault:
    """What went non-finite first in a step.

    Attributes:
        term: ``"embeddings of view 'pix'"``, ``"loss term 'align'"``, ``"loss 'total'"`` or
            ``"gradient norm"``.
        value: the offending value.
    """

    term: str
    value: float


def first_non_finite(x: Tensor) -> float | None:
    """The first NaN/Inf entry of ``x`` (``None`` when every entry is finite)."""
    bad = ~torch.isfinite(x.detach())
    return float(x.detach()[bad].reshape(-1)[0]) if bool(bad.any()) else None


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """Whether every entry of every tensor is finite, in one host sync; may answer ``False`` wrongly.

    Each tensor's sum is NaN/Inf when one of its entries is (NaN and Inf propagate through addition),
    so ``True`` is exact; a sum can also overflow with finite entries (beyond 3.4e38 in float32),
    so ``False`` only means "look closer" (:func:`embedding_fault` then searches entry by entry).
    One reduction per tensor and one sync replace an ``isfinite``, ``any`` and a sync per tensor.
    """
    if not tensors:
        return True
    sums = [
        t.detach().sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32) for t in tensors
    ]
    # The sum of the sums is non-finite too when one of them is (inf + -inf is NaN): one value to read.
    return math.isfinite(float(torch.stack(sums).sum()))


def embedding_fault(embeddings: Mapping[str, Tensor]) -> Fault | None:
    """The first view whose embeddings hold a NaN/Inf."""
    if all_finite(list(embeddings.values())):
        return None
    for view, z in embeddings.items():
        bad = first_non_finite(z)
        if bad is not None:
            return Fault(f"embeddings of view {view!r}", bad)
    return None


def loss_fault(out: LossOutput) -> Fault | None:
    """The first non-finite loss term (in ``terms`` order), or ``"loss 'total'"`` if only the total is."""
    total = out.total.detach()
    # A scalar total (every mmgeom loss): one float() instead of isfinite, all and bool.
    if math.isfinite(float(total)) if total.numel() == 1 else bool(torch.isfinite(total).all()):
        return None
    for name, value in out.terms.items():
        bad = first_non_finite(value)
        if bad is not None:
            return Fault(f"loss term {name!r}", bad)
    return Fault("loss 'total'", float(out.total.detach()))


def check_loss_finite(out: LossOutput, step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first non-finite term (``"total"`` if only it is)."""
    fault = loss_fault(out)
    if fault is not None:
        raise NonFiniteLossError(step, fault.term, fault.value)


#: The signals that stop a run cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While active, SIGINT and SIGTERM set :attr:`requested` instead of killing the process.

    The training loop checks the flag between steps, writes a checkpoint and stops. A second signal of
    the same kind while the first is being handled restores the previous handler and re-raises it
    (``KeyboardInterrupt`` for SIGINT), so a stuck run can still be killed from the keyboard.

    Handlers can only be installed from the main thread; elsewhere the object is inert
    (:meth:`request` still works).

    Example:
        >>> with StopSignals() as stop:
        ...     while not stop.requested:
        ...         step()
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def request(self, name: str = "SIGINT") -> None:
        """Ask the loop to stop (what the handler does; also usable programmatically)."""
        self.requested = name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            previous = self._previous.get(signum, signal.SIG_DFL)
            signal.signal(signum, previous)
            if callable(previous):
                previous(signum, frame)
            else:
                signal.raise_signal(signum)
            return
        self.request(name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

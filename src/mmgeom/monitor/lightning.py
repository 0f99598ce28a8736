"""The PyTorch Lightning adapter: a ``Callback`` that steps a :class:`GeometryMonitor`.

Lightning is optional (``pip install 'mmgeom[lightning]'``): it is imported when
:func:`lightning_callback` is called, never when :mod:`mmgeom.monitor` is.
"""

from __future__ import annotations

from typing import Any

from .core import GeometryMonitor

LIGHTNING_INSTALL = "pip install 'mmgeom[lightning]'  (or: pip install lightning)"


def _callback_base() -> Any:
    """Lightning's ``Callback`` class: from ``lightning.pytorch``, else the older ``pytorch_lightning``."""
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl  # type: ignore[no-redef]
        except ImportError:
            raise ImportError(f"the Lightning adapter needs PyTorch Lightning: {LIGHTNING_INSTALL}") from None
    return pl.Callback


def _loss_of(outputs: Any) -> Any:
    """The training loss in what ``training_step`` returned (a tensor or a dict with ``"loss"``)."""
    if isinstance(outputs, dict):
        return outputs.get("loss")
    return outputs if hasattr(outputs, "detach") else None


def lightning_callback(monitor: GeometryMonitor) -> Any:
    """A Lightning ``Callback`` that evaluates ``monitor`` on Lightning's global step.

    The monitor is bound to the ``LightningModule`` at the start of fitting (so its default encoder is the
    module's ``forward``; pass ``encode=`` for another method). It evaluates at step 0 (before the first
    update), after every ``monitor.every`` optimiser steps, and logs the mean training loss of each
    interval; the monitor's files are closed when fitting ends.

    Raises:
        ImportError: Lightning is not installed (the message names the pip command).

    Example:
        >>> cb = lightning_callback(GeometryMonitor(val, every=50))                  # doctest: +SKIP
        >>> lightning.Trainer(max_steps=1000, callbacks=[cb]).fit(model, loader)   # doctest: +SKIP
    """
    base = _callback_base()

    class GeometryMonitorCallback(base):  # type: ignore[misc, valid-type]
        """Steps a :class:`GeometryMonitor` from Lightning's hooks."""

        def __init__(self) -> None:
            super().__init__()
            self.monitor = monitor

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.monitor.bind(pl_module)
            if trainer.global_step == 0:
                self.monitor.step(0)

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            loss = _loss_of(outputs)
            step = int(trainer.global_step)  # optimiser steps so far (already counts this batch's update)
            if loss is not None:
                self.monitor.record_loss(loss)
            if step > 0 and self.monitor.due(step) and self._last != step:
                self._last = step
                self.monitor.step(step)

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self.monitor.close()

        _last = -1

    return GeometryMonitorCallback()

"""The Hugging Face ``transformers`` adapter: a ``TrainerCallback`` that steps a :class:`GeometryMonitor`.

``transformers`` is optional (``pip install 'mmgeom[text]'``; the ``Trainer`` also needs ``accelerate``,
extra ``hf``): it is imported when :func:`hf_callback` is called, never when :mod:`mmgeom.monitor` is.
"""

from __future__ import annotations

from typing import Any

from .core import GeometryMonitor

HF_INSTALL = "pip install 'mmgeom[hf]'  (or: pip install transformers accelerate)"


def _callback_base() -> Any:
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise ImportError(f"the Hugging Face adapter needs transformers: {HF_INSTALL}") from None
    return TrainerCallback


def hf_callback(monitor: GeometryMonitor) -> Any:
    """A ``transformers.TrainerCallback`` that evaluates ``monitor`` on ``state.global_step``.

    The monitor is bound to the ``Trainer``'s model at the start of training. It evaluates at step 0 and
    after every ``monitor.every`` optimiser steps; each training loss the ``Trainer`` logs (the mean over
    its ``logging_steps``) is written as a ``"train"`` event at its step; the files are closed at the end.

    Raises:
        ImportError: transformers is not installed (the message names the pip command).

    Example:
        >>> cb = hf_callback(GeometryMonitor(val, every=50))                       # doctest: +SKIP
        >>> transformers.Trainer(model, args, train_dataset=ds, callbacks=[cb]).train()  # doctest: +SKIP
    """
    base = _callback_base()

    class GeometryMonitorCallback(base):  # type: ignore[misc, valid-type]
        """Steps a :class:`GeometryMonitor` from the ``Trainer``'s events."""

        def __init__(self) -> None:
            super().__init__()
            self.monitor = monitor

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if model is not None:
                self.monitor.bind(model)
            if state.global_step == 0:
                self.monitor.step(0)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            # The Trainer logs after on_step_end, with the mean loss of its logging interval: written as is.
            if logs and "loss" in logs:
                self.monitor.log_train(int(state.global_step), loss=float(logs["loss"]))

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step > 0 and self.monitor.due(state.global_step):
                self.monitor.step(int(state.global_step))

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.monitor.close()

    return GeometryMonitorCallback()

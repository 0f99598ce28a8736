"""Optional TensorBoard event files (the ``tensorboard`` package is imported only when asked for)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigError

TENSORBOARD_INSTALL = "pip install tensorboard"


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be imported (it needs the ``tensorboard`` package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def require_tensorboard() -> None:
    """Raise a :class:`ConfigError` with the install command when TensorBoard is missing."""
    if not tensorboard_available():
        raise ConfigError(
            f"logging.tensorboard: the tensorboard package is not installed ({TENSORBOARD_INSTALL}), "
            "or set logging.tensorboard: false"
        )


class TensorBoardLogger:
    """Scalars to TensorBoard event files.

    Args:
        log_dir: the event-file directory.
        purge_step: on resume, the first step written again (TensorBoard hides older events at and
            after it from the interrupted run).
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer: Any = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """Write every finite number in ``values`` as ``prefix + key``."""
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}{key}", float(value), global_step=int(step))
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()

"""The one folder where mmgeom caches things it can rebuild (compiled kernels, feature stores)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root"]

#: Environment variable that sets the cache root directly (tests point it at a temporary folder).
CACHE_ENV = "MMGEOM_CACHE_DIR"


def cache_root() -> Path:
    """mmgeom's cache folder: ``$MMGEOM_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmgeom``, else
    ``~/.cache/mmgeom``. Nothing is created; each user of the cache makes its own subfolder
    (``cache_root() / "native"``).

    Raises:
        RuntimeError: neither variable is set and the home directory cannot be determined (a service
            account without one); the message says which variable to set.
    """
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "mmgeom"
    try:
        home = Path.home()
    except (RuntimeError, KeyError) as err:  # no $HOME and no passwd entry
        raise RuntimeError(
            f"no cache folder for mmgeom: the home directory is unknown ({err}); set ${CACHE_ENV}"
        ) from None
    return home / ".cache" / "mmgeom"

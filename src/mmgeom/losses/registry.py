"""Name -> loss class registry with ``create_loss`` / ``list_losses`` factories (configs name losses)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}

T = TypeVar("T", bound=type[nn.Module])


def register_loss(name: str) -> Callable[[T], T]:
    """Class decorator that makes a loss constructible by name."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"loss name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_losses(pattern: str | None = None) -> list[str]:
    """Sorted registered loss names, optionally filtered by a shell-style pattern (``"info*"``)."""
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_loss_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"loss: unknown name {name!r}; registered losses are {list_losses()}") from None


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered loss: ``create_loss("infonce", temperature=0.05)``."""
    return get_loss_class(name)(**kwargs)

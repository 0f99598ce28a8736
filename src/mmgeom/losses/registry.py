"""Name -> loss class registry with ``create_loss`` / ``list_losses`` factories (configs name losses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from .._registry import Registry

#: Every registered loss class (the functions below are its public face).
LOSSES: Registry[type[nn.Module]] = Registry("loss")

T = TypeVar("T", bound=type[nn.Module])


def register_loss(name: str) -> Callable[[T], T]:
    """Class decorator that makes a loss constructible by name."""

    def wrap(cls: T) -> T:
        LOSSES.register(name)(cls)
        return cls

    return wrap


def list_losses(pattern: str | None = None) -> list[str]:
    """Sorted registered loss names, optionally filtered by a shell-style pattern (``"info*"``)."""
    return LOSSES.list(pattern)


def get_loss_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ``ValueError`` listing the known names otherwise."""
    return LOSSES.get(name)


def create_loss(name: str, *, check_values: bool | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate a registered loss: ``create_loss("infonce", temperature=0.05)``.

    Args:
        name: a registered name (:func:`list_losses`).
        check_values: set the loss's ``check_values`` attribute (see
            :class:`~mmgeom.losses.MultimodalLoss`); ``None`` keeps the default (``True``).
        **kwargs: the loss class's own hyper-parameters.
    """
    cls = get_loss_class(name)
    if check_values is not None and not isinstance(check_values, bool):
        raise ValueError(f"check_values: expected True or False, got {check_values!r}")
    loss = cls(**kwargs)
    if check_values is not None:
        if not hasattr(loss, "check_values"):
            raise ValueError(f"check_values: loss {name!r} ({cls.__name__}) has no value checks to switch")
        setattr(loss, "check_values", check_values)  # noqa: B010 (nn.Module typing)
    return loss

"""A name -> class registry: configs and factories construct things (losses, heads) by name.

Example:
    >>> heads: Registry[type] = Registry("head")
    >>> @heads.register("identity")
    ... class Identity: ...
    >>> heads.list()
    ['identity']
    >>> heads.create("identity").__class__.__name__
    'Identity'
"""

from __future__ import annotations

import builtins
import fnmatch
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes registered under names, for one kind of thing.

    Args:
        kind: what is registered (``"loss"``, ``"head"``); it starts every error message.
        plural: the plural used in messages (default ``kind + "es"`` after an s, else ``kind + "s"``).
        key: what a name is called in the unknown-name message (``"kind"`` for heads: ``head: unknown
            kind 'x'; registered heads are [...]``).
    """

    def __init__(self, kind: str, plural: str | None = None, key: str = "name") -> None:
        self.kind, self.key = kind, key
        self.plural = plural or (kind + "es" if kind.endswith("s") else kind + "s")
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that registers the class under ``name``.

        Registering the same class again under the same name is a no-op (a re-imported module);
        another class under a taken name is a ``ValueError``.
        """

        def wrap(cls: T) -> T:
            known = self._classes.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered to {known.__name__}")
            self._classes[name] = cls
            return cls

        return wrap

    def get(self, name: str) -> T:
        """The class registered under ``name``.

        Raises:
            ValueError: no such name; the message lists the registered ones.
        """
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(
                f"{self.kind}: unknown {self.key} {name!r}; registered {self.plural} are {self.list()}"
            ) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """An instance of the class registered under ``name``, built with ``args`` and ``kwargs``.

        Raises:
            ValueError: no such name (the message lists the registered ones), or the constructor's own.
        """
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str | None = None) -> builtins.list[str]:
        """Sorted registered names, optionally only those matching a shell-style ``pattern`` (``"info*"``)."""
        return [n for n in sorted(self._classes) if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._classes)

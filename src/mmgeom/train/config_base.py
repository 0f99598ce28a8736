"""Shared pieces of the config sections: the strict base model and key-path-aware errors."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


def _error(message: str, key: str | None = None, path: str | None = None) -> PydanticCustomError:
    """A validation error whose key path is refined by ``key`` (relative) or replaced by ``path``."""
    ctx: dict[str, Any] = {"message": message}
    if key is not None:
        ctx["key"] = key
    if path is not None:
        ctx["path"] = path
    return PydanticCustomError("config", "{message}", ctx)


def _number_kind(annotation: Any) -> str | None:
    """``"int"``/``"float"`` when ``annotation`` takes a number but not a boolean, else ``None``.

    Pydantic's lax mode turns ``true`` into ``1`` for ``int`` and ``float`` fields; a YAML ``steps: true``
    would then train one step. Fields whose annotation admits ``bool`` (or ``Any``) keep accepting it.
    """
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        if any(a is bool or a is Any for a in args):
            return None
        kinds = [k for a in args if (k := _number_kind(a)) is not None]
        return kinds[0] if kinds else None
    if origin is Literal:
        return None
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return None


def _element_kinds(annotation: Any) -> list[str | None]:
    """The number kinds of a ``tuple[...]``/``list[...]`` annotation's elements (``[]`` otherwise)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for a in typing.get_args(annotation):
            kinds = _element_kinds(a)
            if kinds:
                return kinds
        return []
    if origin in (tuple, list):
        return [_number_kind(a) for a in typing.get_args(annotation) if a is not Ellipsis]
    return []


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; assignments are validated; a boolean is
    never taken for a number (``train.steps: true`` is an error, not one step)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool):
            kind = _number_kind(annotation)
            if kind is not None:
                raise ValueError(f"expected {'an integer' if kind == 'int' else 'a number'}, got {value}")
        elif isinstance(value, (list, tuple)):
            kinds = _element_kinds(annotation)
            for i, item in enumerate(value):
                kind = kinds[min(i, len(kinds) - 1)] if kinds else None
                if isinstance(item, bool) and kind is not None:
                    raise ValueError(f"item {i}: expected a number, got {item}")
        return value

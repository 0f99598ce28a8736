"""Shared pieces of the config sections: the strict base model and key-path-aware errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError


def _error(message: str, key: str | None = None, path: str | None = None) -> PydanticCustomError:
    """A validation error whose key path is refined by ``key`` (relative) or replaced by ``path``."""
    ctx: dict[str, Any] = {"message": message}
    if key is not None:
        ctx["key"] = key
    if path is not None:
        ctx["path"] = path
    return PydanticCustomError("config", "{message}", ctx)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

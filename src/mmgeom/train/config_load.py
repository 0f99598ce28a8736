"""Loading an experiment config: YAML, dotted command-line overrides, errors with key paths."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from .config import ExperimentConfig
from .yaml_io import parse_value, read_yaml


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        model = fields[part].annotation
    fields = getattr(model, "model_fields", None)
    return list(fields) if fields is not None else None


def format_validation_error(err: ValidationError) -> list[str]:
    """One ``"key.path: message"`` line per error, with the full key path and a spelling hint."""
    lines = []
    for e in err.errors():
        loc: tuple[Any, ...] = tuple(x for x in e["loc"] if not (isinstance(x, str) and "[" in x))
        ctx = e.get("ctx") or {}
        if "path" in ctx:
            loc = tuple(str(ctx["path"]).split("."))
        elif "key" in ctx:
            loc = (*loc, *str(ctx["key"]).split("."))
        path = ".".join(str(x) for x in loc) or "<top level>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc) or []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        lines.append(f"{path}: {msg}")
    return lines


def config_from_dict(raw: Any, source: str | None = None) -> ExperimentConfig:
    """Validate a plain dict.

    Raises:
        ConfigError: listing each offending key path.
    """
    where = f"invalid config {source}" if source else "invalid config"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return ExperimentConfig.model_validate(dict(raw))
    except ValidationError as err:
        lines = format_validation_error(err)
        raise ConfigError(f"{where}:\n  " + "\n  ".join(lines)) from None


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``"section.key=value"`` overrides to a raw config dict (values parsed as YAML).

    Intermediate sections are created when absent; unknown keys are left for validation to report.

    Raises:
        ConfigError: an override without ``=``, with an empty key part, or that descends into a value.
    """
    out: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE, e.g. optim.lr=1e-3")
        try:
            value = parse_value(text)
        except ValueError as err:
            raise ConfigError(f"override {item!r}: {err}") from None
        node = out
        for i, p in enumerate(parts[:-1]):
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply dotted overrides, validate.

    Raises:
        ConfigError: unreadable file, invalid YAML, bad override or invalid values (with key paths).
    """
    try:
        raw = read_yaml(path)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"invalid config {path}: expected a mapping of sections, got {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw or {}, overrides), str(path))

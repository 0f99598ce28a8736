"""YAML reading with YAML 1.2 numbers (``1e-3`` is a float, not the string PyYAML 1.1 makes of it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads exponent floats without a dot (``1e-3``, ``5E+2``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; a syntax error becomes a :class:`ValueError` naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err)
        raise ValueError(f"{where}: invalid YAML: {problem}") from None


def read_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ValueError(f"{p}: is a directory, expected a YAML file") from None
    return parse_yaml(text, str(p))


def parse_value(text: str) -> Any:
    """A command-line override value as YAML: ``1e-3`` -> float, ``[a, b]`` -> list, ``null`` -> None."""
    if text.strip() == "":
        return ""
    return parse_yaml(text, "override value")


def dump_yaml(data: Any) -> str:
    """YAML text with the keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)

"""Run logging: the JSONL metrics file."""

from .jsonl import JsonlWriter, read_jsonl, to_jsonable

__all__ = ["JsonlWriter", "read_jsonl", "to_jsonable"]

"""Errors the trainer and the CLI report to users as messages (no traceback)."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid experiment config; the message names every offending key path (``loss.temprature``)."""


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN or Inf.

    Attributes:
        step: the 1-based step at which it happened.
        term: the loss term (or ``"embeddings/<modality>"``) that went non-finite first.
        value: that term's value.
    """

    def __init__(self, step: int, term: str, value: float) -> None:
        self.step, self.term, self.value = int(step), str(term), float(value)
        super().__init__(f"non-finite loss at step {self.step}: {self.term} = {self.value}")

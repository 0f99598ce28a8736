"""What a finished training run produced (:meth:`mmgeom.train.Trainer.fit` returns it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run directory.
        steps: updates made (skipped ones included).
        seconds: wall time of the loop (evaluations included).
        history: the ``train`` events (losses averaged over each logging interval); a resumed run
            includes those the interrupted run logged before its checkpoint.
        evals: the ``eval`` events, step 0 first when the untrained model was evaluated (rank 0 only
            under ``torchrun``; the other ranks do not evaluate); a resumed run includes the earlier ones.
        weights: path of ``model.safetensors`` (``None`` when not saved).
        skipped: non-finite steps skipped (``faults.on_non_finite: skip``).
        resumed_from: the step of the checkpoint the run resumed from, if it did.
        checkpoint: the newest checkpoint directory written, if any.
        best: ``{"metric", "value", "step"}`` of the best evaluation (``checkpoint.best_metric``).
    """

    run_dir: Path
    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    weights: Path | None = None
    skipped: int = 0
    resumed_from: int | None = None
    checkpoint: Path | None = None
    best: dict[str, Any] | None = None

    @property
    def initial_eval(self) -> dict[str, Any] | None:
        """The step-0 evaluation (untrained model), if one ran."""
        return self.evals[0] if self.evals and self.evals[0]["step"] == 0 else None

    @property
    def final_eval(self) -> dict[str, Any]:
        """The last evaluation (after the final step)."""
        return self.evals[-1]

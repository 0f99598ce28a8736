"""The demo run and the before/after summaries the CLI prints.

``mmgeom demo`` trains the packaged ``demo.yaml`` (six real views of UCI Multiple Features, InfoNCE over
all 15 view pairs, MLP heads into a shared 64-d space) and compares the untrained (step 0) and trained
evaluations on the test split.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import ExperimentConfig
from .config_load import apply_overrides, config_from_dict
from .trainer import Trainer, TrainResult
from .yaml_io import parse_yaml

DEMO_CONFIG = "demo"

#: Retrieval metrics shown per view pair (keys of :func:`mmgeom.retrieval.retrieval_metrics`).
PAIR_METRICS = ("hit@1", "hit@5", "hit@10", "map")

#: Diagnostic summaries: label -> (key prefix in ``diagnose``'s output, what is averaged and what it means).
DIAGNOSTIC_SUMMARY: dict[str, tuple[str, str]] = {
    "modality gap": ("geometry/gap/", "pairs; ||mean z_m - mean z_n||"),
    "alignment": ("geometry/align/", "pairs; E||z_m,i - z_n,i||^2"),
    "positive cosine": ("geometry/pos_cos/", "pairs; cos(z_m,i, z_n,i)"),
    "uniformity": ("geometry/uniform/", "views; lower = more spread"),
    "effective rank": ("geometry/erank/", "views; at most the dimension"),
    "semantic margin": ("geometry/margin/", "views; > 0 = nearer own class"),
}


def packaged_config_dir() -> Path:
    """The folder of YAML configs shipped inside the package (``mmgeom/configs``)."""
    return Path(str(resources.files("mmgeom") / "configs"))


def list_packaged_configs() -> list[str]:
    """Names (without ``.yaml``) of the packaged configs."""
    return sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))


def packaged_config_path(name: str) -> Path:
    """Path of a packaged config by name (``"demo"``).

    Raises:
        ConfigError: no packaged config of that name.
    """
    path = packaged_config_dir() / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise ConfigError(f"no packaged config named {name!r}; available: {list_packaged_configs()}")
    return path


def demo_config(steps: int | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """The packaged demo config; ``steps`` also scales the warm-up to at most a tenth of the run."""
    path = packaged_config_path(DEMO_CONFIG)
    raw = parse_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"--steps: expected an integer >= 1, got {steps}")
        warmup = int(raw.get("optim", {}).get("warmup_steps", 0))
        raw = apply_overrides(raw, [f"train.steps={steps}", f"optim.warmup_steps={min(warmup, steps // 10)}"])
    return config_from_dict(apply_overrides(raw, overrides), str(path))


def run_demo(
    steps: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    overrides: Iterable[str] = (),
) -> TrainResult:
    """Train the demo config (evaluating before and after) and return the result."""
    cfg = demo_config(steps, overrides)
    if not cfg.train.eval_before:
        raise ConfigError("train.eval_before: the demo compares against the untrained model; keep it true")
    return Trainer(cfg, out, progress=progress).fit()


@dataclass(frozen=True)
class PairRow:
    """Before/after retrieval numbers of one view pair.

    Attributes:
        pair: ``"a<->b"`` (mean of both directions) or ``"a->b"`` (forward only).
        before: metric -> value of the untrained model.
        after: metric -> value of the trained model.
    """

    pair: str
    before: dict[str, float]
    after: dict[str, float]


def _pair_key(q: str, g: str, directions: str) -> str:
    return f"{q}<->{g}" if directions == "both" else f"{q}->{g}"


def pair_rows(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    pairs: Sequence[tuple[str, str]],
    directions: str = "both",
    metrics: Sequence[str] = PAIR_METRICS,
) -> list[PairRow]:
    """Per-pair retrieval values from two evaluation events (see :mod:`mmgeom.train.evaluate` keys)."""
    rows = []
    for q, g in pairs:
        key = _pair_key(q, g, directions)
        pick = {
            name: {m: float(ev[f"retrieval/{key}/{m}"]) for m in metrics if f"retrieval/{key}/{m}" in ev}
            for name, ev in (("before", before), ("after", after))
        }
        rows.append(PairRow(key, pick["before"], pick["after"]))
    return rows


def diagnostic_summary(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Means of the main diagnostics (:data:`DIAGNOSTIC_SUMMARY`) present in an evaluation event.

    Per-modality ``uniform/<view>`` entries are averaged; ``uniform/centroid`` is excluded.
    """
    out = {}
    for label, (prefix, _) in DIAGNOSTIC_SUMMARY.items():
        values = [
            float(v)
            for k, v in metrics.items()
            if k.startswith(prefix) and k != "geometry/uniform/centroid" and isinstance(v, (int, float))
        ]
        if values:
            out[label] = statistics.fmean(values)
    return out

"""Packaged configs ("presets"): find one by name, load it with overrides, the demo config.

``mmgeom demo`` trains the packaged ``demo.yaml`` (six real views of UCI Multiple Features, InfoNCE over
all 15 view pairs, MLP heads into a shared 64-d space) and compares the untrained (step 0) and trained
evaluations on the test split. ``mmgeom train CONFIG`` takes a YAML file or a packaged config's name.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from .config import ExperimentConfig
from .config_load import apply_overrides, config_from_dict, load_config
from .result import TrainResult
from .trainer import Trainer
from .yaml_io import parse_value, parse_yaml, read_yaml

DEMO_CONFIG = "demo"


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


def resolve_config_path(config: str) -> Path:
    """A YAML file, or the name of a packaged config (``demo``).

    Raises:
        ConfigError: neither exists.
    """
    path = Path(config)
    if path.exists():
        return path
    if config.removesuffix(".yaml") in list_packaged_configs():
        return packaged_config_path(config)
    raise ConfigError(f"{config}: config file not found (packaged: {', '.join(list_packaged_configs())})")


def load_preset_or_file(config: str, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """:func:`resolve_config_path` then :func:`~mmgeom.train.load_config` with the overrides.

    A packaged config shortened with ``--set train.steps=N`` (and no warm-up override) gets the warm-up
    :func:`demo_config` gives ``mmgeom demo --steps N``: at most ``N // 10`` steps, so
    ``mmgeom train demo --set train.steps=20`` is valid. A YAML file of your own is taken as written.
    """
    items = list(overrides)
    path = resolve_config_path(config)
    if not Path(config).exists():
        items = _scaled_warmup(path, items)
    return load_config(path, items)


def _scaled_warmup(path: Path, overrides: list[str]) -> list[str]:
    keys = [o.partition("=")[0].strip() for o in overrides]
    if "train.steps" not in keys or "optim.warmup_steps" in keys:
        return overrides
    try:
        steps = int(parse_value(overrides[len(keys) - 1 - keys[::-1].index("train.steps")].partition("=")[2]))
        raw = read_yaml(path) or {}
        warmup = int(raw.get("optim", {}).get("warmup_steps", 0))
    except (TypeError, ValueError, AttributeError):
        return overrides  # validation reports the bad value
    if steps < 1 or warmup <= steps // 10:
        return overrides
    return [*overrides, f"optim.warmup_steps={steps // 10}"]

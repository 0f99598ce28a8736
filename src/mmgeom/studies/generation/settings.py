"""Configuration of the generation study: spaces, sizes (full / quick), grid file names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ...losses import create_loss

#: The image view of the digits and the other views, in the dataset's canonical order.
IMAGE_VIEW = "pix"
OTHER_VIEWS: tuple[str, ...] = ("fou", "fac", "kar", "zer", "mor")
MIX = "mix of the 5"
SELF = "self (pix)"

#: Space label -> loss factory ``(anchor) -> loss``; all anchored on the image modality.
SPACES: dict[str, Callable[[str, float], nn.Module]] = {
    "InfoNCE (anchor)": lambda a, t: create_loss("infonce", temperature=t, anchor=a),
    "GRAM": lambda a, t: create_loss("gram", anchor=a),
    "UniAlign (generation, lambda_vol = 0.1)": lambda a, t: create_loss(
        "unialign", anchor=a, preset="generation"
    ),
    "UniAlign (centroid)": lambda a, t: create_loss("unialign", anchor=a, alignment="centroid"),
}


@dataclass(frozen=True)
class Settings:
    """Everything that defines a run of the study (stored in ``results.json``)."""

    seeds: int = 3
    space_steps: int = 200
    space_batch: int = 256
    space_lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    hidden: int = 128
    out_dim: int = 64
    temperature: float = 0.1
    conv_steps: int = 800
    conv_batch: int = 64
    conv_channels: tuple[int, ...] = (32, 16)
    conv_lr: float = 2e-3
    diffusion: bool = True
    diffusion_seeds: int = 1
    fashion_diffusion: bool = False
    diffusion_steps: int = 1500
    diffusion_batch: int = 64
    diffusion_lr: float = 2e-3
    diffusion_channels: tuple[int, ...] = (16, 32)
    diffusion_timesteps: int = 100
    sample_steps: int = 20
    guidance: float = 2.0
    classifier_steps: int = 1500
    fashion: bool = True
    fashion_train_rows: int = 10000
    fashion_test_rows: int = 2000
    fashion_space_steps: int = 600
    fashion_hidden: int = 256
    grid_columns: int = 10
    split_seed: int = 0


FULL = Settings()
QUICK = Settings(
    seeds=1,
    space_steps=10,
    warmup_steps=2,
    conv_steps=10,
    diffusion_steps=5,
    diffusion_channels=(8, 16),
    diffusion_timesteps=20,
    sample_steps=3,
    classifier_steps=20,
    fashion_train_rows=400,
    fashion_test_rows=100,
    fashion_space_steps=10,
    fashion_diffusion=True,
)


def grid_name(task: str, space: str, decoder: str) -> str:
    """File name of one image grid."""
    slug = "".join(c if c.isalnum() else "-" for c in space.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"grid-{task}-{slug}-{decoder}.png"

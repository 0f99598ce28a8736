"""The Gaussian diffusion process: noise schedules, the forward process, and the DDIM/DDPM samplers.

Pure functions over tensors and a noise predictor ``eps_fn(x_t, t)``, so the update equations can be
checked on their own (with a predictor that returns the true noise, both samplers must return ``x_0``).
Timestep *indices* ``0..T-1`` are steps ``1..T`` of the papers; ``alphas_bar[i]`` is ``ᾱ_{i+1}``.

References: Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021 (cosine schedule), Song et al. 2021 (DDIM).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

SCHEDULES = ("cosine", "linear")

EpsFn = Callable[[Tensor, int], Tensor]
"""A noise predictor ``(x_t, t) -> eps`` over a whole batch at one timestep index ``t``."""


def cosine_alpha_bar(t: Tensor, s: float = 0.008) -> Tensor:
    """``ᾱ(t) = f(t) / f(0)``, ``f(t) = cos²((t + s) / (1 + s) · π/2)`` for ``t`` in ``[0, 1]`` (float64).

    The offset ``s`` keeps the noise at ``t = 0`` from being too small (Nichol & Dhariwal 2021, eq. 17).
    """
    f = torch.cos((t.double() + s) / (1 + s) * (math.pi / 2)) ** 2
    return f / math.cos(s / (1 + s) * (math.pi / 2)) ** 2


def make_betas(schedule: str, timesteps: int) -> Tensor:
    """Noise variances ``β_1..β_T`` (float64, shape ``(T,)``) of the ``"cosine"`` or ``"linear"`` schedule.

    ``cosine``: ``β_t = min(1 − ᾱ(t/T) / ᾱ((t−1)/T), 0.999)`` — the clip only bites at ``t = T``, where
    ``ᾱ(1) = 0``; it keeps ``ᾱ_T`` positive so that ``x_0`` can still be predicted from ``x_T``.
    ``linear``: DDPM's ``β`` from 1e-4 to 0.02 at T = 1000, both ends scaled by ``1000 / T`` so that a
    shorter chain reaches about the same ``ᾱ_T`` (the improved-DDPM code does the same).
    """
    if schedule == "cosine":
        alpha_bar = cosine_alpha_bar(torch.arange(timesteps + 1, dtype=torch.float64) / timesteps)
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    if schedule == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64).clamp(max=0.999)
    raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")


def velocity(x0: Tensor, noise: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """The v-prediction target ``v = √ᾱ ε − √(1−ᾱ) x_0`` (Salimans & Ho 2022, "Progressive Distillation").

    ``alpha_bar`` is a float or a tensor that broadcasts against ``x0`` (one value per row).
    """
    ab = torch.as_tensor(alpha_bar, dtype=x0.dtype, device=x0.device)
    return ab.sqrt() * noise - (1 - ab).sqrt() * x0


def eps_from_velocity(x: Tensor, v: Tensor, alpha_bar: float) -> Tensor:
    """``ε = √(1−ᾱ) x_t + √ᾱ v``: the noise implied by a v-prediction at ``x_t`` (affine in ``v``)."""
    return math.sqrt(1 - alpha_bar) * x + math.sqrt(alpha_bar) * v


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` timestep indices evenly spaced from ``T − 1`` down to 0, both ends included.

    Starting at the last index matters: sampling starts from pure noise, which is what ``x_T`` is. With
    ``steps <= T`` the spacing is at least 1, so the rounded indices are distinct.
    """
    return [int(v) for v in torch.linspace(timesteps - 1, 0, steps, dtype=torch.float64).round()]


def randn_like_on(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal noise of ``shape`` with ``like``'s dtype and device, drawn from ``generator``.

    Drawn on the generator's device, then moved: a CPU generator may drive a model on a GPU.
    """
    device = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def _predict_x0(x: Tensor, eps: Tensor, alpha_bar: float, clip: bool) -> tuple[Tensor, Tensor]:
    """``x̂_0 = (x_t − √(1−ᾱ) ε) / √ᾱ``, clipped to [-1, 1], and the ε consistent with the clipped ``x̂_0``.

    Re-deriving ε after the clip (as the guided-diffusion code does) keeps ``x_{t'}`` on the line through
    ``x_t`` and the clipped ``x̂_0``; it also makes DDIM with ``eta = 1`` over all steps equal DDPM.
    """
    x0 = (x - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x - math.sqrt(alpha_bar) * x0) / math.sqrt(1 - alpha_bar)
    return x0, eps


def ddim_sample(
    eps_fn: EpsFn,
    x: Tensor,
    alphas_bar: Tensor,
    timesteps: Sequence[int],
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip: bool = True,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) from ``x`` at ``timesteps[0]`` down through ``timesteps``; -> ``x̂_0``.

    Each step: ``x̂_0`` from the predicted ε, then
    ``x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε + σ z`` with
    ``σ = η √((1 − ᾱ_{t'}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t'})``; after the last listed timestep ``ᾱ_{t'} = 1``,
    so the result is that step's ``x̂_0``. ``eta = 0`` is deterministic given ``x``; ``eta = 1`` with every
    timestep is DDPM's ancestral sampler. ``z`` is drawn from ``generator`` once per step but the last,
    for the whole batch, only when ``eta > 0``.
    """
    seq = list(timesteps)
    for i, t in enumerate(seq):
        ab = float(alphas_bar[t])
        x0, eps = _predict_x0(x, eps_fn(x, t), ab, clip)
        if i + 1 == len(seq):
            return x0
        ab_prev = float(alphas_bar[seq[i + 1]])
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
        if eta > 0:
            x = x + sigma * randn_like_on(x.shape, generator, x)
    return x


def ddpm_sample(
    eps_fn: EpsFn,
    x: Tensor,
    betas: Tensor,
    *,
    generator: torch.Generator | None = None,
    clip: bool = True,
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) from ``x = x_T`` over all ``T`` steps -> ``x̂_0``.

    Each step samples the posterior ``q(x_{t−1} | x_t, x̂_0)``: mean
    ``√ᾱ_{t−1} β_t / (1 − ᾱ_t) · x̂_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t`` and variance
    ``β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)`` (DDPM's "fixed small" variance, the exact posterior variance
    given ``x_0``; the other choice, ``β_t``, is meant for unbounded data). At ``t = 1`` the mean is
    ``x̂_0`` itself and no noise is added.
    """
    betas = betas.double()
    alphas_bar = torch.cumprod(1 - betas, dim=0)
    for t in range(len(betas) - 1, -1, -1):
        ab = float(alphas_bar[t])
        x0, _ = _predict_x0(x, eps_fn(x, t), ab, clip)
        if t == 0:
            return x0
        beta, ab_prev = float(betas[t]), float(alphas_bar[t - 1])
        mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (
            math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
        ) * x
        x = mean + math.sqrt(beta * (1 - ab_prev) / (1 - ab)) * randn_like_on(x.shape, generator, x)
    return x

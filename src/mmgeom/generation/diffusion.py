"""UnCLIP's decoder, small: a conditional diffusion model that generates images from an embedding.

UnCLIP (Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents") decodes
images from CLIP image embeddings with a diffusion model; feeding it the embedding of another modality
works to the extent that the space is aligned. This module is that decoder at the scale of the bundled
datasets (16x15 and 28x28 single-channel images):

- the forward process and the ε-prediction objective of DDPM (Ho et al. 2020, "Denoising Diffusion
  Probabilistic Models"), with the cosine noise schedule of Nichol & Dhariwal 2021 ("Improved Denoising
  Diffusion Probabilistic Models") or the linear one of DDPM;
- DDIM sampling (Song et al. 2021, "Denoising Diffusion Implicit Models") over a subsequence of the
  timesteps, or DDPM ancestral sampling over all of them;
- classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance"): the condition is
  replaced by a learned null embedding for a fraction of the training examples, and sampling
  extrapolates from the unconditional towards the conditional noise prediction — UnCLIP trains its
  decoder the same way (10% of the CLIP embeddings dropped).

UnCLIP also projects the embedding into extra attention tokens and upsamples with two further diffusion
models; at these image sizes there is no attention and no upsampler, and a linear map of the condition
to the UNet's bottleneck stands in for the tokens' spatial role (see :mod:`.unet`).

The network predicts the noise ε by default, as DDPM and UnCLIP do. ``prediction="v"`` (Salimans & Ho
2022) predicts ``v = √ᾱ ε − √(1−ᾱ) x_0`` instead, which is ≈ −x_0 at high noise: with ε-prediction the
estimate ``x̂_0 = (x_t − √(1−ᾱ) ε̂) / √ᾱ`` multiplies the network's error by ``1/√ᾱ`` (10³ at the last
cosine step), so the first sampling steps depend on an ε accuracy that a small network takes long to
reach. On the 8-image overfit test (8 conditions -> 8 squares; channels (16, 32), T = 50, Adam 3e-3,
batch 8) ε-prediction needed about 1400 steps before its DDIM samples were near their targets, and
wandered off and back at later checkpoints; v-prediction was there after 200.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from .base import ImageDecoder
from .gaussian_diffusion import (
    SCHEDULES,
    EpsFn,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    eps_from_velocity,
    make_betas,
    randn_like_on,
    velocity,
)
from .unet import ConditionalUNet

SAMPLERS = ("ddim", "ddpm")
PREDICTIONS = ("eps", "v")


def _int_at_least(value: object, name: str, low: int, high: int | None = None) -> int:
    too_big = high is not None and isinstance(value, int) and value > high
    if isinstance(value, bool) or not isinstance(value, int) or value < low or too_big:
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}: expected an integer {bound}, got {value!r}")
    return value


def _number_in(value: object, name: str, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


class DiffusionDecoder(ImageDecoder):
    """Conditional diffusion decoder (UnCLIP-style): images from an aligned-space embedding.

    Training (:meth:`loss`) is DDPM's simplified objective ``E‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t, c)‖²`` with
    ``t`` uniform over the ``T`` steps and images scaled from [0, 1] to [-1, 1] (with ``prediction="v"``
    the target is ``v`` instead of ``ε``); in training mode a fraction
    ``cond_dropout`` of the conditions is replaced by a learned null embedding, which teaches the same
    network the unconditional model that classifier-free guidance needs. Sampling (:meth:`sample`) is DDIM
    over ``steps`` evenly spaced timesteps or DDPM over all ``T``, with guidance
    ``ε = ε_∅ + w (ε_c − ε_∅)``.

    The condition (L2-normalised by :meth:`check_condition`) goes through a two-layer MLP to the width of
    the timestep embedding and is added to it; the sum modulates every residual block of the
    :class:`~mmgeom.generation.unet.ConditionalUNet` by a FiLM scale and shift, and the condition
    embedding is also mapped linearly to a feature map at the UNet's bottleneck. Height and width are
    padded internally (edge replication, on the bottom and right) to a multiple of ``2**len(channels)``
    — the network halves the resolution once per level — and cropped on output.

    References:
        Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (objective, ancestral sampler).
        Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (cosine schedule).
        Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (DDIM sampler).
        Ho & Salimans 2022, "Classifier-Free Diffusion Guidance" (null condition, guided ε).
        Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents" (UnCLIP).
        Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models" (v).

    Args:
        embed_dim: dimension of the conditioning embedding.
        image_shape: ``(H, W)`` or ``(C, H, W)``.
        channels: width of each UNet level (one down/up level per entry).
        timesteps: number ``T`` of diffusion steps in training.
        schedule: ``"cosine"`` (Nichol & Dhariwal) or ``"linear"`` (DDPM, rescaled to ``T``).
        cond_dropout: probability in [0, 1] that a training condition is replaced by the null embedding.
        prediction: what the network predicts: ``"eps"`` (the noise, as DDPM/UnCLIP) or ``"v"``.

    Raises:
        ValueError: a bad shape, a non-positive width or ``timesteps``, an unknown ``schedule`` or
            ``prediction``, ``cond_dropout`` outside [0, 1].

    Example::

        dec = DiffusionDecoder(64, (16, 15))
        opt = torch.optim.AdamW(dec.parameters(), lr=1e-3)
        for z, pix in loader:                      # frozen image embeddings, images in [0, 1]
            opt.zero_grad(); dec.loss(z, pix).backward(); opt.step()
        images = dec.sample(z_text, generator=torch.Generator().manual_seed(0), steps=50, guidance=2.0)
    """

    def __init__(
        self,
        embed_dim: int,
        image_shape: Sequence[int],
        *,
        channels: Sequence[int] = (32, 64),
        timesteps: int = 200,
        schedule: str = "cosine",
        cond_dropout: float = 0.1,
        prediction: str = "eps",
    ) -> None:
        super().__init__(embed_dim, image_shape)
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) == 0:
            raise ValueError(f"channels: expected a non-empty sequence of integers >= 1, got {channels!r}")
        self.channels = tuple(_int_at_least(c, "channels", 1) for c in channels)
        self.timesteps = _int_at_least(timesteps, "timesteps", 2)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")
        self.schedule = schedule
        self.prediction = prediction
        self.cond_dropout = _number_in(cond_dropout, "cond_dropout", 0.0, 1.0)
        # float64 on the CPU and not buffers: derived from the arguments (so not in the state dict), and
        # ᾱ close to 1 must survive a model cast to half precision.
        self.betas = make_betas(schedule, self.timesteps)
        self.alphas_bar = torch.cumprod(1 - self.betas, dim=0)

        c, h, w = self.image_shape
        multiple = 2 ** len(self.channels)
        self.padded_shape = (c, -(-h // multiple) * multiple, -(-w // multiple) * multiple)
        emb_dim = 4 * self.channels[0]  # the DDPM UNet's timestep-embedding width
        self.cond_mlp = nn.Sequential(nn.Linear(embed_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # The null condition lives after the MLP, in the space the network reads: an input-space null
        # vector would have to be a point of the unit sphere, i.e. some real condition's direction.
        self.null_cond = nn.Parameter(torch.zeros(emb_dim))
        low = (self.padded_shape[1] // multiple, self.padded_shape[2] // multiple)
        self.net: nn.Module = ConditionalUNet(c, self.channels, emb_dim, low)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The forward process ``x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε`` (a sample of ``q(x_t | x_0)``), row-wise.

        Args:
            x0: clean data ``(B, ...)`` in the network's [-1, 1] scale.
            t: ``(B,)`` timestep indices in ``[0, T)`` (index ``i`` is step ``i + 1`` of the papers).
            noise: standard normal ``ε``, the shape of ``x0``.
        """
        ab = self.alphas_bar.to(t.device)[t].to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def _to_canvas(self, images: Tensor) -> Tensor:
        _, hp, wp = self.padded_shape
        x = images * 2 - 1
        return nnf.pad(x, (0, wp - x.shape[-1], 0, hp - x.shape[-2]), mode="replicate")

    def _param(self) -> Tensor:
        return self.null_cond

    def loss(self, cond: Tensor, images: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Noise-prediction (or v-prediction) MSE on a batch of ``(condition, image)`` pairs (a scalar).

        Randomness (timesteps, noise, condition dropout) comes from ``generator`` when given, else from
        torch's global RNG. Condition dropout applies in training mode only, like :class:`torch.nn.Dropout`,
        so a loss evaluated in eval mode is the conditional one.

        Args:
            cond: ``(B, embed_dim)`` embeddings.
            images: ``(B, C, H, W)`` or ``(B, C*H*W)`` in [0, 1].

        Raises:
            ValueError: see :meth:`check_condition` and :meth:`check_images`.
        """
        p = self._param()
        c = self.check_condition(cond).to(p)
        x0 = self._to_canvas(self.check_images(images, batch=c.shape[0]).to(p))
        b = c.shape[0]
        gen_device = generator.device if generator is not None else p.device
        t = torch.randint(0, self.timesteps, (b,), generator=generator, device=gen_device).to(p.device)
        noise = randn_like_on(x0.shape, generator, x0)
        emb = self.cond_mlp(c)
        if self.training and self.cond_dropout > 0:
            drop = torch.rand(b, generator=generator, device=gen_device).to(p.device) < self.cond_dropout
            emb = torch.where(drop[:, None], self.null_cond.expand_as(emb), emb)
        target = noise
        if self.prediction == "v":
            target = velocity(x0, noise, self.alphas_bar.to(t.device)[t][:, None, None, None])
        return nnf.mse_loss(self.net(self.q_sample(x0, t, noise), t, emb), target)

    def sample(
        self,
        cond: Tensor,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        guidance: float = 2.0,
        sampler: str = "ddim",
        eta: float = 0.0,
        batch_size: int = 256,
    ) -> Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] decoded from conditions ``(B, embed_dim)``.

        Runs without gradients and in eval mode (the previous mode is restored). The initial noise
        ``x_T`` and any per-step noise are drawn for the whole batch at once from ``generator`` (torch's
        global RNG when ``None``), and only the network calls are chunked: the same seed gives the same
        images whatever ``batch_size`` is. The state kept for the whole batch is one image per row.

        Args:
            cond: ``(B, embed_dim)`` embeddings (any modality of the aligned space).
            generator: source of all sampling noise.
            steps: DDIM steps, in ``[1, T]``, evenly spaced from ``T−1`` to 0 (default ``min(50, T)``);
                ignored by ``"ddpm"``, which always runs all ``T`` steps.
            guidance: classifier-free guidance weight ``w >= 0`` in ``ε = ε_∅ + w (ε_c − ε_∅)``;
                1 is the plain conditional model (one network pass), 0 the unconditional one.
            sampler: ``"ddim"`` or ``"ddpm"``.
            eta: DDIM stochasticity ``η >= 0`` (0: deterministic given ``x_T``; 1: DDPM-like);
                ignored by ``"ddpm"``.
            batch_size: at most this many rows per network call (a guided call evaluates each row twice,
                so it takes ``batch_size // 2`` conditions).

        Raises:
            ValueError: a bad condition (its message names the expected ``embed_dim``), ``steps`` outside
                ``[1, T]``, ``guidance < 0``, an unknown ``sampler``, ``eta < 0`` or ``batch_size < 1``.
        """
        p = self._param()
        c = self.check_condition(cond).to(p)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
        n_steps = (
            min(50, self.timesteps) if steps is None else _int_at_least(steps, "steps", 1, self.timesteps)
        )
        w = _number_in(guidance, "guidance", 0.0)
        eta_f = _number_in(eta, "eta", 0.0)
        _int_at_least(batch_size, "batch_size", 1)
        ch, h, wd = self.image_shape
        if c.shape[0] == 0:
            return p.new_empty((0, ch, h, wd))

        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                x = randn_like_on((c.shape[0], *self.padded_shape), generator, p)
                eps_fn = self._guided_eps_fn(self.cond_mlp(c), w, batch_size)
                if sampler == "ddim":
                    seq = ddim_timesteps(self.timesteps, n_steps)
                    x0 = ddim_sample(eps_fn, x, self.alphas_bar, seq, eta=eta_f, generator=generator)
                else:
                    x0 = ddpm_sample(eps_fn, x, self.betas, generator=generator)
        finally:
            self.train(was_training)
        return ((x0[:, :, :h, :wd] + 1) / 2).clamp(0.0, 1.0)

    def _guided_eps_fn(self, emb: Tensor, guidance: float, batch_size: int) -> EpsFn:
        """``(x_t, t) -> ε`` with classifier-free guidance, in network calls of <= ``batch_size`` rows."""
        guided = guidance not in (0.0, 1.0)
        rows = max(1, batch_size // 2) if guided else batch_size

        def eps_fn(x: Tensor, t: int) -> Tensor:
            out = torch.empty_like(x)
            for lo in range(0, x.shape[0], rows):
                xc, ec = x[lo : lo + rows], emb[lo : lo + rows]
                null = self.null_cond.expand_as(ec)
                if guidance == 1.0:
                    out[lo : lo + rows] = self.net(xc, _full(t, xc), ec)
                elif guidance == 0.0:  # unconditional: the condition is never read
                    out[lo : lo + rows] = self.net(xc, _full(t, xc), null)
                else:  # one network call on [cond; null] rows
                    e_c, e_u = self.net(torch.cat([xc, xc]), _full(t, xc, 2), torch.cat([ec, null])).chunk(2)
                    out[lo : lo + rows] = e_u + guidance * (e_c - e_u)
            # ε is affine in v at a fixed x_t, so guiding v and then converting equals guiding ε.
            return eps_from_velocity(x, out, float(self.alphas_bar[t])) if self.prediction == "v" else out

        return eps_fn


def _full(t: int, like: Tensor, repeat: int = 1) -> Tensor:
    return torch.full((repeat * like.shape[0],), t, dtype=torch.long, device=like.device)

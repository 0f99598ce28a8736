"""DiffusionDecoder: schedule, forward process, samplers against the true noise, overfitting, determinism.

The samplers are checked independently of any training: with a predictor that returns the true noise
both must return ``x_0``, and DDIM with ``eta = 1`` over every step must coincide with DDPM.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from mmgeom.generation.diffusion import DiffusionDecoder
from mmgeom.generation.gaussian_diffusion import (
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    eps_from_velocity,
    make_betas,
    velocity,
)

EMBED = 16


def cosine_closed_form(t: int, big_t: int, s: float = 0.008) -> float:
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t / big_t) / f(0.0)


def squares() -> Tensor:
    """8 distinct 16x15 images: a bright 5x5 square at 8 places on black."""
    images = torch.zeros(8, 1, 16, 15)
    places = [(1, 1), (1, 9), (10, 1), (10, 9), (5, 5), (1, 5), (10, 5), (5, 1)]
    for i, (r, c) in enumerate(places):
        images[i, 0, r : r + 5, c : c + 5] = 1.0
    return images


def randomised(decoder: DiffusionDecoder, seed: int = 0) -> DiffusionDecoder:
    """Perturb every parameter so the (zero-initialised) output layer gives a condition-dependent output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return decoder


@pytest.fixture(scope="module")
def trained() -> tuple[DiffusionDecoder, Tensor, Tensor]:
    """A tiny decoder overfitted to 8 (condition, square) pairs: 300 Adam steps, cosine-annealed lr."""
    torch.set_num_threads(1)  # module fixtures run before the per-test one-thread fixture
    torch.manual_seed(0)
    images, cond = squares(), torch.randn(8, EMBED)
    dec = DiffusionDecoder(EMBED, (16, 15), channels=(16, 32), timesteps=50, prediction="v")
    steps = 300
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        dec.loss(cond, images).backward()
        opt.step()
        sched.step()
    return dec, cond, images


# --- schedule and forward process ---------------------------------------------------------------


def test_cosine_schedule_matches_the_closed_form() -> None:
    big_t = 200
    betas = make_betas("cosine", big_t)
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    for t in (1, 2, 50, 100, 150, 199):  # alpha_bar[t-1] is ᾱ_t; ᾱ_T itself is changed by the β clip
        assert float(alpha_bar[t - 1]) == pytest.approx(cosine_closed_form(t, big_t), rel=1e-10)
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all())
    assert bool((alpha_bar > 0).all()) and bool((alpha_bar <= 1).all())
    # The 0.999 clip bites at t = T only (where the closed form is 0).
    assert bool((betas[:-1] < 0.999).all()) and float(betas[-1]) == pytest.approx(0.999)


def test_linear_schedule_is_ddpm_rescaled_to_t() -> None:
    betas = make_betas("linear", 200)  # DDPM's 1e-4 .. 0.02 at T = 1000, times 1000 / 200
    assert float(betas[0]) == pytest.approx(5e-4) and float(betas[-1]) == pytest.approx(0.1)
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all()) and float(alpha_bar[-1]) > 0


def test_forward_noising_has_variance_one_minus_alpha_bar() -> None:
    dec = DiffusionDecoder(EMBED, (4, 4), timesteps=200)
    g = torch.Generator().manual_seed(0)
    n = 25_000
    for t in (0, 20, 100, 180, 199):
        ab = float(dec.alphas_bar[t])
        steps = torch.full((n,), t)
        xt = dec.q_sample(torch.zeros(n, 1, 2, 2), steps, torch.randn(n, 1, 2, 2, generator=g))
        assert float(xt.var()) == pytest.approx(1 - ab, rel=0.03)
        xt = dec.q_sample(torch.full((n, 1, 2, 2), 0.5), steps, torch.randn(n, 1, 2, 2, generator=g))
        assert float(xt.mean()) == pytest.approx(0.5 * math.sqrt(ab), abs=0.02)


def test_ddim_timesteps_are_evenly_spaced_from_t_minus_one_to_zero() -> None:
    seq = ddim_timesteps(200, 50)
    assert len(seq) == 50 and seq[0] == 199 and seq[-1] == 0
    assert all(a > b for a, b in itertools.pairwise(seq))
    assert ddim_timesteps(200, 1) == [199]
    assert ddim_timesteps(20, 20) == list(range(19, -1, -1))


def test_velocity_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = (
        torch.rand(3, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 5, generator=g, dtype=torch.float64),
    )
    ab = 0.3
    xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
    torch.testing.assert_close(eps_from_velocity(xt, velocity(x0, eps, ab), ab), eps)


# --- samplers against the true noise (float64, independent of any network) --------------------------


def oracle_problem(big_t: int = 50) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    betas = make_betas("cosine", big_t)
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64) * 1.8 - 0.9
    eps = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    x_big_t = alpha_bar[-1].sqrt() * x0 + (1 - alpha_bar[-1]).sqrt() * eps
    return betas, alpha_bar, x0, eps, x_big_t


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_deterministic_ddim_with_the_true_noise_recovers_x0(steps: int) -> None:
    """A predictor that always returns the ε that made x_T: every DDIM state is √ᾱ x_0 + √(1−ᾱ) ε."""
    _, alpha_bar, x0, eps, x_big_t = oracle_problem()
    seen: dict[int, Tensor] = {}

    def true_noise(x: Tensor, t: int) -> Tensor:
        seen[t] = x.clone()
        return eps

    out = ddim_sample(true_noise, x_big_t, alpha_bar, ddim_timesteps(50, steps), eta=0.0)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    assert sorted(seen) == sorted(ddim_timesteps(50, steps))
    for t, x in seen.items():
        expected = alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * eps
        torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim-eta"])
def test_stochastic_samplers_with_the_true_noise_recover_x0(sampler: str) -> None:
    """Predictor = the noise relating the *current* x_t to x_0: the samplers' x̂_0 is exact at every step."""
    betas, alpha_bar, x0, _, x_big_t = oracle_problem()

    def true_noise(x: Tensor, t: int) -> Tensor:
        return (x - alpha_bar[t].sqrt() * x0) / (1 - alpha_bar[t]).sqrt()

    g = torch.Generator().manual_seed(1)
    if sampler == "ddpm":
        out = ddpm_sample(true_noise, x_big_t, betas, generator=g)
    else:
        out = ddim_sample(true_noise, x_big_t, alpha_bar, ddim_timesteps(50, 10), eta=0.7, generator=g)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_ddim_with_eta_one_over_all_steps_is_ddpm() -> None:
    """Song et al. 2021: η = 1 gives DDPM's posterior variance; with the same noise draws both agree."""
    betas, alpha_bar, _, _, x_big_t = oracle_problem()

    def predictor(x: Tensor, t: int) -> Tensor:  # arbitrary, nonlinear, and large enough to clip x̂_0
        return torch.tanh(2 * x + 0.05 * t)

    ddpm = ddpm_sample(predictor, x_big_t, betas, generator=torch.Generator().manual_seed(3))
    ddim = ddim_sample(
        predictor,
        x_big_t,
        alpha_bar,
        ddim_timesteps(50, 50),
        eta=1.0,
        generator=torch.Generator().manual_seed(3),
    )
    torch.testing.assert_close(ddim, ddpm, atol=1e-9, rtol=0)


class TrueNoiseNet(nn.Module):
    """Stands in for the UNet: returns the ε (or v) relating x_t to a known x_0 canvas."""

    def __init__(self, x0: Tensor, alpha_bar: Tensor, prediction: str) -> None:
        super().__init__()
        self.x0, self.alpha_bar, self.prediction = x0, alpha_bar, prediction

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        x0 = self.x0.repeat(x.shape[0] // self.x0.shape[0], 1, 1, 1)  # guided calls stack [cond; null]
        ab = self.alpha_bar[t].to(x.dtype)[:, None, None, None]
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return eps if self.prediction == "eps" else velocity(x0, eps, ab)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize(("sampler", "guidance"), [("ddim", 1.0), ("ddim", 3.0), ("ddpm", 1.0)])
def test_decoder_with_the_true_noise_returns_the_target_images(
    prediction: str, sampler: str, guidance: float
) -> None:
    """The decoder's own plumbing (scaling, padding, cropping, guidance, v -> ε) around the samplers."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 16, 15, generator=g)
    dec = DiffusionDecoder(EMBED, (16, 15), channels=(8, 8), timesteps=50, prediction=prediction)
    canvas = torch.nn.functional.pad(target * 2 - 1, (0, 1))  # 16x15 -> 16x16, any padding value
    dec.net = TrueNoiseNet(canvas, dec.alphas_bar, prediction)
    out = dec.sample(
        torch.randn(3, EMBED, generator=g), generator=g, steps=20, guidance=guidance, sampler=sampler
    )
    torch.testing.assert_close(out, target, atol=1e-5, rtol=0)


# --- the trained decoder ------------------------------------------------------------------------------


def test_overfits_eight_conditions_to_eight_images(trained: tuple[DiffusionDecoder, Tensor, Tensor]) -> None:
    dec, cond, images = trained
    out = dec.sample(cond, generator=torch.Generator().manual_seed(1), steps=50, guidance=1.0)
    own = ((out - images) ** 2).mean(dim=(1, 2, 3))
    between = ((images[:, None] - images[None]) ** 2).mean(dim=(2, 3, 4))
    min_between = float(between[~torch.eye(8, dtype=torch.bool)].min())  # 0.167 for these squares
    assert float(own.max()) < 0.1 * min_between, (own, min_between)  # ~0.003 measured


@pytest.mark.parametrize(("guidance", "eta"), [(2.0, 0.0), (1.0, 0.5)])
def test_sampling_is_seeded_and_independent_of_chunking(
    trained: tuple[DiffusionDecoder, Tensor, Tensor], guidance: float, eta: float
) -> None:
    dec, cond, _ = trained

    def run(seed: int, batch_size: int = 256) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        return dec.sample(cond, generator=g, steps=10, guidance=guidance, eta=eta, batch_size=batch_size)

    a = run(7)
    assert torch.equal(a, run(7))
    # Not bit-equal in general: a convolution's summation order may depend on the batch size.
    torch.testing.assert_close(run(7, batch_size=3), a, atol=1e-5, rtol=0)
    assert not torch.equal(run(8), a)


def test_ddpm_sampler_is_seeded_and_chunk_independent(
    trained: tuple[DiffusionDecoder, Tensor, Tensor],
) -> None:
    dec, cond, _ = trained
    a = dec.sample(cond[:4], generator=torch.Generator().manual_seed(2), sampler="ddpm", guidance=1.0)
    b = dec.sample(
        cond[:4], generator=torch.Generator().manual_seed(2), sampler="ddpm", guidance=1.0, batch_size=1
    )
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_guidance_zero_ignores_the_condition(trained: tuple[DiffusionDecoder, Tensor, Tensor]) -> None:
    dec, cond, _ = trained
    a = dec.sample(cond[:4], generator=torch.Generator().manual_seed(5), steps=10, guidance=0.0)
    b = dec.sample(cond[4:], generator=torch.Generator().manual_seed(5), steps=10, guidance=0.0)
    assert torch.equal(a, b)
    c = dec.sample(cond[4:], generator=torch.Generator().manual_seed(5), steps=10, guidance=1.0)
    assert not torch.equal(a, c)


def test_guidance_combines_conditional_and_null_predictions() -> None:
    """ε = ε_∅ + w (ε_c − ε_∅), one call on [cond; null] rows of at most batch_size; w = 1: no null pass."""
    dec = DiffusionDecoder(EMBED, (8, 8), channels=(8,), timesteps=20)
    rows: list[int] = []

    class Fake(nn.Module):
        def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
            rows.append(x.shape[0])
            return x + cond[:, :1, None, None]

    dec.net = Fake()
    with torch.no_grad():
        dec.null_cond.fill_(-1.0)
        emb = torch.full((5, dec.null_cond.shape[0]), 2.0)
        x = torch.zeros(5, 1, 8, 8)
        out = dec._guided_eps_fn(emb, 3.0, batch_size=4)(x, 7)
        torch.testing.assert_close(out, torch.full_like(x, -1.0 + 3.0 * (2.0 - -1.0)))
        assert rows == [4, 4, 2]  # 2 conditions (4 rows) per call
        rows.clear()
        torch.testing.assert_close(dec._guided_eps_fn(emb, 1.0, batch_size=4)(x, 7), torch.full_like(x, 2.0))
        assert rows == [4, 1]


# --- shapes, modes, loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16, 15), (28, 28), (3, 8, 6)])
def test_output_shape_and_range(shape: tuple[int, ...]) -> None:
    dec = randomised(DiffusionDecoder(EMBED, shape, channels=(8, 16), timesteps=20))
    out = dec.sample(torch.randn(5, EMBED), generator=torch.Generator().manual_seed(0), steps=3)
    c, h, w = dec.image_shape
    assert out.shape == (5, c, h, w) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not out.requires_grad
    assert dec.sample(torch.randn(0, EMBED)).shape == (0, c, h, w)


def test_sample_restores_the_mode() -> None:
    dec = DiffusionDecoder(EMBED, (8, 8), channels=(8,), timesteps=10)
    dec.train()
    dec.sample(torch.randn(2, EMBED), steps=2)
    assert dec.training
    dec.eval()
    dec.sample(torch.randn(2, EMBED), steps=2)
    assert not dec.training


def test_loss_is_seeded_scalar_and_reaches_every_parameter() -> None:
    dec = randomised(DiffusionDecoder(EMBED, (16, 15), channels=(8, 16), timesteps=20, cond_dropout=0.5))
    cond, images = torch.randn(6, EMBED), torch.rand(6, 1, 16, 15)
    loss = dec.loss(cond, images, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and bool(torch.isfinite(loss))
    assert torch.equal(loss, dec.loss(cond, images, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(loss, dec.loss(cond, images.flatten(1), generator=torch.Generator().manual_seed(0)))
    loss.backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []  # cond_dropout 0.5 on 6 rows with this seed drops some and keeps some


def test_condition_dropout_uses_the_null_embedding_in_training_mode_only() -> None:
    dec = randomised(DiffusionDecoder(EMBED, (8, 8), channels=(8,), timesteps=20, cond_dropout=1.0))
    images = torch.rand(4, 1, 8, 8)
    a, b = torch.randn(4, EMBED), torch.randn(4, EMBED)

    def loss(cond: Tensor) -> Tensor:
        return dec.loss(cond, images, generator=torch.Generator().manual_seed(0))

    assert torch.equal(loss(a), loss(b))  # every condition dropped: the condition is never read
    dec.eval()
    assert not torch.equal(loss(a), loss(b))


# --- validation ---------------------------------------------------------------------------------------


def test_wrong_embedding_dimension_names_the_expected_one() -> None:
    dec = DiffusionDecoder(EMBED, (8, 8), channels=(8,), timesteps=10)
    with pytest.raises(ValueError, match=rf"\(B, {EMBED}\)"):
        dec.sample(torch.randn(2, EMBED + 1))
    with pytest.raises(ValueError, match=rf"\(B, {EMBED}\)"):
        dec.loss(torch.randn(2, 3), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="images"):
        dec.loss(torch.randn(2, EMBED), torch.rand(2, 1, 8, 7))
    with pytest.raises(ValueError, match="rows"):
        dec.loss(torch.randn(2, EMBED), torch.rand(3, 1, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 11}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"guidance": -0.5}, "guidance"),
        ({"guidance": float("nan")}, "guidance"),
        ({"sampler": "euler"}, "sampler"),
        ({"eta": -0.1}, "eta"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_sampling_arguments(kwargs: dict[str, object], match: str) -> None:
    dec = DiffusionDecoder(EMBED, (8, 8), channels=(8,), timesteps=10)
    with pytest.raises(ValueError, match=match):
        dec.sample(torch.randn(2, EMBED), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": ()}, "channels"),
        ({"channels": (8, 0)}, "channels"),
        ({"channels": "ab"}, "channels"),
        ({"timesteps": 1}, "timesteps"),
        ({"schedule": "quadratic"}, "schedule"),
        ({"cond_dropout": 1.5}, "cond_dropout"),
        ({"prediction": "x0"}, "prediction"),
        ({"image_shape": (0, 8)}, "image_shape"),
        ({"embed_dim": 0}, "embed_dim"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"embed_dim": EMBED, "image_shape": (8, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        DiffusionDecoder(**args)  # type: ignore[arg-type]

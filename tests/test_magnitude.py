"""MagnitudeHead: shape, positivity, initial value, validation, and gradients through L2DirLoss."""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom.losses import create_loss
from mmgeom.models import MagnitudeHead
from mmgeom.models.magnitude import inverse_softplus


def batch(n: int = 8, d: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"query": torch.randn(n, d, generator=g), "doc": torch.randn(n, d, generator=g)}


def test_output_shape_positive_and_starts_near_init() -> None:
    torch.manual_seed(0)
    head = MagnitudeHead(10, hidden=16, init_magnitude=3.0)
    with torch.no_grad():
        r = head(torch.randn(32, 10))
    assert r.shape == (32,)
    assert bool((r > 0).all())
    assert float((r - 3.0).abs().max()) < 0.5
    assert inverse_softplus(2.5) == pytest.approx(math.log(math.expm1(2.5)))
    assert float(torch.nn.functional.softplus(torch.tensor(inverse_softplus(40.0)))) == pytest.approx(40.0)


def test_min_magnitude_keeps_it_positive_where_softplus_underflows() -> None:
    head = MagnitudeHead(3, depth=1, input_norm=False, min_magnitude=1e-3)
    with torch.no_grad():
        head.net[-1].bias.fill_(-1e4)
    assert torch.equal(head(torch.zeros(2, 3)), torch.full((2,), 1e-3))


@pytest.mark.parametrize("norm_term", ["tn", "logcos"])
def test_gradients_reach_every_head_parameter_through_l2dir(norm_term: str) -> None:
    torch.manual_seed(0)
    heads = {m: MagnitudeHead(5, hidden=8, modality=m) for m in ("query", "doc")}
    feats = {m: torch.randn(8, 5) for m in heads}
    b = batch()
    r = {m: heads[m](feats[m]) for m in heads}
    create_loss("l2dir", lambda_n=1.0, norm_term=norm_term)(b, magnitudes=r).total.backward()
    for m, head in heads.items():
        for name, p in head.named_parameters():
            assert p.grad is not None, (m, name)
            assert float(p.grad.abs().sum()) > 0, (m, name)


def test_detached_magnitudes_give_the_head_no_gradient() -> None:
    # The check above fails if the magnitudes are detached: the release variant does exactly that.
    torch.manual_seed(0)
    head = MagnitudeHead(5, hidden=8)
    r = head(torch.randn(8, 5))
    b = {m: z.requires_grad_() for m, z in batch().items()}
    create_loss("l2dir", variant="release")(
        b, magnitudes={"query": r, "doc": r.detach() + 1}
    ).total.backward()
    assert all(p.grad is None for p in head.parameters())
    assert all(z.grad is not None for z in b.values())  # the directions still train


def test_a_training_step_moves_magnitudes_towards_their_positives() -> None:
    torch.manual_seed(0)
    b = batch(n=16)
    heads = {m: MagnitudeHead(6, hidden=16, init_magnitude=1.0) for m in ("query", "doc")}
    with torch.no_grad():  # make the doc head start at a very different magnitude
        heads["doc"].net[-1].bias.fill_(inverse_softplus(5.0))
    loss = create_loss("l2dir", lambda_n=1.0)
    opt = torch.optim.Adam([p for h in heads.values() for p in h.parameters()], lr=1e-2)

    def gap() -> float:
        with torch.no_grad():
            return float((heads["query"](b["query"]) - heads["doc"](b["doc"])).abs().mean())

    before = gap()
    for _ in range(50):
        opt.zero_grad()
        loss(b, magnitudes={m: heads[m](b[m]) for m in heads}).total.backward()
        opt.step()
    assert gap() < 0.5 * before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_dim": 0}, "in_dim must be an integer >= 1"),
        ({"in_dim": 3, "hidden": 2.5}, "hidden must be an integer >= 1"),
        ({"in_dim": 3, "depth": True}, "depth must be an integer >= 1"),
        ({"in_dim": 3, "activation": "elu"}, "activation must be one of"),
        ({"in_dim": 3, "init_magnitude": 0.0}, "init_magnitude must be finite and > 0"),
        ({"in_dim": 3, "init_magnitude": float("inf")}, "init_magnitude must be finite"),
        ({"in_dim": 3, "min_magnitude": -1.0}, "min_magnitude must be finite and >= 0"),
        ({"in_dim": 3, "init_scale": -0.5}, "init_scale must be finite and >= 0"),
        ({"in_dim": 3, "init_magnitude": 0.1, "min_magnitude": 0.2}, "must exceed min_magnitude"),
    ],
)
def test_constructor_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MagnitudeHead(**kwargs)


def test_forward_validation_names_the_modality() -> None:
    head = MagnitudeHead(4, modality="text")
    with pytest.raises(ValueError, match=r"text: expected features of shape \(B, 4\), got \(2, 3\)"):
        head(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="text: expected floating-point features"):
        head(torch.zeros(2, 4, dtype=torch.long))

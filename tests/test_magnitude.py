"""MagnitudeHead: shape, positivity, initial value, validation, and gradients through L2DirLoss."""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom.losses import create_loss
from mmgeom.models import MagnitudeHead
from mmgeom.models.magnitude import inverse_softplus, weight_decay_groups


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


def test_input_layernorm_is_off_by_default_and_can_be_kept() -> None:
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in MagnitudeHead(4).modules())
    assert isinstance(MagnitudeHead(4, input_norm=True).net[0], torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="input_norm must be a bool"):
        MagnitudeHead(4, input_norm=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decay_weights must be a bool"):
        MagnitudeHead(4, decay_weights="no")  # type: ignore[arg-type]


def test_no_weight_decay_names_every_parameter_by_default() -> None:
    head = MagnitudeHead(4, input_norm=True)
    assert head.no_weight_decay() == {n for n, _ in head.named_parameters()}
    kept = MagnitudeHead(4, input_norm=True, decay_weights=True).no_weight_decay()
    assert kept == {"net.0.weight", "net.0.bias", "net.1.bias", "net.3.bias"}  # LayerNorm and biases


def test_weight_decay_groups_exempt_the_magnitude_heads() -> None:
    model = torch.nn.ModuleDict(
        {
            "proj": torch.nn.Linear(4, 3),
            "mags": torch.nn.ModuleDict(
                {"text": MagnitudeHead(4), "image": MagnitudeHead(4, decay_weights=True)}
            ),
        }
    )
    model["proj"].bias.requires_grad_(False)
    groups = weight_decay_groups(model, 0.05)
    decayed, exempt = ({id(p) for p in g["params"]} for g in groups)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert decayed == {
        id(model["proj"].weight),
        *(id(m.weight) for m in model["mags"]["image"].net if hasattr(m, "weight")),
    }
    assert exempt == {id(p) for p in model["mags"]["text"].parameters()} | {
        id(m.bias) for m in model["mags"]["image"].net if hasattr(m, "bias")
    }
    only_heads = weight_decay_groups(MagnitudeHead(4), 0.1)
    assert len(only_heads) == 1 and only_heads[0]["weight_decay"] == 0.0
    torch.optim.AdamW(groups, lr=1e-3)  # a valid optimiser spec
    with pytest.raises(ValueError, match="weight_decay"):
        weight_decay_groups(model, -1.0)


@pytest.mark.parametrize("centered", [True, False])
def test_reconstruction_loss_regresses_the_feature_norm(centered: bool) -> None:
    torch.manual_seed(0)
    head = MagnitudeHead(5, hidden=8)
    x = torch.randn(7, 5, dtype=torch.float64) * torch.arange(1, 8, dtype=torch.float64)[:, None]
    r = head.double()(x)
    lr = [math.log(float(v)) for v in r.detach()]
    lt = [math.log(math.sqrt(sum(float(a) ** 2 for a in row))) for row in x]
    if centered:
        lr = [v - sum(lr) / 7 for v in lr]
        lt = [v - sum(lt) / 7 for v in lt]
    expected = sum((a - b) ** 2 for a, b in zip(lr, lt, strict=True)) / 7
    assert float(head.reconstruction_loss(x, centered=centered).detach()) == pytest.approx(
        expected, rel=1e-10
    )
    assert float(head.reconstruction_loss(x, r, centered=centered).detach()) == pytest.approx(
        expected, rel=1e-10
    )
    with pytest.raises(ValueError, match=r"input: r: expected shape \(7,\)"):
        head.reconstruction_loss(x, r[:3])


def test_reconstruction_makes_the_head_track_feature_norms() -> None:
    # With the reconstruction target the magnitudes vary with the frozen feature's norm (not a constant).
    torch.manual_seed(0)
    x = torch.randn(64, 6) * torch.linspace(0.5, 4.0, 64)[:, None]
    head = MagnitudeHead(6, hidden=16)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        head.reconstruction_loss(x).backward()
        opt.step()
    with torch.no_grad():
        r = head(x)
    corr = torch.corrcoef(torch.stack([r.log(), x.norm(dim=1).log()]))[0, 1]
    assert float(r.std() / r.mean()) > 0.2 and float(corr) > 0.9


def test_trainer_optimizer_exempts_magnitude_heads_from_weight_decay() -> None:
    from mmgeom.train import demo_config
    from mmgeom.train.builders import build_optimizer

    cfg = demo_config(1, ["optim.weight_decay=0.3"])
    proj, head = torch.nn.Linear(4, 2), MagnitudeHead(4)
    groups = build_optimizer(cfg, [proj, head]).param_groups
    assert [g["weight_decay"] for g in groups] == [0.3, 0.0]
    assert [len(g["params"]) for g in groups] == [2, len(list(head.parameters()))]
    # without a magnitude head: one group, the parameters in module order (old checkpoints still load)
    (only,) = build_optimizer(cfg, [proj]).param_groups
    assert only["params"] == list(proj.parameters())

"""mmgeom.models: projection heads and the multi-view encoder."""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom.models import LinearHead, MLPHead, MultiViewEncoder, create_head, list_heads


def test_registered_heads():
    assert {"linear", "mlp"} <= set(list_heads())
    assert isinstance(create_head("linear", 3, 2), LinearHead)
    with pytest.raises(ValueError, match="unknown kind 'conv'"):
        create_head("conv", 3, 2)


def test_linear_head_is_x_w_transpose_plus_b():
    torch.manual_seed(0)
    head = LinearHead(5, 3)
    x = torch.randn(4, 5)
    w, b = head.linear.weight.detach(), head.linear.bias.detach()
    ref = torch.stack(
        [torch.stack([sum(x[i, k] * w[j, k] for k in range(5)) + b[j] for j in range(3)]) for i in range(4)]
    )
    torch.testing.assert_close(head(x), ref, rtol=1e-5, atol=1e-6)


def _layer_norm(h, weight, bias, eps=1e-5):
    out = torch.empty_like(h)
    for i in range(h.shape[0]):
        row = h[i]
        mean = float(row.sum()) / row.numel()
        var = float(((row - mean) ** 2).sum()) / row.numel()
        out[i] = (row - mean) / math.sqrt(var + eps) * weight + bias
    return out


def _gelu(h):
    return h * 0.5 * (1.0 + torch.special.erf(h / math.sqrt(2.0)))


def test_mlp_head_matches_a_hand_built_computation():
    torch.manual_seed(1)
    head = MLPHead(6, 4, hidden=8, depth=3, layer_norm=True, dropout=0.3)
    head.eval()  # dropout off
    linears = [m for m in head.net if isinstance(m, torch.nn.Linear)]
    norms = [m for m in head.net if isinstance(m, torch.nn.LayerNorm)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 8), (8, 8), (8, 4)]
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for n in norms:
            n.weight.uniform_(0.5, 1.5)
            n.bias.uniform_(-0.5, 0.5)
    x = torch.randn(5, 6)
    h = x
    for lin, norm in zip(linears[:-1], norms, strict=True):
        h = _gelu(
            _layer_norm(
                h @ lin.weight.detach().T + lin.bias.detach(), norm.weight.detach(), norm.bias.detach()
            )
        )
    ref = h @ linears[-1].weight.detach().T + linears[-1].bias.detach()
    with torch.no_grad():
        torch.testing.assert_close(head(x), ref, rtol=1e-5, atol=1e-5)


def test_mlp_dropout_is_active_only_in_training():
    torch.manual_seed(2)
    head = MLPHead(4, 4, hidden=64, dropout=0.5)
    x = torch.randn(3, 4)
    head.eval()
    assert torch.equal(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))


def test_mlp_depth_one_is_a_single_linear_layer():
    head = MLPHead(7, 3, depth=1, hidden=99)
    assert len(head.net) == 1 and head.net[0].in_features == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": 0}, "depth"),
        ({"hidden": 0}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"activation": "swish"}, "activation"),
    ],
)
def test_mlp_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPHead(4, 2, modality="pix", **kwargs)


def test_encoder_shapes_and_order():
    enc = MultiViewEncoder.from_dims({"pix": 240, "fou": 76, "mor": 6}, kind="mlp", out_dim=32, hidden=16)
    assert enc.modalities == ("pix", "fou", "mor") and enc.out_dim == 32
    batch = {"pix": torch.randn(9, 240), "fou": torch.randn(9, 76), "mor": torch.randn(9, 6)}
    batch["labels"] = torch.zeros(9, dtype=torch.long)  # reserved keys are ignored
    out = enc(batch)
    assert list(out) == ["pix", "fou", "mor"]
    assert all(v.shape == (9, 32) for v in out.values())
    assert list(enc({"mor": torch.randn(2, 6)})) == ["mor"]  # a subset of modalities
    torch.testing.assert_close(out["fou"], enc.heads["fou"](batch["fou"]))


def test_encoder_wrong_dim_names_modality_and_expected_dim():
    enc = MultiViewEncoder.from_dims({"pix": 240, "fou": 76}, kind="linear", out_dim=8)
    with pytest.raises(ValueError, match=r"fou: expected input of shape \(B, 76\), got \(4, 75\)"):
        enc({"pix": torch.randn(4, 240), "fou": torch.randn(4, 75)})
    with pytest.raises(ValueError, match=r"pix: expected input of shape \(B, 240\), got \(240,\)"):
        enc({"pix": torch.randn(240)})


def test_encoder_other_errors():
    enc = MultiViewEncoder.from_dims({"a": 3, "b": 2}, kind="linear", out_dim=4)
    with pytest.raises(ValueError, match="c: unknown modality"):
        enc({"c": torch.randn(2, 3)})
    with pytest.raises(ValueError, match="b: expected 5 rows to pair with a"):
        enc({"a": torch.randn(5, 3), "b": torch.randn(4, 2)})
    with pytest.raises(ValueError, match="no modality"):
        enc({})
    with pytest.raises(ValueError, match="one output dimension"):
        MultiViewEncoder({"a": LinearHead(3, 4), "b": LinearHead(3, 5)})
    with pytest.raises(ValueError, match="a: expected a floating-point input"):
        enc({"a": torch.ones(2, 3, dtype=torch.long)})

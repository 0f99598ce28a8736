"""mmgeom.models fusion classifiers and the image CNN: hand-built logits, shapes, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgeom.models import (
    ConcatFusionHead,
    FusionClassifier,
    ImageCNN,
    LateFusionHead,
    create_fusion_head,
    create_head,
)


def features(mods: list[str], b: int = 5, d: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, d, generator=g, dtype=torch.float64) for m in mods}


def test_concat_head_zero_padded_unimodal_logits_equal_hand_built_head() -> None:
    mods, d, c = ["audio", "video", "text"], 4, 3
    head = ConcatFusionHead(mods, d, c).double()
    rng = np.random.default_rng(0)
    w = rng.normal(size=(c, 3 * d))
    b = rng.normal(size=c)
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(w))
        head.linear.bias.copy_(torch.from_numpy(b))
    feats = features(mods, d=d)
    x = {m: feats[m].numpy() for m in mods}
    # Fused: the concatenated features times the full weight, plus the bias, row by row.
    fused = np.stack([w @ np.concatenate([x[m][i] for m in mods]) + b for i in range(5)])
    np.testing.assert_allclose(head(feats).detach().numpy(), fused, rtol=1e-12)
    model = FusionClassifier({m: create_head("linear", d, d) for m in mods}, c)
    model.fusion = head
    uni = model.unimodal_logits(feats)
    for k, m in enumerate(mods):
        w_m = w[:, k * d : (k + 1) * d]  # the columns that read modality m
        ref = x[m] @ w_m.T + b  # the others zero-padded: their columns contribute nothing
        np.testing.assert_allclose(uni[m].detach().numpy(), ref, rtol=1e-12)
    # The per-modality shares (OGM-GE scores) split the bias equally and sum to the fused logits.
    shares = head.modality_logits(feats)
    np.testing.assert_allclose(shares["video"].detach().numpy(), x["video"] @ w[:, d : 2 * d].T + b / 3)
    np.testing.assert_allclose(sum(s.detach().numpy() for s in shares.values()), fused, rtol=1e-10)


def test_late_fusion_is_sum_of_per_modality_logits() -> None:
    mods = ["a", "b", "c"]
    head = LateFusionHead(mods, 4, 3).double()
    feats = features(mods)
    per = {
        m: feats[m].numpy() @ head.heads[m].weight.detach().numpy().T + head.heads[m].bias.detach().numpy()
        for m in mods
    }
    np.testing.assert_allclose(head(feats).detach().numpy(), per["a"] + per["b"] + per["c"], rtol=1e-12)
    # A missing modality is omitted from the sum.
    partial = head({"a": feats["a"], "c": feats["c"]}).detach().numpy()
    np.testing.assert_allclose(partial, per["a"] + per["c"], rtol=1e-12)


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_drop_equals_zero_padding_or_omission(fusion: str) -> None:
    torch.manual_seed(0)
    mods = ["x", "y", "z"]
    model = FusionClassifier({m: create_head("mlp", 3, 4, hidden=8) for m in mods}, 5, fusion).double()
    feats = features(mods)
    dropped = model.fuse(feats, drop=["y"])
    if fusion == "concat":
        zeroed = dict(feats, y=torch.zeros_like(feats["y"]))
        torch.testing.assert_close(dropped, model.fuse(zeroed))
    else:
        heads = model.fusion.heads
        torch.testing.assert_close(dropped, heads["x"](feats["x"]) + heads["z"](feats["z"]))


def test_image_cnn_shapes_and_errors_name_the_modality() -> None:
    torch.manual_seed(0)
    pix = create_head("cnn", 240, 16, image_shape=(16, 15), modality="pix")
    assert isinstance(pix, ImageCNN)
    x = torch.randn(3, 240)
    assert pix(x).shape == (3, 16)
    torch.testing.assert_close(pix(x.reshape(3, 16, 15)), pix(x))
    torch.testing.assert_close(pix(x.reshape(3, 1, 16, 15)), pix(x))
    half = ImageCNN(28 * 14, 8, image_shape=(28, 14), channels=(4, 8, 8), modality="left")
    assert half(torch.rand(2, 392)).shape == (2, 8)
    for bad in (torch.randn(3, 239), torch.randn(3, 15, 16), torch.randn(3, 2, 16, 15), torch.randn(240)):
        with pytest.raises(ValueError, match=r"pix: expected input of shape \(B, 240\)"):
            pix(bad)
    with pytest.raises(ValueError, match="pix: expected a floating-point input"):
        pix(torch.zeros(2, 240, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pix: image_shape \(1, 16, 16\) holds 256 values"):
        ImageCNN(240, 8, image_shape=(16, 16), modality="pix")
    with pytest.raises(ValueError, match="pix: image_shape must be"):
        ImageCNN(240, 8, image_shape=(240,), modality="pix")


def test_classifier_bad_inputs_raise_clear_errors() -> None:
    enc = {"fac": create_head("mlp", 6, 4, modality="fac"), "mor": create_head("mlp", 3, 4, modality="mor")}
    with pytest.raises(ValueError, match="fusion: unknown kind 'sum'"):
        FusionClassifier(enc, 3, fusion="sum")
    with pytest.raises(ValueError, match="at least 2 modalities"):
        FusionClassifier({"fac": enc["fac"]}, 3)
    with pytest.raises(ValueError, match="share one output dimension"):
        FusionClassifier({"fac": enc["fac"], "x": create_head("mlp", 3, 5)}, 3)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        create_fusion_head("concat", ["a", "b"], 4, 1)
    model = FusionClassifier(enc, 3)
    with pytest.raises(ValueError, match=r"mor: expected 5 rows to pair with fac, got shape \(4, 3\)"):
        model({"fac": torch.randn(5, 6), "mor": torch.randn(4, 3)})
    with pytest.raises(ValueError, match=r"mor: expected input of shape \(B, 3\)"):
        model({"fac": torch.randn(5, 6), "mor": torch.randn(5, 4)})
    with pytest.raises(ValueError, match="zer: unknown modality"):
        model({"fac": torch.randn(5, 6), "zer": torch.randn(5, 3)})
    feats = {"fac": torch.randn(5, 4), "mor": torch.randn(4, 4)}
    with pytest.raises(ValueError, match="mor: expected 5 rows to pair with fac"):
        model.fuse(feats)
    with pytest.raises(ValueError, match=r"mor: expected pre-fusion features of shape \(B, 4\)"):
        model.fuse({"fac": torch.randn(5, 4), "mor": torch.randn(5, 3)})
    with pytest.raises(ValueError, match="drop: unknown modalities"):
        model.fuse({"fac": torch.randn(5, 4)}, drop=["pix"])
    with pytest.raises(ValueError, match="cannot drop every modality"):
        model.fuse({"fac": torch.randn(5, 4), "mor": torch.randn(5, 4)}, drop=["fac", "mor"])

"""UniAlign loss: composition from references, alignment modes, presets, masks, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom import functional as F
from mmgeom.losses import create_loss

from reference import alignment_loop, gram_det_loop, uniformity_loop, unit


def batch_of(m: int, n: int = 7, d: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = ["text", "image", "audio", "depth", "thermal", "imu"][:m]
    return {k: torch.randn(n, d, generator=g, dtype=torch.float64) for k in names}


def centroid_alignment_loop(zs: list[torch.Tensor]) -> float:
    n, m = zs[0].shape[0], len(zs)
    total = 0.0
    for i in range(n):
        rows = [unit(z[i]) for z in zs]
        mean = sum(rows) / m
        total += sum(float(((r - mean) ** 2).sum()) for r in rows)
    return total / (n * m)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("m", [2, 3, 5])
def test_anchor_total_equals_sum_of_reference_terms(m: int, reduction: str) -> None:
    b = batch_of(m)
    names = list(b)
    anchor = names[-1]
    out = create_loss(
        "unialign", anchor=anchor, lambda_uni=0.7, lambda_align=1.3, t=2.0, uniformity_reduction=reduction
    )(b)
    uni = sum(uniformity_loop(z, 2.0) for z in b.values()) / (m if reduction == "mean" else 1)
    align = sum(alignment_loop(b[anchor], b[n], 2.0) for n in names if n != anchor) / (m - 1)
    assert float(out.total) == pytest.approx(0.7 * uni + 1.3 * align, rel=1e-9)
    assert float(out.terms["align"]) == pytest.approx(align, rel=1e-9)
    for k, z in b.items():
        assert float(out.terms[f"uniform/{k}"]) == pytest.approx(uniformity_loop(z, 2.0), rel=1e-9)


def test_volume_terms_match_references() -> None:
    b = batch_of(3)
    out = create_loss("unialign", preset="retrieval", t_c=3.0)(b)
    zs = list(b.values())
    n = zs[0].shape[0]
    cent = torch.stack([unit(sum(unit(z[i]) for z in zs)) for i in range(n)])
    u_c = uniformity_loop(cent, 3.0)
    vol = sum(gram_det_loop([z[i] for z in zs]) for i in range(n)) / n
    uni = sum(uniformity_loop(z, 2.0) for z in zs) / len(zs)  # default reduction: mean
    align = (alignment_loop(zs[0], zs[1], 2.0) + alignment_loop(zs[0], zs[2], 2.0)) / 2
    assert float(out.terms["uniform/centroid"]) == pytest.approx(u_c, rel=1e-9)
    assert float(out.terms["volume"]) == pytest.approx(vol, rel=1e-9)
    assert float(out.total) == pytest.approx(uni + align + 1.0 * (u_c + vol), rel=1e-9)


@pytest.mark.parametrize(("lc", "ld"), [(1.0, 0.0), (0.0, 1.0), (0.3, 2.0)])
def test_separate_centroid_and_det_weights_match_references(lc: float, ld: float) -> None:
    b = batch_of(3)
    out = create_loss("unialign", lambda_centroid=lc, lambda_det=ld, t_c=3.0)(b)
    zs = list(b.values())
    n = zs[0].shape[0]
    cent = torch.stack([unit(sum(unit(z[i]) for z in zs)) for i in range(n)])
    u_c = uniformity_loop(cent, 3.0)
    vol = sum(gram_det_loop([z[i] for z in zs]) for i in range(n)) / n
    uni = sum(uniformity_loop(z, 2.0) for z in zs) / len(zs)  # default reduction: mean
    align = (alignment_loop(zs[0], zs[1], 2.0) + alignment_loop(zs[0], zs[2], 2.0)) / 2
    assert float(out.total) == pytest.approx(uni + align + lc * u_c + ld * vol, rel=1e-9)
    assert float(out.terms["uniform/centroid"]) == pytest.approx(u_c, rel=1e-9)
    assert float(out.terms["volume"]) == pytest.approx(vol, rel=1e-9)


def test_centroid_and_det_weights_follow_lambda_vol() -> None:
    b = batch_of(3)
    for kwargs in ({"preset": "retrieval"}, {"lambda_vol": 0.4}, {}):
        loss = create_loss("unialign", **kwargs)
        assert loss.lambda_centroid == loss.lambda_det == loss.lambda_vol
    ref = create_loss("unialign", preset="generation")(b).total
    same = create_loss("unialign", preset="generation", lambda_centroid=0.1, lambda_det=0.1)(b).total
    assert torch.equal(ref, same)
    assert "volume" not in create_loss("unialign")(b).terms
    for name in ("lambda_centroid", "lambda_det"):
        with pytest.raises(ValueError, match=name):
            create_loss("unialign", **{name: -0.5})


def test_centroid_alignment_matches_loop_and_closed_form() -> None:
    b = batch_of(4)
    zs = list(b.values())
    out = create_loss("unialign", alignment="centroid")(b)
    expected = centroid_alignment_loop(zs)
    assert float(out.terms["align"]) == pytest.approx(expected, rel=1e-9)
    c_bar = F.tuple_mean(*zs)
    assert float((1 - c_bar.pow(2).sum(1)).mean()) == pytest.approx(expected, rel=1e-9)


def test_presets() -> None:
    assert create_loss("unialign", preset="retrieval").lambda_vol == 1.0
    assert create_loss("unialign", preset="generation").lambda_vol == 0.1
    assert create_loss("unialign").lambda_vol == 0.0
    with pytest.raises(ValueError, match=r"preset 'generation' sets lambda_vol = 0\.1"):
        create_loss("unialign", preset="generation", lambda_vol=0.5)
    with pytest.raises(ValueError, match="preset: expected one of"):
        create_loss("unialign", preset="fast")


def test_identical_modalities_have_zero_alignment_and_volume() -> None:
    z = batch_of(1)["text"]
    b = {"a": z, "b": 3 * z, "c": z.clone()}
    out = create_loss("unialign", preset="retrieval")(b)
    assert float(out.terms["align"]) == pytest.approx(0.0, abs=1e-12)
    assert float(out.terms["volume"]) == pytest.approx(0.0, abs=1e-12)
    cent = create_loss("unialign", alignment="centroid")(b)
    assert float(cent.terms["align"]) == pytest.approx(0.0, abs=1e-12)


def test_mask_drops_rows_from_terms_that_need_them() -> None:
    b = batch_of(3, n=8)
    present = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1], dtype=torch.bool)
    b_missing = {k: v.clone() for k, v in b.items()}
    b_missing["audio"][~present] = 0.0  # what a loader puts in place of a missing modality
    out = create_loss("unialign", anchor="text", preset="retrieval")(b_missing, mask={"audio": present})
    sub = b["audio"][present]
    assert float(out.terms["uniform/audio"]) == pytest.approx(uniformity_loop(sub, 2.0), rel=1e-9)
    assert float(out.terms["uniform/text"]) == pytest.approx(uniformity_loop(b["text"], 2.0), rel=1e-9)
    # alignment: 8 (text, image) pairs + 6 (text, audio) pairs
    a_ti = alignment_loop(b["text"], b["image"], 2.0)
    a_ta = alignment_loop(b["text"][present], sub, 2.0)
    assert float(out.terms["align"]) == pytest.approx((8 * a_ti + 6 * a_ta) / 14, rel=1e-9)
    # volume: complete rows only
    rows = present.nonzero().flatten().tolist()
    vol = sum(gram_det_loop([z[i] for z in b.values()]) for i in rows) / len(rows)
    assert float(out.terms["volume"]) == pytest.approx(vol, rel=1e-9)
    # centroid of a row missing audio is the mean of text and image
    c = F.centroid(
        *b_missing.values(), mask=torch.stack([torch.ones(8, dtype=torch.bool)] * 2 + [present], 1)
    )
    expected = unit(unit(b["text"][2]) + unit(b["image"][2]))
    assert torch.allclose(c[2], expected)


def test_mask_via_batch_key_and_bad_masks() -> None:
    b = batch_of(2)
    full = torch.ones(7, dtype=torch.bool)
    loss = create_loss("unialign")
    assert float(loss({**b, "mask": {"text": full}}).total) == pytest.approx(float(loss(b).total))
    with pytest.raises(ValueError, match=r"mask\['text'\]: expected a bool tensor of shape \(7,\)"):
        loss(b, mask={"text": torch.ones(6, dtype=torch.bool)})
    with pytest.raises(ValueError, match="mask: unknown modality 'video'"):
        loss(b, mask={"video": full})
    b["text"][0] = 0.0
    with pytest.raises(ValueError, match="text: row 0 is marked present but is all zeros"):
        loss(b, mask={"text": full})
    with pytest.raises(ValueError, match="masks are not supported"):
        create_loss("infonce")(batch_of(2), mask={"text": full})


def test_gradients_reach_every_modality() -> None:
    b = {k: v.requires_grad_() for k, v in batch_of(3).items()}
    create_loss("unialign", preset="retrieval")(b).total.backward()
    assert all(float(v.grad.abs().sum()) > 0 for v in b.values())


def test_gradcheck() -> None:
    b = batch_of(3, n=4, d=3)
    names = list(b)

    def fn(*zs: torch.Tensor) -> torch.Tensor:
        loss = create_loss("unialign", preset="retrieval", alignment="centroid")
        return loss(dict(zip(names, zs, strict=True))).total

    leaves = [v.clone().requires_grad_() for v in b.values()]
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6)


def test_minimising_unialign_aligns_and_spreads() -> None:
    torch.manual_seed(0)
    b = {k: torch.nn.Parameter(v.float()) for k, v in batch_of(3, n=16, d=8).items()}
    loss = create_loss("unialign", preset="retrieval")
    opt = torch.optim.Adam(b.values(), lr=0.05)
    first = loss(b)
    for _ in range(200):
        opt.zero_grad()
        loss(b).total.backward()
        opt.step()
    last = loss(b)
    assert float(last.terms["align"]) < 0.1 * float(first.terms["align"])
    assert float(last.terms["uniform/text"]) < float(first.terms["uniform/text"])


@pytest.mark.parametrize(
    ("kwargs", "batch", "fragment"),
    [
        ({"anchor": "video"}, batch_of(3), "anchor: unknown modality 'video'"),
        ({}, batch_of(1), "at least 2 modalities"),
        ({"alignment": "mean"}, batch_of(2), "alignment: expected one of"),
        ({"t": -1.0}, batch_of(2), "t: expected"),
        ({"lambda_uni": -1.0}, batch_of(2), "lambda_uni"),
    ],
)
def test_bad_inputs(kwargs: dict, batch: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        create_loss("unialign", **kwargs)(batch)
    assert fragment in str(info.value)


def test_nan_rejected() -> None:
    b = batch_of(3)
    b["audio"][1, 1] = math.nan
    with pytest.raises(ValueError, match="audio: 1 row"):
        create_loss("unialign")(b)

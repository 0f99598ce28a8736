"""Loss modules: registry, composition from the references, modes, learnable state, bad inputs."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch

from mmgeom.losses import LossOutput, create_loss, list_losses
from mmgeom.losses.temperature import MAX_LOG_SCALE, Temperature

from reference import alignment_loop, gram_det_loop, info_nce_loop, siglip_loop, uniformity_loop


def batch_of(m: int, n: int = 6, d: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = ["image", "text", "audio", "depth", "thermal", "imu"][:m]
    return {k: torch.randn(n, d, generator=g, dtype=torch.float64) for k in names}


BASELINES = ["infonce", "siglip", "align_uniform", "gram"]


def test_registry_lists_baselines() -> None:
    for name in BASELINES:
        assert name in list_losses()
    assert list_losses("info*") == ["infonce"]


def test_unknown_loss_name() -> None:
    with pytest.raises(ValueError, match=r"unknown name 'clip'.*registered losses"):
        create_loss("clip")


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("m", [2, 3])
def test_every_loss_returns_loss_output(name: str, m: int) -> None:
    out = create_loss(name)(batch_of(m))
    assert isinstance(out, LossOutput)
    assert out.total.dim() == 0 and torch.isfinite(out.total)
    assert out.terms and all(not v.requires_grad for v in out.terms.values())


@pytest.mark.parametrize("name", BASELINES)
def test_every_loss_backpropagates_to_all_modalities(name: str) -> None:
    batch = {k: v.requires_grad_() for k, v in batch_of(3).items()}
    create_loss(name)(batch).total.backward()
    for k, v in batch.items():
        assert v.grad is not None and float(v.grad.abs().sum()) > 0, k


# ----------------------------------------------------------------------------- InfoNCE modes
def test_infonce_all_pairs_is_mean_of_pair_losses() -> None:
    b = batch_of(3)
    out = create_loss("infonce", temperature=0.1)(b)
    expected = [info_nce_loop(b[m], b[n], 0.1) for m, n in combinations(b, 2)]
    assert float(out.total) == pytest.approx(sum(expected) / 3, rel=1e-9)
    assert set(out.terms) == {"pair/image-text", "pair/image-audio", "pair/text-audio", "temperature"}


def test_infonce_anchor_mode() -> None:
    b = batch_of(4)
    out = create_loss("infonce", temperature=0.2, anchor="audio")(b)
    expected = [info_nce_loop(b["audio"], b[n], 0.2) for n in ("image", "text", "depth")]
    assert float(out.total) == pytest.approx(sum(expected) / 3, rel=1e-9)


def test_infonce_weighted_pairs() -> None:
    b = batch_of(3)
    loss = create_loss("infonce", temperature=0.1, pairs=[("image", "text", 3.0), ("text", "audio", 1.0)])
    expected = (3 * info_nce_loop(b["image"], b["text"], 0.1) + info_nce_loop(b["text"], b["audio"], 0.1)) / 4
    assert float(loss(b).total) == pytest.approx(expected, rel=1e-9)


def test_infonce_labels_from_batch_or_keyword() -> None:
    b = batch_of(2)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = create_loss("infonce", temperature=0.1)
    expected = info_nce_loop(b["image"], b["text"], 0.1, labels)
    assert float(loss(b, labels=labels).total) == pytest.approx(expected, rel=1e-9)
    assert float(loss({**b, "labels": labels}).total) == pytest.approx(expected, rel=1e-9)


def test_learnable_temperature_is_clamped_and_learns() -> None:
    loss = create_loss("infonce", temperature=0.07, learnable_temperature=True)
    params = list(loss.parameters())
    assert len(params) == 1
    with torch.no_grad():
        params[0].fill_(10.0)  # beyond ln 100
    assert float(loss.temperature().detach()) == pytest.approx(math.exp(-MAX_LOG_SCALE), rel=1e-6)
    with torch.no_grad():
        params[0].fill_(math.log(1 / 0.07))
    loss(batch_of(2)).total.backward()
    assert params[0].grad is not None and float(params[0].grad) != 0.0


def test_fixed_temperature_has_no_parameters() -> None:
    assert list(create_loss("infonce", temperature=0.5).parameters()) == []
    assert float(Temperature(2.0)()) == pytest.approx(2.0)


# ----------------------------------------------------------------------------- other baselines
def test_siglip_matches_loop_and_learns_scale_and_bias() -> None:
    b = batch_of(2)
    loss = create_loss("siglip")
    out = loss(b)
    assert float(out.total) == pytest.approx(siglip_loop(b["image"], b["text"], math.log(10), -10), rel=1e-6)
    out.total.backward()
    assert loss.logit_scale.grad is not None and loss.logit_bias.grad is not None
    assert float(out.terms["logit_scale"]) == pytest.approx(10.0)


def test_align_uniform_matches_loops() -> None:
    b = batch_of(3)
    out = create_loss("align_uniform", align_weight=2.0, uniform_weight=0.5, t=2.0)(b)
    align = sum(alignment_loop(b[m], b[n], 2.0) for m, n in combinations(b, 2)) / 3
    unif = sum(uniformity_loop(z, 2.0) for z in b.values()) / 3
    assert float(out.total) == pytest.approx(2.0 * align + 0.5 * unif, rel=1e-9)
    assert float(out.terms["uniform/audio"]) == pytest.approx(uniformity_loop(b["audio"], 2.0), rel=1e-9)


def test_gram_matches_loop_cross_entropy() -> None:
    b = batch_of(3, n=5)
    loss = create_loss("gram", temperature=0.1, learnable_temperature=False, anchor="text")
    out = loss(b)
    n, eps, ls = 5, 0.1, 0.1
    vol = [
        [math.sqrt(max(gram_det_loop([b["text"][i], b["image"][j], b["audio"][j]]), 1e-12)) for j in range(n)]
        for i in range(n)
    ]
    logits = [[-v / eps for v in row] for row in vol]

    def smoothed_ce(mat: list[list[float]]) -> float:
        total = 0.0
        for i in range(n):
            lse = math.log(sum(math.exp(x) for x in mat[i]))
            logp = [x - lse for x in mat[i]]
            total += -(1 - ls) * logp[i] - ls / n * sum(logp)
        return total / n

    cols = [[logits[j][i] for j in range(n)] for i in range(n)]
    expected = 0.5 * (smoothed_ce(logits) + smoothed_ce(cols))
    assert float(out.total) == pytest.approx(expected, rel=1e-9)
    assert float(out.terms["volume_pos"]) == pytest.approx(sum(vol[i][i] for i in range(n)) / n, rel=1e-9)


def test_gram_prefers_collapsed_tuples() -> None:
    # Identical modalities give zero-volume true tuples, which GRAM scores far better than random ones.
    b = batch_of(1, n=8, d=6)
    z = b["image"]
    aligned = create_loss("gram", learnable_temperature=False)({"a": z, "b": z.clone(), "c": z.clone()})
    rnd = create_loss("gram", learnable_temperature=False)(batch_of(3, n=8, d=6, seed=3))
    assert float(aligned.total) < float(rnd.total)


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("name", BASELINES)
def test_one_modality_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="at least 2 modalities"):
        create_loss(name)(batch_of(1))


@pytest.mark.parametrize("name", ["infonce", "align_uniform", "gram"])
def test_batch_of_one_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"image: expected at least 2 rows"):
        create_loss(name)(batch_of(2, n=1))


@pytest.mark.parametrize("name", BASELINES)
def test_mismatched_rows_and_dims_name_the_modality(name: str) -> None:
    b = batch_of(2)
    with pytest.raises(ValueError, match=r"text: expected 6 rows to pair with image"):
        create_loss(name)({"image": b["image"], "text": b["text"][:5]})
    with pytest.raises(ValueError, match=r"text: expected dimension D = 4"):
        create_loss(name)({"image": b["image"], "text": b["text"][:, :3]})


@pytest.mark.parametrize("name", BASELINES)
def test_non_finite_and_zero_rows_rejected(name: str) -> None:
    b = batch_of(2)
    b["text"][2, 1] = float("inf")
    with pytest.raises(ValueError, match="text: 1 row"):
        create_loss(name)(b)
    b = batch_of(2)
    b["image"][3] = 0.0
    with pytest.raises(ValueError, match="image: row 3 is all zeros"):
        create_loss(name)(b)


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("infonce", {"temperature": 0.0}, "temperature"),
        ("infonce", {"temperature": -0.1}, "temperature"),
        ("infonce", {"temperature": 5.0, "learnable_temperature": True}, "learnable temperature"),
        ("infonce", {"pairs": "some"}, "pairs"),
        ("infonce", {"pairs": [("image", "image")]}, "two different modalities"),
        ("infonce", {"pairs": [("image", "text", -1.0)]}, "weight"),
        ("gram", {"label_smoothing": 1.0}, "label_smoothing"),
        ("align_uniform", {"t": 0}, "t: expected"),
        ("align_uniform", {"uniform_weight": -1}, "uniform_weight"),
        ("siglip", {"init_logit_bias": float("nan")}, "init_logit_bias"),
    ],
)
def test_bad_hyperparameters(name: str, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        create_loss(name, **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["infonce", "gram", "align_uniform", "siglip"])
def test_unknown_anchor(name: str) -> None:
    with pytest.raises(ValueError, match="anchor: unknown modality 'video'"):
        create_loss(name, anchor="video")(batch_of(3))


def test_explicit_pair_with_absent_modality() -> None:
    with pytest.raises(ValueError, match="modality 'video' is not in the batch"):
        create_loss("infonce", pairs=[("image", "video")])(batch_of(2))


@pytest.mark.parametrize("name", list_losses())
def test_unknown_keyword_rejected_for_every_loss(name: str) -> None:
    with pytest.raises(ValueError, match=r"unexpected arguments \['temprature'\]"):
        create_loss(name)(batch_of(2), temprature=0.1)

"""L2Dir loss: composition vs loops, gradients into magnitudes, the release variant, errors."""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom.losses import create_loss

from reference import info_nce_loop, tn_loop, unit


def pair(n: int = 6, d: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "query": torch.randn(n, d, generator=g, dtype=torch.float64),
        "doc": torch.randn(n, d, generator=g, dtype=torch.float64),
    }


def magnitudes(n: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.5 for k in ("query", "doc")}


def test_total_with_magnitudes_matches_loops() -> None:
    b, r = pair(), magnitudes()
    out = create_loss("l2dir", temperature=0.1, lambda_n=0.7)(b, magnitudes=r)
    u = torch.stack([unit(b["query"][i]) * r["query"][i] for i in range(6)])
    v = torch.stack([unit(b["doc"][i]) * r["doc"][i] for i in range(6)])
    norm = sum(tn_loop(u, v)) / 6
    expected = info_nce_loop(b["query"], b["doc"], 0.1) + 0.7 * norm
    assert float(out.total) == pytest.approx(expected, rel=1e-9)
    assert float(out.terms["norm/query-doc"]) == pytest.approx(norm, rel=1e-9)


def test_default_magnitudes_are_raw_norms() -> None:
    b = pair()
    loss = create_loss("l2dir", temperature=0.1)
    implicit = loss(b)
    explicit = loss(b, magnitudes={k: v.norm(dim=1) for k, v in b.items()})
    assert float(implicit.total) == pytest.approx(float(explicit.total), rel=1e-12)
    assert float(implicit.terms["norm/query-doc"]) == pytest.approx(sum(tn_loop(b["query"], b["doc"])) / 6)


def test_logcos_norm_term_matches_loop() -> None:
    b, r = pair(), magnitudes()
    out = create_loss("l2dir", temperature=0.1, norm_term="logcos")(b, magnitudes=r)
    total = 0.0
    for i in range(6):
        zq, zp = unit(b["query"][i]), unit(b["doc"][i])
        u, v = r["query"][i] * zq, r["doc"][i] * zp
        tn = float((u - v).norm()) / (float(u.norm()) + float(v.norm()))
        total += -math.log(max(float(zq @ zp), 1e-4)) * tn / 2
    assert float(out.terms["norm/query-doc"]) == pytest.approx(total / 6, rel=1e-9)


def test_gradients_reach_the_magnitudes_in_the_paper_variant() -> None:
    b = pair()
    r = {k: v.clone().requires_grad_() for k, v in magnitudes().items()}
    create_loss("l2dir")(b, magnitudes=r).total.backward()
    for k, v in r.items():
        assert v.grad is not None, k
        assert float(v.grad.abs().sum()) > 0, k


def test_magnitude_head_output_receives_gradient() -> None:
    # The gradient must reach the parameters that produce the magnitudes (the MLP), not stop at r.
    torch.manual_seed(0)
    head = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1), torch.nn.Softplus()
    )
    feats = torch.randn(6, 4)
    b = {k: v.float() for k, v in pair().items()}
    r = head(feats).squeeze(1)
    create_loss("l2dir")(b, magnitudes={"query": r}).total.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in head.parameters())


def test_release_variant_detaches_and_pairs_neighbours() -> None:
    b = {k: v.requires_grad_() for k, v in pair().items()}
    r = {k: v.clone().requires_grad_() for k, v in magnitudes().items()}
    out = create_loss("l2dir", temperature=0.1, variant="release")(b, magnitudes=r)
    out.total.backward()
    assert all(v.grad is None for v in r.values())
    u = torch.cat(
        [torch.stack([unit(b[k][i]) * r[k][i].detach() for i in range(6)]) for k in ("query", "doc")]
    )
    neighbour = sum(tn_loop(u[0::2], u[1::2])) / 6
    assert float(out.terms["norm/query-doc"]) == pytest.approx(neighbour, rel=1e-9)


def test_norm_term_zero_iff_pairs_coincide() -> None:
    b = pair()
    same = {"query": b["query"], "doc": b["query"].clone()}
    assert float(create_loss("l2dir")(same).terms["norm/query-doc"]) == 0.0
    scaled = {"query": b["query"], "doc": 2 * b["query"]}
    assert float(create_loss("l2dir")(scaled).terms["norm/query-doc"]) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"norm_term": "l1"}, "norm_term: expected one of"),
        ({"variant": "v2"}, "variant: expected one of"),
        ({"lambda_n": -1.0}, "lambda_n"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        create_loss("l2dir", **kwargs)
    assert fragment in str(info.value)


def test_bad_magnitudes() -> None:
    b = pair()
    loss = create_loss("l2dir")
    with pytest.raises(ValueError, match=r"magnitudes\['doc'\]: expected shape \(6,\)"):
        loss(b, magnitudes={"doc": torch.ones(5, dtype=torch.float64)})
    with pytest.raises(ValueError, match="magnitudes: unknown modality 'image'"):
        loss(b, magnitudes={"image": torch.ones(6)})
    with pytest.raises(ValueError, match=r"expected finite values > 0"):
        loss(b, magnitudes={"doc": -torch.ones(6, dtype=torch.float64)})

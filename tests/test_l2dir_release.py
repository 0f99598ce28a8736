"""L2Dir ``variant="release"``: the public code's objective against a plain-loop transcription.

The reference below is written from the description of the public ``src/loss.py`` (issue 17) with Python
floats, ``math.log`` and ``math.sqrt`` only; it shares no code with ``mmgeom.functional``.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom.losses import create_loss

TAU_R = 0.02


def rows(x: torch.Tensor) -> list[list[float]]:
    return [[float(a) for a in row] for row in x.detach().double()]


def norm(a: list[float]) -> float:
    return math.sqrt(sum(t * t for t in a))


def unit(a: list[float]) -> list[float]:
    n = norm(a)
    return [t / n for t in a]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def ce_rows(logits: list[list[float]]) -> float:
    """Mean over rows of ``-log softmax(row)[i]`` (diagonal targets, one direction)."""
    total = 0.0
    for i, row in enumerate(logits):
        top = max(row)
        total += top + math.log(sum(math.exp(x - top) for x in row)) - row[i]
    return total / len(logits)


def release_loop(
    q: torch.Tensor, p: torch.Tensor, rq: list[float], rp: list[float], tau: float = TAU_R
) -> dict[str, float]:
    """``0.5 L_pair + 0.5 CE(N/τ)`` and the logged InfoNCE / InfoTN, one pair at a time."""
    qh, ph = [unit(a) for a in rows(q)], [unit(a) for a in rows(p)]
    b = len(qh)
    u = [[rq[i] * t for t in qh[i]] for i in range(b)]
    v = [[rp[i] * t for t in ph[i]] for i in range(b)]
    pair = []
    for k in range(b // 2):
        i, j = 2 * k, 2 * k + 1  # query row 2k with target row 2k+1, across the two sides
        cos = dot(qh[i], ph[j]) / (norm(qh[i]) * norm(ph[j]))
        dist = norm([x - y for x, y in zip(u[i], v[j], strict=True)])
        weight = dist / (2.0 * (norm(u[i]) + norm(v[j])))
        pair.append(-math.log(min(max(cos, 1e-6), 1.0)) * weight)
    l_pair = sum(pair) / len(pair)
    n_mat = [[(norm(qh[i]) - norm(ph[j])) / tau for j in range(b)] for i in range(b)]
    norm_ce = ce_rows(n_mat)
    cos_mat = [[dot(qh[i], ph[j]) / tau for j in range(b)] for i in range(b)]
    stn = [
        [
            (1.0 - norm([x - y for x, y in zip(u[i], v[j], strict=True)]) / (norm(u[i]) + norm(v[j]))) / tau
            for j in range(b)
        ]
        for i in range(b)
    ]
    return {
        "total": 0.5 * l_pair + 0.5 * norm_ce,
        "pair": l_pair,
        "norm_ce": norm_ce,
        "infonce": ce_rows(cos_mat),
        "infotn": ce_rows(stn),
    }


def batch(n: int, d: int = 5, dtype: torch.dtype = torch.float64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g, dtype=torch.float64)
    # Targets correlated with the *next* query row, so that most release cosines are positive.
    p = torch.roll(q, 1, dims=0) + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return {"query": q.to(dtype), "doc": p.to(dtype)}


def mags(n: int, dtype: torch.dtype = torch.float64, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.5).to(dtype) for k in ("query", "doc")
    }


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("given", [True, False])
def test_release_matches_the_plain_loop(dtype: torch.dtype, tol: float, given: bool) -> None:
    b = batch(8, dtype=dtype)
    r = mags(8, dtype=dtype) if given else {k: v.double().norm(dim=1) for k, v in b.items()}
    out = create_loss("l2dir", variant="release")(b, magnitudes=r if given else None)
    ref_r = {k: [float(x) for x in r[k]] for k in r}
    ref = release_loop(b["query"], b["doc"], ref_r["query"], ref_r["doc"])
    assert float(out.total) == pytest.approx(ref["total"], rel=tol, abs=tol)
    for key in ("pair", "norm_ce", "infonce", "infotn"):
        assert float(out.terms[f"{key}/query-doc"]) == pytest.approx(ref[key], rel=tol, abs=tol), key
    assert float(out.terms["temperature"]) == pytest.approx(TAU_R)


def test_the_returned_total_has_no_infonce() -> None:
    b, r = batch(6), mags(6)
    out = create_loss("l2dir", variant="release")(b, magnitudes=r)
    pair, norm_ce = float(out.terms["pair/query-doc"]), float(out.terms["norm_ce/query-doc"])
    assert float(out.total) == pytest.approx(0.5 * pair + 0.5 * norm_ce, rel=1e-12)
    assert float(out.terms["infonce/query-doc"]) > 0  # logged, not added


def test_norm_difference_ce_is_log_b_on_normalised_rows() -> None:
    # N[i, j] = ||q̂_i|| - ||p̂_j|| on unit rows is ≈ 0, so CE(N/τ) ≈ log B (transcribed as published).
    for n in (4, 10):
        for dtype in (torch.float32, torch.float64):
            out = create_loss("l2dir", variant="release")(batch(n, dtype=dtype))
            assert float(out.terms["norm_ce/query-doc"]) == pytest.approx(math.log(n), abs=1e-4)


def test_pairs_run_across_the_two_sides() -> None:
    # Query row 2k meets doc row 2k+1: the other rows enter only through the ≈ 0 gradient of CE(N/τ).
    b = {k: v.clone().requires_grad_() for k, v in batch(8).items()}
    create_loss("l2dir", variant="release")(b, magnitudes=mags(8)).total.backward()
    assert b["query"].grad is not None and b["doc"].grad is not None
    gq, gd = b["query"].grad.norm(dim=1), b["doc"].grad.norm(dim=1)
    assert bool((gq[0::2] > 1e-6).all()) and bool((gd[1::2] > 1e-6).all())
    assert float(gq[1::2].max()) < 1e-9 and float(gd[0::2].max()) < 1e-9


def test_odd_batch_drops_the_last_row_from_the_pair_term() -> None:
    b, r = batch(7), mags(7)
    loss = create_loss("l2dir", variant="release")
    out = loss(b, magnitudes=r)
    ref = release_loop(b["query"], b["doc"], [float(x) for x in r["query"]], [float(x) for x in r["doc"]])
    assert float(out.total) == pytest.approx(ref["total"], rel=1e-10)
    changed = {k: v.clone() for k, v in b.items()}
    changed["query"][6] = torch.randn(5, dtype=torch.float64)
    changed["doc"][6] = torch.randn(5, dtype=torch.float64)
    again = loss(changed, magnitudes=r)
    assert float(again.terms["pair/query-doc"]) == pytest.approx(
        float(out.terms["pair/query-doc"]), rel=1e-12
    )


def test_magnitudes_get_no_gradient_and_directions_do() -> None:
    b = {k: v.clone().requires_grad_() for k, v in batch(8).items()}
    r = {k: v.clone().requires_grad_() for k, v in mags(8).items()}
    create_loss("l2dir", variant="release")(b, magnitudes=r).total.backward()
    assert all(v.grad is None for v in r.values())
    for k, z in b.items():
        assert z.grad is not None and float(z.grad.abs().sum()) > 0, k
        # Everything depends on h only through its direction: no radial (magnitude) component.
        radial = (z.grad * z.detach()).sum(dim=1) / z.detach().norm(dim=1)
        assert float(radial.abs().max()) < 1e-10 * float(z.grad.norm()), k


def test_the_input_norm_gets_no_gradient_either() -> None:
    # Without magnitudes, r = ||h|| (what the release carries), still detached.
    b = {k: v.clone().requires_grad_() for k, v in batch(6).items()}
    create_loss("l2dir", variant="release", magnitude_source="head_norm")(b).total.backward()
    for z in b.values():
        assert z.grad is not None
        radial = (z.grad * z.detach()).sum(dim=1)
        assert float(radial.abs().max()) < 1e-12


def test_the_pair_weight_is_a_constant() -> None:
    # The gradient equals that of 0.5·mean_k -log cos_k · w_k with w_k held fixed (u, v are constants).
    b = {k: v.clone().requires_grad_() for k, v in batch(6).items()}
    r = mags(6)
    create_loss("l2dir", variant="release")(b, magnitudes=r).total.backward()
    q, p = (b[k].detach().clone().requires_grad_() for k in ("query", "doc"))
    qh, ph = q / q.norm(dim=1, keepdim=True), p / p.norm(dim=1, keepdim=True)
    ref = release_loop(b["query"], b["doc"], [float(x) for x in r["query"]], [float(x) for x in r["doc"]])
    total = torch.zeros((), dtype=torch.float64)
    for k in range(3):
        i, j = 2 * k, 2 * k + 1
        u = float(r["query"][i]) * qh[i].detach()
        v = float(r["doc"][j]) * ph[j].detach()
        w = float((u - v).norm()) / (2 * (float(u.norm()) + float(v.norm())))
        total = total - torch.log(qh[i] @ ph[j]) * w
    (0.5 * total / 3).backward()
    assert ref["pair"] > 0
    assert torch.allclose(b["query"].grad, q.grad, atol=1e-9)
    assert torch.allclose(b["doc"].grad, p.grad, atol=1e-9)


def test_release_with_three_modalities_averages_over_pairs() -> None:
    g = torch.Generator().manual_seed(3)
    b = {m: torch.randn(6, 4, generator=g, dtype=torch.float64) for m in ("a", "b", "c")}
    out = create_loss("l2dir", variant="release")(b)
    values = []
    for m, n in (("a", "b"), ("a", "c"), ("b", "c")):
        ref = release_loop(
            b[m], b[n], [float(x) for x in b[m].norm(dim=1)], [float(x) for x in b[n].norm(dim=1)]
        )
        values.append(ref["total"])
    assert float(out.total) == pytest.approx(sum(values) / 3, rel=1e-10)


def test_release_temperature_is_used_and_validated() -> None:
    b, r = batch(6), mags(6)
    out = create_loss("l2dir", variant="release", release_temperature=0.5)(b, magnitudes=r)
    ref = release_loop(
        b["query"], b["doc"], [float(x) for x in r["query"]], [float(x) for x in r["doc"]], tau=0.5
    )
    assert float(out.total) == pytest.approx(ref["total"], rel=1e-10)
    with pytest.raises(ValueError, match="release_temperature"):
        create_loss("l2dir", variant="release", release_temperature=0.0)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"objective": "infotn"}, "objective"),
        ({"reconstruction_weight": 1.0}, "reconstruction_weight"),
    ],
)
def test_release_refuses_paper_only_options(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        create_loss("l2dir", variant="release", **kwargs)

"""L2Dir loss (paper variant): composition vs loops, gradients into magnitudes, InfoTN, magnitude sources,
the reconstruction target, errors. The release variant: tests/test_l2dir_release.py."""

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
        ({"objective": "tn"}, "objective: expected one of"),
        ({"magnitude_source": "mlp"}, "magnitude_source: expected one of"),
        ({"reconstruction_weight": -0.1}, "reconstruction_weight"),
        ({"reconstruction_weight": float("nan")}, "reconstruction_weight"),
        ({"reconstruction": "linear"}, "reconstruction: expected one of"),
        ({"release_temperature": -1.0}, "release_temperature"),
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


def tn_sim_loop(u: torch.Tensor, v: torch.Tensor) -> list[list[float]]:
    n = u.shape[0]
    out = []
    for i in range(n):
        row = []
        for j in range(n):
            d = math.sqrt(sum((float(u[i, k]) - float(v[j, k])) ** 2 for k in range(u.shape[1])))
            nu = math.sqrt(sum(float(x) ** 2 for x in u[i]))
            nv = math.sqrt(sum(float(x) ** 2 for x in v[j]))
            row.append(1.0 - d / (nu + nv))
        out.append(row)
    return out


def ce_loop(logits: list[list[float]], labels: list[int] | None = None) -> float:
    n = len(logits)
    total = 0.0
    for i in range(n):
        lse = math.log(sum(math.exp(x) for x in logits[i]))
        pos = [i] if labels is None else [j for j in range(n) if labels[j] == labels[i]]
        total += sum(lse - logits[i][j] for j in pos) / len(pos)
    return total / n


@pytest.mark.parametrize("labels", [None, [0, 1, 0, 2, 1, 2]])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_infotn_objective_matches_loops(labels: list[int] | None, dtype: torch.dtype, tol: float) -> None:
    b = {k: v.to(dtype) for k, v in pair().items()}
    r = {k: v.to(dtype) for k, v in magnitudes().items()}
    lab = None if labels is None else torch.tensor(labels)
    out = create_loss("l2dir", temperature=0.2, lambda_n=0.3, objective="infotn")(b, magnitudes=r, labels=lab)
    u = torch.stack([unit(b["query"][i].double()) * float(r["query"][i]) for i in range(6)])
    v = torch.stack([unit(b["doc"][i].double()) * float(r["doc"][i]) for i in range(6)])
    s = [[x / 0.2 for x in row] for row in tn_sim_loop(u, v)]
    st = [[s[j][i] for j in range(6)] for i in range(6)]
    infotn = 0.5 * (ce_loop(s, labels) + ce_loop(st, labels))
    norm = sum(tn_loop(u, v)) / 6
    assert float(out.terms["infotn/query-doc"]) == pytest.approx(infotn, rel=tol)
    assert float(out.total) == pytest.approx(infotn + 0.3 * norm, rel=tol)
    assert "infonce/query-doc" not in out.terms


def test_infotn_ranks_by_magnitude() -> None:
    # Same directions, different magnitudes: InfoNCE cannot tell, InfoTN prefers the matching magnitudes.
    z = pair()["query"]
    b = {"query": z, "doc": z.clone()}
    r_same = {
        "query": torch.arange(1.0, 7.0, dtype=torch.float64),
        "doc": torch.arange(1.0, 7.0, dtype=torch.float64),
    }
    r_rev = {"query": r_same["query"], "doc": r_same["doc"].flip(0)}
    tn = create_loss("l2dir", objective="infotn", lambda_n=0.0)
    nce = create_loss("l2dir", lambda_n=0.0)
    assert float(tn(b, magnitudes=r_same).total) < float(tn(b, magnitudes=r_rev).total)
    assert float(nce(b, magnitudes=r_same).total) == pytest.approx(float(nce(b, magnitudes=r_rev).total))


def test_infotn_lets_near_constant_magnitudes_spread() -> None:
    # Equal magnitudes are a stationary point of every TN distance (gradient ∝ (k - 1)(1 + cos)), but
    # under InfoTN it is unstable: pushing negatives apart makes magnitudes vary. The TN norm term with
    # InfoNCE pulls them back to a constant.
    g = torch.Generator().manual_seed(0)
    q = torch.randn(8, 5, generator=g, dtype=torch.float64)
    b = {"query": q, "doc": q + 0.8 * torch.randn(8, 5, generator=g, dtype=torch.float64)}
    cv = {}
    for name, kw in {"infotn": {"objective": "infotn", "lambda_n": 0.0}, "norm": {"lambda_n": 1.0}}.items():
        s = {k: (0.01 * torch.randn(8, generator=g, dtype=torch.float64)).requires_grad_() for k in b}
        loss = create_loss("l2dir", temperature=0.1, **kw)
        opt = torch.optim.SGD(list(s.values()), lr=0.1)
        for _ in range(100):
            opt.zero_grad()
            loss(b, magnitudes={k: v.exp() for k, v in s.items()}).total.backward()
            opt.step()
        r = torch.cat([v.detach().exp() for v in s.values()])
        cv[name] = float(r.std() / r.mean())
    assert cv["infotn"] > 0.2 and cv["norm"] < 0.01, cv


def test_head_norm_source_trains_the_input_norm() -> None:
    b = {k: v.clone().requires_grad_() for k, v in pair().items()}
    loss = create_loss("l2dir", magnitude_source="head_norm")
    out = loss(b)
    assert float(out.total.detach()) == pytest.approx(float(create_loss("l2dir")(pair()).total), rel=1e-12)
    out.total.backward()
    assert b["query"].grad is not None
    radial = (b["query"].grad * b["query"].detach()).sum(dim=1)
    assert float(radial.abs().max()) > 1e-6  # the norm ||h|| itself receives a gradient
    with pytest.raises(ValueError, match="magnitude_source='head_norm'"):
        loss(pair(), magnitudes=magnitudes())


def recon_loop(r: list[float], t: list[float], centered: bool) -> float:
    lr, lt = [math.log(x) for x in r], [math.log(x) for x in t]
    if centered:
        mr, mt = sum(lr) / len(lr), sum(lt) / len(lt)
        lr, lt = [x - mr for x in lr], [x - mt for x in lt]
    return sum((a - b) ** 2 for a, b in zip(lr, lt, strict=True)) / len(lr)


@pytest.mark.parametrize("mode", ["centered", "absolute"])
def test_reconstruction_target_matches_loop(mode: str) -> None:
    b, r = pair(), magnitudes()
    g = torch.Generator().manual_seed(5)
    t = {"query": torch.rand(6, generator=g, dtype=torch.float64) * 10 + 1}
    base = create_loss("l2dir", temperature=0.1)(b, magnitudes=r)
    loss = create_loss("l2dir", temperature=0.1, reconstruction_weight=0.4, reconstruction=mode)
    out = loss(b, magnitudes=r, magnitude_targets=t)
    ref = recon_loop([float(x) for x in r["query"]], [float(x) for x in t["query"]], mode == "centered")
    assert float(out.terms["reconstruction/query"]) == pytest.approx(ref, rel=1e-10)
    assert float(out.total) == pytest.approx(float(base.total) + 0.4 * ref, rel=1e-10)


def test_reconstruction_is_averaged_over_modalities_and_trains_magnitudes() -> None:
    b = pair()
    r = {k: v.clone().requires_grad_() for k, v in magnitudes().items()}
    t = {k: v.norm(dim=1) for k, v in b.items()}
    loss = create_loss("l2dir", lambda_n=0.0, reconstruction_weight=1.0, reconstruction="absolute")
    out = loss(b, magnitudes=r, magnitude_targets=t)
    refs = [
        recon_loop([float(x) for x in r[k].detach()], [float(x) for x in t[k]], False)
        for k in ("query", "doc")
    ]
    nce = float(create_loss("l2dir", lambda_n=0.0)(b).total)
    assert float(out.total.detach()) == pytest.approx(nce + sum(refs) / 2, rel=1e-10)
    out.total.backward()
    assert all(v.grad is not None and float(v.grad.abs().sum()) > 0 for v in r.values())


def test_reconstruction_arguments_must_agree() -> None:
    b = pair()
    t = {"query": b["query"].norm(dim=1)}
    with pytest.raises(ValueError, match="reconstruction_weight: > 0 needs magnitude_targets"):
        create_loss("l2dir", reconstruction_weight=1.0)(b)
    with pytest.raises(ValueError, match="magnitude_targets: given but reconstruction_weight is 0"):
        create_loss("l2dir")(b, magnitude_targets=t)
    with pytest.raises(ValueError, match=r"magnitude_targets\['query'\]: expected shape \(6,\)"):
        create_loss("l2dir", reconstruction_weight=1.0)(b, magnitude_targets={"query": torch.ones(3)})

"""Ranks do not depend on chunking, block position or the CPU's kernels (duplicated rows, near-ties).

The reference is a plain loop: the exact key of a pair is the float64 cosine (or dot) rounded to the
output dtype, and the rank of a positive counts the items with a higher key or an equal key and a lower
index — the order ``topk`` documents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mmgeom.retrieval import ranks as ranks_module
from mmgeom.retrieval import retrieval_metrics, topk


def reference_keys(q: torch.Tensor, g: torch.Tensor, metric: str) -> np.ndarray:
    """``(N_q, N_g)`` keys from a plain double loop in float64, rounded to the inputs' dtype."""
    qd, gd = q.double().numpy(), g.double().numpy()
    out_dtype = np.float64 if q.dtype == torch.float64 else np.float32
    keys = np.empty((qd.shape[0], gd.shape[0]))
    for i, qi in enumerate(qd):
        for j, gj in enumerate(gd):
            s = float(np.sum(qi * gj))
            if metric == "cosine":
                s /= float(np.sqrt(np.sum(qi * qi)) * np.sqrt(np.sum(gj * gj)))
            keys[i, j] = float(out_dtype(s))
    return keys


def reference_first_ranks(keys: np.ndarray, positives: list[list[int]]) -> list[int]:
    """1-based rank of each query's best-ranked positive, by counting items before each positive."""
    firsts = []
    for i, pos in enumerate(positives):
        ranks = []
        for p in pos:
            before = sum(
                1
                for j in range(keys.shape[1])
                if keys[i, j] > keys[i, p] or (keys[i, j] == keys[i, p] and j < p)
            )
            ranks.append(before + 1)
        firsts.append(min(ranks))
    return firsts


def duplicated_gallery(seed: int, base_rows: int, copies: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A gallery where every base row appears ``copies`` times at scattered positions, and queries."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(base_rows, d, generator=gen)
    g = base.repeat(copies, 1)[torch.randperm(base_rows * copies, generator=gen)]
    q = torch.randn(7, d, generator=gen)
    return q, g


@pytest.mark.parametrize("force_sort", [False, True])
@pytest.mark.parametrize("chunk", [(1, 1), (3, 5), (4, 7), (7, 16), (2, 33), None])
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_duplicated_rows_rank_by_index_at_every_position(force_sort, chunk, metric, monkeypatch):
    if force_sort:
        monkeypatch.setattr(ranks_module, "MAX_COMPARE_POSITIVES", 0)
    q, g = duplicated_gallery(31, base_rows=11, copies=3, d=24)
    keys = reference_keys(q, g, metric)
    n_g = g.shape[0]
    # every gallery position is the single positive of some query, across the calls
    for start in range(0, n_g, q.shape[0]):
        pos = [[(start + i) % n_g] for i in range(q.shape[0])]
        got = retrieval_metrics(q, g, pos, ks=(1,), metric=metric, chunk_size=chunk)
        assert got["mean_rank"] == pytest.approx(np.mean(reference_first_ranks(keys, pos)), abs=1e-12)


@pytest.mark.parametrize("force_sort", [False, True])
def test_many_positives_with_duplicates_match_the_loop(force_sort, monkeypatch):
    if force_sort:
        monkeypatch.setattr(ranks_module, "MAX_COMPARE_POSITIVES", 0)
    q, g = duplicated_gallery(32, base_rows=9, copies=4, d=16)
    gen = torch.Generator().manual_seed(5)
    lists = [sorted(torch.randperm(g.shape[0], generator=gen)[: 3 + i].tolist()) for i in range(q.shape[0])]
    keys = reference_keys(q, g, "cosine")
    got = retrieval_metrics(q, g, lists, ks=(1,), chunk_size=(3, 5))
    assert got["mean_rank"] == pytest.approx(np.mean(reference_first_ranks(keys, lists)), abs=1e-12)


def test_ranks_follow_topk_order_with_near_ties():
    # rows one float32 ulp apart and exact copies: the order is that of topk over the whole gallery
    gen = torch.Generator().manual_seed(33)
    base = torch.randn(6, 32, generator=gen)
    nudged = torch.nextafter(base, torch.full_like(base, 10.0))
    g = torch.cat([base, nudged, base, nudged])
    q = torch.randn(5, 32, generator=gen)
    _, order = topk(q, g, k=g.shape[0])
    for p in range(g.shape[0]):
        got = retrieval_metrics(q, g, torch.full((5,), p), ks=(1,), chunk_size=(2, 7))
        expected = [int((order[i] == p).nonzero()) + 1 for i in range(5)]
        assert got["mean_rank"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_float64_inputs_use_float64_keys():
    q, g = duplicated_gallery(34, base_rows=5, copies=3, d=8)
    q, g = q.double(), g.double()
    pos = [[i % g.shape[0]] for i in range(q.shape[0])]
    keys = reference_keys(q, g, "cosine")
    got = retrieval_metrics(q, g, pos, ks=(1,), chunk_size=(2, 4))
    assert got["mean_rank"] == pytest.approx(np.mean(reference_first_ranks(keys, pos)), abs=1e-12)


_KERNEL_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from mmgeom.retrieval import retrieval_metrics
    gen = torch.Generator().manual_seed(41)
    base = torch.randn(40, 96, generator=gen)
    g = base.repeat(3, 1)[torch.randperm(120, generator=gen)]
    q = torch.randn(33, 96, generator=gen)
    out = {}
    for chunk in [(5, 7), (16, 64), (33, 120)]:
        for p0 in range(0, 120, 33):
            pos = torch.tensor([(p0 + i) % 120 for i in range(33)])
            m = retrieval_metrics(q, g, pos, ks=(1, 5), chunk_size=chunk)
            out[f"{chunk}-{p0}"] = [m["mean_rank"], m["hit@1"], m["hit@5"], m["map"]]
    print(json.dumps({"metrics": out, "capability": torch.backends.cpu.get_cpu_capability()}))
    """
)


def _run_kernel_script(env_update: dict[str, str]) -> dict:
    env = {**os.environ, **env_update}
    done = subprocess.run(
        [sys.executable, "-c", _KERNEL_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ranks_identical_under_different_cpu_kernels():
    """Same metrics with the default kernels, AVX2-only ATen kernels and AVX2-only MKL (one machine)."""
    variants = [
        {},
        {"ATEN_CPU_CAPABILITY": "avx2"},
        {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        {"ATEN_CPU_CAPABILITY": "default"},
    ]
    results = [_run_kernel_script(v) for v in variants]
    for r in results[1:]:
        assert r["metrics"] == results[0]["metrics"]
    # and each is the loop's answer (exact keys do not depend on the kernel)
    gen = torch.Generator().manual_seed(41)
    base = torch.randn(40, 96, generator=gen)
    g = base.repeat(3, 1)[torch.randperm(120, generator=gen)]
    q = torch.randn(33, 96, generator=gen)
    keys = reference_keys(q, g, "cosine")
    pos = [[(0 + i) % 120] for i in range(33)]
    assert results[0]["metrics"]["(5, 7)-0"][0] == pytest.approx(np.mean(reference_first_ranks(keys, pos)))

"""The fast pass of exact top-k: each query's best ``k + 8`` candidates from float32 BLAS blocks."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import _native
from ._inputs import Embeddings, Scoring, chunk_ranges, scale_gallery_chunk, scaled_norm_max
from ._plan import topk_chunks
from ._select import SENTINEL, merge_block


class Candidates(NamedTuple):
    """Output of a fast pass: the kept scores and indices, and the largest scaled gallery row norm."""

    values: Tensor
    indices: Tensor
    gallery_norm_max: float


def torch_candidates(
    q: Tensor,
    gallery: Embeddings,
    c: int,
    scoring: Scoring,
    chunks: tuple[int, int] | None,
    budget: int,
    progress: bool = False,
) -> Candidates:
    """Each query's top-``c`` (values and gallery indices) under the float32 block scores.

    Args:
        q: ``(N_q, D)`` prepared queries (compute dtype, normalised for cosine).
        gallery: the gallery source.
        c: candidates per query.
        scoring: metric and optional magnitudes.
        chunks: explicit ``(query_chunk, gallery_chunk)`` or None for the budget.
        budget: memory budget in bytes.
        progress: show a progress bar.
    """
    n_q, d = q.shape
    itemsize = q.element_size()
    native = _native.available(q.dtype, q.device)
    if chunks is None:
        chunks = topk_chunks(n_q, gallery.n, d, itemsize, budget, native=native)
    cq, cg = min(chunks[0], n_q), min(chunks[1], gallery.n)
    run_values = torch.full((n_q, c), float("-inf"), dtype=q.dtype, device=q.device)
    run_index = (SENTINEL + torch.arange(c, device=q.device)).expand(n_q, c).clone()
    buffer = torch.empty(cq * cg, dtype=q.dtype, device=q.device)
    workspace = None if native else torch.empty(cq * (cg // 32 + 1), dtype=q.dtype, device=q.device)
    q_ranges = chunk_ranges(n_q, cq)
    g_ranges = chunk_ranges(gallery.n, cg)
    norm_max = 0.0
    bar = tqdm(g_ranges, desc="topk", unit="chunk", disable=not progress, leave=False)
    for g0, g1 in bar:
        g = scale_gallery_chunk(gallery.chunk(g0, g1).to(q.device), scoring, g0)
        norm_max = max(norm_max, scaled_norm_max(g, scoring, g0))
        w = g1 - g0
        for q0, q1 in q_ranges:
            block = buffer[: (q1 - q0) * w].view(q1 - q0, w)
            torch.mm(q[q0:q1], g.T, out=block)
            if native:
                _native.merge_into(block, g0, run_values[q0:q1], run_index[q0:q1])
                continue
            v, i = merge_block(block, g0, run_values[q0:q1], run_index[q0:q1], c, workspace=workspace)
            run_values[q0:q1] = v
            run_index[q0:q1] = i
    return Candidates(run_values, run_index, norm_max)

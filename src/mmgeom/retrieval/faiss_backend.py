"""FAISS backend of :func:`topk`: exact ``IndexFlatIP`` candidates (approximate search: :mod:`.approximate`).

FAISS is imported lazily; without it a clear error names the install command. The exact backend builds
one ``IndexFlatIP`` per gallery chunk (the gallery is never copied whole), keeps ``k + 8`` candidates per
query across chunks and hands them to the same exact rescoring as the torch backend, so both backends
return identical scores and indices (FAISS's own float32 scores and its order among ties are not used).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._candidates import Candidates
from ._inputs import (
    Embeddings,
    Scoring,
    chunk_ranges,
    scale_gallery_chunk,
    scaled_norm_max,
)
from ._select import SENTINEL, select
from ._threads import limited_threads

INSTALL_HINT = "pip install 'mmgeom[faiss]'"


def import_faiss() -> ModuleType:
    """Import FAISS or raise ``ImportError`` with the install command."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            f"backend='faiss' needs the faiss package, which is not installed; install it with {INSTALL_HINT}"
        ) from err
    return faiss


def as_faiss_array(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def faiss_candidates(
    q: Tensor,
    gallery: Embeddings,
    c: int,
    scoring: Scoring,
    chunks: tuple[int, int] | None,
    budget: int,
    progress: bool = False,
) -> Candidates:
    """Each query's top-``c`` (values, gallery indices) by FAISS ``IndexFlatIP`` per gallery chunk.

    FAISS computes in float32 whatever the input dtype. ``chunks[1]`` (or the budget) sets the gallery
    chunk; FAISS blocks the queries itself.
    """
    faiss = import_faiss()
    n_q, d = q.shape
    cg = chunks[1] if chunks is not None else max(1, budget // (3 * 4 * d))
    cg = min(cg, gallery.n)
    xq = as_faiss_array(q)
    run_values = torch.full((n_q, c), float("-inf"), dtype=torch.float32)
    run_index = (SENTINEL + torch.arange(c)).expand(n_q, c).clone()
    norm_max = 0.0
    ranges = chunk_ranges(gallery.n, cg)
    for g0, g1 in tqdm(ranges, desc="topk[faiss]", unit="chunk", disable=not progress, leave=False):
        scaled = scale_gallery_chunk(gallery.chunk(g0, g1), scoring, g0)
        norm_max = max(norm_max, scaled_norm_max(scaled, scoring, g0))
        g = as_faiss_array(scaled)
        index = faiss.IndexFlatIP(d)
        index.add(g)
        kk = min(c, g1 - g0)
        dist, ids = index.search(xq, kk)
        v = torch.from_numpy(dist)
        i = torch.from_numpy(ids).to(torch.long) + g0
        with limited_threads():
            run_values, run_index = select(torch.cat([run_values, v], 1), torch.cat([run_index, i], 1), c)
    return Candidates(run_values, run_index.to(q.device), norm_max)

"""Chunk sizes from a memory budget (not public API).

The memory model, in bytes, with ``s`` the compute itemsize (4, or 8 for float64) and ``D`` the dimension:

* top-k (torch backend): ``2 * cg * D * s`` for the converted and the scaled gallery chunk, plus
  ``cq * cg * s`` for the score block; the whole query matrix ``N_q * D * s`` and the running top-k
  ``N_q * c * (s + 8)`` come on top (``c = k + 8`` candidates).
* ranks / metrics: ``cq * N_g * s`` for the full score rows of one query chunk, plus one gallery chunk
  ``cg * D * s``, plus the per-gallery scale vector ``N_g * s``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

#: Default budget for the chunk buffers when ``max_memory_mb`` is None.
DEFAULT_MEMORY_MB = 256.0

# Measured on a 2-core AVX-512 machine (benchmarks/bench_retrieval.py): MKL's sgemm stays at its peak
# for these block shapes, and a score block of this size is still cheap to scan.
MAX_GALLERY_CHUNK = 8192
MAX_QUERY_CHUNK = 1024
# The native merge reads each block once, right after the GEMM wrote it; in ad-hoc trials 16 MB blocks
# (1024 x 4096) were scanned faster per element than 32 MB ones, while the torch merge's per-call costs
# favour fewer, larger blocks (docs/retrieval.md, "How the merge works").
MAX_GALLERY_CHUNK_NATIVE = 4096


def topk_chunks(
    n_q: int, n_g: int, d: int, itemsize: int, budget: int, native: bool = False
) -> tuple[int, int]:
    """``(query_chunk, gallery_chunk)`` for the blocked top-k within ``budget`` bytes."""
    cap = MAX_GALLERY_CHUNK_NATIVE if native else MAX_GALLERY_CHUNK
    cg = max(1, min(n_g, cap, budget // (4 * d * itemsize)))
    left = budget - 2 * cg * d * itemsize
    cq = max(1, min(n_q, MAX_QUERY_CHUNK, left // (cg * itemsize)))
    return cq, cg


def rank_chunks(n_q: int, n_g: int, d: int, itemsize: int, budget: int) -> tuple[int, int]:
    """``(query_chunk, gallery_chunk)`` for rank computation: full score rows of ``cq`` queries."""
    cg = max(1, min(n_g, MAX_GALLERY_CHUNK, budget // (8 * d * itemsize)))
    left = budget - cg * d * itemsize - n_g * itemsize
    cq = max(1, min(n_q, MAX_QUERY_CHUNK, left // (2 * n_g * itemsize)))
    return cq, cg


#: Below this many multiply-adds (well under a millisecond of GEMM) the fused engines' thread hand-offs
#: cost more than they save: the blocked engine / chunked ranks run instead (same results).
MIN_FUSED_FLOPS = 1e8

#: Gallery rows prepared (converted, normalised) at a time by the fused engines; two are alive at once.
PREPARE_ROWS = 16384
#: FAISS must beat the fused engine by this factor before ``backend="auto"`` picks it (noise margin).
FAISS_MARGIN = 1.10


@dataclass(frozen=True)
class Plan:
    """How the fused engine runs a search.

    Attributes:
        threads: worker threads (each runs single-threaded GEMMs).
        query_chunk: query rows per task.
        gallery_chunk: gallery columns per GEMM block.
        prepare_chunk: gallery rows converted and normalised at a time.
        faiss_speedup: measured fused-engine time over FAISS time (``> 1``: FAISS was faster), or None
            when FAISS was not measured.
        source: ``"default"``, ``"measured"`` or ``"cached"``.
        gemm: whose BLAS multiplies the blocks, ``"torch"`` or ``"numpy"`` (:mod:`._gemm`).
    """

    threads: int
    query_chunk: int
    gallery_chunk: int
    prepare_chunk: int = PREPARE_ROWS
    faiss_speedup: float | None = None
    source: str = "default"
    gemm: str = "torch"

    def tasks(self, n_q: int) -> list[tuple[int, int]]:
        """Query ranges of at most ``query_chunk`` rows, as many as a multiple of ``threads`` and of
        near-equal size: the workers meet at the end of every prepared gallery chunk, and an uneven
        split (5 tasks of 2048 rows on 2 threads: one waits a whole task) cost 14% at 10k x 100k."""
        per_round = max(1, -(-n_q // (self.threads * self.query_chunk)))
        count = max(1, min(n_q, self.threads * per_round))
        size, extra = divmod(n_q, count)  # the first ``extra`` tasks take one row more
        bounds = [i * size + min(i, extra) for i in range(count + 1)]
        return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def prefers_faiss(self) -> bool:
        return self.faiss_speedup is not None and self.faiss_speedup > FAISS_MARGIN

    def fit(self, n_q: int, n_g: int, d: int, itemsize: int, budget: int) -> Plan:
        """This plan shrunk to ``budget`` bytes: two prepared gallery chunks plus one block per thread."""
        prep = max(1, min(n_g, self.prepare_chunk, budget // (4 * d * itemsize)))
        left = max(budget - 3 * prep * d * itemsize, budget // 4)
        cg = max(1, min(self.gallery_chunk, prep))
        cq = max(1, min(self.query_chunk, n_q, left // max(1, self.threads * cg * itemsize)))
        return replace(self, query_chunk=cq, gallery_chunk=cg, prepare_chunk=prep)

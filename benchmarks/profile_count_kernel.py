"""The native count kernel on one block (``python benchmarks/profile_count_kernel.py``).

Times ``_native.count_rows`` on a 1024 x 2048 float32 block of scores (std 0.05) against one and five
narrow bands (width 2e-4) per row spread over the score range, one thread, best of five; prints
nanoseconds per block entry and the band entries found. Run it with ``PYTHONPATH`` pointing at two
source trees to compare revisions (see ``results/retrieval/exact-keys-<cpu>.md``).
"""

from __future__ import annotations

import time

import torch

from mmgeom.retrieval import _native


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    rows, width = 1024, 2048
    block = torch.randn(rows, width, generator=gen) * 0.05
    for npos in (1, 5):
        centre = torch.randn(rows, npos, generator=gen) * 0.05
        lo, hi = (centre - 1e-4).contiguous(), (centre + 1e-4).contiguous()
        band = torch.empty(1 << 16, 3, dtype=torch.long)
        best, n = float("inf"), 0
        for _ in range(5):
            above = torch.zeros(rows, npos, dtype=torch.long)
            t0 = time.perf_counter()
            n = _native.count_rows(block, lo, hi, above, band)
            best = min(best, time.perf_counter() - t0)
        print(f"{npos} band(s) a row: {best / (rows * width) * 1e9:.3f} ns an entry, {n} band entries")


if __name__ == "__main__":
    main()

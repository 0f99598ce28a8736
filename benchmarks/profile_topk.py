"""Where the time of an exact top-k goes, phase by phase (``python benchmarks/profile_topk.py``).

Times one ``topk(q, g, 10, metric="dot")`` of 10k x 100k x 512 float32 unit vectors with each engine
(the fused one with torch's and with numpy's BLAS, the blocked one) by wrapping the functions each phase
calls: the GEMMs, the merges (summed over worker threads, so "per thread" below divides by the thread
count), the rescoring and the rest. The same-shape sgemm alone (every block of the search, one after
the other, on one thread per worker as the engine runs them) is timed in the same process. Writes
``benchmarks/results/retrieval/profile-<cpu-slug>.md``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mmgeom.retrieval import _fused, _gemm, _native, search, topk, tune
from mmgeom.retrieval._plan import Plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, machine_info, result_paths

_lock = threading.Lock()
totals: dict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                totals[name] += time.perf_counter() - t0

    return wrapper


@contextmanager
def instrumented() -> Iterator[None]:
    saved = (_fused.block_scores, _fused._native.merge_rows, search._rescore, _native.merge_into)
    _fused.block_scores = timed("GEMM (summed over workers)", _gemm.block_scores)
    _native.merge_rows = timed("merge (summed over workers)", saved[1])
    _native.merge_into = timed("merge (blocked engine)", saved[3])
    search._rescore = timed("exact rescoring", saved[2])
    try:
        yield
    finally:
        _fused.block_scores, _native.merge_rows, search._rescore, _native.merge_into = saved


def shape_table(q: torch.Tensor, g: torch.Tensor, gemm: str, threads: int, rounds: int = 2) -> list[str]:
    """The fast pass of the fused engine alone for each candidate block shape of the tuning, with the
    tuned BLAS, interleaved over ``rounds`` (best kept): what the tuning's short timings choose from."""
    from mmgeom.retrieval._fused import fused_candidates
    from mmgeom.retrieval._inputs import Embeddings, Scoring
    from mmgeom.retrieval._tune import CANDIDATES

    source, scoring = Embeddings(g, "gallery"), Scoring("dot", None)
    flops = 2.0 * q.shape[0] * g.shape[0] * q.shape[1]
    best = {shape: float("inf") for shape in CANDIDATES}
    for _ in range(rounds):
        for cq, cg in CANDIDATES:
            t0 = time.perf_counter()
            fused_candidates(q, source, 18, scoring, Plan(threads, cq, cg, gemm=gemm))
            best[(cq, cg)] = min(best[(cq, cg)], time.perf_counter() - t0)
    lines = [
        "",
        f"Fast pass of the fused engine ({gemm}'s BLAS) by block shape, best of {rounds} interleaved rounds "
        "(no rescoring):",
        "",
        "| query rows x gallery columns | seconds | GFLOP/s |",
        "|---|---:|---:|",
    ]
    for (cq, cg), t in best.items():
        lines.append(f"| {cq} x {cg} | {t:.2f} | {flops / t / 1e9:.0f} |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--gallery", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    d = 512
    q = torch.nn.functional.normalize(torch.randn(args.queries, d, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(args.gallery, d, generator=gen), dim=1)
    flops = 2.0 * args.queries * args.gallery * d
    info = machine_info()
    plan = tune()
    threads = torch.get_num_threads()
    command = " ".join(["python benchmarks/profile_topk.py", *(argv or sys.argv[1:])])
    lines = [
        "# Where the time of exact top-k goes",
        "",
        f"`{command}` — {args.queries:,} queries x {args.gallery:,} gallery x {d}, top-10, float32, "
        "metric='dot'.",
        "",
        describe(info),
        "",
        f"Tuned plan: {plan}.",
        "",
        "| engine | whole call, s | GFLOP/s | GEMM per thread, s | merge per thread, s | rescoring, s "
        "| rest, s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    engines: list[tuple[str, dict[str, Any]]] = [
        (f"fused, {g_}'s BLAS", {"plan": Plan(threads, plan["query_chunk"], plan["gallery_chunk"], gemm=g_)})
        for g_ in _gemm.available()
    ]
    engines.append(("blocked (chunk_size=(1024, 4096))", {"chunk_size": (1024, 4096)}))
    topk(q[:256], g[:20000], 10, metric="dot")  # warm-up
    for name, how in engines:
        best: tuple[float, dict[str, float]] | None = None
        for _ in range(2):
            totals.clear()
            original = search.plan_for
            if "plan" in how:
                search.plan_for = lambda flops, dtype, _p=how["plan"]: _p
            try:
                with instrumented():
                    t0 = time.perf_counter()
                    topk(q, g, 10, metric="dot", backend="torch", chunk_size=how.get("chunk_size"))
                    wall = time.perf_counter() - t0
            finally:
                search.plan_for = original
            if best is None or wall < best[0]:
                best = (wall, dict(totals))
        assert best is not None
        wall, parts = best
        fused = "plan" in how
        gemm = parts.get("GEMM (summed over workers)", float("nan")) / threads if fused else float("nan")
        merge = (
            (parts.get("merge (summed over workers)", 0.0) / threads)
            if fused
            else parts.get("merge (blocked engine)", float("nan"))
        )
        rescoring = parts.get("exact rescoring", float("nan"))
        rest = wall - (gemm if fused else 0.0) - merge - rescoring
        lines.append(
            f"| {name} | {wall:.2f} | {flops / wall / 1e9:.0f} | {gemm:.2f} | {merge:.2f} | "
            f"{rescoring:.2f} | {rest:.2f} |"
        )
        print(lines[-1], flush=True)
    lines += shape_table(q, g, plan["gemm"], threads)
    lines += [
        "",
        "GEMM and merge are summed over the worker threads and divided by their number (the time each thread"
        " spent in them); 'rest' is the whole call minus those and the rescoring: waiting at the per-chunk "
        "meeting point, preparing gallery chunks, Python. For the blocked engine the GEMM is not separated "
        "from the rest (it runs inside 'rest').",
        "",
    ]
    md, _ = result_paths("retrieval", args.out)
    target = md.with_name(f"profile-{info['cpu_slug']}.md")
    target.write_text("\n".join(lines))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exact top-k, mmgeom against FAISS ``IndexFlatIP``, head to head in alternating rounds.

``python benchmarks/bench_vs_faiss.py`` times ``topk(q, g, 10)`` (the default: cosine, ``backend="auto"``),
``topk(q, g, 10, metric="dot")`` and FAISS's exhaustive inner-product search (index build included, as
in ``bench_retrieval.py``) on 10k unit-norm queries against 100k unit-norm gallery rows, D = 512, float32,
in ``--rounds`` alternating rounds: a burst of other load on a shared machine then hits both sides of a
round instead of one method. Reports every time, the medians and the ratio of the medians (FAISS time over
mmgeom time: above 1, mmgeom is faster). ``bench_retrieval.py`` times each method once, which on a 2-core
VM swung FAISS between 84% and 99% of the sgemm peak from one run to the next.

Writes ``benchmarks/results/retrieval/vs-faiss-<cpu-slug>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmgeom.retrieval import topk, tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, machine_info, result_paths, write_index


def unit_rows(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, d, generator=gen)
    return x / x.norm(dim=1, keepdim=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--gallery", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1,000 x 20,000, two rounds, nothing written")
    args = p.parse_args(argv)
    if args.quick:
        args.queries, args.gallery, args.rounds = 1000, 20_000, 2
    try:
        import faiss
    except ImportError:
        print("bench_vs_faiss: FAISS is not installed; pip install 'mmgeom[faiss]'", file=sys.stderr)
        return 2

    d, k = 512, 10
    gen = torch.Generator().manual_seed(0)
    q, g = unit_rows(args.queries, d, gen), unit_rows(args.gallery, d, gen)
    qn, gn = q.numpy(), g.numpy()
    threads = torch.get_num_threads()
    faiss.omp_set_num_threads(threads)
    info = machine_info()
    plan = tune()

    def faiss_search() -> Any:
        index = faiss.IndexFlatIP(d)
        index.add(gn)
        return index.search(qn, k)

    methods: dict[str, Callable[[], Any]] = {
        "mmgeom topk (cosine, auto: the default)": lambda: topk(q, g, k),
        "mmgeom topk (dot, auto)": lambda: topk(q, g, k, metric="dot"),
        "FAISS IndexFlatIP (direct, index build included)": faiss_search,
    }
    for fn in methods.values():  # warm-up: BLAS, buffers, the native kernels
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(args.rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        print(
            f"round {r}: " + ", ".join(f"{n.split(' (')[0]} {t[-1]:.2f}s" for n, t in times.items()),
            flush=True,
        )
    flops = 2.0 * args.queries * args.gallery * d
    faiss_median = statistics.median(times["FAISS IndexFlatIP (direct, index build included)"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "method": name,
                "seconds": ts,
                "median_seconds": med,
                "gflops": flops / med / 1e9,
                "faiss_over_this": faiss_median / med,
            }
        )
        print(f"{name}: median {med:.2f}s, FAISS/this {faiss_median / med:.2f}x", flush=True)
    if args.quick:
        return 0
    command = " ".join(["python benchmarks/bench_vs_faiss.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Exact top-k: mmgeom against FAISS IndexFlatIP, alternating rounds",
        "",
        f"`{command}` — {args.queries:,} queries x {args.gallery:,} gallery x {d}, top-{k}, float32, "
        f"unit-norm rows, {args.rounds} alternating rounds, {threads} threads for each.",
        "",
        describe(info),
        "",
        f"faiss {faiss.__version__}; tuned plan: {plan['query_chunk']} x {plan['gallery_chunk']} blocks, "
        f"{plan['gemm']}'s BLAS, tuning's fused/FAISS time ratio {plan['faiss_speedup']:.3f}.",
        "",
        "| method | median s | GFLOP/s | FAISS median / this median | every round, s |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['median_seconds']:.2f} | {row['gflops']:.0f} | "
            f"{row['faiss_over_this']:.2f}x | {', '.join(f'{t:.2f}' for t in row['seconds'])} |"
        )
    lines += [
        "",
        "Both sides search the same unit rows; FAISS's inner product equals cosine on them, and mmgeom's "
        "cosine default also normalises the rows and rescores its candidates exactly. FAISS's time "
        "includes building the flat index (a copy of the gallery), as in `bench_retrieval.py`.",
        "",
    ]
    md, _ = result_paths("retrieval")
    target = md.with_name(f"vs-faiss-{info['cpu_slug']}.md")
    target.write_text("\n".join(lines), encoding="utf-8")
    target.with_suffix(".json").write_text(
        json.dumps({"machine": info, "plan": plan, "rows": rows, "command": command}, indent=1) + "\n",
        encoding="utf-8",
    )
    write_index("retrieval", "Exact retrieval")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Exact keys of the tie bands: the native certified path against ``exact_scores`` alone.

``python benchmarks/bench_exact_keys.py`` times ``retrieval_metrics(q, g, lists, metric="dot")`` with
five positives per query (the target plus four random gallery items, so most bands sit in the densest
part of the score distribution), q = noisy copies of gallery rows as in ``bench_retrieval.bench_metrics``,
once with the keys of the band items computed as before (``ExactKeys.torch_keys``: float64 row copies
through ``rescore.exact_scores``) and once with the native certified path, interleaved over a few rounds
(median), and checks that both give the same metrics. It also counts the pairs settled and how many the
certification left to ``exact_scores``. Writes ``benchmarks/results/retrieval/exact-keys-<cpu-slug>.md``
(and ``.json``); ``--quick`` runs a small size and writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from mmgeom.retrieval import _fused_ranks, retrieval_metrics
from mmgeom.retrieval._ties import ExactKeys

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_slug, describe, machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval"


def fmt(values: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in values)


def unit_rows(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, d, generator=gen)
    return x / x.norm(dim=1, keepdim=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--gallery", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="500 x 20,000 x 128, one round, nothing written")
    ap.add_argument(
        "--one-run",
        action="store_true",
        help="time one call as the source tree on PYTHONPATH has it and print seconds and a hash of the "
        "metrics (to compare two revisions: see the results file)",
    )
    args = ap.parse_args()
    if args.quick:
        args.queries, args.gallery, args.dim, args.rounds = 500, 20_000, 128, 1
    info = machine_info()
    gen = torch.Generator().manual_seed(0)
    n_q, n_g, d = args.queries, args.gallery, args.dim
    g = unit_rows(n_g, d, gen)
    target = torch.randint(0, n_g, (n_q,), generator=gen)
    q = g[target] + 0.25 * torch.randn(n_q, d, generator=gen)
    extra = torch.randint(0, n_g, (n_q, 4), generator=gen)
    lists = [sorted({int(target[i]), *extra[i].tolist()}) for i in range(n_q)]
    ks = (1, 5, 10)

    if args.one_run:
        retrieval_metrics(q[:64], g[:20_000], [[i % 20_000] for i in range(64)], ks=ks, metric="dot")
        t0 = time.perf_counter()
        got = retrieval_metrics(q, g, lists, ks=ks, metric="dot")
        seconds = time.perf_counter() - t0
        digest = hashlib.sha256(json.dumps(got, sort_keys=True).encode()).hexdigest()[:12]
        print(f"{seconds:.2f} s, metrics {digest}")
        return
    native_call = ExactKeys.__call__
    pairs = {"settled": 0, "uncertain": 0}
    native_keys = ExactKeys.native_keys

    def counting(
        self: ExactKeys, rows: torch.Tensor, cols: torch.Tensor, *rest: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key, certain = native_keys(self, rows, cols, *rest)
        pairs["settled"] += rows.numel()
        pairs["uncertain"] += int((~certain).sum())
        return key, certain

    # the step that changed is timed on its own too (summed over the worker threads that settle their
    # blocks): the whole call also holds the GEMMs, whose time swings with the other load on the machine
    settle_seconds = [0.0]
    settle = _fused_ranks._Settler.__call__
    lock = threading.Lock()

    def timed_settle(self: Any, *a: Any) -> None:
        t0 = time.perf_counter()
        settle(self, *a)
        with lock:
            settle_seconds[0] += time.perf_counter() - t0

    def by_definition(self: ExactKeys, rows: torch.Tensor, cols: torch.Tensor, *rest: Any) -> Any:
        return self.torch_keys(rows, cols)

    def run(native: bool) -> tuple[float, float, dict[str, float]]:
        ExactKeys.__call__ = native_call if native else by_definition  # type: ignore[method-assign]
        _fused_ranks._Settler.__call__ = timed_settle  # type: ignore[method-assign]
        settle_seconds[0] = 0.0
        try:
            t0 = time.perf_counter()
            values = retrieval_metrics(q, g, lists, ks=ks, metric="dot")
            return time.perf_counter() - t0, settle_seconds[0], values
        finally:
            ExactKeys.__call__ = native_call  # type: ignore[method-assign]
            _fused_ranks._Settler.__call__ = settle  # type: ignore[method-assign]

    retrieval_metrics(q[:64], g[:20_000], [[i % 20_000] for i in range(64)], ks=ks, metric="dot")  # warm-up
    times: dict[str, list[float]] = {"exact_scores": [], "native": []}
    settles: dict[str, list[float]] = {"exact_scores": [], "native": []}
    values: dict[str, dict[str, float]] = {}
    for r in range(args.rounds):
        for name in ("exact_scores", "native"):
            if name == "native" and r == 0:
                ExactKeys.native_keys = counting  # type: ignore[method-assign]
            seconds, settled, values[name] = run(name == "native")
            ExactKeys.native_keys = native_keys  # type: ignore[method-assign]
            times[name].append(seconds)
            settles[name].append(settled)
            print(f"round {r}: {name} {seconds:.2f} s (settling the bands {settled:.2f} s)", flush=True)
    same = values["native"] == values["exact_scores"]
    old, new = statistics.median(times["exact_scores"]), statistics.median(times["native"])
    s_old, s_new = statistics.median(settles["exact_scores"]), statistics.median(settles["native"])
    print(f"median call: exact_scores {old:.2f} s, native {new:.2f} s, {old / new:.2f}x; same values: {same}")
    print(f"median settling: exact_scores {s_old:.2f} s, native {s_new:.2f} s, {s_old / s_new:.2f}x")
    print(f"band pairs settled natively: {pairs['settled']:,}, left to exact_scores: {pairs['uncertain']:,}")
    if args.quick:
        return
    cmd = "python benchmarks/bench_exact_keys.py"
    cmd += f" --queries {n_q} --gallery {n_g} --dim {d} --rounds {args.rounds}"
    lines = [
        "# Exact keys of the tie bands: native certified path vs exact_scores",
        "",
        describe(info),
        "",
        f"Command: `{cmd}` (run under `nice -n 19` while other jobs shared the machine).",
        "",
        f"`retrieval_metrics(q, g, lists, metric='dot')`, {n_q:,} x {n_g:,} x {d}, five positives per query "
        "(target + 4 random), noisy-copy queries; median of "
        f"{args.rounds} interleaved rounds. 'settling' is the time the workers spent in "
        "`_fused_ranks._Settler` (the exact keys of the band items and the counting; thread-seconds, "
        "summed over the workers).",
        "",
        "| keys of the band items | call, s | all rounds | settling, s | all rounds |",
        "|---|---|---|---|---|",
        f"| exact_scores (before) | {old:.2f} | {fmt(times['exact_scores'])} | {s_old:.2f} | "
        f"{fmt(settles['exact_scores'])} |",
        f"| native, certified (after) | {new:.2f} | {fmt(times['native'])} | {s_new:.2f} | "
        f"{fmt(settles['native'])} |",
        "",
        f"Speed-up of the call {old / new:.2f}x, of the settling step {s_old / s_new:.2f}x; same metric "
        f"values: {same}. Band pairs settled natively in one run: "
        f"{pairs['settled']:,}; left to exact_scores by the certification: {pairs['uncertain']:,}.",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"exact-keys-{cpu_slug()}"
    (RESULTS / f"{stem}.md").write_text("\n".join(lines), encoding="utf-8")
    record: dict[str, Any] = {
        "machine": info,
        "command": cmd,
        "times": times,
        "settle_times": settles,
        "pairs": pairs,
        "same": same,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"wrote {RESULTS / stem}.md")


if __name__ == "__main__":
    main()

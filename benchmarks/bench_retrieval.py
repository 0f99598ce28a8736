"""Speed and memory of exact top-k retrieval and of retrieval metrics (``make bench-retrieval``).

Run ``python benchmarks/bench_retrieval.py`` (the full study, several minutes) or with ``--quick`` (a
smoke run on tiny sizes that writes to a temporary folder unless ``--out`` is given).

What it measures, all in one process, D = 512, top-10, float32, unit-norm random vectors:

* the machine's float32 matmul rate (best of several ``4096 x 16384 x 512`` sgemms, at the start and at
  the end of the run; the larger is the roofline);
* for 10k queries against a 100k and a 1M gallery: queries/s, the fraction of that roofline
  (``2 N_q N_g D`` flops / time / roofline) and the peak extra memory of
  ``mmgeom.retrieval.topk`` (torch and FAISS backends), FAISS ``IndexFlatIP`` directly, a naive full
  matmul + ``torch.topk`` (only where the ``N_q x N_g`` matrix fits) and a per-query torchmetrics loop
  (on a subset, extrapolated);
* ``retrieval_metrics`` on 10k x 100k against torchmetrics' functional metrics (subset, extrapolated).

Peak extra memory: the process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``) is
reset through ``/proc/self/clear_refs`` after the inputs exist and freed heap memory was returned to
the OS (``malloc_trim``); the figure is ``VmHWM - VmRSS`` before the call, i.e. everything the method
allocated at its peak beyond the gallery and queries (including FAISS's copy of the gallery). glibc's
dynamic mmap threshold lets freed 1-32 MiB buffers stay in the heap, where they were seen to pile up
(intermittently, up to ~1 GB after a call whose live memory peaked near 50 MB) and to make the figure
depend on what ran before; the threshold is therefore pinned at 1 MiB (``mallopt``) at start-up, which
made repeated measurements agree and did not change the timings beyond noise. Every method gets one
small warm-up call first, so one-time library initialisation is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import numpy as np
import torch

from mmgeom.retrieval import _native, retrieval_metrics, topk, tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, machine_info, result_paths, write_index

ROOT = Path(__file__).resolve().parent.parent
#: sgemm run right before and after each measured call (``--quick`` shrinks it).
PROBE_SHAPE = (2048, 8192, 512)


# ----------------------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _pin_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Allocations of ``nbytes`` or more are mmapped and returned to the OS when freed."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, nbytes))  # M_MMAP_THRESHOLD
    except OSError:
        return False


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Timing(NamedTuple):
    seconds: float  # best of the repeats
    peak_mib: float  # largest peak extra memory of the repeats
    local_gflops: float  # sgemm rate measured right before and after (mean): the CPU share we had
    result: Any


def measure(fn: Callable[[], Any], repeats: int = 1, probe: bool = True) -> Timing:
    """Time ``fn`` (best of ``repeats``), its peak extra memory, and the sgemm rate around it."""
    best, peak, out = float("inf"), 0.0, None
    rates = [sgemm_rate(*PROBE_SHAPE, repeats=2)] if probe else []
    for _ in range(repeats):
        out = None
        _trim()
        base = _status_kb("VmRSS")
        can_reset = _reset_peak()
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        hwm = _status_kb("VmHWM") if can_reset else -1
        best = min(best, dt)
        peak = max(peak, (hwm - base) / 1024 if hwm >= 0 else float("nan"))
    if probe:
        rates.append(sgemm_rate(*PROBE_SHAPE, repeats=2))
    return Timing(best, peak, sum(rates) / len(rates) if rates else float("nan"), out)


# ----------------------------------------------------------------------------------------- pieces


def _best_rate(multiply: Callable[[], object], flops: float, repeats: int) -> float:
    """Best GFLOP/s of ``repeats`` calls of ``multiply`` after one warm-up call."""
    multiply()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        multiply()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def sgemm_rate(m: int = 4096, n: int = 16384, d: int = 512, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of a large matmul with torch's BLAS."""
    a, b, out = torch.randn(m, d), torch.randn(n, d), torch.empty(m, n)
    return _best_rate(lambda: torch.mm(a, b.T, out=out), 2 * m * n * d, repeats)


def numpy_sgemm_rate(m: int = 4096, n: int = 16384, d: int = 512, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of the same matmul with numpy's BLAS (OpenBLAS in the wheels): the roofline is
    the faster of the two libraries, whichever mmgeom's engine uses."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, d), dtype=np.float32), rng.random((n, d), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    return _best_rate(lambda: np.matmul(a, b.T, out=out), 2 * m * n * d, repeats)


def unit_rows(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.empty(n, d)
    for s in range(0, n, 65536):
        block = torch.randn(min(65536, n - s), d, generator=gen)
        x[s : s + block.shape[0]] = block / block.norm(dim=1, keepdim=True)
    return x


def naive_topk(q: torch.Tensor, g: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    scores = q @ g.T
    out = torch.topk(scores, k, dim=1)
    return out.values, out.indices


def faiss_direct(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    return index.search(q, k)


def torchmetrics_topk_loop(q: torch.Tensor, g: torch.Tensor, k: int) -> None:
    """Top-k through torchmetrics: full score row per query, hit@k via its functional API."""
    from torchmetrics.functional.retrieval import retrieval_hit_rate

    scores = q @ g.T + 2.0  # torchmetrics drops positives with a score <= 0
    target = torch.zeros(g.shape[0], dtype=torch.bool)
    target[0] = True
    for i in range(q.shape[0]):
        retrieval_hit_rate(scores[i], target, top_k=k)


def torchmetrics_metrics(q: torch.Tensor, g: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...]) -> None:
    import torchmetrics.functional.retrieval as tmr

    scores = q @ g.T + 2.0
    for i in range(q.shape[0]):
        t = torch.zeros(g.shape[0], dtype=torch.bool)
        t[target[i]] = True
        for k in ks:
            tmr.retrieval_hit_rate(scores[i], t, top_k=k)
            tmr.retrieval_recall(scores[i], t, top_k=k)
            tmr.retrieval_precision(scores[i], t, top_k=k)
            tmr.retrieval_normalized_dcg(scores[i], t, top_k=k)
        tmr.retrieval_reciprocal_rank(scores[i], t)
        tmr.retrieval_average_precision(scores[i], t)


# ----------------------------------------------------------------------------------------- study


@contextlib.contextmanager
def torch_merge() -> Iterator[None]:
    """Run ``topk`` with the pure-torch merge (``MMGEOM_NATIVE=0``) inside the block."""
    with mock.patch.dict(os.environ, {"MMGEOM_NATIVE": "0"}):
        _native.reset()
        yield
    _native.reset()


def bench_gallery(
    args: argparse.Namespace, q: torch.Tensor, g: torch.Tensor, have_faiss: bool
) -> list[dict[str, Any]]:
    """Top-k rows for one gallery size."""
    n_q, d = q.shape
    n_g, k = g.shape[0], args.k
    flops = 2.0 * n_q * n_g * d
    reps = args.repeats if n_g <= 100_000 else 1
    rows: list[dict[str, Any]] = []

    def row(method: str, tm: Timing, n: int = n_q, note: str = "") -> None:
        seconds = tm.seconds
        rec = {
            "gallery": n_g,
            "method": method,
            "queries_measured": n,
            "seconds": seconds * n_q / n,
            "queries_per_s": n / seconds,
            "gflops": flops / (seconds * n_q / n) / 1e9,
            "peak_extra_mib": tm.peak_mib,
            "local_sgemm_gflops": tm.local_gflops,
            "note": note,
        }
        rec["local_fraction"] = flops / (seconds * n_q / n) / 1e9 / tm.local_gflops
        rows.append(rec)
        print(
            f"  {n_g:>8} {method:28s} {rec['queries_per_s']:9.0f} q/s  {rec['gflops']:6.0f} GF/s  "
            f"(local sgemm {tm.local_gflops:4.0f})  peak +{tm.peak_mib:8.0f} MiB  {note}",
            flush=True,
        )

    print(f"gallery {n_g}", flush=True)
    qs, gs = q[:256], g[:20_000]
    topk(qs, gs, k, metric="dot")  # warm-ups: one-time initialisation is not the method's cost
    naive_topk(qs, gs, k)
    if have_faiss:
        topk(qs, gs, k, metric="dot", backend="faiss")
        faiss_direct(qs.numpy(), gs.numpy(), k)
    tm = measure(lambda: topk(q, g, k, metric="dot"), reps)
    reference = tm.result[1]
    native = _native.available(q.dtype, q.device)
    row("mmgeom topk (auto, the default)", tm, note="fused engine" if native else "torch merge (no kernel)")
    tm = measure(lambda: topk(q, g, k, metric="dot", backend="torch"), reps)
    same = bool(torch.equal(tm.result[1], reference))
    row(
        "mmgeom topk (torch)", tm, note="fused engine; " + ("identical results" if same else "RESULTS DIFFER")
    )
    if n_g <= args.torch_merge_max_gallery:
        # the previous engine: multi-threaded GEMM blocks, each merged after it (explicit chunk_size)
        tm = measure(lambda: topk(q, g, k, metric="dot", backend="torch", chunk_size=(1024, 4096)), reps)
        same = bool(torch.equal(tm.result[1], reference))
        note = "chunk_size=(1024, 4096): the blocked engine; " + (
            "identical results" if same else "RESULTS DIFFER"
        )
        row("mmgeom topk (torch, blocked engine)", tm, note=note)
    if have_faiss:
        # FAISS's exhaustive search runs at a fraction of the sgemm rate here: on the large gallery it
        # is timed on a subset of the queries (its cost is linear in N_q) to keep the run in minutes.
        nf = n_q if n_g <= 100_000 else min(n_q, args.faiss_queries_large)
        qf = q[:nf]
        sub_note = "" if nf == n_q else f"; measured on {nf} queries, extrapolated"
        tm = measure(lambda: topk(qf, g, k, metric="dot", backend="faiss"), reps)
        same = bool(torch.equal(tm.result[1], reference[:nf]))
        same_note = "identical to torch backend" if same else "DIFFERS from torch backend"
        row("mmgeom topk (faiss)", tm, n=nf, note=same_note + sub_note)
        qn, gn = qf.numpy(), g.numpy()
        tm = measure(lambda: faiss_direct(qn, gn, k), reps)
        agree = float((torch.from_numpy(tm.result[1]) == reference[:nf]).double().mean())
        row(
            "FAISS IndexFlatIP (direct)",
            tm,
            n=nf,
            note=f"index build included; {agree:.4%} same ids" + sub_note,
        )
    need_gb = n_q * n_g * 4 / 2**30
    if need_gb <= args.naive_max_gb:
        tm = measure(lambda: naive_topk(q, g, k), reps)
        agree = float((tm.result[1] == reference).double().mean())
        row("naive matmul + torch.topk", tm, note=f"{agree:.4%} same ids")
    else:
        skipped = f"needs the {need_gb:.0f} GB score matrix"
        rows.append({"gallery": n_g, "method": "naive matmul + torch.topk", "skipped": skipped})
        print(f"  {n_g:>8} naive: skipped ({skipped})", flush=True)
    sub = min(n_q, args.torchmetrics_queries)
    tm = measure(lambda: torchmetrics_topk_loop(q[:sub], g, k))
    row("torchmetrics per-query loop", tm, n=sub, note=f"measured on {sub} queries, extrapolated")
    return rows


def bench_metrics(args: argparse.Namespace, gen: torch.Generator) -> list[dict[str, Any]]:
    """retrieval_metrics against torchmetrics on one gallery."""
    n_q, n_g, d = args.queries, args.metrics_gallery, args.dim
    g = unit_rows(n_g, d, gen)
    target = torch.randint(0, n_g, (n_q,), generator=gen)
    q = g[target] + 0.25 * torch.randn(n_q, d, generator=gen)  # noisy copies: hit@1 well below 1
    ks = (1, 5, 10)
    print("retrieval_metrics ...", flush=True)
    retrieval_metrics(q[:64], g[:20_000], target[:64] % 20_000, ks=ks, metric="dot")  # warm-up
    rows = []

    def row(method: str, tm: Timing, n: int, note: str) -> None:
        rec = {
            "gallery": n_g,
            "method": method,
            "queries_measured": n,
            "seconds": tm.seconds * n_q / n,
            "peak_extra_mib": tm.peak_mib,
            "local_sgemm_gflops": tm.local_gflops,
            "note": note,
        }
        rec["local_fraction"] = 2.0 * n_q * n_g * d / rec["seconds"] / 1e9 / tm.local_gflops
        rows.append(rec)
        print(f"  {method} {rec['seconds']:.2f}s peak +{tm.peak_mib:.0f} MiB  {note}", flush=True)

    tm = measure(lambda: retrieval_metrics(q, g, target, ks=ks, metric="dot"))
    row("mmgeom retrieval_metrics", tm, n_q, "one positive per query")
    rows[-1]["values"] = reference = tm.result
    # the chunked path (full score rows of a query chunk; the default before the streamed one)
    chunked = (312, 8192)
    tm = measure(lambda: retrieval_metrics(q, g, target, ks=ks, metric="dot", chunk_size=chunked))
    same = all(abs(tm.result[name] - reference[name]) <= 1e-12 for name in reference)
    row(
        "mmgeom retrieval_metrics (chunked path)",
        tm,
        n_q,
        f"chunk_size={chunked}; one positive per query; " + ("same values" if same else "VALUES DIFFER"),
    )
    sub = min(n_q, args.torchmetrics_queries)
    tm = measure(lambda: torchmetrics_metrics(q[:sub], g, target[:sub], ks))
    note = f"one positive per query; measured on {sub} queries, extrapolated x{n_q / sub:.0f}"
    row("torchmetrics functional (per-query loop)", tm, sub, note)
    # Five positives per query (five captions per image).
    extra = torch.randint(0, n_g, (n_q, 4), generator=gen)
    lists = [sorted({int(target[i]), *extra[i].tolist()}) for i in range(n_q)]
    tm = measure(lambda: retrieval_metrics(q, g, lists, ks=ks, metric="dot"))
    row("mmgeom retrieval_metrics", tm, n_q, "five positives per query")
    tm = measure(lambda: retrieval_metrics(q, g, lists, ks=ks, metric="dot", chunk_size=chunked))
    row("mmgeom retrieval_metrics (chunked path)", tm, n_q, f"chunk_size={chunked}; five positives per query")
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    d, n_q = args.dim, args.queries
    try:
        import faiss

        have_faiss, faiss_version = True, faiss.__version__
    except ImportError:
        have_faiss, faiss_version = False, None
    import torchmetrics

    pinned = _pin_mmap_threshold()
    machine = machine_info()
    machine.update(
        faiss=faiss_version,
        torchmetrics=torchmetrics.__version__,
        load_average_start=os.getloadavg(),
        mmap_threshold_pinned=pinned,
        native_merge=_native.native_status(),
    )
    print("tuning the top-k plan for this CPU ...", flush=True)
    plan = tune()
    print(f"  {plan}", flush=True)
    result: dict[str, Any] = {
        "command": args.command,
        "machine": machine,
        "plan": plan,
        "setup": {"dim": d, "k": args.k, "queries": n_q, "dtype": "float32", "data": "unit-norm Gaussian"},
    }
    print("sgemm roofline ...", flush=True)
    rate_start = sgemm_rate(*args.sgemm)
    numpy_start = numpy_sgemm_rate(*args.sgemm)
    print(f"  torch {rate_start:.0f} GFLOP/s, numpy {numpy_start:.0f} GFLOP/s", flush=True)

    q = unit_rows(n_q, d, gen)
    topk_rows: list[dict[str, Any]] = []
    for n_g in args.galleries:
        topk_rows += bench_gallery(args, q, unit_rows(n_g, d, gen), have_faiss)
        _trim()
    metric_rows = bench_metrics(args, gen)
    _trim()

    rate_end = sgemm_rate(*args.sgemm)
    numpy_end = numpy_sgemm_rate(*args.sgemm)
    probes = [r["local_sgemm_gflops"] for r in topk_rows + metric_rows if "local_sgemm_gflops" in r]
    roofline = max([rate_start, rate_end, numpy_start, numpy_end, *probes])
    result["roofline"] = {
        "sgemm_gflops_start": rate_start,
        "sgemm_gflops_end": rate_end,
        "numpy_sgemm_gflops_start": numpy_start,
        "numpy_sgemm_gflops_end": numpy_end,
        "local_probe_max": max(probes) if probes else None,
        "used": roofline,
        "shape": list(args.sgemm),
        "probe_shape": list(PROBE_SHAPE),
    }
    for rec in topk_rows:
        if "gflops" in rec:
            rec["roofline_fraction"] = rec["gflops"] / roofline
    for rec in metric_rows:
        rec["queries_per_s"] = n_q / rec["seconds"]
        rec["roofline_fraction"] = 2.0 * n_q * rec["gallery"] * d / rec["seconds"] / 1e9 / roofline
    result["topk"], result["metrics"] = topk_rows, metric_rows
    result["machine"]["load_average_end"] = os.getloadavg()
    return result


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def _plan_line(plan: dict[str, Any] | None) -> str:
    if not plan:
        return "not recorded"
    speed = plan.get("faiss_speedup")
    faiss = "FAISS not measured" if speed is None else f"FAISS took {1 / speed:.2f}x the fused engine's time"
    return (
        f"{plan['threads']} threads, {plan['query_chunk']} query rows x {plan['gallery_chunk']} gallery "
        f'columns per GEMM block; {faiss}; `backend="auto"` uses {plan["backend_auto"]}'
    )


def markdown(res: dict[str, Any]) -> str:
    mach, roof = res["machine"], res["roofline"]
    lines = [
        "# Retrieval benchmark",
        "",
        "```",
        res["command"],
        "```",
        "",
        describe(mach),
        f"Also faiss {mach['faiss']} and torchmetrics {mach['torchmetrics']}; load average "
        f"{mach['load_average_end'][0]:.2f} at the end "
        f"(a load of {mach['cores']} fills the cores; other jobs on the machine lower every rate below, "
        "which is why each method also gets a local sgemm rate).",
        "",
        f"Native kernels: {mach.get('native_merge', 'not recorded')}.",
        "",
        f"Top-k plan measured by `mmgeom.retrieval.tune()` at the start: {_plan_line(res.get('plan'))}.",
        "",
        f"Roofline: float32 sgemm {'x'.join(map(str, roof['shape']))}, best of 5, with torch's BLAS "
        f"{roof['sgemm_gflops_start']:.0f} GFLOP/s at the start and {roof['sgemm_gflops_end']:.0f} at the "
        f"end, with numpy's {_fmt(roof.get('numpy_sgemm_gflops_start'))} and "
        f"{_fmt(roof.get('numpy_sgemm_gflops_end'))}; a {'x'.join(map(str, roof['probe_shape']))} sgemm is "
        "also run right before and after every measured call ('local sgemm', the mean of the two). The "
        f"roofline is the best sgemm rate seen anywhere in the run, {roof['used']:.0f} GFLOP/s. 'roofline' = "
        "2·N_q·N_g·D / time / roofline; 'vs local' = the same against the local sgemm rate, which tracks the "
        "CPU share the method actually had.",
        "",
        f"## Top-{res['setup']['k']}, {res['setup']['queries']} queries, D = {res['setup']['dim']}, float32",
        "",
        "| gallery | method | queries/s | GFLOP/s | roofline | local sgemm | vs local | peak extra memory "
        "| note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["topk"]:
        if "skipped" in r:
            lines.append(
                f"| {r['gallery']:,} | {r['method']} | – | – | – | – | – | – | skipped: {r['skipped']} |"
            )
            continue
        lines.append(
            f"| {r['gallery']:,} | {r['method']} | {r['queries_per_s']:,.0f} | {r['gflops']:.0f} | "
            f"{r['roofline_fraction']:.0%} | {r['local_sgemm_gflops']:.0f} | {r['local_fraction']:.0%} | "
            f"{r['peak_extra_mib']:,.0f} MiB | {r['note']} |"
        )
    lines += [
        "",
        f"## retrieval_metrics, {res['setup']['queries']} queries x {res['metrics'][0]['gallery']:,} gallery "
        "(hit/recall/precision/nDCG @1,5,10, MRR, mAP, median/mean rank)",
        "",
        "| method | seconds | queries/s | roofline | local sgemm | vs local | peak extra memory | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["metrics"]:
        lines.append(
            f"| {r['method']} | {r['seconds']:.1f} | {r['queries_per_s']:,.0f} | "
            f"{r['roofline_fraction']:.0%} | {r['local_sgemm_gflops']:.0f} | {r['local_fraction']:.0%} | "
            f"{r['peak_extra_mib']:,.0f} MiB | {r['note']} |"
        )
    lines += [
        "",
        "Peak extra memory: resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs after "
        "malloc_trim) minus the resident set before the call, with glibc's mmap threshold pinned at 1 MiB so "
        "that freed large buffers leave the resident set, after one small warm-up call per method; it "
        "includes FAISS's copy of the gallery and the naive method's full score matrix. torchmetrics rows "
        "ran on a subset of the queries and are extrapolated linearly (its cost is one full score row and a "
        "sort per query).",
        "",
        "FAISS is the faiss-cpu wheel, which bundles its own OpenBLAS and OpenMP runtime; how it compares "
        "with torch's MKL depends on the CPU (the other files in this folder). mmgeom's FAISS backend "
        'returns results identical to the torch backend\'s, and `backend="auto"` uses it only where '
        "`tune()` measured it faster. 'same ids' below 100% for FAISS and the naive method are float32 "
        "near-ties: mmgeom returns the order of the float64 scores.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--out", type=Path, default=None, help="results root (default benchmarks/results)")
    p.add_argument("--render", action="store_true", help="only rewrite this CPU's .md from its .json")
    args = p.parse_args(argv)
    if args.render:
        md, js = result_paths("retrieval", args.out)
        md.write_text(markdown(json.loads(js.read_text())))
        return 0
    args.command = "python benchmarks/bench_retrieval.py" + (
        " " + shlex.join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ""
    )
    args.dim, args.k = 512, 10
    if args.quick:
        args.dim = 64
        args.queries, args.galleries, args.metrics_gallery = 100, [1000, 3000], 1000
        args.torchmetrics_queries, args.naive_max_gb, args.sgemm = 10, 1.0, (512, 1024, 64)
        global PROBE_SHAPE
        PROBE_SHAPE = (256, 512, 64)
        args.repeats, args.faiss_queries_large = 1, 100
        args.torch_merge_max_gallery = 1000
        out = args.out or Path(tempfile.mkdtemp(prefix="bench_retrieval_"))
    else:
        args.queries, args.galleries, args.metrics_gallery = 10_000, [100_000, 1_000_000], 100_000
        args.torchmetrics_queries, args.naive_max_gb, args.sgemm = 200, 8.0, (4096, 16384, 512)
        args.repeats, args.faiss_queries_large = 2, 2000
        args.torch_merge_max_gallery = 100_000
        out = args.out
    res = run(args)
    md, js = result_paths("retrieval", out)
    js.write_text(json.dumps(res, indent=2) + "\n")
    md.write_text(markdown(res))
    write_index("retrieval", "Exact retrieval", out)
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Block shapes and engine for exact top-k, measured once per CPU and cached (not public API).

Which GEMM block shape keeps a core at its peak, and whether FAISS's exhaustive search beats mmgeom's
on a machine, depend on the CPU, its BLAS kernels and the thread count: on the Intel Xeon of the first
benchmark FAISS ran at a fifth of torch's speed, on a 2-core AMD EPYC (Zen 4) it ran faster than the
first engine. So the first large search on a machine times a few candidate shapes of the fused engine
(:mod:`mmgeom.retrieval._fused`) with torch's and with numpy's BLAS (:mod:`._gemm`) on random data,
and FAISS ``IndexFlatIP`` on the same data when it is installed, and keeps the result in ``tuning/``
of mmgeom's cache folder, keyed by the CPU model and flags, torch version, dtype and thread count.
:func:`mmgeom.retrieval.tune` runs it on demand.

``MMGEOM_TUNE=0`` skips the measurement and uses the defaults below. Results never depend on the plan:
every engine feeds the same exact rescoring.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._io import write_json
from .._paths import cache_root
from . import _gemm, _native
from ._fused import fused_candidates
from ._plan import PREPARE_ROWS, Plan

_log = logging.getLogger(__name__)

#: Version of the cached file's layout and of the measurement; bump to re-measure everywhere.
TUNE_VERSION = 4
#: Searches with fewer multiply-adds than this use the cached plan if there is one, else the default
#: (measuring runs several seconds: ten configurations, three finalists timed twice more, three rounds
#: against FAISS; a search this small takes about half a second on two cores).
MIN_TUNE_FLOPS = 1e11
#: Candidate (query rows per task, gallery columns per GEMM) shapes; the table "by block shape" of
#: benchmarks/results/retrieval/profile-<cpu>.md times each at 10k x 100k x 512.
CANDIDATES = ((512, 4096), (1024, 2048), (1024, 1024), (2048, 1024), (512, 8192))
#: Configurations timed again after the first round (the rest were clearly slower).
FINALISTS = 3
DEFAULT_SHAPE = (512, 4096)


def tuning_enabled() -> bool:
    return os.environ.get("MMGEOM_TUNE", "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=16)
def _cpu_key(dtype: torch.dtype, threads: int) -> str:
    flags = model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and not model:
                    model = line
                elif line.startswith(("flags", "Features")) and not flags:
                    flags = line
    except OSError:
        model = platform.processor()
    parts = [model, flags, platform.machine(), torch.__version__, str(dtype), str(threads), str(TUNE_VERSION)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def cache_file(dtype: torch.dtype, threads: int) -> Path:
    return cache_root() / "tuning" / f"topk-{_cpu_key(dtype, threads)}.json"


def default_plan(threads: int | None = None) -> Plan:
    t = threads or torch.get_num_threads()
    return Plan(threads=t, query_chunk=DEFAULT_SHAPE[0], gallery_chunk=DEFAULT_SHAPE[1])


def _read(path: Path, threads: int) -> Plan | None:
    """The cached plan, or None (absent, unreadable or malformed: then it is measured again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        plan = Plan(
            threads=threads,
            query_chunk=int(data["query_chunk"]),
            gallery_chunk=int(data["gallery_chunk"]),
            prepare_chunk=int(data.get("prepare_chunk", PREPARE_ROWS)),
            faiss_speedup=None if data.get("faiss_speedup") is None else float(data["faiss_speedup"]),
            source="cached",
            gemm=str(data.get("gemm", "torch")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        _log.warning("ignoring the tuning cache %s (%s); measuring again", path, err)
        return None
    if (
        min(plan.query_chunk, plan.gallery_chunk, plan.prepare_chunk) < 1
        or plan.gemm not in _gemm.available()
    ):
        _log.warning("ignoring the tuning cache %s (bad chunk or unavailable gemm); measuring again", path)
        return None
    return plan


def _time(fn: object, repeats: int = 2, warm: bool = True) -> float:
    assert callable(fn)
    if warm:
        fn()  # buffers, BLAS initialisation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(threads: int, dtype: torch.dtype = torch.float32, d: int = 512) -> Plan:
    """Time the candidate shapes (and FAISS, when installed) on random unit vectors; the fastest wins.

    Every (BLAS, shape) is timed once on one prepared gallery chunk, the best :data:`FINALISTS` twice
    more, interleaved, and each keeps its best time: other load on the machine only ever adds time, and
    a single timing per shape picked a shape 3% slower than the best on a shared machine.
    """
    from ._inputs import Embeddings, Scoring

    gen = torch.Generator().manual_seed(0)
    # about 7e10 multiply-adds per timing at two threads: ~0.35 s on a 2-core AVX-512 machine
    n_g = PREPARE_ROWS
    n_q = threads * max(cq for cq, _ in CANDIDATES)  # every shape: at least one whole task per thread
    q = torch.nn.functional.normalize(torch.randn(n_q, d, generator=gen, dtype=dtype), dim=1)
    g = torch.nn.functional.normalize(torch.randn(n_g, d, generator=gen, dtype=dtype), dim=1)
    source, scoring = Embeddings(g, "gallery"), Scoring("dot", None)
    plans = {
        (gemm, cq, cg): Plan(threads=threads, query_chunk=cq, gallery_chunk=cg, gemm=gemm)
        for gemm in _gemm.available()
        for cq, cg in CANDIDATES
    }
    fused_candidates(q[: threads * 64], source, 18, scoring, next(iter(plans.values())))  # warm-up
    times = {
        key: _time(lambda p=p: fused_candidates(q, source, 18, scoring, p), 1, False)
        for key, p in plans.items()
    }
    finalists = sorted(times, key=times.__getitem__)[:FINALISTS]
    for _ in range(2):
        for key in finalists:
            p = plans[key]
            times[key] = min(
                times[key], _time(lambda p=p: fused_candidates(q, source, 18, scoring, p), 1, False)
            )
    gemm, cq, cg = min(finalists, key=times.__getitem__)
    speedup = None
    faiss: Any = None
    with contextlib.suppress(ImportError):
        import faiss
    if faiss is not None and dtype == torch.float32:
        speedup = _faiss_speedup(faiss, Plan(threads, cq, cg, gemm=gemm), d, gen)
    _log.info("mmgeom topk tuning: %s, faiss speedup %s", times, speedup)
    return Plan(threads, cq, cg, faiss_speedup=speedup, source="measured", gemm=gemm)


def _faiss_speedup(faiss: Any, plan: Plan, d: int, gen: torch.Generator) -> float:
    """Median over three interleaved rounds of (fused engine time / FAISS time) on one prepared chunk.

    A single pair of timings on a shared machine was seen to favour the wrong engine by 25%; alternating
    the two and taking the median ratio lets a burst of load hit both sides of a round.
    """
    from ._inputs import Embeddings, Scoring

    q = torch.nn.functional.normalize(torch.randn(plan.threads * 2048, d, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(PREPARE_ROWS, d, generator=gen), dim=1)
    source, scoring = Embeddings(g, "gallery"), Scoring("dot", None)
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(plan.threads)
    try:
        index = faiss.IndexFlatIP(d)
        index.add(g.numpy())

        def mine() -> object:
            return fused_candidates(q, source, 18, scoring, plan)

        def theirs() -> object:
            return index.search(q.numpy(), 18)

        mine(), theirs()  # warm-up
        ratios = [_time(mine, repeats=1, warm=False) / _time(theirs, repeats=1, warm=False) for _ in range(3)]
    finally:
        faiss.omp_set_num_threads(previous)
    return sorted(ratios)[1]


#: Plans read from their cache file in this process, by file (a new measurement replaces the entry).
_read_plans: dict[Path, Plan] = {}


def plan_for(flops: float, dtype: torch.dtype, force: bool = False) -> Plan:
    """The plan for a search of ``flops`` multiply-adds: cached, measured (large searches) or default."""
    threads = torch.get_num_threads()
    if (not tuning_enabled() and not force) or not _native.available(dtype, torch.device("cpu")):
        # without the native kernels there is no fused engine to measure (topk runs the blocked one)
        return default_plan(threads)
    try:
        path = cache_file(dtype, threads)
    except RuntimeError:  # no cache folder can be named (no home directory): do not measure each time
        return default_plan(threads)
    # every top-k call asks for its plan: a cached file is read from disk once per process
    cached = None if force else (_read_plans.get(path) or _read(path, threads))
    if cached is not None:
        _read_plans[path] = cached
        return cached
    if flops < MIN_TUNE_FLOPS and not force:
        return default_plan(threads)
    plan = measure(threads, dtype)
    _read_plans.pop(path, None)
    try:
        record = {k: v for k, v in asdict(plan).items() if k not in ("threads", "source")}
        write_json(path, {**record, "threads": threads, "cpu": platform.processor() or platform.machine()})
    except OSError as err:
        _log.warning("could not cache the top-k tuning in %s: %s", path, err)
    return plan


def tune(dtype: torch.dtype = torch.float32) -> dict[str, object]:
    """Measure this CPU's top-k plan now (at the current torch thread count), cache it and return it.

    :func:`mmgeom.retrieval.topk` does this by itself on the first large search; call it to re-measure
    on a quiet machine (a measurement taken while other jobs ran may have picked a poorer shape) or to
    see the plan. Results never depend on it.

    Returns:
        ``{"threads", "query_chunk", "gallery_chunk", "prepare_chunk", "faiss_speedup", "source",
        "backend_auto"}``: ``faiss_speedup`` is the fused engine's time over FAISS's on the same data
        (None without FAISS), ``backend_auto`` what ``backend="auto"`` will use. Without the native
        kernels (no C compiler, ``MMGEOM_NATIVE=0``) nothing is measured: ``source`` is ``"default"``.

    Example:
        >>> from mmgeom.retrieval import tune
        >>> tune()["backend_auto"]  # doctest: +SKIP
        'torch'
    """
    plan = plan_for(0.0, dtype, force=True)
    return {**asdict(plan), "backend_auto": "faiss" if plan.prefers_faiss() else "torch"}

"""Forward + backward cost of every registered loss, as a ratio to plain InfoNCE measured in the same run.

Baseline ("plain InfoNCE"): for each of the M(M-1)/2 modality pairs, normalise, one matmul, two
cross-entropies — what a user replaces when adding a geometric loss to a multimodal run. Ratios therefore
compare each loss with an all-pairs InfoNCE over the same modalities (per-pair count normalised).

Memory: peak bytes allocated by the CPU caching allocator are not exposed by PyTorch, so peak *extra*
memory is measured with ``tracemalloc``-free means: the process high-water mark (VmHWM from
/proc/self/status) is reset before each case (``/proc/self/clear_refs``, value 5) and read after it, minus
the resident size before it. On Linux this captures every tensor the case allocated.

Usage:
    python benchmarks/bench_losses.py            # full grid, writes benchmarks/results/losses.{json,md}
    python benchmarks/bench_losses.py --quick    # tiny smoke run, prints only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as nnf

import mmgeom
from mmgeom import functional as F
from mmgeom.losses import create_loss, list_losses

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = ["text", "image", "audio", "depth", "thermal", "imu"]


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def plain_infonce(batch: dict[str, torch.Tensor], tau: float = 0.07) -> torch.Tensor:
    names = list(batch)
    total = batch[names[0]].new_zeros(())
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a = nnf.normalize(batch[names[i]], dim=1)
            b = nnf.normalize(batch[names[j]], dim=1)
            logits = a @ b.T / tau
            target = torch.arange(a.shape[0])
            total = total + 0.5 * (nnf.cross_entropy(logits, target) + nnf.cross_entropy(logits.T, target))
    return total


def make_batch(b: int, d: int, m: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {NAMES[k]: torch.randn(b, d, generator=g).requires_grad_() for k in range(m)}


def time_case(
    fn: Callable[[], torch.Tensor], batch: dict[str, torch.Tensor], repeats: int
) -> dict[str, float]:
    def step() -> None:
        for v in batch.values():
            v.grad = None
        fn().backward()

    step()  # warm-up (allocator, kernels)
    rss0 = _status_kb("VmRSS")
    _reset_hwm()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = max(_status_kb("VmHWM") - rss0, 0)
    return {"seconds": statistics.median(times), "peak_extra_mb": peak / 1024}


def loss_fns() -> dict[str, Callable[[dict[str, torch.Tensor]], torch.Tensor]]:
    fns: dict[str, Callable[[dict[str, torch.Tensor]], torch.Tensor]] = {}
    for name in list_losses():
        kwargs: dict[str, object] = {}
        if name == "unialign":
            kwargs = {"preset": "retrieval"}
        loss = create_loss(name, **kwargs)
        fns[name] = lambda batch, loss=loss: loss(batch).total
    centroid = create_loss("unialign", alignment="centroid")
    fns["unialign[centroid]"] = lambda batch: centroid(batch).total
    spectral = create_loss("dagr", dispersion="spectral")
    fns["dagr[spectral]"] = lambda batch: spectral(batch).total
    return fns


def run(
    quick: bool, sizes_arg: list[int] | None = None, ms_arg: list[int] | None = None
) -> dict[str, object]:
    torch.manual_seed(0)
    mmgeom.set_validation(False)  # value checks sync; production loops switch them off too
    sizes = sizes_arg or ([64, 128] if quick else [256, 1024, 4096])
    dims = 64 if quick else 512
    ms = ms_arg or ([2, 3] if quick else [2, 3, 6])
    rows = []
    fns = loss_fns()
    for m in ms:
        for b in sizes:
            batch = make_batch(b, dims, m)
            repeats = 3 if quick or b >= 4096 else 7
            base = time_case(lambda batch=batch: plain_infonce(batch), batch, repeats)
            rows.append({"loss": "plain_infonce", "M": m, "B": b, "D": dims, **base, "ratio": 1.0})
            for name, fn in fns.items():
                res = time_case(lambda fn=fn, batch=batch: fn(batch), batch, repeats)
                ratio = res["seconds"] / base["seconds"]
                rows.append({"loss": name, "M": m, "B": b, "D": dims, **res, "ratio": ratio})
                print(
                    f"M={m} B={b:5d} {name:20s} {res['seconds'] * 1e3:9.2f} ms  x{ratio:5.2f}  "
                    f"peak+{res['peak_extra_mb']:7.1f} MB",
                    flush=True,
                )
    big: dict[str, object] = {}
    if not quick:
        z = torch.randn(32768, 256, requires_grad=True)
        for name, fn in (
            ("uniformity", lambda: F.uniformity(z, 2.0)),
            ("dispersion", lambda: F.dispersion(z, 0.5)),
        ):
            res = time_case(fn, {"z": z}, 1)
            big[name] = {"B": 32768, "D": 256, **res}
            print(f"{name} B=32768 D=256: {res['seconds']:.2f} s, peak extra {res['peak_extra_mb']:.1f} MB")
    return {
        "command": " ".join(["python", "benchmarks/bench_losses.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "rows": rows,
        "large_batch": big,
    }


def to_markdown(res: dict[str, object]) -> str:
    rows = res["rows"]
    assert isinstance(rows, list)
    out = [
        "# Loss cost: forward + backward vs plain InfoNCE (same run)",
        "",
        f"Command: `{res['command']}` — torch {res['torch']}, {res['threads']} threads, "
        f"{res['cores']} cores.",
        "Ratio = median step time / plain all-pairs InfoNCE over the same M modalities (M(M-1)/2 pairs).",
        "Peak extra = process high-water mark minus resident size before the case (MB).",
        "",
    ]
    ms = sorted({r["M"] for r in rows})
    bs = sorted({r["B"] for r in rows})
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    for m in ms:
        out += [
            f"## M = {m}",
            "",
            "| loss | " + " | ".join(f"B={b} ms (ratio, peak MB)" for b in bs) + " |",
            "|---|" + "---|" * len(bs),
        ]
        for name in losses:
            cells = []
            for b in bs:
                r = next(x for x in rows if x["loss"] == name and x["M"] == m and x["B"] == b)
                cells.append(f"{r['seconds'] * 1e3:.1f} ({r['ratio']:.2f}x, {r['peak_extra_mb']:.0f})")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    big = res.get("large_batch") or {}
    if big:
        out += [
            "## Large batch: B = 32768, D = 256 (exact value and gradient)",
            "",
            "| function | seconds | peak extra MB |",
            "|---|---|---|",
        ]
        for name, r in big.items():
            out.append(f"| {name} | {r['seconds']:.2f} | {r['peak_extra_mb']:.0f} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, print only")
    parser.add_argument("--sizes", type=int, nargs="+", help="batch sizes (default 256 1024 4096)")
    parser.add_argument("--modalities", type=int, nargs="+", help="values of M (default 2 3 6)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        # On a shared machine, oversubscribed OpenMP threads distort timings far more than one thread does.
        torch.set_num_threads(args.threads)
    res = run(args.quick, args.sizes, args.modalities)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "losses.json").write_text(json.dumps(res, indent=2))
        (RESULTS / "losses.md").write_text(to_markdown(res))
        print(f"wrote {RESULTS / 'losses.md'}")
    else:
        print(to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

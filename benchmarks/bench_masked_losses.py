"""Masked UniAlign / DAGR calls: weights and tensor counts (now) against row selection (before).

Until issue 19's masked-batch work, a batch with a missing-modality ``mask`` selected rows (``z[mask]``)
and branched on row counts read on the host; now every term weights the rows instead (no device sync).
This benchmark times forward + backward of both on the same batches, in one process and interleaved
(before, now, before, now, ...), so load drift on a shared machine hits both alike; medians are compared.
"Before" is the package as of ``--before`` (a git revision), extracted with ``git archive`` under the
name ``mmgeom_before`` (the loss code imports relatively, so the two copies do not mix). Before timing,
each case checks that both give the same loss.

Usage:
    python benchmarks/bench_masked_losses.py              # B in {64, 256}, M = 3, D = 512; writes results
    python benchmarks/bench_masked_losses.py --quick      # B = 256, few repeats, prints only
    python benchmarks/bench_masked_losses.py --threads 1  # torch threads (default: torch's own)

Results go to ``benchmarks/results/masked_losses/<cpu-slug>.{md,json}`` (see ``_machine.py``).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, machine_info, result_paths, write_index
from mmgeom.losses import create_loss

ROOT = Path(__file__).resolve().parent.parent
#: The last revision whose masked losses selected rows.
BEFORE = "0500776"
NAMES = ["text", "image", "audio"]
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("unialign", "unialign", {}),
    ("unialign retrieval (volume)", "unialign", {"preset": "retrieval"}),
    ("unialign centroid", "unialign", {"alignment": "centroid", "lambda_vol": 0.5, "lambda_det": 0.1}),
    ("dagr", "dagr", {}),
    ("dagr spectral", "dagr", {"dispersion": "spectral"}),
]


def import_before(rev: str, into: Path) -> Any:
    """``create_loss`` of the package at git revision ``rev``, imported as ``mmgeom_before``."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src/mmgeom"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    shutil.move(str(into / "src" / "mmgeom"), str(into / "mmgeom_before"))
    sys.path.insert(0, str(into))
    return importlib.import_module("mmgeom_before.losses").create_loss


def masked_batch(b: int, d: int, seed: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Text always present; image and audio each missing in about a quarter of the rows (zeros there)."""
    g = torch.Generator().manual_seed(seed)
    mask = {m: torch.rand(b, generator=g) < 0.75 for m in NAMES[1:]}
    batch = {}
    for m in NAMES:
        z = torch.randn(b, d, generator=g)
        if m in mask:
            z[~mask[m]] = 0.0
        batch[m] = z.requires_grad_()
    return batch, mask


def stepper(
    loss: Callable[..., Any], batch: dict[str, Tensor], mask: dict[str, Tensor]
) -> Callable[[], None]:
    """One forward + backward of ``loss`` on the batch."""

    def step() -> None:
        for z in batch.values():
            z.grad = None
        loss(batch, mask=mask).total.backward()

    return step


def time_case(fns: dict[str, Callable[[], None]], repeats: int, inner: int) -> dict[str, float]:
    """Median milliseconds per call of each function, interleaved."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[key].append((time.perf_counter() - start) * 1e3 / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B = 256 only, few repeats, print only")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--before", default=BEFORE, help="git revision of the row-selection code")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--cases", nargs="*", default=None, help="only the cases whose label starts so")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 31, quick 7)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [256] if args.quick else [64, 256]
    repeats, inner = (7, 3) if args.quick else (31, 5)
    repeats = args.repeats or repeats
    cases = [c for c in CASES if not args.cases or any(c[0].startswith(p) for p in args.cases)]
    info = machine_info()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        create_before = import_before(args.before, Path(tmp))
        for b in sizes:
            batch, mask = masked_batch(b, args.dim)
            for label, name, kwargs in cases:
                fns: dict[str, Callable[[], None]] = {}
                values = {}
                for checks in (False, True):
                    for which, factory in (("before", create_before), ("now", create_loss)):
                        loss = factory(name, **kwargs)
                        loss.check_values = checks
                        values[which] = float(loss(batch, mask=mask).total.detach())
                        fns[f"{which} checks {'on' if checks else 'off'}"] = stepper(loss, batch, mask)
                    assert abs(values["before"] - values["now"]) <= 1e-4 * max(1.0, abs(values["now"])), (
                        label,
                        values,
                    )
                ms = time_case(fns, repeats, inner)
                row = {"case": label, "B": b, "M": len(NAMES), "D": args.dim, **ms}
                row["ratio_off"] = ms["now checks off"] / ms["before checks off"]
                row["ratio_on"] = ms["now checks on"] / ms["before checks on"]
                rows.append(row)
                off, on = (
                    f"{ms[f'before {k}']:7.3f} -> {ms[f'now {k}']:7.3f} ms"
                    for k in ("checks off", "checks on")
                )
                print(
                    f"B={b:4d} {label:28s} checks off: {off} ({row['ratio_off']:.2f}x) | checks on: {on} "
                    f"({row['ratio_on']:.2f}x)",
                    flush=True,
                )
    if args.quick:
        return
    md_path, json_path = result_paths("masked_losses")
    command = "python benchmarks/bench_masked_losses.py" + (
        f" --threads {args.threads}" if args.threads else ""
    )
    lines = [
        "# Masked losses: weights (now) vs row selection (before)",
        "",
        describe(info),
        "",
        f"Command: `{command}` (before = git revision `{args.before}`). Forward + backward, median ms per "
        f"call over {repeats} x {inner} interleaved calls; masks: text complete, image and audio each "
        "missing in about a quarter of the rows. Ratio = now / before (below 1: faster now).",
        "",
        "| case | B | checks off: before | now | ratio | checks on: before | now | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['B']} | {r['before checks off']:.3f} | {r['now checks off']:.3f} | "
            f"{r['ratio_off']:.2f}x | {r['before checks on']:.3f} | {r['now checks on']:.3f} | "
            f"{r['ratio_on']:.2f}x |"
        )
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json_path.write_text(
        json.dumps({"machine": info, "command": command, "rows": rows}, indent=1), encoding="utf-8"
    )
    write_index("masked_losses", "Masked losses (weights vs row selection)")
    print(f"wrote {md_path} and {json_path}")


if __name__ == "__main__":
    main()

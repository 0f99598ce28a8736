"""Training steps/s from a feature store (rows read from disk) against the same model from in-memory tensors.

Run ``python benchmarks/bench_store_training.py`` (a 1M-row x 3 x 512 float16 store, 3 GB on disk;
several minutes) or ``--quick`` (20k rows, results to a temporary folder unless ``--out`` is given).

Each mode runs in its own child process: ``store`` trains from ``data.store`` (each batch's 1024 rows
read from the store files with ``preadv``), ``memory`` from the same rows' float32 tensors held in memory
(the ``--memory-rows`` first training rows: an in-memory copy of all 1M rows x 3 x 512 float32 would
take 6 GB, twice during standardisation; a step's cost does not depend on how many rows it samples from).
Both time ``--steps`` calls of ``Trainer.train_step`` after 5 warm-up steps (best of 3 blocks; each
mode runs twice, alternating, and keeps its faster run: the machine is shared), batch 1024, InfoNCE,
MLP heads 512 -> 512 -> 256. Memory: the child's ``VmHWM`` minus its ``VmRSS`` after building and
stepping an encoder and AdamW of the same size without data (so "beyond model and optimizer"; target
<= 1 GB).
Results go to ``benchmarks/results/store_training/<cpu-slug>.{md,json}`` (:mod:`_machine`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import RESULTS, describe, machine_info, result_paths, write_index  # noqa: E402


def write_store(path: Path, rows: int, dim: int = 512, mods: int = 3) -> None:
    from mmgeom.data.store_builder import StoreBuilder

    rng = np.random.default_rng(0)
    latent_dim = 32
    proj = [
        rng.standard_normal((latent_dim, dim), dtype=np.float32) / np.sqrt(latent_dim) for _ in range(mods)
    ]
    names = [f"m{k}" for k in range(mods)]
    b = StoreBuilder(path, rows, {m: (dim, "float16") for m in names}, {"bench": rows}, commit_seconds=30)
    for a in range(0, rows, 65536):
        n = min(65536, rows - a)
        z = rng.standard_normal((n, latent_dim), dtype=np.float32)
        feats = {
            m: (z @ p + 0.3 * rng.standard_normal((n, dim), dtype=np.float32))
            for m, p in zip(names, proj, strict=True)
        }
        ids = np.arange(a, a + n)
        split = np.where(ids % 100 == 0, "val", np.where(ids % 100 == 1, "test", "train"))
        b.write(a, feats, {m: np.ones(n, bool) for m in names}, ids, ids % 10, split)
    b.finalise(metadata={"source": "bench"})


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, store: str, steps: int, memory_rows: int) -> dict:
    import torch

    from mmgeom.data import FeatureStore, MultiViewDataset, split_and_standardize
    from mmgeom.models import MultiViewEncoder
    from mmgeom.train import Trainer, build_optimizer, config_from_dict

    raw = {
        "data": {"store": store},
        "model": {"head": "mlp", "out_dim": 256, "hidden": 512},
        "loss": {"name": "infonce", "kwargs": {"temperature": 0.07}},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "train": {"steps": 3 * steps + 5, "batch_size": 1024, "progress": False, "eval_before": False},
        "eval": {"split": "val", "diagnostics": False, "classification": False, "ks": [1]},
    }
    cfg = config_from_dict(raw)
    # Baseline: a same-size encoder + AdamW after one step (its moments allocated), no data.
    dims = {m: d for m, d in FeatureStore.open(store).dims.items()}
    enc = MultiViewEncoder.from_dims(dims, "mlp", 256, hidden=512)
    opt = build_optimizer(cfg, [enc])
    sum(v.sum() for v in enc({m: torch.zeros(2, d) for m, d in dims.items()}).values()).backward()
    opt.step()
    base = _status("VmRSS")
    data = None
    if mode == "memory":
        s = FeatureStore.open(store)
        rows = s.indices("train")[:memory_rows]
        views = {m: torch.from_numpy(np.asarray(s.array(m)[rows], dtype=np.float32)) for m in s.modalities}
        ds = MultiViewDataset(views, torch.from_numpy(np.asarray(s.labels[rows])), "bench")
        data = split_and_standardize(ds, (0.98, 0.01, 0.01), seed=0)
        del views, ds
    trainer = Trainer(cfg, data=data)
    for _ in range(5):
        trainer.train_step()
    # Best of 3 blocks: the machine is shared, and the slowest block measures the neighbours, not us.
    seconds = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        seconds = min(seconds, time.perf_counter() - t0)
    return {
        "mode": mode,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "train_rows": len(trainer.data.train),
        "rss_model_optimizer_MB": base,
        "peak_rss_MB": _status("VmHWM"),
        "peak_beyond_model_MB": _status("VmHWM") - base,
    }


def markdown(res: dict) -> str:
    """The result file's text."""
    s, m = res["runs"]["store"], res["runs"]["memory"]
    size, rows = res["store_bytes"], res["rows"]
    return "\n".join(
        [
            "# Training from a feature store vs in-memory tensors",
            "",
            f"Command: `{res['command']}`  ",
            f"{describe(res['machine'])}  ",
            f"Date: {res['date']}",
            "",
            f"Store: {rows:,} rows x 3 modalities x 512 float16, {size / 1e9:.2f} GB on disk. "
            "Batch 1024, InfoNCE, MLP heads 512 -> 512 -> 256.",
            "",
            "| data | training rows | steps/s | peak RSS | beyond model + optimizer |",
            "|---|---|---|---|---|",
            f"| store (rows read with `preadv`) | {s['train_rows']:,} | {s['steps_per_s']:.2f} | "
            f"{s['peak_rss_MB']:.0f} MB | "
            f"{s['peak_beyond_model_MB']:.0f} MB (target <= 1024) |",
            f"| in-memory float32 tensors | {m['train_rows']:,} | {m['steps_per_s']:.2f} | "
            f"{m['peak_rss_MB']:.0f} MB | "
            f"{m['peak_beyond_model_MB']:.0f} MB |",
            "",
            f"Store / in-memory steps/s: **{res['ratio']:.2f}x** (target >= 0.9x).",
            "",
            "Memory is the child's `VmHWM` (peak resident set, which counts mapped file pages) minus its "
            "`VmRSS` after building and stepping a same-size encoder and AdamW without data. It covers "
            "opening the store, the standardisation pass over all training rows (two reused chunk buffers "
            "of 16384 rows: float16 and float64, about 80 MB), the trainer (its own model and optimizer, "
            "a second copy of the baseline's) and the timed steps (each batch's rows copied with `preadv`, "
            "nothing of the store mapped). The validation/test parts are not read here: they are read on "
            "first use, batch by batch, by rank 0 when it evaluates (these steps do not evaluate). The "
            "in-memory run holds its rows as float32 tensors (and a standardised copy).",
            "",
            "Before this version (1249 MB beyond model + optimizer in the first run of 2026-12-05) the "
            "batches and the statistics pass read through memory maps (touched pages, and the neighbours "
            "the kernel maps around each fault, count in RSS until released), the statistics pass "
            "allocated float64 temporaries of the chunk's size for every step of the computation "
            "(the chunk, its deviations, their squares), and the validation and test parts were read "
            "into memory at start (chunks concatenated: twice their size for a moment).",
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--memory-rows", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", nargs=4, metavar=("MODE", "STORE", "STEPS", "MEMROWS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, store, steps, mem = args.child
        print(json.dumps(child(mode, store, int(steps), int(mem))))
        return
    if args.quick:
        args.rows, args.memory_rows, args.steps = 20_000, 10_000, 5
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else RESULTS)
    md_path, json_path = result_paths("store_training", out)
    machine = machine_info()

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        write_store(store, args.rows)
        build_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in store.iterdir())
        runs: dict[str, dict] = {}
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for _ in range(2):  # alternate the modes twice; keep each one's faster run (shared machine)
            for mode in ("store", "memory"):
                cmd = [sys.executable, __file__, "--child", mode, str(store), str(args.steps)]
                proc = subprocess.run(
                    [*cmd, str(args.memory_rows)], check=True, env=env, capture_output=True, text=True
                )
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                if mode not in runs or run["steps_per_s"] > runs[mode]["steps_per_s"]:
                    runs[mode] = run
    res = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in ["benchmarks/bench_store_training.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "rows": args.rows,
        "store_bytes": size,
        "store_build_seconds": build_s,
        "runs": runs,
        "ratio": runs["store"]["steps_per_s"] / runs["memory"]["steps_per_s"],
    }
    md = markdown(res)
    json_path.write_text(json.dumps(res, indent=1) + "\n")
    md_path.write_text(md)
    write_index("store_training", "Training from a feature store", out)
    print(md)


if __name__ == "__main__":
    main()

"""Steps/s of ``mmgeom train`` against a minimal hand-written loop with the same model, loss and batches.

Two configs: ``demo`` (the packaged ``configs/demo.yaml`` as ``mmgeom demo --loss infonce`` trains it:
six mfeat views, MLP heads, InfoNCE over 15 pairs, batch 256, 300 steps, one thread) and ``b1024`` (the
same with batch 1024, a periodic evaluation and checkpoint every 100 steps).

The trainer runs through the public API the CLI uses (``Trainer(cfg, out, progress=True).fit()``), with
its defaults: ``metrics.jsonl``, the tqdm bar (to ``/dev/null``: formatted and written, not shown),
evaluations and checkpoints as the config says. The only instrumentation is a subclass that stamps
``time.perf_counter()`` on entering each ``train_step`` and times ``evaluate``; the hand loop stamps the
same way. A step's time is the gap between two stamps, so it includes everything the loop does between
steps (logging, progress, signal check). Steady state: the gaps after ``WARMUP`` steps, leaving out the
gaps that hold a periodic evaluation or checkpoint; those are reported separately (the gap minus the
median step).

The hand loop is written here from torch only: the model from :mod:`mmgeom.models`, the loss from
:func:`mmgeom.losses.create_loss`, ``torch.optim.AdamW``, its own warm-up + cosine ``LambdaLR``, the
batch order computed here with NumPy (``default_rng([seed, epoch]).permutation``), clipping with
``clip_grad_norm_``; it keeps each step's loss as a tensor (no host sync). Both loops start from the same
seed and the benchmark checks that they end with bit-identical weights (``torch.equal`` on every tensor)
and the same per-step losses, so the comparison is of the same computation.

Runs interleave (trainer, hand, trainer, hand, ...); each side keeps its best (fastest) repeat, because
the machine is shared and noise only ever slows a run down.

Usage:
    python benchmarks/bench_trainer.py            # demo 300 steps, b1024 200 steps, 3 repeats each;
                                                  # writes benchmarks/results/trainer/<cpu-slug>.{md,json}
    python benchmarks/bench_trainer.py --quick    # 40 steps, 1 repeat, prints only
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import describe, machine_info, result_paths, write_index  # noqa: E402
from mmgeom.data import load_dataset, split_and_standardize  # noqa: E402
from mmgeom.losses import create_loss  # noqa: E402
from mmgeom.models import MultiViewEncoder  # noqa: E402
from mmgeom.train import ExperimentConfig, Trainer  # noqa: E402
from mmgeom.train.presets import demo_config  # noqa: E402
from mmgeom.train.step_values import StepValues  # noqa: E402

#: Steps left out at the start of each run (allocator and kernel warm-up).
WARMUP = 10

CONFIGS: dict[str, list[str]] = {
    "demo": [],
    "b1024": ["train.batch_size=1024", "train.eval_every=100", "checkpoint.every=100"],
}


# ------------------------------------------------------------------------------------------ hand loop


def hand_loop(cfg: ExperimentConfig) -> tuple[list[float], dict[str, torch.Tensor], list[float]]:
    """The minimal loop: returns step-entry stamps, final weights and per-step losses."""
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    # The trainer seeds torch before building the data and the heads; the data draws nothing from it.
    torch.manual_seed(t.seed)
    split = split_and_standardize(load_dataset(d.dataset, d.views), d.fractions, d.split_seed, d.standardize)
    views = dict(split.train.views)
    n = len(split.train)
    encoder = MultiViewEncoder.from_dims(split.train.view_dims, m.head, m.out_dim, **m.head_kwargs())
    loss = create_loss(cfg.loss.name, **cfg.loss.kwargs)
    loss.check_values = False  # as the trainer runs it (no-op on a loss without the switch)
    params = [p for mod in (encoder, loss) for p in mod.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    total, warm = t.steps, o.warmup_steps

    def factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        p = (s - warm) / max(1, total - warm)
        return (o.min_lr + (o.lr - o.min_lr) * 0.5 * (1 + math.cos(math.pi * p))) / o.lr

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    clip = o.grad_clip if o.grad_clip is not None else math.inf
    per_epoch = n // t.batch_size
    order = np.empty(0, np.int64)
    stamps: list[float] = []
    losses: list[torch.Tensor] = []
    encoder.train()
    for s in range(total):
        stamps.append(time.perf_counter())
        epoch, pos = divmod(s, per_epoch)
        if pos == 0:
            order = np.random.default_rng([t.seed, epoch]).permutation(n)
        idx = torch.from_numpy(order[pos * t.batch_size : (pos + 1) * t.batch_size])
        emb = encoder({v: x[idx] for v, x in views.items()})
        out = loss(emb)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()
        losses.append(out.total.detach())
    stamps.append(time.perf_counter())
    return stamps, dict(encoder.state_dict()), [float(v) for v in losses]


# -------------------------------------------------------------------------------------------- trainer


class _Stamped(Trainer):
    """The trainer, stamping each step's entry and timing each evaluation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stamps: list[float] = []
        self.eval_seconds: list[float] = []

    def update(self) -> StepValues:
        # update(), not train_step(): overriding train_step makes fit() take the float path (a hook)
        self.stamps.append(time.perf_counter())
        return super().update()

    def evaluate(self, split: str | None = None) -> dict[str, float]:
        began = time.perf_counter()
        try:
            return super().evaluate(split)
        finally:
            self.eval_seconds.append(time.perf_counter() - began)


def trainer_run(cfg: ExperimentConfig) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as null:
        with contextlib.redirect_stderr(null):
            trainer = _Stamped(cfg, Path(tmp) / "run", progress=True)
            began = time.perf_counter()
            result = trainer.fit()
            fit_seconds = time.perf_counter() - began
        events = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    history = [e for e in events if e["event"] == "train"]
    losses = [e["loss"] for e in history]
    return {
        "stamps": trainer.stamps,
        "weights": dict(trainer.encoder.state_dict()),
        "interval_losses": losses,
        "log_every": cfg.train.log_every,
        "eval_seconds": trainer.eval_seconds,
        "fit_seconds": fit_seconds,
        "steps": result.steps,
    }


# ------------------------------------------------------------------------------------------- analysis


def steady(stamps: list[float], periodic: set[int]) -> tuple[float, list[float]]:
    """Steps/s over the gaps after WARMUP that hold no periodic event; the gaps that do."""
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # gaps[i] runs from entering step i+1 to entering step i+2: it holds what follows update i+1.
    plain = [g for i, g in enumerate(gaps) if i >= WARMUP and (i + 1) not in periodic]
    held = [g for i, g in enumerate(gaps) if (i + 1) in periodic]
    return len(plain) / sum(plain), held


def periodic_steps(cfg: ExperimentConfig) -> set[int]:
    out: set[int] = set()
    for every in (cfg.train.eval_every, cfg.checkpoint.every):
        if every:
            out |= set(range(every, cfg.train.steps, every))
    return out


def compare_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """0.0 when every tensor is equal bit for bit, else the largest absolute difference."""
    if a.keys() != b.keys():
        raise AssertionError(f"different parameter names: {sorted(a.keys() ^ b.keys())}")
    return max(
        float((a[k].float() - b[k].float()).abs().max()) if not torch.equal(a[k], b[k]) else 0.0 for k in a
    )


def bench_config(name: str, overrides: list[str], steps: int, repeats: int) -> dict[str, Any]:
    cfg = demo_config(overrides=[f"train.steps={steps}", *overrides])
    periodic = periodic_steps(cfg)
    trainer_sps: list[float] = []
    hand_sps: list[float] = []
    extra: list[float] = []
    evals: list[float] = []
    threads = torch.get_num_threads()
    for _ in range(repeats):
        tr = trainer_run(cfg)
        sps, held = steady(tr["stamps"], periodic)
        trainer_sps.append(sps)
        evals += tr["eval_seconds"]
        extra += [g - 1.0 / sps for g in held]
        try:
            if cfg.train.num_threads is not None:
                torch.set_num_threads(cfg.train.num_threads)
            stamps, weights, losses = hand_loop(cfg)
        finally:
            torch.set_num_threads(threads)
        hand_sps.append(steady(stamps, set())[0])
        diff = compare_weights(tr["weights"], weights)
        # The trainer logs interval means; the hand loop's per-step losses averaged the same way.
        every = cfg.train.log_every
        hand_means = [
            # summed in step order and divided, as the trainer does
            sum(losses[a : a + every]) / len(losses[a : a + every])
            for a in range(0, len(losses), every)
        ]
        loss_diff = max(abs(x - y) for x, y in zip(tr["interval_losses"], hand_means, strict=True))
    return {
        "config": name,
        "overrides": overrides,
        "steps": steps,
        "batch_size": cfg.train.batch_size,
        "num_threads": cfg.train.num_threads,
        "repeats": repeats,
        "trainer_steps_per_s": max(trainer_sps),
        "hand_steps_per_s": max(hand_sps),
        "ratio": max(trainer_sps) / max(hand_sps),
        "trainer_all": trainer_sps,
        "hand_all": hand_sps,
        "eval_seconds_median": statistics.median(evals) if evals else None,
        "evaluations_per_run": len(evals) // repeats,
        "periodic_gap_extra_seconds_median": statistics.median(extra) if extra else None,
        "periodic_steps": sorted(periodic),
        "max_weight_diff": diff,
        "max_interval_loss_diff": loss_diff,
    }


def to_markdown(machine: dict[str, Any], rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Trainer overhead: `mmgeom train` vs a hand-written loop",
        "",
        describe(machine),
        "",
        f"Command: `{command}`",
        "",
        "Steady-state steps/s (best of the interleaved repeats, warm-up and periodic eval/checkpoint gaps "
        "left out); the trainer with metrics.jsonl, the tqdm bar and its checks, the hand loop minimal. "
        "Same model, loss, optimizer, schedule, batches and seed; the weights are compared at the end.",
        "",
        "| config | batch | steps | trainer steps/s | hand loop steps/s | ratio (target >= 0.9) | "
        "weights max diff | eval s (each) | periodic eval+ckpt extra s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ev = "-" if r["eval_seconds_median"] is None else f"{r['eval_seconds_median']:.2f}"
        ex = (
            "-"
            if r["periodic_gap_extra_seconds_median"] is None
            else f"{r['periodic_gap_extra_seconds_median']:.2f}"
        )
        lines.append(
            f"| {r['config']} | {r['batch_size']} | {r['steps']} | {r['trainer_steps_per_s']:.1f} | "
            f"{r['hand_steps_per_s']:.1f} | {r['ratio']:.3f} | {r['max_weight_diff']:.1e} | {ev} | {ex} |"
        )
    lines += [
        "",
        "Eval s: one evaluation (retrieval over every view pair, diagnostics, classification) on the eval "
        "split. Periodic extra: the gap of a step followed by a periodic evaluation and/or checkpoint, "
        "minus a steady step (b1024: steps " + ", ".join(str(s) for s in rows[-1]["periodic_steps"]) + ").",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 steps, 1 repeat, print only")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    steps = {"demo": 40, "b1024": 40} if args.quick else {"demo": 300, "b1024": 200}
    machine = machine_info()
    rows = []
    for name in args.configs:
        row = bench_config(name, CONFIGS[name], steps[name], repeats)
        print(json.dumps({k: v for k, v in row.items() if k != "periodic_steps"}))
        rows.append(row)
    command = "python benchmarks/bench_trainer.py" + (" --quick" if args.quick else "")
    if args.repeats:
        command += f" --repeats {args.repeats}"
    md = to_markdown(machine, rows, command)
    print(md)
    if not args.quick:
        md_path, json_path = result_paths("trainer")
        md_path.write_text(md, encoding="utf-8")
        json_path.write_text(json.dumps({"machine": machine, "command": command, "rows": rows}, indent=1))
        write_index("trainer", "Trainer overhead")


if __name__ == "__main__":
    main()

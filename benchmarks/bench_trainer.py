"""Steps/s of ``mmgeom train`` against a minimal hand-written loop with the same model, loss and batches.

Two configs: ``demo`` (the packaged ``configs/demo.yaml`` as ``mmgeom demo --loss infonce`` trains it:
six mfeat views, MLP heads, InfoNCE over 15 pairs, batch 256, 300 steps, one thread) and ``b1024`` (the
same with batch 1024, a periodic evaluation and checkpoint every 60 steps).

The trainer runs through the public API the CLI uses (``Trainer(cfg, out, progress=True).fit()``), with
its defaults: ``metrics.jsonl``, the tqdm bar (to ``/dev/null``: formatted and written, not shown), its
non-finite checks, evaluations and checkpoints as the config says.

The hand loop is written here from torch only: the model from :mod:`mmgeom.models`, the loss from
:func:`mmgeom.losses.create_loss`, ``torch.optim.AdamW``, its own warm-up + cosine ``LambdaLR``, the
batch order computed here with NumPy (``default_rng([seed, epoch]).permutation``), clipping with
``clip_grad_norm_``; it keeps each step's loss as a tensor (no host sync, no logging).

Lock-step timing: the machines these benchmarks run on are shared, and whole runs timed one after the
other differed by 1.7x for the same code. So the two loops run interleaved step by step in one process:
a trainer subclass (the only instrumentation) runs one hand-loop update on entering each of its own
``update`` calls and stamps the clock around it. An update's time is then the hand step's own stamps, or
for the trainer from the end of the hand step to the next entry, which includes everything ``fit`` does
after an update (logging, progress, signal check). Load hits both loops alike within a step. Steady
state: updates after ``WARMUP``, leaving out those followed by a periodic evaluation or checkpoint (their
extra time is reported separately); the ratio is the median over the repeats.

Both loops start from the same seed (the configs draw no random numbers while training, so sharing the
global generator does not matter), and the benchmark stops unless they end with bit-identical weights
(``torch.equal`` on every tensor) and the same logged interval losses: the comparison is of the same
computation.

Usage:
    python benchmarks/bench_trainer.py            # demo 300 steps, b1024 120 steps, 3 repeats each;
                                                  # writes benchmarks/results/trainer/<cpu-slug>.{md,json}
    python benchmarks/bench_trainer.py --quick    # 40 steps, 1 repeat, prints only (~1 min)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import timeit
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
    "b1024": ["train.batch_size=1024", "train.eval_every=60", "checkpoint.every=60"],
}


# ------------------------------------------------------------------------------------------ hand loop


class HandLoop:
    """The minimal loop, one update per :meth:`step`; built from torch and mmgeom's model and loss only."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
        # The trainer seeds torch before building the data and the heads; the data draws nothing from it.
        torch.manual_seed(t.seed)
        split = split_and_standardize(
            load_dataset(d.dataset, d.views), d.fractions, d.split_seed, d.standardize
        )
        self.views = dict(split.train.views)
        self.n, self.batch, self.seed = len(split.train), t.batch_size, t.seed
        self.encoder = MultiViewEncoder.from_dims(split.train.view_dims, m.head, m.out_dim, **m.head_kwargs())
        self.loss = create_loss(cfg.loss.name, **cfg.loss.kwargs)
        self.loss.check_values = False  # as the trainer runs it (no-op on a loss without the switch)
        self.params = [p for mod in (self.encoder, self.loss) for p in mod.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        total, warm = t.steps, o.warmup_steps

        def factor(s: int) -> float:  # linear warm-up, then cosine to min_lr (docs/training.md)
            if s < warm:
                return (s + 1) / warm
            p = (s - warm) / max(1, total - warm)
            return (o.min_lr + (o.lr - o.min_lr) * 0.5 * (1 + math.cos(math.pi * p))) / o.lr

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.clip = o.grad_clip if o.grad_clip is not None else math.inf
        self.order = np.empty(0, np.int64)
        self.done = 0
        self.losses: list[torch.Tensor] = []
        self.encoder.train()

    def step(self) -> None:
        epoch, pos = divmod(self.done, self.n // self.batch)
        if pos == 0:
            self.order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        idx = torch.from_numpy(self.order[pos * self.batch : (pos + 1) * self.batch])
        emb = self.encoder({v: x[idx] for v, x in self.views.items()})
        out = self.loss(emb)
        self.opt.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        self.sched.step()
        self.losses.append(out.total.detach())  # kept as a tensor: no host sync
        self.done += 1


# -------------------------------------------------------------------------------------------- trainer


class _LockStep(Trainer):
    """The trainer, running one hand-loop step right before each of its own, timing both."""

    def __init__(self, *args: Any, hand: HandLoop, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hand = hand
        self.entered: list[float] = []  # entering update(): the previous trainer step ended here
        self.hand_done: list[float] = []  # the hand step ended, the trainer step begins
        self.eval_seconds: list[float] = []

    def update(self) -> StepValues:
        # update(), not train_step(): overriding train_step makes fit() take the float path (a hook)
        self.entered.append(time.perf_counter())
        self.hand.step()
        self.hand_done.append(time.perf_counter())
        return super().update()

    def evaluate(self, split: str | None = None) -> dict[str, float]:
        began = time.perf_counter()
        try:
            return super().evaluate(split)
        finally:
            self.eval_seconds.append(time.perf_counter() - began)


def lockstep_run(cfg: ExperimentConfig) -> dict[str, Any]:
    """One ``fit`` of the trainer with the hand loop stepping in lock-step; times and final states."""
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as null:
        with contextlib.redirect_stderr(null):
            trainer = _LockStep(cfg, Path(tmp) / "run", progress=True, hand=HandLoop(cfg))
            trainer.fit()
        events = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    periodic = periodic_steps(cfg)
    entered, hand_done = trainer.entered, trainer.hand_done
    # Update i (1-based) runs from hand_done[i-1] to entered[i], with everything fit() does after it.
    trainer_gaps = {i: entered[i] - hand_done[i - 1] for i in range(1, len(entered))}
    hand_gaps = {i: hand_done[i - 1] - entered[i - 1] for i in range(1, len(entered) + 1)}
    steady_steps = [i for i in trainer_gaps if i > WARMUP and i not in periodic]
    trainer_s = sum(trainer_gaps[i] for i in steady_steps)
    hand_s = sum(hand_gaps[i] for i in steady_steps)
    median = statistics.median(trainer_gaps[i] for i in steady_steps)
    return {
        "trainer_steps_per_s": len(steady_steps) / trainer_s,
        "hand_steps_per_s": len(steady_steps) / hand_s,
        "periodic_extra_seconds": [trainer_gaps[i] - median for i in sorted(periodic) if i in trainer_gaps],
        "eval_seconds": trainer.eval_seconds,
        "trainer_weights": dict(trainer.encoder.state_dict()),
        "hand_weights": dict(trainer.hand.encoder.state_dict()),
        "interval_losses": [e["loss"] for e in events if e["event"] == "train"],
        "hand_losses": [float(v) for v in trainer.hand.losses],
    }


# ------------------------------------------------------------------------------------------- analysis


def periodic_steps(cfg: ExperimentConfig) -> set[int]:
    """Updates after which fit() evaluates or writes a checkpoint (not the final ones)."""
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
    # Lock-step shares the global RNG between the two loops: only configs that draw nothing while training.
    assert cfg.model.dropout == 0.0, "lock-step timing needs a config without dropout"
    runs = []
    for _ in range(repeats):
        run = lockstep_run(cfg)
        diff = compare_weights(run["trainer_weights"], run["hand_weights"])
        every, losses = cfg.train.log_every, run["hand_losses"]
        # The trainer logs interval means: the hand loop's per-step losses summed in order and divided.
        hand_means = [sum(losses[a : a + every]) / len(losses[a : a + every]) for a in range(0, steps, every)]
        loss_diff = max(abs(x - y) for x, y in zip(run["interval_losses"], hand_means, strict=True))
        if diff != 0.0 or loss_diff != 0.0:
            raise SystemExit(
                f"{name}: the trainer and the hand loop diverged (weights {diff:.3e}, interval losses "
                f"{loss_diff:.3e}): the comparison would not be of the same computation"
            )
        runs.append(run)
    ratios = [r["trainer_steps_per_s"] / r["hand_steps_per_s"] for r in runs]
    best = max(runs, key=lambda r: r["trainer_steps_per_s"] / r["hand_steps_per_s"])
    extra = [x for r in runs for x in r["periodic_extra_seconds"]]
    evals = [x for r in runs for x in r["eval_seconds"]]
    return {
        "config": name,
        "overrides": overrides,
        "steps": steps,
        "batch_size": cfg.train.batch_size,
        "num_threads": cfg.train.num_threads,
        "repeats": repeats,
        "trainer_steps_per_s": statistics.median(r["trainer_steps_per_s"] for r in runs),
        "hand_steps_per_s": statistics.median(r["hand_steps_per_s"] for r in runs),
        "ratio": statistics.median(ratios),
        "ratio_all": ratios,
        "ratio_best": best["trainer_steps_per_s"] / best["hand_steps_per_s"],
        "eval_seconds_median": statistics.median(evals) if evals else None,
        "evaluations_per_run": len(evals) // repeats,
        "periodic_extra_seconds_median": statistics.median(extra) if extra else None,
        "periodic_steps": sorted(periodic_steps(cfg)),
        "max_weight_diff": 0.0,
        "max_interval_loss_diff": 0.0,
    }


def to_markdown(machine: dict[str, Any], rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Trainer overhead: `mmgeom train` vs a hand-written loop",
        "",
        describe(machine),
        "",
        f"Command: `{command}`",
        "",
        "Steady-state steps/s, the two loops in lock-step (one hand-loop update right before each trainer "
        "update, in the same process and thread count; warm-up and the periodic evaluation/checkpoint "
        "steps left out); median over the repeats. The trainer runs `Trainer(cfg, out, progress=True).fit()` "
        "as `mmgeom train` does, with metrics.jsonl, the tqdm bar (to /dev/null) and its non-finite checks; "
        "the hand loop is minimal. Same model, loss, optimizer, schedule, batches and seed: the benchmark "
        "stops unless both end with bit-identical weights and the same logged interval losses.",
        "",
        "| config | batch | steps | trainer steps/s | hand loop steps/s | ratio (target >= 0.9) | "
        "ratio per repeat | one evaluation, s | periodic eval + checkpoint, extra s |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        ev = "-" if r["eval_seconds_median"] is None else f"{r['eval_seconds_median']:.2f}"
        extra = r["periodic_extra_seconds_median"]
        ex = "-" if extra is None else f"{extra:.2f} (after step {', '.join(map(str, r['periodic_steps']))})"
        each = ", ".join(f"{x:.3f}" for x in r["ratio_all"])
        lines.append(
            f"| {r['config']} | {r['batch_size']} | {r['steps']} | {r['trainer_steps_per_s']:.2f} | "
            f"{r['hand_steps_per_s']:.2f} | {r['ratio']:.3f} | {each} | {ev} | {ex} |"
        )
    lines += [
        "",
        "One evaluation: retrieval over every view pair, the geometry diagnostics and the centroid "
        "classification on the eval split (the demo evaluates before and after training). Periodic extra: "
        "how much longer the step followed by a periodic evaluation and checkpoint took than the median "
        "step; the checkpoint's share is that minus one evaluation.",
        "",
    ]
    return "\n".join(lines)


def per_step_pieces(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Microseconds of the trainer's per-update bookkeeping, each before this branch's change and now.

    Measured on one demo-config batch (six views of 256 x 64 embeddings, InfoNCE with 16 logged values):
    the per-view finiteness search (what every update ran before; now only the fallback) against the
    fused check, reading the loss values with ``DistributedLoss.log_scalars`` against ``loss_values``,
    ``train()`` on the encoder and loss against the flat mode check, the old and new ``loss_fault``.
    """
    from mmgeom.distributed import DistributedLoss
    from mmgeom.train.faults import Fault, all_finite, first_non_finite
    from mmgeom.train.step_values import loss_values

    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.train.num_threads or threads)
    try:
        hand = HandLoop(cfg)
        idx = torch.arange(cfg.train.batch_size)
        emb = {v: z.detach() for v, z in hand.encoder({v: x[idx] for v, x in hand.views.items()}).items()}
        out = hand.loss(emb)
        call = DistributedLoss(hand.loss)
        modules = [*hand.encoder.modules(), *hand.loss.modules()]

        def per_view() -> Fault | None:
            for view, z in emb.items():
                bad = first_non_finite(z)
                if bad is not None:
                    return Fault(view, bad)
            return None

        def old_loss_fault() -> bool:
            return bool(torch.isfinite(out.total.detach()).all())

        pairs = [
            ("embeddings finite", per_view, lambda: all_finite(list(emb.values()))),
            ("loss finite", old_loss_fault, lambda: math.isfinite(float(out.total.detach()))),
            ("logged values", lambda: call.log_scalars(out), lambda: loss_values(out, on_device=False)),
            (
                "training mode",
                lambda: (hand.encoder.train(), hand.loss.train()),
                lambda: all(m.training for m in modules),
            ),
        ]
        rows = []
        for name, before, now in pairs:
            times = []
            for fn in (before, now):
                fn()
                times.append(min(timeit.repeat(fn, number=200, repeat=5)) / 200 * 1e6)
            rows.append({"piece": name, "before_us": times[0], "now_us": times[1]})
        return rows
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 steps, 1 repeat, print only")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    steps = {"demo": 40, "b1024": 40} if args.quick else {"demo": 300, "b1024": 120}
    machine = machine_info()
    rows = []
    for name in args.configs:
        row = bench_config(name, CONFIGS[name], steps[name], repeats)
        print(json.dumps({k: v for k, v in row.items() if k != "periodic_steps"}))
        rows.append(row)
    command = "python benchmarks/bench_trainer.py" + (" --quick" if args.quick else "")
    if args.repeats:
        command += f" --repeats {args.repeats}"
    pieces = per_step_pieces(demo_config())
    md = to_markdown(machine, rows, command)
    md += (
        "\nPer-update bookkeeping of the trainer, before this change and now (demo config, one batch; "
        "microseconds, best of 5 x 200 calls):\n\n| piece | before, us | now, us |\n|---|---:|---:|\n"
        + "".join(f"| {p['piece']} | {p['before_us']:.1f} | {p['now_us']:.1f} |\n" for p in pieces)
    )
    print(md)
    if not args.quick:
        md_path, json_path = result_paths("trainer")
        md_path.write_text(md, encoding="utf-8")
        record = {"machine": machine, "command": command, "rows": rows, "per_update_pieces": pieces}
        json_path.write_text(json.dumps(record, indent=1))
        write_index("trainer", "Trainer overhead")


if __name__ == "__main__":
    main()

"""Count the aten operators of one forward + backward of a loss and of its plain transcription.

Wall time on a shared machine is noisy; operator counts and per-operator self times are not (much), so
this is how the per-call differences in ``bench_losses.py`` were traced (GRAM's batched 2 x 2 algebra,
L2Dir's repeated norms).

Usage:
    python benchmarks/profile_loss_ops.py gram 3 64        # case label (bench_losses.CASES), M, B
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_losses as bl
from mmgeom.losses import create_loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=[c[0] for c in bl.CASES])
    parser.add_argument("modalities", type=int)
    parser.add_argument("batch", type=int)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    label, name, kwargs, plain = next(c for c in bl.CASES if c[0] == args.case)
    batch = bl.make_batch(args.batch, args.dim, args.modalities)
    off = create_loss(name, check_values=False, **kwargs)
    fns = {"plain": lambda: plain(batch), "mmgeom (checks off)": lambda: off(batch).total}
    for key, fn in fns.items():
        for _ in range(3):
            bl._step(fn, batch)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(args.steps):
                bl._step(fn, batch)
        self_us: collections.Counter[str] = collections.Counter()
        calls: collections.Counter[str] = collections.Counter()
        for e in prof.events():
            if e.name.startswith("aten::"):
                self_us[e.name] += e.self_cpu_time_total / args.steps
                calls[e.name] += 1 / args.steps
        print(f"== {label} {key}: {sum(calls.values()):.0f} aten calls per step (nested included)")
        for op, t in self_us.most_common(15):
            print(f"   {op:40s} {calls[op]:6.1f} calls {t:9.1f} us self")
    return 0


if __name__ == "__main__":
    sys.exit(main())

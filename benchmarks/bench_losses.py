"""Per-call cost of every registered loss against a plain PyTorch transcription of the same formula.

Each case times forward + backward of the mmgeom loss (value checks off, ``check_values=False``, and on)
and of a plain transcription written here, independent of mmgeom (about ten lines each, what a user would
write by hand). Timings are interleaved (plain, off, on, plain, off, on, ...) so that load drift on a
shared machine hits all three alike; the medians over many repeats are compared. Before timing, each
transcription is checked to give the mmgeom loss's value (the comparison is of the same formula).

Target (issue 19): mmgeom / plain <= 1.15 with checks off and <= 1.5 with checks on, at B in {64, 256},
M in {2, 3}, D = 512.

Usage:
    python benchmarks/bench_losses.py                  # full grid, 1 and 2 threads; writes results
    python benchmarks/bench_losses.py --quick          # few repeats, prints only
    python benchmarks/bench_losses.py --threads 1      # one thread count only
    python benchmarks/bench_losses.py --quick --losses gram l2dir   # only these cases (labels)

Results go to ``benchmarks/results/losses/<cpu-slug>.{md,json}`` (see ``_machine.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, machine_info, result_paths, write_index
from mmgeom.losses import create_loss

NAMES = ["text", "image", "audio"]
Batch = dict[str, Tensor]


# --- plain transcriptions (no mmgeom) ------------------------------------------------------------------
#: The scalars the registered losses learn by default (GRAM's temperature, SigLIP's scale and bias), as a
#: user writes them: leaf tensors, ``exp()`` inside the loss (CLIP-style code clamps the log-scale in the
#: training loop, outside the loss; mmgeom clamps it inside). Their gradients accumulate across calls, as
#: those of the losses' own parameters do here.
GRAM_LOG_SCALE = torch.tensor(math.log(1 / 0.07), requires_grad=True)
SIGLIP_LOG_SCALE = torch.tensor(math.log(10.0), requires_grad=True)
SIGLIP_BIAS = torch.tensor(-10.0, requires_grad=True)


def _unit(batch: Batch) -> list[Tensor]:
    return [nnf.normalize(z, dim=1) for z in batch.values()]


def _pairs(m: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(m) for j in range(i + 1, m)]


def _clip(a: Tensor, b: Tensor, tau: float) -> Tensor:
    logits = a @ b.T / tau
    t = torch.arange(a.shape[0])
    return 0.5 * (nnf.cross_entropy(logits, t) + nnf.cross_entropy(logits.T, t))


def _unif(z: Tensor, t: float) -> Tensor:
    # Wang & Isola's published one-liner (the mean over i < j equals the mean over i != j).
    return torch.pdist(z, p=2).pow(2).mul(-t).exp().mean().log()


def plain_infonce(batch: Batch) -> Tensor:
    zs = _unit(batch)
    return sum(_clip(zs[i], zs[j], 0.07) for i, j in _pairs(len(zs))) / len(_pairs(len(zs)))


def plain_siglip(batch: Batch) -> Tensor:
    zs, total = _unit(batch), 0.0
    for i, j in _pairs(len(zs)):
        logits = SIGLIP_LOG_SCALE.exp() * zs[i] @ zs[j].T + SIGLIP_BIAS
        sign = 2 * torch.eye(logits.shape[0]) - 1
        total = total - nnf.logsigmoid(sign * logits).sum() / logits.shape[0]
    return total / len(_pairs(len(zs)))


def plain_align_uniform(batch: Batch) -> Tensor:
    zs = _unit(batch)
    align = sum((zs[i] - zs[j]).pow(2).sum(1).mean() for i, j in _pairs(len(zs))) / len(_pairs(len(zs)))
    return align + sum(_unif(z, 2.0) for z in zs) / len(zs)


def plain_gram(batch: Batch) -> Tensor:
    a, *others = _unit(batch)
    crosses = [a @ o.T for o in others]
    if len(others) == 1:
        det = 1 - crosses[0] ** 2
    else:  # det [[1, s1, s2], [s1, 1, c], [s2, c, 1]] with c = <o1_j, o2_j>
        c = (others[0] * others[1]).sum(1)[None, :]
        s1, s2 = crosses
        det = 1 - s1**2 - s2**2 - c**2 + 2 * s1 * s2 * c
    logits = -det.clamp_min(1e-12).sqrt() * GRAM_LOG_SCALE.exp()
    t = torch.arange(a.shape[0])
    ce = nnf.cross_entropy(logits, t, label_smoothing=0.1) + nnf.cross_entropy(
        logits.T, t, label_smoothing=0.1
    )
    return 0.5 * ce


def plain_unialign(batch: Batch, centroid: bool = False, vol: float = 0.0) -> Tensor:
    zs = _unit(batch)
    uniform = sum(_unif(z, 2.0) for z in zs) / len(zs)
    stacked = torch.stack(zs, 1)
    if centroid:
        align = (stacked - stacked.mean(1, keepdim=True)).pow(2).sum(-1).mean()
    else:
        align = sum((zs[0] - z).pow(2).sum(1).mean() for z in zs[1:]) / (len(zs) - 1)
    total = uniform + align
    if vol:
        c = nnf.normalize(stacked.mean(1), dim=1)
        total = total + vol * (_unif(c, 2.0) + torch.linalg.det(stacked @ stacked.transpose(1, 2)).mean())
    return total


def plain_dagr(batch: Batch, spectral: bool = False) -> Tensor:
    zs = _unit(batch)
    if spectral:
        disp = 0.0
        for z in zs:
            x = z - z.mean(0, keepdim=True)
            s = torch.linalg.eigvalsh(x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T).clamp_min(0)
            p = s / s.sum()
            disp = disp + (p * p.clamp_min(1e-12).log()).sum()
    else:
        disp = sum(_unif(z, 1.0) for z in zs)
    hinge = sum(torch.relu((zs[i] - zs[j]).pow(2).sum(1) - 0.5).mean() for i, j in _pairs(len(zs)))
    return 0.1 * disp + hinge / len(_pairs(len(zs)))


def plain_l2dir(batch: Batch) -> Tensor:
    raw, zs = list(batch.values()), _unit(batch)
    total = 0.0
    for i, j in _pairs(len(zs)):
        u, v = raw[i], raw[j]  # u = ||h|| * h / ||h||: the raw vectors
        tn = (u - v).norm(dim=1) / (u.norm(dim=1) + v.norm(dim=1))
        total = total + _clip(zs[i], zs[j], 0.07) + tn.mean()
    return total / len(_pairs(len(zs)))


#: (label, registered name, create_loss keywords, plain transcription) — one per distinct code path.
CASES: list[tuple[str, str, dict[str, object], Callable[[Batch], Tensor]]] = [
    ("infonce", "infonce", {}, plain_infonce),
    ("siglip", "siglip", {}, plain_siglip),
    ("align_uniform", "align_uniform", {}, plain_align_uniform),
    ("gram", "gram", {}, plain_gram),
    ("unialign", "unialign", {}, plain_unialign),
    ("unialign[retrieval]", "unialign", {"preset": "retrieval"}, lambda b: plain_unialign(b, vol=1.0)),
    ("unialign[centroid]", "unialign", {"alignment": "centroid"}, lambda b: plain_unialign(b, centroid=True)),
    ("dagr", "dagr", {}, plain_dagr),
    ("dagr[spectral]", "dagr", {"dispersion": "spectral"}, lambda b: plain_dagr(b, spectral=True)),
    ("l2dir", "l2dir", {}, plain_l2dir),
]


#: What each plain transcription computes (written into the result file), per pair of modalities
#: (``pairs``: all M(M-1)/2 pairs, as the registered defaults) unless said otherwise. Each computes the
#: same terms as the mmgeom path; mmgeom additionally returns detached logging terms.
PLAIN_DOC: dict[str, str] = {
    "infonce": "symmetric CLIP cross-entropy of `z_i z_j^T / 0.07` (fixed tau, as the default), "
    "mean over pairs",
    "siglip": "sigmoid loss `-sum log sigmoid(y (exp(t') z_i z_j^T + b)) / B` with learnable `t'`, `b` "
    "(leaf tensors, as the default), mean over pairs",
    "align_uniform": "mean over pairs of the mean squared distance of positives + mean over modalities of "
    "Wang & Isola's `pdist` uniformity (t = 2)",
    "gram": "anchor = first modality; B x B Gram determinants `1 - s1^2 [- s2^2 - c^2 + 2 s1 s2 c]` of "
    "(anchor row i, others' row j), volume `sqrt(max(det, 1e-12))`, logits `-V exp(ln(1/tau))` with a "
    "learnable log-scale (as the default), label-smoothed (0.1) cross-entropy both ways",
    "unialign": "mean `pdist` uniformity over modalities + anchor alignment (first modality vs each other)",
    "unialign[retrieval]": "unialign + centroid uniformity of the normalised tuple means + mean Gram "
    "determinant of each row's M-tuple (`torch.linalg.det`)",
    "unialign[centroid]": "mean `pdist` uniformity + squared distance of each modality to the tuple mean",
    "dagr": "0.1 x sum of `pdist` dispersions (t = 1) + mean over pairs of `relu(||z_i - z_j||^2 - 0.5)`",
    "dagr[spectral]": "as dagr with the spectral entropy of each centred modality (`eigvalsh`) as dispersion",
    "l2dir": "per pair: CLIP cross-entropy of the directions (tau 0.07) + mean TN distance "
    "`||h_i - h_j|| / (||h_i|| + ||h_j||)` of the raw vectors; mean over pairs",
}


def make_batch(b: int, d: int, m: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return {NAMES[k]: torch.randn(b, d, generator=g).requires_grad_() for k in range(m)}


def _step(fn: Callable[[], Tensor], batch: Batch) -> float:
    for z in batch.values():
        z.grad = None
    t0 = time.perf_counter()
    fn().backward()
    return time.perf_counter() - t0


def time_case(
    label: str,
    name: str,
    kwargs: dict[str, object],
    plain: Callable[[Batch], Tensor],
    batch: Batch,
    repeats: int,
) -> dict[str, object]:
    off = create_loss(name, check_values=False, **kwargs)
    on = create_loss(name, check_values=True, **kwargs)
    ours = float(off(batch).total.detach())
    ref = float(plain(batch).detach())
    if not math.isclose(ours, ref, rel_tol=1e-4, abs_tol=1e-5):
        raise AssertionError(f"{label}: plain transcription gives {ref}, mmgeom {ours}: not the same formula")
    fns = {
        "plain": lambda: plain(batch),
        "off": lambda: off(batch).total,
        "on": lambda: on(batch).total,
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(3, repeats // 10)):  # warm-up: allocator, kernels, lazy state
        for fn in fns.values():
            _step(fn, batch)
    for _ in range(repeats):
        for k, fn in fns.items():  # interleaved: drift hits all three alike
            times[k].append(_step(fn, batch))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "loss": label,
        "plain_ms": med["plain"] * 1e3,
        "off_ms": med["off"] * 1e3,
        "on_ms": med["on"] * 1e3,
        "ratio_off": med["off"] / med["plain"],
        "ratio_on": med["on"] / med["plain"],
        "repeats": repeats,
        "value": ours,
    }


def run(
    threads: list[int],
    sizes: list[int],
    ms: list[int],
    dim: int,
    repeats: int,
    cases: list[tuple[str, str, dict[str, object], Callable[[Batch], Tensor]]] = CASES,
) -> list[dict[str, object]]:
    rows = []
    for nt in threads:
        torch.set_num_threads(nt)
        for m in ms:
            for b in sizes:
                batch = make_batch(b, dim, m)
                reps = repeats if b <= 256 else max(5, repeats // 10)
                for label, name, kwargs, plain in cases:
                    r = {"threads": nt, "M": m, "B": b, "D": dim}
                    r.update(time_case(label, name, kwargs, plain, batch, reps))
                    rows.append(r)
                    print(
                        f"threads={nt} M={m} B={b:4d} {label:20s} plain {r['plain_ms']:7.3f} ms  "
                        f"off x{r['ratio_off']:.2f}  on x{r['ratio_on']:.2f}",
                        flush=True,
                    )
    return rows


def to_markdown(res: dict[str, object]) -> str:
    rows = res["rows"]
    assert isinstance(rows, list)
    worst_off = max(r["ratio_off"] for r in rows)
    worst_on = max(r["ratio_on"] for r in rows)
    out = [
        "# Loss per-call cost: mmgeom vs a plain PyTorch transcription (forward + backward)",
        "",
        describe(res["machine"]),  # type: ignore[arg-type]
        "",
        f"Command: `{res['command']}`. Medians of interleaved repeats (plain, checks off, checks on); "
        "ratio = mmgeom / plain (same run, same batch). Targets (issue 19): <= 1.15x with "
        "`check_values=False`, <= 1.5x with checks on. The machine line gives torch's default thread "
        "count; each column ran at its own `t=`. The plain uniformity is Wang & Isola's `pdist` one-liner, "
        "so ratios well below 1 (align_uniform, unialign, dagr) measure the Gram-matrix algorithm, "
        "not wrapper overhead.",
        "",
        f"**Worst ratio: {worst_off:.2f}x with checks off, {worst_on:.2f}x with checks on.**",
        "",
    ]
    keys = sorted({(r["threads"], r["M"], r["B"]) for r in rows})
    out += [
        "| loss | " + " | ".join(f"t={t} M={m} B={b}" for t, m, b in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for label in dict.fromkeys(r["loss"] for r in rows):
        cells = []
        for t, m, b in keys:
            r = next(x for x in rows if x["loss"] == label and (x["threads"], x["M"], x["B"]) == (t, m, b))
            cells.append(f"{r['plain_ms']:.2f} ms: {r['ratio_off']:.2f}x / {r['ratio_on']:.2f}x")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "Cells: plain transcription time; ratio with checks off / on.", ""]
    out += ["Plain transcriptions:", ""]
    out += [f"- {label}: {PLAIN_DOC[label]}." for label in dict.fromkeys(r["loss"] for r in rows)]
    out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, print only")
    parser.add_argument("--threads", type=int, nargs="+", help="torch thread counts (default 1 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="batch sizes")
    parser.add_argument("--modalities", type=int, nargs="+", default=[2, 3], help="values of M")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, help="timed repeats per case (default 200, quick 20)")
    parser.add_argument("--losses", nargs="+", help="case labels to run (default: all); implies print only")
    args = parser.parse_args()
    cases = CASES
    if args.losses:
        unknown = sorted(set(args.losses) - {c[0] for c in CASES})
        if unknown:
            parser.error(f"--losses: unknown case labels {unknown}; expected some of {[c[0] for c in CASES]}")
        cases = [c for c in CASES if c[0] in args.losses]
    threads = args.threads or [1, 2]
    repeats = args.repeats or (20 if args.quick else 200)
    machine = machine_info()
    rows = run(threads, args.sizes, args.modalities, args.dim, repeats, cases)
    res = {
        "command": " ".join(["python", "benchmarks/bench_losses.py", *sys.argv[1:]]),
        "machine": machine,
        "rows": rows,
    }
    if args.quick or args.losses:  # a partial grid never replaces the committed full one
        print(to_markdown(res))
        return 0
    md, js = result_paths("losses")
    js.write_text(json.dumps(res, indent=2))
    md.write_text(to_markdown(res))
    write_index("losses", "Loss cost")
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

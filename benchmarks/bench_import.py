"""Throughput and peak memory of ``mmgeom import`` (issue 16 targets).

Run ``python benchmarks/bench_import.py`` (1M rows, a few minutes) or ``--quick`` (a smoke run on 20k
rows that writes to a temporary folder unless ``--out`` is given).

What it measures, on one disk (a temporary folder under ``--work``):

* **precomputed embeddings**: the clip-retrieval layout with ``--rows`` rows x 2 modalities x 512 float16
  in 4 shards each (``img_emb/img_emb_*.npy``, ``text_emb/text_emb_*.npy``), imported by
  ``run_import`` (the library call) and by ``mmgeom import --clip-retrieval`` (the CLI, interpreter and
  torch start-up included), each in a fresh child process, durable (the default: the finished store is
  fsynced) and with ``durable=False`` / ``--no-sync`` (no fsync, like ``cp``); against ``cp -r`` of the
  same two folders (the same bytes read and written on the same disk) and ``cp -r`` followed by
  ``sync`` of the copies. The like-for-like pairs: durable import vs ``cp`` + ``sync``, ``--no-sync``
  import vs plain ``cp`` (which leaves its copy dirty in the page cache).
  Throughput = input bytes / wall time; target >= 0.5x ``cp``. Each child's own peak resident set
  (``VmHWM``, which includes the interpreter and torch) is the memory figure; target <= 512 MB. All
  run with the inputs in the page cache, after a ``sync``, alternating ``--repeats`` times (fastest
  kept), so this compares the work each does, not the disk's cold-read speed. The results go to
  ``benchmarks/results/import/<cpu-slug>.{md,json}`` (:mod:`_machine`).
* **text**: ``--text-rows`` captions in a CSV encoded by the bundled MiniLM through ``mmgeom import
  --table ... --text caption`` against :meth:`MiniLMTextEncoder.encode` called directly on the same
  sentences with the same batch size (both in this process, model loaded once beforehand); target
  >= 0.9x.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import RESULTS, describe, machine_info, result_paths, write_index  # noqa: E402


def write_inputs(root: Path, rows: int, dim: int = 512, shards: int = 4) -> int:
    rng = np.random.default_rng(0)
    bounds = np.linspace(0, rows, shards + 1).astype(int)
    total = 0
    for folder, prefix in (("img_emb", "img_emb"), ("text_emb", "text_emb")):
        (root / folder).mkdir(parents=True)
        for k in range(shards):
            n = int(bounds[k + 1] - bounds[k])
            arr = np.lib.format.open_memmap(root / folder / f"{prefix}_{k}.npy", "w+", np.float16, (n, dim))
            for a in range(0, n, 65536):  # bounded memory while generating
                arr[a : a + 65536] = rng.standard_normal((min(65536, n - a), dim), dtype=np.float32)
            arr.flush()
            del arr
            total += (root / folder / f"{prefix}_{k}.npy").stat().st_size
    return total


def _import_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd``, a Python child whose last line is ``[seconds] peak_kB``; ``(seconds, peak RSS MB)``.

    ``seconds`` is the child's own timing of the library call when it prints one, else the wall time of
    the whole child (interpreter start-up included).
    """
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    fields = done.stdout.strip().splitlines()[-1].split()
    return (float(fields[0]) if len(fields) == 2 else wall), float(fields[-1]) / 1024


# The CLI and the library call, each in a fresh interpreter that prints its own peak RSS (kB) last.
# The child's own peak resident set: VmHWM of /proc/self/status. Not ru_maxrss, which Linux carries
# over from the parent through fork + exec (the benchmark process itself, after generating the inputs).
_PEAK = "[int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]"
# The CLI and the library call, each in a fresh interpreter that prints its own peak RSS (kB) last.
_CLI = (
    "import sys; from mmgeom.cli import main; sys.argv = ['mmgeom', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    f"print({_PEAK})"
)
_LIB = (
    "import sys, time; from mmgeom.data.importers import ClipRetrievalSource, run_import; "
    "t = time.perf_counter(); "
    "run_import(ClipRetrievalSource(sys.argv[1]), sys.argv[2], durable=sys.argv[3] == 'durable'); "
    f"print(time.perf_counter() - t, {_PEAK})"
)
# What runs, in the order alternated: the references and each import (library / CLI, durable / not).
_KINDS = ("cp", "cp_sync", "lib", "lib_nosync", "cli", "cli_nosync")


def bench_embeddings(work: Path, rows: int, repeats: int = 2) -> dict:
    inputs = work / "clip"
    nbytes = write_inputs(inputs, rows)
    subprocess.run(["sync"], check=True)  # the inputs' own writeback must not land inside a timing
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cli = [sys.executable, "-c", _CLI, "import", str(work / "store"), "--clip-retrieval", str(inputs)]
    lib = [sys.executable, "-c", _LIB, str(inputs), str(work / "store")]
    children = {
        "lib": [*lib, "durable"],
        "lib_nosync": [*lib, "nosync"],
        "cli": [*cli, "--no-progress"],
        "cli_nosync": [*cli, "--no-progress", "--no-sync"],
    }
    best = dict.fromkeys(_KINDS, float("inf"))
    rss = dict.fromkeys(children, 0.0)
    copy = ["cp", "-r", str(inputs / "img_emb"), str(inputs / "text_emb"), str(work / "cp")]
    for _ in range(repeats):  # alternate, keep each one's fastest run: the machine is shared
        for what in _KINDS:
            shutil.rmtree(work / "cp", ignore_errors=True)
            shutil.rmtree(work / "store", ignore_errors=True)
            subprocess.run(["sync"], check=True)  # deletions and earlier copies written back first
            (work / "cp").mkdir()
            if what.startswith("cp"):
                t0 = time.perf_counter()
                subprocess.run(copy, check=True)
                if what == "cp_sync":  # fsync of the copied files (coreutils `sync FILE...`)
                    subprocess.run(["sync", *map(str, (work / "cp").rglob("*.npy"))], check=True)
                best[what] = min(best[what], time.perf_counter() - t0)
            else:
                wall, peak = _import_child(children[what], env)
                best[what] = min(best[what], wall)
                rss[what] = max(rss[what], peak)
    shutil.rmtree(work / "cp", ignore_errors=True)
    shutil.rmtree(work / "store", ignore_errors=True)
    mb = nbytes / 1e6
    out = {
        "rows": rows,
        "modalities": 2,
        "dim": 512,
        "dtype": "float16",
        "input_bytes": nbytes,
        "repeats": repeats,
        "peak_rss_note": "each import child's own VmHWM (interpreter, numpy and torch included)",
    }
    for what in _KINDS:
        out[f"{what}_seconds"] = best[what]
        out[f"{what}_MBps"] = mb / best[what]
    for what in children:  # the like-for-like reference first, the other one second
        ref, other = ("cp", "cp_sync") if what.endswith("nosync") else ("cp_sync", "cp")
        out[f"{what}_ratio_to_{ref}"] = best[ref] / best[what]
        out[f"{what}_ratio_to_{other}"] = best[other] / best[what]
        out[f"{what}_peak_rss_MB"] = rss[what]
    return out


def bench_text(work: Path, rows: int, batch: int = 64) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from mmgeom.data.importers import TableSource, run_import
    from mmgeom.data.prompts import FASHION_PROMPTS
    from mmgeom.data.text_encoder import MiniLMTextEncoder

    phrases = [p for c in sorted(FASHION_PROMPTS) for p in FASHION_PROMPTS[c]]
    sentences = [f"{phrases[i % len(phrases)]} (item {i})" for i in range(rows)]
    path = work / "captions.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["caption", "vec"])
        w.writerows([s, "0 1"] for s in sentences)
    enc = MiniLMTextEncoder(batch_size=batch)
    enc.encode(sentences[:batch])  # warm-up
    t0 = time.perf_counter()
    enc.encode(sentences)
    direct_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    src = TableSource([path], texts={"caption": "text"}, embeddings={"vec": "vec"}, text_encoder=enc)
    run_import(src, work / "text.store", chunk_rows=4096)
    import_s = time.perf_counter() - t0
    return {
        "rows": rows,
        "batch_size": batch,
        "direct_seconds": direct_s,
        "import_seconds": import_s,
        "direct_rows_per_s": rows / direct_s,
        "import_rows_per_s": rows / import_s,
        "ratio_to_direct": direct_s / import_s,
    }


def _row(e: dict, what: str, label: str) -> str:
    ref, other = ("cp", "cp_sync") if what.endswith("nosync") else ("cp_sync", "cp")
    names = {"cp": "`cp -r`", "cp_sync": "`cp -r` + `sync`"}
    return (
        f"| {label} | {e['rows']:,} | {e[what + '_MBps']:.0f} MB/s ({e[what + '_seconds']:.2f} s) | "
        f"{names[ref]} {e[ref + '_MBps']:.0f} MB/s ({e[ref + '_seconds']:.2f} s) | "
        f"**{e[f'{what}_ratio_to_{ref}']:.2f}x** | {e[f'{what}_ratio_to_{other}']:.2f}x | >= 0.5x | "
        f"{e[what + '_peak_rss_MB']:.0f} MB |"
    )


def markdown(res: dict) -> str:
    e, t = res["embeddings"], res["text"]
    text_row = (
        f"| text column -> MiniLM -> store | {t['rows']:,} | {t['import_rows_per_s']:.0f} rows/s | "
        f"encoder directly {t['direct_rows_per_s']:.0f} rows/s | {t['ratio_to_direct']:.2f}x | | >= 0.9x | |"
    )
    carried = t.get("carried_from")
    clip = "npy shards (clip-retrieval layout) -> store, 2 x 512 fp16"
    return "\n".join(
        [
            "# `mmgeom import` throughput",
            "",
            f"Command: `{res['command']}`  ",
            f"{describe(res['machine'])}  ",
            f"Date: {res['date']}",
            "",
            "| what | rows | mmgeom | like-for-like reference | ratio | ratio to the other `cp` | target "
            "| peak RSS (<= 512 MB) |",
            "|---|---|---|---|---|---|---|---|",
            _row(e, "lib", f"{clip}, library call (`run_import`), durable (default)"),
            _row(e, "lib_nosync", "same, `run_import(..., durable=False)` (no fsync)"),
            _row(e, "cli", "same through the CLI (`mmgeom import --clip-retrieval`, start-up included)"),
            _row(e, "cli_nosync", "same through the CLI with `--no-sync`"),
            text_row,
            "",
            f"Times are the fastest of {e['repeats']} alternating runs of each (the machine is shared), with "
            "the inputs in the page cache and `sync` before each run. Rows whose shards already hold the "
            "store's dtype are checked for NaN/Inf by reading them in 1 MB steps and copied into the store "
            "inside the kernel (`copy_file_range`). The durable import fsyncs the store once before "
            "renaming it into place, so its like-for-like reference is `cp` + `sync` of the copies; "
            "`--no-sync` leaves the store to the kernel's writeback, as plain `cp` leaves its copy dirty "
            "in the page cache: its reference is plain `cp`. Peak RSS is each import child's own `VmHWM` "
            "(interpreter, numpy and torch included; importing torch alone is about 220 MB).",
            *(
                [
                    "",
                    f"The text row was not re-run: carried from {carried} (MiniLM dominates its time; only "
                    "the store writing it shares has changed since).",
                ]
                if carried
                else []
            ),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--text-rows", type=int, default=4096, help="0: keep this CPU's previous text result")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20k rows, 512 captions, results to a temp folder")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.text_rows = 20_000, min(args.text_rows, 512)
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else RESULTS)
    md_path, json_path = result_paths("import", out)
    machine = machine_info()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        embeddings = bench_embeddings(Path(tmp), args.rows, args.repeats)
        if args.text_rows > 0:
            text = bench_text(Path(tmp), args.text_rows)
        else:
            old = json.loads(json_path.read_text())
            first = old["text"].get("carried_from") or f"{old['date']}, `{old['command']}`"
            text = dict(old["text"], carried_from=first)
    res = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in ["benchmarks/bench_import.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "embeddings": embeddings,
        "text": text,
    }
    json_path.write_text(json.dumps(res, indent=1) + "\n")
    md_path.write_text(markdown(res))
    write_index("import", "Import throughput", out)
    print(markdown(res))


if __name__ == "__main__":
    main()

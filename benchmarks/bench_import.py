"""Throughput and peak memory of ``mmgeom import`` (issue 16 targets).

Run ``python benchmarks/bench_import.py`` (1M rows, a few minutes) or ``--quick`` (a smoke run on 20k
rows that writes to a temporary folder unless ``--out`` is given).

What it measures, on one disk (a temporary folder under ``--work``):

* **precomputed embeddings**: the clip-retrieval layout with ``--rows`` rows x 2 modalities x 512 float16
  in 4 shards each (``img_emb/img_emb_*.npy``, ``text_emb/text_emb_*.npy``), imported by
  ``mmgeom import --clip-retrieval`` in a child process; against ``cp -r`` of the same two folders (the
  same bytes read and written on the same disk). Throughput = input bytes / wall time; target >= 0.5x
  ``cp``. The child's peak resident set (``ru_maxrss``, which includes the interpreter and torch) is the
  memory figure; target <= 512 MB. Both run with the inputs in the page cache (they were just written),
  so this compares the work each does, not the disk's cold-read speed.
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
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def bench_embeddings(work: Path, rows: int) -> dict:
    inputs = work / "clip"
    nbytes = write_inputs(inputs, rows)
    (work / "cp").mkdir()
    t0 = time.perf_counter()
    subprocess.run(
        ["cp", "-r", str(inputs / "img_emb"), str(inputs / "text_emb"), str(work / "cp")], check=True
    )
    cp_s = time.perf_counter() - t0
    # The import fsyncs what it writes (a finished store survives a power cut); cp does not. So also
    # time cp followed by fsync of the copied files (coreutils `sync FILE...`), the like-for-like figure.
    copied = [str(p) for p in (work / "cp").rglob("*.npy")]
    shutil.rmtree(work / "cp")
    (work / "cp").mkdir()
    t0 = time.perf_counter()
    subprocess.run(
        ["cp", "-r", str(inputs / "img_emb"), str(inputs / "text_emb"), str(work / "cp")], check=True
    )
    subprocess.run(["sync", *copied], check=True)
    cp_sync_s = time.perf_counter() - t0
    cmd = [
        sys.executable,
        "-m",
        "mmgeom",
        "import",
        str(work / "store"),
        "--clip-retrieval",
        str(inputs),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    import_s = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # The library call alone (no interpreter/torch start-up), in a fresh child as well.
    code = (
        "import sys, time; from mmgeom.data.importers import ClipRetrievalSource, run_import; "
        "t = time.perf_counter(); run_import(ClipRetrievalSource(sys.argv[1]), sys.argv[2]); "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(inputs), str(work / "store2")],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    library_s = float(done.stdout.strip().splitlines()[-1])
    return {
        "rows": rows,
        "library_seconds": library_s,
        "library_MBps": nbytes / library_s / 1e6,
        "library_ratio_to_cp": cp_s / library_s,
        "modalities": 2,
        "dim": 512,
        "dtype": "float16",
        "input_bytes": nbytes,
        "cp_seconds": cp_s,
        "cp_sync_seconds": cp_sync_s,
        "ratio_to_cp_sync": cp_sync_s / import_s,
        "library_ratio_to_cp_sync": cp_sync_s / library_s,
        "import_seconds": import_s,
        "cp_MBps": nbytes / cp_s / 1e6,
        "import_MBps": nbytes / import_s / 1e6,
        "ratio_to_cp": cp_s / import_s,
        "peak_rss_MB": peak_kb / 1024,
        "peak_rss_note": "child ru_maxrss (max over children so far: cp and the import)" if before else "",
    }


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


def markdown(res: dict) -> str:
    e, t = res["embeddings"], res["text"]
    return "\n".join(
        [
            "# `mmgeom import` throughput",
            "",
            f"Command: `{res['command']}`  ",
            f"CPU: {res['cpu']} ({res['cores']} cores visible);"
            f" torch threads {res['torch_threads']}; {res['date']}",
            "",
            "| what | rows | mmgeom | reference | ratio | target | peak RSS |",
            "|---|---|---|---|---|---|---|",
            f"| npy shards (clip-retrieval layout) -> store, 2 x 512 fp16 | {e['rows']:,} | "
            f"{e['import_MBps']:.0f} MB/s ({e['import_seconds']:.1f} s) | `cp -r` {e['cp_MBps']:.0f} MB/s "
            f"({e['cp_seconds']:.1f} s) | {e['ratio_to_cp']:.2f}x "
            f"| >= 0.5x | {e['peak_rss_MB']:.0f} MB (target <= 512) |",
            f"| same, library call only (`run_import`, no interpreter start-up) | {e['rows']:,} | "
            f"{e['library_MBps']:.0f} MB/s ({e['library_seconds']:.1f} s) | "
            f"`cp -r` {e['cp_MBps']:.0f} MB/s | "
            f"{e['library_ratio_to_cp']:.2f}x | >= 0.5x | |",
            f"| text column -> MiniLM -> store | {t['rows']:,} | {t['import_rows_per_s']:.0f} rows/s | "
            f"encoder directly {t['direct_rows_per_s']:.0f} rows/s "
            f"| {t['ratio_to_direct']:.2f}x | >= 0.9x | |",
            "",
            f"Like for like (the import fsyncs what it writes): `cp -r` then `sync` of the copied files "
            f"took {e['cp_sync_seconds']:.1f} s; against it the CLI import is {e['ratio_to_cp_sync']:.2f}x "
            f"and the library call {e['library_ratio_to_cp_sync']:.2f}x.",
            "",
            "Peak RSS is the import child process's `ru_maxrss` (interpreter, numpy and torch included).",
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--text-rows", type=int, default=4096)
    ap.add_argument("--quick", action="store_true", help="20k rows, 512 captions, results to a temp folder")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.text_rows = 20_000, 512
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else ROOT / "benchmarks" / "results")
    import torch

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        res = {
            "command": "python "
            + " ".join(shlex.quote(a) for a in ["benchmarks/bench_import.py", *sys.argv[1:]]),
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"),
            "embeddings": bench_embeddings(Path(tmp), args.rows),
            "text": bench_text(Path(tmp), args.text_rows),
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "import.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "import.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()

"""Which machine a benchmark ran on, and where its results go so that every CPU keeps its own.

Every benchmark in this folder calls :func:`machine_info` and records the result next to its numbers,
and writes through :func:`result_paths`, which names the files after the CPU:

    benchmarks/results/<bench>/<cpu-slug>.md
    benchmarks/results/<bench>/<cpu-slug>.json

so a run on an AMD EPYC never overwrites the figures measured on an Intel Xeon; :func:`write_index`
then rewrites ``benchmarks/results/<bench>/README.md``, one line per CPU measured, so a reader sees the
machines side by side. The slug is the CPU model name plus the widest vector ISA torch dispatches to
(``amd-epyc-avx512``), because the same marketing name covers CPUs with different kernels.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The ``model name`` line of ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def _torch_blas() -> str:
    import torch

    config = torch.__config__.show()
    match = re.search(r"BLAS_INFO=(\w+)", config)
    name = match.group(1) if match else "unknown"
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", config)
    return f"{name} {mkl.group(1)}" if (name == "mkl" and mkl) else name


def _numpy_blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    import numpy  # noqa: F401  (loads numpy's BLAS so threadpoolctl can see it)

    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in str(pool.get("filepath", "")):
            return f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')})"
    return "unknown"


def cpu_capability() -> str:
    """The vector ISA ATen dispatches to here (``AVX512``, ``AVX2``, ``DEFAULT``)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # pragma: no cover - old torch
        return "unknown"


def cpu_slug() -> str:
    """File-name key of this CPU: its model name and ISA, lower case, e.g. ``amd-epyc-avx512``."""
    model = re.sub(r"\((r|tm)\)", "", cpu_model().lower())
    model = re.sub(r"\b(processor|cpu|\d+-core)\b", " ", model)
    model = re.sub(r"@.*$", "", model)
    slug = re.sub(r"[^a-z0-9]+", "-", model).strip("-") or "unknown-cpu"
    return f"{slug}-{cpu_capability().lower()}"


def machine_info() -> dict[str, Any]:
    """CPU model, ISA, cores, thread counts, BLAS libraries and load: what a result depends on."""
    import torch

    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        load = float("nan")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "cpu_slug": cpu_slug(),
        "cpu_capability": cpu_capability(),
        "cores": affinity,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_blas": _torch_blas(),
        "numpy_blas": _numpy_blas(),
        "python": sys.version.split()[0],
        "load_average_1min": round(load, 2),
    }


def describe(info: dict[str, Any]) -> str:
    """One markdown line naming the machine (for the top of a result file)."""
    return (
        f"Machine: {info['cpu_model']} ({info['cpu_capability']}), {info['cores']} cores, "
        f"torch {info['torch']} with {info['torch_threads']} threads, torch BLAS {info['torch_blas']}, "
        f"numpy BLAS {info['numpy_blas']}, Python {info['python']}; "
        f"1-minute load average {info['load_average_1min']} at the start."
    )


def result_paths(bench: str, root: Path | None = None) -> tuple[Path, Path]:
    """``(markdown, json)`` paths of this CPU's results of ``bench``; the folder is created."""
    folder = (root or RESULTS) / bench
    folder.mkdir(parents=True, exist_ok=True)
    slug = cpu_slug()
    return folder / f"{slug}.md", folder / f"{slug}.json"


def write_index(bench: str, title: str, root: Path | None = None) -> Path:
    """Rewrite ``results/<bench>/README.md``: one row per CPU whose JSON records a machine."""
    folder = (root or RESULTS) / bench
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            machine = json.loads(path.read_text(encoding="utf-8")).get("machine", {})
        except (OSError, ValueError):
            continue
        if not isinstance(machine, dict) or "cpu_model" not in machine:
            continue
        rows.append(
            f"| [{path.stem}]({path.stem}.md) | {machine['cpu_model']} | "
            f"{machine.get('cpu_capability', '?')} | {machine.get('cores', '?')} | "
            f"{machine.get('torch_blas', '?')} |"
        )
    text = (
        f"# {title}: results per CPU\n\n"
        "Each file holds one CPU's results; a new run on another CPU adds a file and leaves these alone.\n\n"
        "| results | CPU | ISA | cores | torch BLAS |\n|---|---|---|---:|---|\n" + "\n".join(rows) + "\n"
    )
    index = folder / "README.md"
    index.write_text(text, encoding="utf-8")
    return index

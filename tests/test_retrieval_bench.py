"""Smoke run of the retrieval benchmark (``--quick``); slow, not part of ``make test``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_quick_writes_results(tmp_path):
    script = ROOT / "benchmarks" / "bench_retrieval.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, timeout=600)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _machine import cpu_slug

    res = json.loads((tmp_path / "retrieval" / f"{cpu_slug()}.json").read_text())
    methods = {r["method"] for r in res["topk"]}
    assert "mmgeom topk (torch)" in methods
    assert all(r.get("roofline_fraction", 0) >= 0 for r in res["topk"])
    assert res["metrics"][0]["values"]["hit@1"] >= 0
    assert res["machine"]["cpu_model"] and res["plan"]["backend_auto"] in ("torch", "faiss")
    text = (tmp_path / "retrieval" / f"{cpu_slug()}.md").read_text()
    assert "python benchmarks/bench_retrieval.py --quick" in text

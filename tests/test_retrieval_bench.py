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
    res = json.loads((tmp_path / "retrieval.json").read_text())
    methods = {r["method"] for r in res["topk"]}
    assert "mmgeom topk (torch)" in methods
    assert all(r.get("roofline_fraction", 0) >= 0 for r in res["topk"])
    assert res["metrics"][0]["values"]["hit@1"] >= 0
    text = (tmp_path / "retrieval.md").read_text()
    assert "python benchmarks/bench_retrieval.py --quick" in text

"""Every committed study results file regenerates from its committed ``results.json``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmgeom.studies import STUDIES, render_results

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_committed_markdown_is_rendered_from_its_json(name: str) -> None:
    folder = RESULTS / name
    if not (folder / "results.json").is_file():
        pytest.skip(f"no committed results for {name}")
    pytest.importorskip("matplotlib")
    text = render_results(name, folder / "results.json")
    assert text == (folder / "results.md").read_text(encoding="utf-8")

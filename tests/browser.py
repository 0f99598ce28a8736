"""Headless Chromium for the HTML pages' tests: which images a real browser decodes and lays out."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

_PROBE = (
    "<script>window.addEventListener('load', () => {"
    "const sizes = [...document.images].map("
    "i => [i.complete, i.naturalWidth, i.getBoundingClientRect().height]);"
    "document.title = JSON.stringify(sizes);"
    "});</script>"
)


def chromium() -> str | None:
    """The Chromium (or Chrome) executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def image_sizes(page: Path, work: Path) -> list[list]:
    """``[complete, naturalWidth, laid-out height]`` of every image of ``page`` once Chromium loaded it."""
    exe = chromium()
    assert exe is not None, "no chromium"
    probe = work / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ]
    proc = subprocess.run(
        [exe, *args, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", proc.stdout, re.S)
    assert title is not None, proc.stdout[-2000:]
    return json.loads(title.group(1).replace("&quot;", '"'))

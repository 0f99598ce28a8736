"""A killed import (SIGKILL mid-way) continues where it stopped and ends byte-identical; CLI round trip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import FeatureStore

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

_SCRIPT = """
import os, signal, sys
from pathlib import Path
from mmgeom.data import store_builder
from mmgeom.data.importers import ArraysSource, TableSource, run_import

kind, root, target, kill_after = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
hook = sys.argv[5] if len(sys.argv) > 5 else "write"  # "copy_rows": die between kernel copies of a block
method = getattr(store_builder.StoreBuilder, hook)
count = [0]

def dying(self, *args, **kwargs):
    method(self, *args, **kwargs)
    count[0] += 1
    if count[0] == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: as a power cut or the OOM killer

setattr(store_builder.StoreBuilder, hook, dying)
if hook == "copy_rows":
    from mmgeom.data.importers import base
    base._COPY_STEP = 24  # several copies per block, so the kill lands inside one
if kind == "arrays":
    src = ArraysSource({"image": str(root / "img_*.npy"), "text": str(root / "txt_*.npy")})
else:
    files = [root / "a.parquet", root / "b.parquet"]
    src = TableSource(files, embeddings={"e": "e", "g": "g"}, label_column="y")
run_import(src, target, chunk_rows=7, commit_seconds=0)
"""


def _inputs(root: Path) -> None:
    rng = np.random.default_rng(0)
    for k, n in enumerate((20, 13)):
        np.save(root / f"img_{k}.npy", rng.normal(size=(n, 5)).astype(np.float16))
    np.save(root / "txt_0.npy", rng.normal(size=(33, 3)).astype(np.float32))
    for name, n in (("a", 18), ("b", 15)):
        e = [None if i % 5 == 1 else rng.normal(size=4).tolist() for i in range(n)]
        g = rng.normal(size=(n, 2)).tolist()
        pq.write_table(
            pa.table({"e": e, "g": g, "y": [int(i % 3) for i in range(n)]}), root / f"{name}.parquet"
        )


def _run(args: list[str]) -> int:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    script = textwrap.dedent(_SCRIPT)
    return subprocess.run([sys.executable, "-c", script, *args], env=env, check=False).returncode


@pytest.mark.parametrize(
    ("kind", "hook", "kill_after"),
    [("arrays", "write", "3"), ("table", "write", "3"), ("arrays", "copy_rows", "9")],
)
def test_killed_import_resumes_byte_identical(tmp_path: Path, kind: str, hook: str, kill_after: str) -> None:
    # "arrays" goes through the kernel-copy fast path (every shard matches its store dtype); with the
    # "copy_rows" hook the kill lands after some but not all of a block's copies.
    _inputs(tmp_path)
    assert _run([kind, str(tmp_path), str(tmp_path / "whole"), "0"]) == 0  # 0: never killed
    rc = _run([kind, str(tmp_path), str(tmp_path / "resumed"), kill_after, hook])
    assert rc == -signal.SIGKILL
    assert not (tmp_path / "resumed").exists()  # no half store at the target
    assert (tmp_path / ".resumed.import" / "state.json").is_file()
    if hook == "copy_rows":
        state = json.loads((tmp_path / ".resumed.import" / "state.json").read_text())
        assert 0 < state["rows_done"] < 33 and state["rows_done"] % 7 == 0  # died inside a block
    assert _run([kind, str(tmp_path), str(tmp_path / "resumed"), "0"]) == 0
    whole = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert whole == sorted(p.name for p in (tmp_path / "resumed").iterdir())
    for name in whole:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
    assert not (tmp_path / ".resumed.import").exists()
    store = FeatureStore.open(tmp_path / "resumed")
    assert store.num_rows == 33
    if kind == "table":
        assert store.has_masks and int(store.present("e").sum()) == 33 - 4 - 3


def test_changed_input_restarts_instead_of_resuming(tmp_path: Path) -> None:
    _inputs(tmp_path)
    assert _run(["arrays", str(tmp_path), str(tmp_path / "s"), "2"]) == -signal.SIGKILL
    new = np.ones((33, 3), np.float32)
    np.save(tmp_path / "txt_0.npy", new)
    assert _run(["arrays", str(tmp_path), str(tmp_path / "s"), "0"]) == 0
    np.testing.assert_array_equal(FeatureStore.open(tmp_path / "s").array("text"), new)


def test_cli_import_arrays_and_table(tmp_path: Path) -> None:
    _inputs(tmp_path)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "import",
            str(tmp_path / "s"),
            "--array",
            f"image={tmp_path}/img_*.npy",
            "--array",
            f"text={tmp_path}/txt_0.npy",
            "--no-progress",
            "--chunk-rows",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "33 rows" in res.output and "image: 5-d float16, present in 33 rows" in res.output
    res = runner.invoke(
        app,
        [
            "import",
            str(tmp_path / "t"),
            "--table",
            f"{tmp_path}/*.parquet",
            "--embedding",
            "e=vec",
            "--embedding",
            "g",
            "--label-column",
            "y",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "vec: 4-d float32, present in 26 rows" in res.output
    res = runner.invoke(app, ["import", str(tmp_path / "u"), "--no-progress"])
    assert res.exit_code == 2 and "give exactly one input kind" in res.output
    res = runner.invoke(app, ["import", str(tmp_path / "u"), "--array", "image", "--no-progress"])
    assert res.exit_code == 2 and "--array: expected MODALITY=PATH, got 'image'" in res.output

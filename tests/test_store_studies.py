"""``mmgeom study unialign|l2dir --store PATH``: the protocols on a user's feature store.

The reference for every number is the same study fed the same arrays in memory (numpy slicing of the
arrays written to the store, standardised by :class:`~mmgeom.data.Standardizer`), not the store reader.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmgeom.cli.app import app
from mmgeom.data import FeatureStore, MultiViewDataset, Split, SplitDataset, Standardizer
from mmgeom.studies.l2dir.store import store_task
from mmgeom.studies.runner import torch_threads
from mmgeom.studies.store_runs import run_store_study
from mmgeom.studies.unialign.protocol import run_grid
from mmgeom.studies.unialign.settings import QUICK
from mmgeom.studies.unialign.sources import StudyData, store_data

N = 160


def _arrays(seed: int = 0, dims: tuple[int, ...] = (10, 8, 6)) -> tuple[dict[str, np.ndarray], np.ndarray]:
    g = np.random.default_rng(seed)
    y = np.arange(N) % 4
    z = g.normal(size=(N, 5)) + 2.0 * np.eye(5)[y]
    feats = {
        f"m{i}": (z @ g.normal(size=(5, d)) + 0.3 * g.normal(size=(N, d))).astype(np.float32)
        for i, d in enumerate(dims)
    }
    return feats, y


def _split(val: bool = True) -> np.ndarray:
    s = np.array(["train"] * 112 + ["val"] * 16 + ["test"] * 32)
    return s if val else np.where(s == "val", "train", s)


def _store(tmp_path: Path, name: str = "s", val: bool = True, labels: bool = True, **kw) -> Path:
    feats, y = _arrays(**kw)
    FeatureStore.write(
        tmp_path / name, feats, ids=np.arange(N), labels=y if labels else np.full(N, -1), split=_split(val)
    )
    return tmp_path / name


def _in_memory(feats: dict[str, np.ndarray], y: np.ndarray, order: list[str]) -> SplitDataset:
    """The reference: the same rows by numpy slicing, standardised with the training rows."""
    s = _split()
    parts = {
        p: MultiViewDataset(
            {m: torch.from_numpy(feats[m][s == p]) for m in order}, torch.from_numpy(y[s == p])
        )
        for p in ("train", "val", "test")
    }
    scaler = Standardizer.fit(parts["train"])
    idx = Split(*(torch.from_numpy(np.flatnonzero(s == p)) for p in ("train", "val", "test")))
    return SplitDataset(*(scaler.transform(parts[p]) for p in ("train", "val", "test")), idx, scaler)


def test_unialign_store_quick_equals_in_memory(tmp_path: Path) -> None:
    path = _store(tmp_path, dims=(10, 8))
    out = run_store_study("unialign", store=path, out=tmp_path / "out", anchor="m1", quick=True)
    got = json.loads((tmp_path / "out" / "results.json").read_text())
    assert out.read_text().startswith("# UniAlign modality-scaling study on a feature store")
    assert got["view_order"] == ["m1", "m0"] and got["settings"]["ms"] == [2]
    feats, y = _arrays(dims=(10, 8))
    ref = StudyData({2: _in_memory(feats, y, ["m1", "m0"])}, ("m1", "m0"), "m1")
    with torch_threads(1):
        want = run_grid(replace(QUICK, ms=(2,), batch_size=112), ref)
    pairs = [(g["loss"], g["M"]) for g in got["scaling"]]
    assert pairs == [(w["loss"], w["M"]) for w in want["scaling"]]
    for g, w in zip(got["scaling"], want["scaling"], strict=True):
        for k in ("hit@1", "map", "probe/mean", "zeta", "val/hit@1"):
            assert g["metrics"][k]["mean"] == pytest.approx(w["metrics"][k]["mean"], abs=1e-6), (g["loss"], k)
    assert got["selection"][0]["unialign"] == want["selection"][0]["unialign"]
    assert "results.md" in out.name


def test_unialign_store_validation_rows(tmp_path: Path) -> None:
    feats, y = _arrays()
    data, settings = store_data(_store(tmp_path), QUICK, anchor="m2")
    ref = _in_memory(feats, y, ["m2", "m0", "m1"])
    assert settings.ms == (2, 3) and data.view_order == ("m2", "m0", "m1") and data.val_source == "split"
    for m in ("m2", "m0", "m1"):  # the store's own val split, standardised with training statistics
        torch.testing.assert_close(data.splits[3].val.views[m], ref.val.views[m], rtol=0, atol=1e-5)
    # no val split: a seeded share of the training rows, disjoint from what is trained on and from test
    held, _ = store_data(_store(tmp_path, "noval", val=False), QUICK, val_fraction=0.25)
    sp = held.splits[2].split
    train, val, test = (set(sp[p].tolist()) for p in ("train", "val", "test"))
    assert held.val_source == "holdout" and len(val) == 32 and not (val & train) and not (val & test)
    assert val <= set(np.flatnonzero(_split(val=False) == "train").tolist())
    assert any("no 'val' split" in n for n in held.notes)


def test_unialign_store_without_labels_skips_the_probe(tmp_path: Path) -> None:
    data, _ = store_data(_store(tmp_path, labels=False), QUICK)
    assert not data.probe and any("Skipped: the linear probes" in n for n in data.notes)


def test_store_rows_missing_a_modality_are_dropped(tmp_path: Path) -> None:
    feats, y = _arrays()
    mask = np.ones(N, dtype=bool)
    mask[[0, 1, 120, 150]] = False  # two train rows, one val row, one test row
    FeatureStore.write(tmp_path / "m", feats, ids=np.arange(N), labels=y, split=_split(), masks={"m1": mask})
    data, _ = store_data(tmp_path / "m", QUICK)
    sp = data.splits[2].split
    assert (len(sp.train), len(sp.val), len(sp.test)) == (110, 15, 31)
    assert not {0, 1, 120, 150} & set(torch.cat([sp.train, sp.val, sp.test]).tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modalities": ["m0", "nope"]}, "modalities: 'nope' is not in the store"),
        ({"anchor": "zz"}, "anchor: 'zz' is not among the store"),
        ({"anchor": "m2", "modalities": ["m0", "m1"]}, "anchor: 'm2' is not among the chosen modalities"),
        ({"modalities": ["m0"]}, "needs at least 2 modalities"),
        ({"study": "dagr"}, "does not run on a feature store"),
        ({"relevance": "label", "study": "l2dir", "labels": False}, "labels: relevance 'label' needs"),
        ({"relevance": "label"}, "unialign study scores instance retrieval only"),
    ],
)
def test_bad_requests_name_store_key_and_expectation(tmp_path: Path, kwargs: dict, message: str) -> None:
    study = kwargs.pop("study", "unialign")
    path = _store(tmp_path, labels=kwargs.pop("labels", True))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        run_store_study(study, store=path, out=tmp_path / "o", quick=True, **kwargs)


def test_store_without_test_split_is_refused(tmp_path: Path) -> None:
    feats, y = _arrays()
    FeatureStore.write(tmp_path / "t", feats, ids=np.arange(N), labels=y, split="train")
    with pytest.raises(ValueError, match=r"t: split: the store has no 'test' split"):
        store_data(tmp_path / "t", QUICK)


def test_cli_bad_request_is_one_line(tmp_path: Path) -> None:
    path = _store(tmp_path)
    res = CliRunner().invoke(
        app, ["study", "unialign", "--store", str(path), "--anchor", "zz", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: {path}: anchor: 'zz' is not among the store; expected one of ['m0', 'm1', 'm2']"
    ]
    res = CliRunner().invoke(app, ["study", "unialign", "--anchor", "m0", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "only with --store PATH" in res.output


def test_l2dir_store_task_and_quick_run(tmp_path: Path) -> None:
    path = _store(tmp_path, dims=(10, 8))
    from mmgeom.studies.l2dir.settings import QUICK as L2QUICK

    task, _ = store_task(path, L2QUICK, anchor="m0", relevance="label")
    feats, y = _arrays(dims=(10, 8))
    ref = _in_memory(feats, y, ["m0", "m1"])
    assert task.directions == [("m0", "m1")] and not task.instance
    torch.testing.assert_close(task.test["m1"], ref.test.views["m1"], rtol=0, atol=1e-5)
    sym, _ = store_task(path, L2QUICK)
    assert sym.directions == [("m0", "m1"), ("m1", "m0")] and sym.instance
    out = run_store_study("l2dir", store=path, out=tmp_path / "l2", quick=True, anchor="m0")
    got = json.loads((tmp_path / "l2" / "results.json").read_text())
    assert set(got["tasks"]) == {"store"} and "fashion" in got["skipped"]
    assert "## The store" in out.read_text()
    assert 0.0 <= got["tasks"]["store"]["summary"]["infonce"]["cosine/map"]["mean"] <= 1.0

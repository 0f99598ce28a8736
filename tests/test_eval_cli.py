"""``mmgeom eval RUN_OR_FEATURES`` and ``mmgeom.train.load_run``, against dense float64 references.

The references below share no code with ``mmgeom.retrieval``: one dense score matrix, a stable sort
(equal scores keep the lower gallery index first, the library's tie rule) and each metric's formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import FeatureStore
from mmgeom.train import (
    build_data,
    build_encoder,
    load_config,
    load_run,
    load_tensors,
    read_jsonl,
)
from mmgeom.train.offline_eval import open_eval_source

runner = CliRunner()
VIEWS = ("kar", "pix", "mor")


def dense_metrics(
    q: torch.Tensor,
    g: torch.Tensor,
    relevant: torch.Tensor,
    ks: tuple[int, ...] = (1, 5, 10),
    magnitudes: torch.Tensor | None = None,
) -> dict[str, float]:
    """Metrics of one direction from the full float64 score matrix and a boolean relevance matrix."""
    s = nnf.normalize(q.double(), dim=1) @ nnf.normalize(g.double(), dim=1).T
    if magnitudes is not None:
        s = s * magnitudes.double()[None, :]
    # mmgeom's documented key: the float64 score rounded to the output dtype (float32 here), ties by lower
    # gallery index; near-duplicate rows (mor has few distinct feature values) do tie after rounding
    s = s.float()
    order = torch.sort(-s, dim=1, stable=True).indices
    hits = relevant.gather(1, order).double()
    p = hits.sum(dim=1)
    out = {}
    for k in ks:
        top = hits[:, :k].sum(dim=1)
        out[f"hit@{k}"] = float((top > 0).double().mean())
        out[f"recall@{k}"] = float((top / p).mean())
        out[f"precision@{k}"] = float((top / k).mean())
    first = hits.argmax(dim=1).double() + 1.0  # 1-based rank of the first positive
    out["mrr"] = float((1.0 / first).mean())
    position = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
    out["map"] = float(((hits.cumsum(dim=1) / position) * hits).sum(dim=1).div(p).mean())
    out["median_rank"] = float(np.median(first.numpy()))
    return out


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, ["eval", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, mfeat, train_tiny_run) -> Path:
    """A tiny trained run (6 steps, three mfeat views, a checkpoint every 3 steps)."""
    return train_tiny_run(tmp_path_factory.mktemp("eval") / "run", VIEWS, "checkpoint.every=3")


def independent_embeddings(run: Path, split: str = "test") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The run's embeddings built by hand from config.yaml and model.safetensors (not through load_run)."""
    cfg = load_config(run / "config.yaml")
    data = build_data(cfg.data)
    enc = build_encoder(cfg.model, data.train.view_dims)
    enc.load_state_dict(load_tensors(run / "model.safetensors"))
    enc.eval()
    part = data.part(split)
    with torch.no_grad():
        return {v: z.float() for v, z in enc(dict(part.views)).items()}, part.labels


def test_eval_run_equals_dense_reference_and_the_training_log(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    code, text = invoke(run_dir, "--json", out)
    assert code == 0, text
    assert "kar -> pix" in text and "mor -> kar" in text and "mean" in text
    record = json.loads(out.read_text())
    assert record["kind"] == "run" and record["split"] == "test" and record["rows"] == 400
    assert record["step"] == 6 and record["pairs"] == [["kar", "pix"], ["kar", "mor"], ["pix", "mor"]]
    metrics = record["metrics"]
    emb, _ = independent_embeddings(run_dir)
    eye = torch.eye(400, dtype=torch.bool)
    for a in VIEWS:
        for b in VIEWS:
            if a != b:
                want = dense_metrics(emb[a], emb[b], eye)
                for name, value in want.items():
                    assert metrics[f"retrieval/{a}->{b}/{name}"] == pytest.approx(value), (a, b, name)
    mean_map = np.mean([metrics[f"retrieval/{p}/map"] for p in ("kar<->pix", "kar<->mor", "pix<->mor")])
    assert metrics["retrieval/mean/map"] == pytest.approx(mean_map)
    assert metrics["chance/hit@1"] == pytest.approx(1 / 400)
    # the same numbers as the run's own final evaluation
    final = [e for e in read_jsonl(run_dir / "metrics.jsonl") if e["event"] == "eval"][-1]
    shared = [k for k in metrics if k.startswith("retrieval/")]
    assert shared and all(metrics[k] == pytest.approx(final[k], abs=1e-12) for k in shared)


def test_eval_label_relevance_and_magnitude_score(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    args = ["--query", "pix", "--gallery", "kar", "--relevance", "label", "--split", "val", "--ks", "1,3,20"]
    code, text = invoke(run_dir, *args, "--score", "magnitude", "--json", out)
    assert code == 0, text
    metrics = json.loads(out.read_text())["metrics"]
    assert not any("kar->pix" in k for k in metrics)  # one direction when both modalities are given
    emb, labels = independent_embeddings(run_dir, "val")
    same_class = labels[:, None] == labels[None, :]
    want = dense_metrics(emb["pix"], emb["kar"], same_class, (1, 3, 20), magnitudes=emb["kar"].norm(dim=1))
    for name, value in want.items():
        assert metrics[f"retrieval/pix->kar/{name}"] == pytest.approx(value), name
    counts = torch.bincount(labels).double()
    assert metrics["chance/precision"] == pytest.approx(float(((counts / len(labels)) ** 2).sum()))


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    """Paired 16-d 'img' (float16) and 'txt' (float32) rows, an 8-d 'other', 5 classes, two splits."""
    gen = torch.Generator().manual_seed(1)
    img = torch.randn(300, 16, generator=gen)
    txt = img + 0.9 * torch.randn(300, 16, generator=gen)
    other = torch.randn(300, 8, generator=gen)
    return FeatureStore.write(
        tmp_path / "store",
        {"img": img.half(), "txt": txt, "other": other},
        ids=[f"r{i}" for i in range(300)],
        labels=torch.arange(300) % 5,
        split=["train"] * 200 + ["test"] * 100,
    )


def test_eval_feature_store_is_streamed_and_equals_dense_reference(
    store: FeatureStore, tmp_path: Path
) -> None:
    source = open_eval_source(store.path)
    assert isinstance(source.embeddings["img"], np.memmap)  # every row: the stored arrays, not copies
    assert isinstance(open_eval_source(store.path, "test").embeddings["txt"], np.memmap)  # contiguous split
    out = tmp_path / "m.json"
    code, text = invoke(store.path, "--json", out, "--max-memory-mb", "1")
    assert code == 0, text
    record = json.loads(out.read_text())
    assert record["kind"] == "features" and record["pairs"] == [["img", "txt"]]  # 'other' is 8-d
    img, txt = store.read("img"), store.read("txt")
    eye = torch.eye(300, dtype=torch.bool)
    for a, b, qa, gb in (("img", "txt", img, txt), ("txt", "img", txt, img)):
        for name, value in dense_metrics(qa, gb, eye).items():
            assert record["metrics"][f"retrieval/{a}->{b}/{name}"] == pytest.approx(value), (a, name)

    code, text = invoke(store.path, "--split", "test", "--relevance", "label", "--json", out)
    assert code == 0, text
    metrics = json.loads(out.read_text())["metrics"]
    labels = torch.from_numpy(np.asarray(store.labels[200:]))
    want = dense_metrics(
        store.read("txt", "test"), store.read("img", "test"), labels[:, None] == labels[None, :]
    )
    for name, value in want.items():
        assert metrics[f"retrieval/txt->img/{name}"] == pytest.approx(value), name


def test_eval_faiss_backend_gives_the_cut_off_metrics(store: FeatureStore, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    out = tmp_path / "m.json"
    code, text = invoke(store.path, "--query", "img", "--gallery", "txt", "--backend", "faiss", "--json", out)
    assert code == 0, text
    metrics = json.loads(out.read_text())["metrics"]
    assert "retrieval/img->txt/map" not in metrics  # needs the full ranking
    want = dense_metrics(store.read("img"), store.read("txt"), torch.eye(300, dtype=torch.bool))
    for k in (1, 5, 10):
        for name in ("hit", "recall", "precision"):
            key = f"{name}@{k}"
            assert metrics[f"retrieval/img->txt/{key}"] == pytest.approx(want[key]), key


def test_eval_is_listed_with_its_options() -> None:
    assert "eval" in runner.invoke(app, ["--help"]).output
    text = runner.invoke(app, ["eval", "--help"]).output
    for option in (
        "--query",
        "--gallery",
        "--split",
        "--relevance",
        "--ks",
        "--score",
        "--backend",
        "--json",
    ):
        assert option in text


def test_eval_errors_exit_2_with_a_message(run_dir: Path, store: FeatureStore, tmp_path: Path) -> None:
    code, text = invoke(run_dir, "--query", "audio")
    assert code == 2 and "unknown modality 'audio'" in text and "kar (64-d), pix (64-d), mor (64-d)" in text
    code, text = invoke(run_dir, "--query", "kar", "--gallery", "kar")
    assert code == 2 and "both are 'kar'" in text
    code, text = invoke(store.path, "--query", "img", "--gallery", "other")
    assert code == 2 and "16-d" in text and "8-d" in text
    code, text = invoke(tmp_path)
    assert code == 2 and "neither a run directory" in text and "nor a feature store" in text
    code, text = invoke(tmp_path / "missing")
    assert code == 2 and "no such directory" in text
    code, text = invoke(run_dir, "--checkpoint", "best")
    assert code == 2 and "no best checkpoint" in text
    code, text = invoke(run_dir, "--split", "dev")
    assert code == 2 and "'train', 'val' or 'test'" in text
    code, text = invoke(store.path, "--checkpoint", "best")
    assert code == 2 and "feature store" in text
    code, text = invoke(run_dir, "--ks", "1,x")
    assert code == 2 and "--ks" in text
    code, text = invoke(run_dir, "--ks", "500")
    assert code == 2 and "ks" in text
    assert "Traceback" not in text


def test_load_run_checkpoints_and_errors(run_dir: Path, tmp_path: Path) -> None:
    final = load_run(run_dir)
    assert not final.encoder.training and final.step == 6 and final.weights.name == "model.safetensors"
    assert final.config.data.views == list(VIEWS) and len(final.data.test) == 400
    latest = load_run(run_dir, "latest", data=final.data)
    early = load_run(run_dir, "checkpoints/step-00000003", data=final.data)
    assert latest.step == 6 and early.step == 3 and early.weights.name == "step-00000003"
    for name, w in final.encoder.state_dict().items():
        assert torch.equal(w, latest.encoder.state_dict()[name])  # the final checkpoint = the weights
    assert not all(
        torch.equal(w, early.encoder.state_dict()[n]) for n, w in final.encoder.state_dict().items()
    )
    assert load_run(run_dir, run_dir / "model.safetensors", data=final.data).step == 6
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        load_run(run_dir, "best", data=final.data)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_run(run_dir, "nowhere", data=final.data)
    with pytest.raises(ValueError, match=r"\.safetensors"):
        load_run(run_dir, run_dir / "config.yaml", data=final.data)

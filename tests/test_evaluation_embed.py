"""The one embedding loop (mmgeom.evaluation.embed), its users, and the old import paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import mmgeom.train
import mmgeom.train.offline_eval
from mmgeom import evaluation
from mmgeom.classify import embed as classify_embed
from mmgeom.data import FeatureStore, MultiViewDataset
from mmgeom.evaluation import embed, embed_views, evaluate_source, open_store_source
from mmgeom.models import FusionClassifier, MultiViewEncoder, create_head


def _data(n: int = 11) -> MultiViewDataset:
    g = torch.Generator().manual_seed(0)
    views = {"a": torch.randn(n, 5, generator=g), "b": torch.randn(n, 5, generator=g)}
    return MultiViewDataset(views, torch.arange(n) % 3, name="toy")


def _encoder() -> MultiViewEncoder:
    torch.manual_seed(0)
    heads = {v: nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 4)) for v in ("a", "b")}
    return MultiViewEncoder(heads)


@pytest.mark.parametrize("training", [True, False])
def test_embed_views_eval_mode_no_grad_and_mode_restored(training: bool) -> None:
    encoder, data = _encoder(), _data()
    encoder.train(training)
    out = embed_views(encoder, data, chunk=4)
    assert encoder.training is training
    assert list(out) == ["a", "b"]
    for v, z in out.items():
        assert z.shape == (11, 4) and z.dtype == torch.float32 and not z.requires_grad
        # eval mode: dropout off, so one batch of every row gives the same values as batches of 4
        with torch.no_grad():
            ref = encoder.eval()({v: data.views[v]})[v]
        assert torch.allclose(z, ref, atol=1e-6)


def test_embed_restores_mode_after_an_error() -> None:
    encoder, data = _encoder(), _data()
    encoder.train()

    def boom(batch: object) -> dict[str, torch.Tensor]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        embed(encoder, data, encode=boom)
    assert encoder.training
    with pytest.raises(ValueError, match="batch_size"):
        embed(encoder, data, batch_size=0)


def test_classify_embed_is_the_shared_loop() -> None:
    torch.manual_seed(0)
    model = FusionClassifier({v: create_head("mlp", 5, 8, hidden=16, modality=v) for v in ("a", "b")}, 3)
    data = _data()
    got = classify_embed(model, data, batch_size=3)
    ref = embed(model, data, encode=model.encode, keys=model.modalities)
    assert list(got) == list(model.modalities)
    assert all(torch.allclose(got[m], ref[m], atol=1e-6) for m in got)


def test_store_source_scores_like_the_arrays(tmp_path: Path) -> None:
    data = _data(8)
    store = FeatureStore.write(
        tmp_path / "s", data.views, ids=list(range(8)), labels=data.labels, split="all"
    )
    source = open_store_source(store.path)
    assert source.kind == "features" and source.num_rows == 8 and source.dims == {"a": 5, "b": 5}
    metrics = evaluate_source(source, [("a", "b")], "forward", ks=(1,))
    ref = evaluation.cross_view_retrieval(data.views, [("a", "b")], "forward", ks=(1,))
    assert metrics["retrieval/a->b/hit@1"] == pytest.approx(ref["retrieval/a->b/hit@1"])
    assert metrics["chance/hit@1"] == pytest.approx(1 / 8)


@pytest.mark.parametrize(
    "name",
    [
        "cross_view_retrieval",
        "embed_views",
        "evaluate_split",
        "geometry_diagnostics",
        "nearest_centroid_accuracy",
    ],
)
def test_train_keeps_exporting_the_evaluation_names(name: str) -> None:
    assert getattr(mmgeom.train, name) is getattr(evaluation, name)


@pytest.mark.parametrize("name", ["EvalSource", "eval_pairs", "evaluate_source", "RELEVANCE_MODES", "SCORES"])
def test_offline_eval_module_keeps_its_names(name: str) -> None:
    assert getattr(mmgeom.train.offline_eval, name) is getattr(evaluation, name)

"""``mmgeom.monitor``: the logged values are the library's own metrics of the same embeddings; the plain
loop, Lightning and Hugging Face adapters run real 20-step trainings on the bundled mfeat data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mmgeom.data import FeatureStore, MultiViewDataset
from mmgeom.geometry import diagnose
from mmgeom.losses import create_loss
from mmgeom.monitor import GeometryMonitor, hf_callback, lightning_callback
from mmgeom.retrieval import retrieval_metrics

VIEWS = ("fou", "kar", "pix")


class Heads(nn.Module):
    """One linear head per view, with dropout so that a forgotten eval mode changes the embeddings."""

    def __init__(self, dims: dict[str, int], out: int = 16) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({v: nn.Linear(d, out) for v, d in dims.items()})
        self.drop = nn.Dropout(0.5)

    def forward(self, batch):
        return {v: self.drop(h(batch[v].float())) for v, h in self.heads.items()}


@pytest.fixture(scope="module")
def views(mfeat) -> MultiViewDataset:
    """Three standardised mfeat views (every row)."""
    data = mfeat.select_views(VIEWS)
    std = {v: (x - x.mean(0)) / (x.std(0) + 1e-6) for v, x in data.views.items()}
    return MultiViewDataset(std, data.labels)


def _heads(views: MultiViewDataset) -> Heads:
    torch.manual_seed(0)
    return Heads(views.view_dims)


def test_logged_values_equal_the_library_metrics_of_the_same_embeddings(views, tmp_path):
    model = _heads(views)
    model.train()
    seen = []
    monitor = GeometryMonitor(
        views,
        module=model,
        every=5,
        max_rows=150,
        jsonl=tmp_path / "m.jsonl",
        callback=lambda s, m: seen.append((s, m)),
    )
    assert len(monitor.data) == 150 and monitor.pairs == [("fou", "kar"), ("fou", "pix"), ("kar", "pix")]
    logged = monitor.step(0)
    assert logged is not None and model.training  # train mode restored
    assert all(p.grad is None for p in model.parameters())  # no graph, no gradient
    # The same embeddings computed here by hand: eval mode (dropout off), the monitor's fixed rows.
    model.eval()
    with torch.no_grad():
        emb = {v: model.heads[v](monitor.data.views[v]) for v in VIEWS}
    direct = diagnose(emb, labels=monitor.data.labels)
    for key, value in direct.items():
        assert logged[f"geometry/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    n = len(monitor.data)
    for a, b in (("fou", "kar"), ("kar", "fou"), ("pix", "kar")):
        ref = retrieval_metrics(emb[a], emb[b], torch.arange(n), ks=(1, 5, 10))
        for name in ("hit@1", "hit@10", "map", "mrr", "ndcg@5"):
            assert logged[f"retrieval/{a}->{b}/{name}"] == pytest.approx(float(ref[name]), abs=1e-6), (a, b)
    # The pair value is the mean of its two directions; chance is 1/n.
    assert logged["retrieval/fou<->kar/map"] == pytest.approx(
        0.5 * (logged["retrieval/fou->kar/map"] + logged["retrieval/kar->fou/map"])
    )
    assert logged["chance/hit@1"] == pytest.approx(1 / 150)
    # Not due: nothing happens; due: the same rows again (a fixed subset), the callback and file agree.
    assert monitor.step(3) is None
    rows_before = monitor.data.views["pix"].clone()
    monitor.step(5)
    monitor.close()
    assert torch.equal(monitor.data.views["pix"], rows_before)
    events = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [(e["event"], e["step"]) for e in events] == [("eval", 0), ("eval", 5)]
    assert [s for s, _ in seen] == [0, 5]
    assert events[0]["geometry/holder"] == pytest.approx(seen[0][1]["geometry/holder"])


def test_plain_loop_logs_loss_means_and_tensorboard(views, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = _heads(views)
    loss_fn = create_loss("infonce", temperature=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    monitor = GeometryMonitor(
        views,
        module=model,
        every=10,
        max_rows=200,
        jsonl=tmp_path / "metrics.jsonl",
        tensorboard=tmp_path / "tb",
    )
    gen = torch.Generator().manual_seed(0)
    losses = []
    monitor.step(0)
    for step in range(1, 21):
        idx = torch.randint(0, len(views), (64,), generator=gen)
        loss = loss_fn(model(views.batch(idx))).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        monitor.step(step, loss=loss)
    monitor.close()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(e["event"], e["step"]) for e in events] == [
        ("eval", 0),
        ("train", 10),
        ("eval", 10),
        ("train", 20),
        ("eval", 20),
    ]
    assert events[1]["loss"] == pytest.approx(np.mean(losses[:10]))
    assert events[3]["loss"] == pytest.approx(np.mean(losses[10:]))
    # Twenty steps of InfoNCE on the same heads make retrieval better than at step 0.
    assert events[4]["retrieval/mean/map"] > events[0]["retrieval/mean/map"]
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tb = acc.Scalars("geometry/gap/fou-kar")
    assert [e.step for e in tb] == [0, 10, 20]
    assert tb[-1].value == pytest.approx(events[4]["geometry/gap/fou-kar"], rel=1e-6)
    assert [e.step for e in acc.Scalars("train/loss")] == [10, 20]


def test_feature_store_and_an_encoder_callable(views, tmp_path):
    sub = views.subset(torch.arange(0, 300))
    split = ["train"] * 200 + ["test"] * 100
    store = FeatureStore.write(
        tmp_path / "store", sub.views, ids=list(range(300)), labels=sub.labels, split=split
    )
    proj = {
        v: torch.randn(d, 8, generator=torch.Generator().manual_seed(1)) for v, d in views.view_dims.items()
    }
    monitor = GeometryMonitor(store.path, encode=lambda b: {v: b[v] @ proj[v] for v in VIEWS}, split="test")
    assert len(monitor.data) == 100 and torch.equal(monitor.data.views["fou"], sub.views["fou"][200:])
    got = monitor.evaluate(0)
    emb = {v: sub.views[v][200:] @ proj[v] for v in VIEWS}
    assert got["geometry/erank/pix"] == pytest.approx(diagnose(emb)["erank/pix"], rel=1e-5)
    assert monitor.labels is None and "geometry/margin/pix" not in got  # rows 200-299 are all digit 1


def test_bad_arguments_name_what_is_wrong(views):
    with pytest.raises(ValueError, match="every: expected an integer >= 1"):
        GeometryMonitor(views, module=nn.Linear(1, 1), every=0)
    with pytest.raises(ValueError, match="pairs: 'img'"):
        GeometryMonitor(views, module=nn.Linear(1, 1), pairs=[("fou", "img")])
    with pytest.raises(ValueError, match="data: expected a MultiViewDataset"):
        GeometryMonitor({"only": torch.zeros(4, 2)}, module=nn.Linear(1, 1))
    with pytest.raises(ValueError, match="encode: give an encoder"):
        GeometryMonitor(views).evaluate(0)
    with pytest.raises(ValueError, match="labels: a MultiViewDataset"):
        GeometryMonitor(views, module=nn.Linear(1, 1), labels=[0])


def test_missing_frameworks_name_the_pip_command(monkeypatch, views):
    monitor = GeometryMonitor(views, module=nn.Linear(1, 1))
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "transformers"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'mmgeom\[lightning\]'"):
        lightning_callback(monitor)
    with pytest.raises(ImportError, match=r"pip install 'mmgeom\[hf\]'"):
        hf_callback(monitor)


class _PairDataset(torch.utils.data.Dataset):
    """Rows of the views as dicts (what both frameworks' default collators stack)."""

    def __init__(self, data: MultiViewDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return {v: x[i] for v, x in self.data.views.items()}


def _split(views):
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(views), generator=gen)
    return views.subset(perm[:1600]), views.subset(perm[1600:])


def test_lightning_callback_runs_a_real_training(views, tmp_path):
    pl = pytest.importorskip("lightning.pytorch", reason="pip install 'mmgeom[lightning]'")
    train, held_out = _split(views)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _heads(views)
            self.loss = create_loss("infonce", temperature=0.1)

        def forward(self, batch):
            return self.net(batch)

        def training_step(self, batch, batch_idx):
            return self.loss(self(batch)).total

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    monitor = GeometryMonitor(held_out, every=5, max_rows=200, jsonl=tmp_path / "metrics.jsonl")
    trainer = pl.Trainer(
        max_steps=20,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    module = Module()
    loader = torch.utils.data.DataLoader(_PairDataset(train), batch_size=64, shuffle=True)
    trainer.callbacks.append(lightning_callback(monitor))
    trainer.fit(module, loader)
    assert trainer.global_step == 20
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [0, 5, 10, 15, 20]
    assert [e["step"] for e in events if e["event"] == "train"] == [5, 10, 15, 20]
    assert events[-1]["retrieval/mean/map"] > events[0]["retrieval/mean/map"]
    assert monitor.module is module and module.training  # bound to the module, train mode restored
    # The last logged geometry is that of the trained module's embeddings of the held-out subset.
    module.eval()
    with torch.no_grad():
        emb = module(monitor.data.views)
    assert events[-1]["geometry/gap/fou-pix"] == pytest.approx(diagnose(emb)["gap/fou-pix"], rel=1e-5)


def test_hf_callback_runs_a_real_training(views, tmp_path):
    transformers = pytest.importorskip("transformers", reason="pip install 'mmgeom[hf]'")
    pytest.importorskip("accelerate", reason="pip install 'mmgeom[hf]'")
    train, held_out = _split(views)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _heads(views)
            self.loss = create_loss("infonce", temperature=0.1)

        def forward(self, fou=None, kar=None, pix=None, **batch):
            if fou is None:  # the monitor's call: one mapping of views
                return self.net(batch)
            return {"loss": self.loss(self.net({"fou": fou, "kar": kar, "pix": pix})).total}

    model = Model()
    monitor = GeometryMonitor(
        held_out, encode=lambda b: model.net(b), every=5, max_rows=200, jsonl=tmp_path / "metrics.jsonl"
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=20,
        per_device_train_batch_size=64,
        learning_rate=1e-2,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=_PairDataset(train), callbacks=[hf_callback(monitor)]
    )
    trainer.train()
    assert trainer.state.global_step == 20
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [0, 5, 10, 15, 20]
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    train_events = [(e["step"], e["loss"]) for e in events if e["event"] == "train"]
    assert [s for s, _ in train_events] == [5, 10, 15, 20]
    assert [v for _, v in train_events] == pytest.approx(logged, rel=1e-6)
    evals = [e for e in events if e["event"] == "eval"]
    assert evals[-1]["retrieval/mean/map"] > evals[0]["retrieval/mean/map"]
    assert monitor.module is model and model.training

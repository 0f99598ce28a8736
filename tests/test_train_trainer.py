"""mmgeom.train.Trainer on small synthetic views: loss goes down, logs, determinism, non-finite stops."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from mmgeom.data import MultiViewDataset, split_and_standardize
from mmgeom.losses import LossOutput
from mmgeom.models import MultiViewEncoder
from mmgeom.train import (
    ConfigError,
    NonFiniteLossError,
    Trainer,
    build_encoder,
    config_from_dict,
    load_tensors,
    read_jsonl,
    warmup_cosine_lr,
)


def synthetic_split(n=96, seed=0):
    """Three noisy linear views of one 4-d latent; 4 classes."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=g)
    views = {
        name: latent @ torch.randn(4, d, generator=g) + 0.05 * torch.randn(n, d, generator=g)
        for name, d in (("a", 6), ("b", 5), ("c", 7))
    }
    data = MultiViewDataset(views, torch.arange(n) % 4, name="synthetic")
    return split_and_standardize(data, (0.5, 0.25, 0.25), seed=0)


def tiny_config(**sections):
    raw = {
        "model": {"head": "mlp", "out_dim": 8, "hidden": 16},
        "loss": {"name": "infonce", "kwargs": {"temperature": 0.2}},
        "optim": {"lr": 1e-2, "warmup_steps": 5, "weight_decay": 0.0},
        "train": {"steps": 40, "batch_size": 16, "log_every": 5, "progress": False},
        "eval": {"split": "test", "ks": [1, 5]},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def test_training_steps_reduce_the_loss():
    trainer = Trainer(tiny_config(), data=synthetic_split())
    losses = [trainer.train_step()["loss"] for _ in range(80)]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > math.log(16) * 0.8  # near chance level ln(B) at the start
    assert last < 0.6 * first


def test_fit_writes_config_metrics_and_weights(tmp_path):
    cfg = tiny_config()
    data = synthetic_split()
    trainer = Trainer(cfg, tmp_path / "run", data=data)
    result = trainer.fit()
    run = tmp_path / "run"
    assert result.run_dir == run and result.steps == 40
    assert config_from_dict(yaml.safe_load((run / "config.yaml").read_text())) == cfg

    events = read_jsonl(run / "metrics.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    train = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train] == list(range(5, 41, 5))
    for e in train:  # the lr of the interval's last update, from the closed form
        assert e["lr"] == pytest.approx(warmup_cosine_lr(e["step"] - 1, 1e-2, 40, 5))
        assert {"loss", "loss/pair/a-b", "loss/pair/a-c", "loss/pair/b-c", "grad_norm"} <= set(e)
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [0, 40]
    assert evals == result.evals
    for key in (
        "retrieval/a->b/hit@1",
        "retrieval/b->a/map",
        "retrieval/a<->b/hit@5",
        "retrieval/mean/hit@1",
    ):
        assert key in evals[-1]
    assert "geometry/gap/a-b" in evals[-1] and "geometry/erank/a" in evals[-1]
    assert evals[-1]["retrieval/mean/hit@1"] > evals[0]["retrieval/mean/hit@1"]
    assert evals[-1]["chance/hit@1"] == pytest.approx(1 / len(data.test))

    # the saved weights reproduce the trained encoder
    fresh = build_encoder(cfg.model, data.train.view_dims)
    fresh.load_state_dict(load_tensors(run / "model.safetensors"))
    batch = data.test.batch()
    trainer.encoder.eval()
    fresh.eval()
    with torch.no_grad():
        for v, z in trainer.encoder(batch).items():
            torch.testing.assert_close(fresh(batch)[v], z)
    assert not list(run.glob(".*.tmp"))


def test_mean_of_directions_and_periodic_evaluation(tmp_path):
    result = Trainer(tiny_config(train={"eval_every": 15}), tmp_path, data=synthetic_split()).fit()
    assert [e["step"] for e in result.evals] == [0, 15, 30, 40]
    last = result.final_eval
    for m in ("hit@1", "map"):
        both = 0.5 * (last[f"retrieval/a->c/{m}"] + last[f"retrieval/c->a/{m}"])
        assert last[f"retrieval/a<->c/{m}"] == pytest.approx(both)
        pairs = [last[f"retrieval/{p}/{m}"] for p in ("a<->b", "a<->c", "b<->c")]
        assert last[f"retrieval/mean/{m}"] == pytest.approx(sum(pairs) / 3)


def test_same_seed_same_run_and_other_seed_differs():
    def run(seed):
        trainer = Trainer(tiny_config(train={"seed": seed}, model={"dropout": 0.1}), data=synthetic_split())
        losses = [trainer.train_step()["loss"] for _ in range(10)]
        return losses, trainer.encoder.state_dict()

    l1, w1 = run(3)
    l2, w2 = run(3)
    l3, _ = run(4)
    assert l1 == l2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert l1 != l3


def test_gradients_are_clipped_to_the_configured_norm():
    trainer = Trainer(tiny_config(optim={"grad_clip": 1e-3}), data=synthetic_split())
    scalars = trainer.train_step()
    norm = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in trainer.params if p.grad is not None])
    )
    assert scalars["grad_norm"] > 1e-3  # reported before clipping
    assert float(norm) <= 1e-3 * (1 + 1e-4)


class NaNLoss(nn.Module):
    """Loss whose term ``bad`` turns NaN on call ``at`` (with ``total_only``, only the total does)."""

    def __init__(self, at, total_only=False):
        super().__init__()
        self.calls, self.at, self.total_only = 0, at, total_only

    def forward(self, batch):
        self.calls += 1
        a, b = batch["a"], batch["b"]
        good = (a - b).pow(2).mean()
        bad = good * (float("nan") if self.calls == self.at else 1.0)
        terms = {"good": good.detach(), "bad": (good if self.total_only else bad).detach()}
        return LossOutput(good + bad, terms)


def test_non_finite_term_stops_with_step_and_term(tmp_path):
    trainer = Trainer(tiny_config(), tmp_path, data=synthetic_split(), loss=NaNLoss(at=7))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    assert err.value.step == 7 and "'bad'" in err.value.term
    assert "step 7" in str(err.value) and "bad" in str(err.value) and "nan" in str(err.value)
    last = read_jsonl(tmp_path / "metrics.jsonl")[-1]
    assert last["event"] == "error" and last["step"] == 7 and last["value"] == "nan"
    assert not (tmp_path / "model.safetensors").exists()


def test_non_finite_total_with_finite_terms_names_total():
    trainer = Trainer(tiny_config(), data=synthetic_split(), loss=NaNLoss(at=2, total_only=True))
    trainer.train_step()
    with pytest.raises(NonFiniteLossError, match="step 2: loss 'total'"):
        trainer.train_step()


def test_non_finite_embeddings_name_the_view():
    class Broken(MultiViewEncoder):
        def forward(self, batch):
            out = super().forward(batch)
            out["c"] = out["c"] * float("inf")
            return out

    data = synthetic_split()
    enc = Broken.from_dims(data.train.view_dims, "linear", 8)
    trainer = Trainer(tiny_config(), data=data, encoder=enc)
    with pytest.raises(NonFiniteLossError, match=r"step 1: embeddings of view 'c'"):
        trainer.train_step()


def test_batch_larger_than_the_training_split_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train\.batch_size: 64 exceeds the 48 training rows"):
        Trainer(tiny_config(train={"batch_size": 64}), data=synthetic_split())


def test_thread_count_is_restored_after_fit(tmp_path):
    before = torch.get_num_threads()
    Trainer(
        tiny_config(train={"num_threads": 1, "steps": 2}, optim={"warmup_steps": 0}),
        tmp_path,
        data=synthetic_split(),
    ).fit()
    assert torch.get_num_threads() == before


def test_the_trainer_runs_the_checks_a_loss_deferred(tmp_path):
    # mmgeom train runs losses with value checks off: DAGR's inactive-band warning (it reads the band on
    # the host) is raised at the first train event after calibration instead of inside the loss call.
    cfg = tiny_config(
        loss={"name": "dagr", "kwargs": {"delta": "q0.99", "calibration_steps": 2}},
        train={"steps": 10, "log_every": 5},
    )
    trainer = Trainer(cfg, tmp_path / "run", data=synthetic_split())
    assert trainer.loss_fn.check_values is False
    with pytest.warns(UserWarning, match="nearly inactive"):
        trainer.fit()

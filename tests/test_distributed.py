"""Real 2-process gloo runs (CPU, float64): DDP gradients equal the single-process gradients.

One spawn runs every registered loss (plus labels, masks and the local regime of InfoNCE) and the
trainer's data-parallel path; the tests below check what it recorded.
"""

from __future__ import annotations

import pytest
import torch

import test_distributed_worker as w
from mmgeom.distributed import (
    DistributedLoss,
    gather_with_grad,
    get_rank,
    get_world_size,
    shard_rows,
)
from mmgeom.losses import create_loss, list_losses
from mmgeom.train import Trainer

WORLD = 2

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Each rank's recorded gradients (one spawn for the whole module)."""
    return w.spawn(tmp_path_factory.mktemp("ddp"), WORLD, extra=w.trainer_in_worker)


@pytest.fixture(scope="module")
def reference():
    """The single-process gradients of the concatenated batch, per case."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {c.key: w.run_case(c, slice(None)) for c in w.cases()}
    finally:
        torch.set_num_threads(threads)


def _close(actual, expected, what):
    if expected is None:
        assert actual is None or not bool(actual.abs().max() > 0), what
        return
    assert actual is not None, f"{what}: no gradient"
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-9, msg=lambda m: f"{what}: {m}")


def test_every_registered_loss_is_covered():
    keys = {c.name for c in w.cases()}
    assert set(list_losses()) <= keys


@pytest.mark.parametrize("case", [c.key for c in w.cases()])
def test_ddp_parameter_gradients_equal_single_process(ranks, reference, case):
    ref = reference[case]
    for rank, res in enumerate(ranks):
        got = res["cases"][case]
        for part in ("model", "loss"):
            for name, grad in ref[part].items():
                _close(got[part][name], grad, f"rank {rank} {part}.{name}")
        assert got["total"] == pytest.approx(ref["total"], rel=1e-9)


@pytest.mark.parametrize("case", [c.key for c in w.cases()])
def test_input_gradients_are_world_size_times_single_process(ranks, reference, case):
    """The gather's backward sums W copies of dL/dZ_r; only parameter gradients are averaged by DDP."""
    ref = reference[case]
    local = w.GLOBAL_BATCH // WORLD
    for rank, res in enumerate(ranks):
        rows = slice(rank * local, (rank + 1) * local)
        for view, grad in ref["inputs"].items():
            _close(res["cases"][case]["inputs"][view], WORLD * grad[rows], f"rank {rank} input {view}")


def test_gather_with_grad_sums_the_ranks_gradients(ranks):
    x = [torch.arange(6, dtype=torch.float64).reshape(3, 2) + 10 * r for r in range(WORLD)]
    expected_gathered = torch.cat(x)
    base = torch.arange(3 * WORLD * 2, dtype=torch.float64).reshape(3 * WORLD, 2)
    total_weight = sum(base * (r + 1) for r in range(WORLD))  # d/dx of sum_r (w_r * gathered)
    for rank, res in enumerate(ranks):
        g = res["gather"]
        torch.testing.assert_close(g["gathered"], expected_gathered)
        torch.testing.assert_close(g["grad"], total_weight[3 * rank : 3 * rank + 3])
        assert not g["plain_requires_grad"]  # dist.all_gather drops the graph


def test_single_process_helpers_are_transparent():
    assert get_rank() == 0 and get_world_size() == 1
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(x) is x
    loss = create_loss("infonce")
    batch = {"a": torch.randn(4, 3), "b": torch.randn(4, 3)}
    assert torch.equal(DistributedLoss(loss)(batch).total, loss(batch).total)


def test_shard_rows_reassembles_the_global_batch():
    idx = torch.randperm(12)
    parts = [shard_rows(idx, r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), idx) and all(len(p) == 4 for p in parts)
    with pytest.raises(ValueError, match="not divisible by the 5 ranks"):
        shard_rows(idx, 0, 5)


def test_local_regime_only_for_infonce():
    with pytest.raises(ValueError, match="infonce only"):
        DistributedLoss(create_loss("unialign"), regime="local")
    with pytest.raises(ValueError, match="regime"):
        DistributedLoss(create_loss("infonce"), regime="sideways")


# ------------------------------------------------------------------------------ the trainer under DDP


def test_ddp_trainer_matches_the_single_process_trainer(ranks):
    """2 ranks x 8 rows = the same global batch of 16 as 1 rank: the same weights after 6 AdamW steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single = Trainer(w.trainer_config(), data=w.synthetic_split())
    for _ in range(6):
        single.train_step()
    torch.set_num_threads(threads)
    for res in ranks:
        for name, value in single.encoder.state_dict().items():
            torch.testing.assert_close(res["extra"]["plain"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    for name, value in ranks[0]["extra"]["plain"].items():  # DDP keeps the replicas identical
        assert torch.equal(ranks[1]["extra"]["plain"][name], value)


def test_ddp_run_interrupted_on_one_rank_resumes_bit_identically(ranks):
    for res in ranks:
        extra = res["extra"]
        assert extra["interrupted_at"] == 2  # every rank stopped at the same step
        assert all(torch.equal(extra["resumed"][k], v) for k, v in extra["ref"].items())
    events = ranks[0]["extra"]["stopped_events"]
    assert ("interrupted", 2) in events and ("resume", 2) in events and events[-1] == ("end", 6)


def test_ddp_non_finite_on_one_rank_is_skipped_by_every_rank(ranks):
    for res in ranks:
        assert res["extra"]["skip"] == {"skipped": 1, "steps": 6}
    (event,) = ranks[0]["extra"]["skip_events"]
    assert event["step"] == 2 and event["term"] == "embeddings of view 'c'" and event["value"] == "inf"

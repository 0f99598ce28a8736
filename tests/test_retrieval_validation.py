"""Bad inputs raise ValueError naming the argument, the shape and the expectation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgeom import validation
from mmgeom.retrieval import relevance_from_labels, retrieval_metrics, topk

Q = torch.randn(4, 8)
G = torch.randn(20, 8)


def test_nan_in_gallery_names_gallery_and_row():
    g = G.clone()
    g[13, 2] = float("nan")
    with pytest.raises(ValueError, match=r"gallery: row 13 contains NaN or Inf"):
        topk(Q, g, 3, chunk_size=5)
    with pytest.raises(ValueError, match=r"gallery: row 13"):
        retrieval_metrics(Q, g, torch.zeros(4, dtype=torch.long))


def test_inf_in_query_names_query():
    q = Q.clone()
    q[1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"query: row 1 contains NaN or Inf"):
        topk(q, G, 3)


def test_nan_in_memmap_chunk(tmp_path):
    g = np.lib.format.open_memmap(tmp_path / "g.npy", mode="w+", dtype=np.float32, shape=(20, 8))
    g[:] = G.numpy()
    g[17, 0] = np.nan
    with pytest.raises(ValueError, match=r"gallery: row 17"):
        topk(Q, g, 2, chunk_size=(4, 6))


@pytest.mark.parametrize("k", [0, 21, -1])
def test_k_out_of_range_names_k_and_n_g(k):
    with pytest.raises(ValueError, match=rf"k: expected 1 <= k <= N_g = 20, got k = {k}"):
        topk(Q, G, k)


def test_k_not_an_integer():
    with pytest.raises(ValueError, match="k: expected an integer"):
        topk(Q, G, 2.5)  # type: ignore[arg-type]


def test_dimension_mismatch():
    with pytest.raises(
        ValueError, match=r"gallery: expected dimension D = 8 as query \(4, 8\), got shape \(20, 9\)"
    ):
        topk(Q, torch.randn(20, 9), 3)
    with pytest.raises(ValueError, match="dimension D = 8"):
        retrieval_metrics(Q, torch.randn(20, 9), torch.zeros(4, dtype=torch.long))


def test_bad_shapes_and_types():
    with pytest.raises(ValueError, match=r"query: expected shape \(N, D\), got \(8,\)"):
        topk(torch.randn(8), G, 3)
    with pytest.raises(ValueError, match=r"gallery: expected a torch\.Tensor or numpy array"):
        topk(Q, [[1.0] * 8], 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gallery: expected a floating-point tensor"):
        topk(Q, torch.ones(20, 8, dtype=torch.long), 3)


def test_unknown_metric_and_backend():
    with pytest.raises(ValueError, match=r"metric: expected one of \['cosine', 'dot'\], got 'l2'"):
        topk(Q, G, 3, metric="l2")
    with pytest.raises(ValueError, match=r"backend: expected one of \['auto', 'torch', 'faiss'\], got 'an"):
        topk(Q, G, 3, backend="annoy")
    with pytest.raises(ValueError, match="metric: expected one of"):
        retrieval_metrics(Q, G, torch.zeros(4, dtype=torch.long), metric="euclid")


def test_gallery_magnitudes_checks():
    with pytest.raises(ValueError, match=r"gallery_magnitudes: expected shape \(20,\)"):
        topk(Q, G, 3, gallery_magnitudes=torch.ones(19))
    bad = torch.ones(20)
    bad[5] = -0.5
    with pytest.raises(ValueError, match=r"gallery_magnitudes: expected values >= 0, got -0\.5 at row 5"):
        topk(Q, G, 3, gallery_magnitudes=bad)
    with pytest.raises(ValueError, match="gallery_magnitudes: contains NaN"):
        topk(Q, G, 3, gallery_magnitudes=torch.full((20,), float("nan")))
    with pytest.raises(ValueError, match="metric='cosine' only"):
        topk(Q, G, 3, metric="dot", gallery_magnitudes=torch.ones(20))


def test_zero_row_under_cosine():
    g = G.clone()
    g[4] = 0
    with pytest.raises(ValueError, match="gallery: row 4 is all zeros"):
        topk(Q, g, 3)
    topk(Q, g, 3, metric="dot")  # fine for dot


@pytest.mark.parametrize("fused", [False, True])
def test_zero_row_is_found_in_every_engine_and_tiny_rows_are_not_zero(
    fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check first looks at the row norms; a row of tiny values has norm 0 where the norm is reduced
    # in float32 (its squares underflow) but is not all zeros, and must not be reported as such.
    if not fused:
        monkeypatch.setattr("mmgeom.retrieval._plan.MIN_FUSED_FLOPS", float("inf"))
    g = G.clone()
    g[7] = 1e-30
    topk(Q, g, 3)
    g[11] = 0
    with pytest.raises(ValueError, match="gallery: row 11 is all zeros"):
        topk(Q, g, 3)


def test_chunk_and_memory_arguments():
    with pytest.raises(ValueError, match="chunk_size"):
        topk(Q, G, 3, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        topk(Q, G, 3, chunk_size=(2, 3, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_memory_mb"):
        topk(Q, G, 3, max_memory_mb=-1)


def test_relevance_checks():
    with pytest.raises(
        ValueError, match=r"relevance: query 2 lists gallery index 20, outside \[0, N_g = 20\)"
    ):
        retrieval_metrics(Q, G, [[0], [1], [20], [3]])
    with pytest.raises(ValueError, match="relevance: expected 4 queries"):
        retrieval_metrics(Q, G, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"relevance: expected a boolean matrix of shape \(4, 20\)"):
        retrieval_metrics(Q, G, torch.ones(4, 19, dtype=torch.bool))
    with pytest.raises(ValueError, match="relevance: expected a \\(N_q,\\) integer tensor"):
        retrieval_metrics(Q, G, torch.ones(4, 20, dtype=torch.long))
    with pytest.raises(ValueError, match="relevance: expected integer ids"):
        retrieval_metrics(Q, G, torch.zeros(4))
    with pytest.raises(ValueError, match="query_labels: expected integer ids"):
        relevance_from_labels(torch.zeros(4), torch.zeros(20, dtype=torch.long))


def test_ks_checks():
    with pytest.raises(ValueError, match=r"ks: expected 1 <= ks <= N_g = 20, got ks = 50"):
        retrieval_metrics(Q, G, torch.zeros(4, dtype=torch.long), ks=(1, 50))
    with pytest.raises(ValueError, match="ks: expected a non-empty sequence"):
        retrieval_metrics(Q, G, torch.zeros(4, dtype=torch.long), ks=())


def test_value_checks_can_be_switched_off():
    g = G.clone()
    g[3, 3] = float("nan")
    with validation(False):
        scores, _ = topk(Q, g, 2, metric="dot")  # no error: the caller opted out
    assert scores.shape == (4, 2)

"""Input handling shared by top-k search and retrieval metrics (not public API).

Queries are small enough to hold once as a float32 (float64) matrix; galleries may be torch tensors,
numpy arrays or numpy memmaps and are only ever read and converted chunk by chunk.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validation import check_choice, validation_enabled

METRICS = ("cosine", "dot")
BACKENDS = ("auto", "torch", "faiss")

#: Guard added to norms before dividing (all-zero rows are rejected before it matters).
EPS = 1e-12


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scores are accumulated in float64 for float64 inputs and in float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _torch_dtype(x: Tensor | np.ndarray) -> torch.dtype:
    if isinstance(x, Tensor):
        return x.dtype
    return torch.from_numpy(np.empty(0, dtype=x.dtype)).dtype


class Embeddings:
    """A ``(N, D)`` embedding matrix (torch tensor, numpy array or memmap) read in row chunks.

    Args:
        x: the matrix.
        name: argument name used in error messages (``"query"`` or ``"gallery"``).
    """

    def __init__(self, x: object, name: str) -> None:
        if isinstance(x, np.ndarray):
            if x.dtype.kind != "f":
                raise ValueError(f"{name}: expected a floating-point array, got dtype {x.dtype}")
        elif isinstance(x, Tensor):
            if not x.is_floating_point():
                raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
        else:
            raise ValueError(
                f"{name}: expected a torch.Tensor or numpy array of shape (N, D), got {type(x).__name__}"
            )
        if x.ndim != 2:
            raise ValueError(f"{name}: expected shape (N, D), got {tuple(x.shape)}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"{name}: expected N >= 1 and D >= 1, got shape {tuple(x.shape)}")
        self.data: Tensor | np.ndarray = x
        self.name = name
        self.n, self.d = int(x.shape[0]), int(x.shape[1])
        self.dtype = _torch_dtype(x)
        self.compute_dtype = compute_dtype(self.dtype)
        self.device = x.device if isinstance(x, Tensor) else torch.device("cpu")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.d)

    def chunk(self, start: int, stop: int, *, check: bool = True) -> Tensor:
        """Rows ``[start, stop)`` in the compute dtype; a view when no conversion is needed."""
        x = self.data
        if isinstance(x, Tensor):
            out = x[start:stop].detach().to(self.compute_dtype)
        else:
            part = np.asarray(x[start:stop])
            with warnings.catch_warnings():
                # Read-only memmaps: the tensor is never written to, so sharing the buffer is safe.
                warnings.simplefilter("ignore", UserWarning)
                out = torch.from_numpy(part).to(self.compute_dtype)
        if not out.is_contiguous():
            out = out.contiguous()
        if check:
            check_finite_rows(out, self.name, start)
        return out

    def rows(self, index: Tensor) -> Tensor:
        """The rows at ``index`` (1-D int64), in their stored precision (float64 stays float64).

        A negative index is an error, never a row counted from the end (NumPy would read one).
        """
        if index.numel() and int(index.min()) < 0:
            raise ValueError(f"{self.name}: row index {int(index.min())} is negative; row ids are >= 0")
        x = self.data
        if isinstance(x, Tensor):
            return x.detach().index_select(0, index.to(x.device))
        picked = np.asarray(x[index.cpu().numpy()])
        return torch.from_numpy(picked)


def check_finite_rows(x: Tensor, name: str, offset: int = 0) -> None:
    """Raise naming the first row of ``x`` (numbered from ``offset``) that holds NaN or Inf."""
    if not validation_enabled():
        return
    # Fast path: NaN and Inf propagate into row sums (one vectorised pass); a sum that overflowed on
    # finite entries only costs the exact check below.
    if bool(torch.isfinite(x.sum(dim=1)).all()):
        return
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        raise ValueError(
            f"{name}: row {offset + int(bad[0])} contains NaN or Inf "
            f"({int(bad.numel())} such row(s) in rows {offset}..{offset + x.shape[0] - 1})"
        )


def check_nonzero_rows(x: Tensor, name: str, offset: int = 0) -> None:
    """Cosine scoring needs a direction: raise naming the first all-zero row."""
    if not validation_enabled():
        return
    zero = (x.abs().amax(dim=1) == 0).nonzero()
    if zero.numel():
        raise ValueError(
            f"{name}: row {offset + int(zero[0])} is all zeros; its direction is undefined "
            "under metric='cosine'"
        )


@dataclass(frozen=True)
class Scoring:
    """How a (query, gallery) pair is scored: ``metric`` and optional L2Dir candidate magnitudes."""

    metric: str
    magnitudes: Tensor | None  # (N_g,) float64 on CPU, or None

    @property
    def normalise(self) -> bool:
        return self.metric == "cosine"


def check_scoring(metric: str, gallery_magnitudes: object, n_gallery: int) -> Scoring:
    """Validate ``metric`` and ``gallery_magnitudes`` and return the scoring description."""
    check_choice(metric, "metric", METRICS)
    if gallery_magnitudes is None:
        return Scoring(metric, None)
    if metric != "cosine":
        raise ValueError(
            "gallery_magnitudes: magnitude scoring <q/|q|, r_d g/|g|> is defined for metric='cosine' "
            f"only, got metric={metric!r}"
        )
    if isinstance(gallery_magnitudes, np.ndarray):
        mags = torch.from_numpy(np.asarray(gallery_magnitudes, dtype=np.float64))
    elif isinstance(gallery_magnitudes, Tensor):
        mags = gallery_magnitudes.detach().to("cpu", torch.float64)
    else:
        raise ValueError(
            f"gallery_magnitudes: expected a tensor of shape ({n_gallery},), "
            f"got {type(gallery_magnitudes).__name__}"
        )
    if mags.shape != (n_gallery,):
        raise ValueError(
            f"gallery_magnitudes: expected shape ({n_gallery},) (one magnitude per gallery row), "
            f"got {tuple(mags.shape)}"
        )
    if not bool(torch.isfinite(mags).all()):
        raise ValueError("gallery_magnitudes: contains NaN or Inf")
    if bool((mags < 0).any()):
        bad = int((mags < 0).nonzero()[0])
        raise ValueError(f"gallery_magnitudes: expected values >= 0, got {float(mags[bad])} at row {bad}")
    return Scoring(metric, mags.contiguous())


def check_dims(query: Embeddings, gallery: Embeddings) -> None:
    if gallery.d != query.d:
        raise ValueError(
            f"gallery: expected dimension D = {query.d} as query {query.shape}, got shape {gallery.shape}"
        )


def check_k(k: object, n_gallery: int, name: str = "k") -> int:
    """``1 <= k <= N_g``, an integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer 1 <= {name} <= N_g = {n_gallery}, got {k!r}")
    if not 1 <= int(k) <= n_gallery:
        raise ValueError(f"{name}: expected 1 <= {name} <= N_g = {n_gallery}, got {name} = {int(k)}")
    return int(k)


def check_chunk_size(chunk_size: object) -> tuple[int, int] | None:
    """``None``, one positive int (query and gallery chunks) or a ``(query_chunk, gallery_chunk)`` pair."""
    if chunk_size is None:
        return None
    pair: Sequence[Any]
    if isinstance(chunk_size, (int, np.integer)) and not isinstance(chunk_size, bool):
        pair = (chunk_size, chunk_size)
    elif isinstance(chunk_size, (tuple, list)) and len(chunk_size) == 2:
        pair = chunk_size
    else:
        raise ValueError(
            "chunk_size: expected None, an int >= 1 or a (query_chunk, gallery_chunk) pair, "
            f"got {chunk_size!r}"
        )
    out = []
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
            raise ValueError(f"chunk_size: expected positive integers, got {chunk_size!r}")
        out.append(int(v))
    return out[0], out[1]


def check_memory(max_memory_mb: object, default_mb: float) -> int:
    """The memory budget in bytes."""
    if max_memory_mb is None:
        return int(default_mb * 2**20)
    try:
        value = float(max_memory_mb)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"max_memory_mb: expected a number > 0, got {max_memory_mb!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"max_memory_mb: expected a finite value > 0, got {max_memory_mb!r}")
    return int(value * 2**20)


def prepare_query(query: Embeddings, scoring: Scoring) -> Tensor:
    """The whole query matrix in the compute dtype, L2-normalised for cosine (and magnitude) scoring."""
    q = query.chunk(0, query.n)
    if scoring.normalise:
        check_nonzero_rows(q, query.name)
        q = q / q.norm(dim=1, keepdim=True).clamp_min(EPS)
    return q.contiguous()


def scale_gallery_chunk(
    g: Tensor, scoring: Scoring, start: int, name: str = "gallery", out: Tensor | None = None
) -> Tensor:
    """Gallery rows ready for an inner product: normalised (cosine), times ``r_d`` (magnitude).

    ``out``: a buffer of ``g``'s shape and dtype to write the scaled rows into (the fused engines reuse
    two, :class:`mmgeom.retrieval._fused.ChunkSlots`).
    """
    if not scoring.normalise:
        return g
    norms = g.norm(dim=1)
    # a zero row has norm 0; so may a row of tiny values whose squares underflow: the exact check decides
    if validation_enabled() and not bool((norms > 0).all()):
        check_nonzero_rows(g, name, start)
    scale = 1.0 / norms.clamp_min(EPS)
    if scoring.magnitudes is not None:
        stop = start + g.shape[0]
        scale = scale * scoring.magnitudes[start:stop].to(device=g.device, dtype=g.dtype)
    if out is None:
        return g * scale[:, None]
    return torch.mul(g, scale[:, None], out=out)


def scaled_norm_max(g: Tensor, scoring: Scoring, start: int) -> float:
    """Largest row norm of a scaled gallery chunk (cosine rows are unit up to rounding: no pass needed)."""
    if not scoring.normalise:
        return float(g.norm(dim=1).max())
    top = 1.0
    if scoring.magnitudes is not None:
        top = float(scoring.magnitudes[start : start + g.shape[0]].max())
    return top * (1.0 + 1e-5)


def chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """``[(0, size), (size, 2 size), ..., (.., n)]``; the last range may be shorter."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]

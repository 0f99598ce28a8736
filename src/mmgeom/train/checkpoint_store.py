"""Resumable checkpoints: one directory per checkpoint, written atomically, verified when read.

Layout of ``RUN_DIR/checkpoints/``::

    step-00000200/            a periodic (or signal / final) checkpoint; the newest ``keep_last`` are kept
      model.safetensors       encoder weights
      loss.safetensors        the loss's tensors: learnable temperatures, DAGR's delta and call count...
      state.pt                optimizer, scheduler, RNG states, step, sampler position, counters
      manifest.json           written last: step, kind, and the size and SHA-256 of every file
    best/                     the checkpoint of the best evaluation (``checkpoint.best_metric``)

A checkpoint is first written to a hidden temporary directory next to the others, every file fsynced,
then renamed into place with ``os.replace`` (atomic on POSIX): a crash or SIGKILL mid-write leaves either
the previous checkpoint set or the complete new one. Reading verifies the manifest's sizes and checksums
and falls back to the next older checkpoint (with a warning) when one is incomplete or corrupt.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .._io import WRITE_FAILURES, fsync_dir
from ..errors import CheckpointError
from ..version import __version__

CHECKPOINTS_DIR = "checkpoints"
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.safetensors"
LOSS_FILE = "loss.safetensors"
STATE_FILE = "state.pt"
BEST_NAME = "best"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped because it is incomplete or corrupt (an older one is used)."""


@dataclass
class Checkpoint:
    """A checkpoint read back from disk.

    Attributes:
        path: its directory.
        step: updates done when it was written.
        kind: ``"periodic"``, ``"signal"``, ``"final"`` or ``"best"``.
        model: encoder ``state_dict`` tensors.
        loss: loss ``state_dict`` tensors.
        state: everything else (optimizer, scheduler, RNG, sampler, counters).
        manifest: the manifest (``metric`` and ``value`` for the best checkpoint).
        skipped: ``(path, reason)`` of newer checkpoints that could not be used.
    """

    path: Path
    step: int
    kind: str
    model: dict[str, Tensor]
    loss: dict[str, Tensor]
    state: dict[str, Any]
    manifest: dict[str, Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _plain(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


class CheckpointStore:
    """Writes, lists, verifies and prunes the checkpoints of one run directory.

    Args:
        root: the ``checkpoints`` directory (created on the first save).
        keep_last: step checkpoints kept by :meth:`prune` (the best one is never pruned).
    """

    def __init__(self, root: str | Path, keep_last: int = 2) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last: expected >= 1, got {keep_last}")
        self.root = Path(root)
        self.keep_last = int(keep_last)

    # ------------------------------------------------------------------------------------- writing

    def save(
        self,
        step: int,
        model: dict[str, Tensor],
        loss: dict[str, Tensor],
        state: dict[str, Any],
        kind: str = "periodic",
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write one checkpoint atomically and return its directory.

        Args:
            step: updates done.
            model: encoder tensors (``state_dict``).
            loss: loss tensors.
            state: the rest, saved with ``torch.save`` (tensors, numbers, strings, lists, dicts, tuples).
            kind: ``"periodic"``, ``"signal"``, ``"final"`` or ``"best"`` (``"best"`` goes to ``best/``).
            extra: more manifest fields (the best checkpoint's metric and value).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        name = BEST_NAME if kind == "best" else f"step-{int(step):08d}"
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.", suffix=".tmp"))
        try:
            meta = {"mmgeom_version": __version__, "step": str(int(step))}
            _write_or_oserror(
                self.root / name,
                tmp / MODEL_FILE,
                lambda p: save_file(_plain(model), str(p), metadata=meta),
            )
            _write_or_oserror(
                self.root / name,
                tmp / LOSS_FILE,
                lambda p: save_file(_plain(loss), str(p), metadata=meta),
            )
            _write_or_oserror(self.root / name, tmp / STATE_FILE, lambda p: torch.save(state, p))
            files = {}
            for fname in (MODEL_FILE, LOSS_FILE, STATE_FILE):
                _fsync_file(tmp / fname)
                files[fname] = {"bytes": (tmp / fname).stat().st_size, "sha256": _sha256(tmp / fname)}
            manifest = {
                "format": 1,
                "step": int(step),
                "kind": kind,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "mmgeom_version": __version__,
                "files": files,
                **(extra or {}),
            }
            with (tmp / MANIFEST_FILE).open("w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            fsync_dir(tmp)
            target = self.root / name
            old = None
            if target.exists():
                old = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.", suffix=".old"))
                os.replace(target, old / name)
            os.replace(tmp, target)
            fsync_dir(self.root)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if err.filename is not None:
                raise
            # A write that failed inside a buffered flush names no file: name the checkpoint.
            raise OSError(
                err.errno,
                f"{err.strerror or err} while writing checkpoint {name}; the previous checkpoints are intact",
                str(self.root / name),
            ) from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def prune(self) -> list[Path]:
        """Delete all but the newest ``keep_last`` step checkpoints (and stale temporary directories)."""
        removed = []
        for path in self.step_dirs()[self.keep_last :]:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        for stale in self.root.glob(".*.tmp") if self.root.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
        for stale in self.root.glob(".*.old") if self.root.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
        return removed

    # ------------------------------------------------------------------------------------- reading

    def step_dirs(self) -> list[Path]:
        """The ``step-*`` directories, newest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name))]
        return [p for _, p in sorted(found, key=lambda t: t[0], reverse=True)]

    def candidates(self) -> list[Path]:
        """Every checkpoint directory a run could resume from, newest step first (``best/`` included)."""
        paths = self.step_dirs()
        best = self.root / BEST_NAME
        if best.is_dir():
            paths.append(best)
        return sorted(paths, key=_manifest_step, reverse=True)

    def best_manifest(self) -> dict[str, Any] | None:
        """The manifest of ``best/`` if it is there and readable."""
        try:
            return _read_manifest(self.root / BEST_NAME)
        except CheckpointError:
            return None

    def load(self, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Read and verify one checkpoint directory.

        Raises:
            CheckpointError: a missing manifest or file, a size or checksum mismatch, or unreadable data.
        """
        path = Path(path)
        manifest = _read_manifest(path)
        for fname, info in manifest.get("files", {}).items():
            fpath = path / fname
            if not fpath.is_file():
                raise CheckpointError(f"{path}: {fname} is missing")
            size = fpath.stat().st_size
            if size != info.get("bytes"):
                raise CheckpointError(
                    f"{path}: {fname} has {size} bytes, the manifest says {info.get('bytes')}"
                )
            if _sha256(fpath) != info.get("sha256"):
                raise CheckpointError(f"{path}: {fname} does not match its SHA-256 checksum (corrupt)")
        try:
            model = load_file(str(path / MODEL_FILE), device=str(map_location))
            loss = load_file(str(path / LOSS_FILE), device=str(map_location))
            state = torch.load(path / STATE_FILE, map_location=map_location, weights_only=True)
        except Exception as err:  # corrupt despite a matching checksum: report, do not crash
            raise CheckpointError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
        return Checkpoint(
            path, int(manifest["step"]), str(manifest.get("kind", "")), model, loss, state, manifest
        )

    def load_latest(self, map_location: str | torch.device = "cpu") -> Checkpoint:
        """The newest checkpoint that verifies; each unusable newer one is skipped with a warning.

        Raises:
            CheckpointError: there is no checkpoint, or none verifies (every reason is listed).
        """
        skipped: list[tuple[Path, str]] = []
        for path in self.candidates():
            try:
                ckpt = self.load(path, map_location)
            except CheckpointError as err:
                skipped.append((path, str(err)))
                warnings.warn(
                    f"skipping checkpoint {err}; trying an older one", CheckpointWarning, stacklevel=2
                )
                continue
            ckpt.skipped = skipped
            return ckpt
        if not skipped:
            raise CheckpointError(f"{self.root}: no checkpoint to resume from")
        reasons = "\n  ".join(reason for _, reason in skipped)
        raise CheckpointError(f"{self.root}: no usable checkpoint:\n  {reasons}")


def _write_or_oserror(target: Path, file: Path, write: Callable[[Path], object]) -> None:
    """``write(file)``; a failure of the write underneath becomes an ``OSError`` naming ``target``.

    ``torch.save`` reports a full disk as a ``RuntimeError`` (an enforce failure "unexpected pos N vs M"
    from its zip writer) and safetensors as its own error class; both are turned into an ``OSError``
    whose message says which checkpoint was not written and that the previous ones are intact (nothing is
    replaced before every file of the new one is complete).
    """
    try:
        write(file)
    except OSError:
        raise
    except Exception as err:
        if not any(s in str(err) for s in WRITE_FAILURES):
            raise  # not the disk: e.g. an object in the state that cannot be pickled
        text = str(err).splitlines()[0]
        free = shutil.disk_usage(file.parent).free
        code = errno.ENOSPC if free < (1 << 20) or "No space" in str(err) else errno.EIO
        raise OSError(
            code,
            f"writing checkpoint {target.name} failed at {file.name} ({text}; {free} bytes free); "
            "the previous checkpoints are intact",
            str(target),
        ) from err


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST_FILE
    if not file.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST_FILE} (incomplete checkpoint)")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
        int(manifest["step"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable {MANIFEST_FILE} ({err})") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: unreadable {MANIFEST_FILE}")
    return manifest


def _manifest_step(path: Path) -> int:
    m = _STEP_DIR.match(path.name)
    if m:
        return int(m.group(1))
    try:
        return int(_read_manifest(path)["step"])
    except CheckpointError:
        return -1

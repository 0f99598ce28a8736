"""Write a feature store block by block: bounded memory, resumable, finalised atomically.

The importers (:mod:`mmgeom.data.importers`) know the row count and each modality's width before they
read a row, so the builder preallocates every ``features-<m>.npy`` in a work folder ``.<name>.import``
next to the target and fills it in row order with ``pwrite``. Every ``commit_seconds`` ``state.json``
records how many rows are done (replaced atomically), so a killed import reopens the work folder and
continues from there. Because every byte of the final files is a function of the input alone (the
``.npy`` headers, the rows, the seeded split), a resumed import ends byte-identical to an uninterrupted
one. :meth:`StoreBuilder.finalise` writes ids, labels, split, masks and the manifest, fsyncs everything
once, then renames the work folder into place, so a reader never sees half a store.

**Durability.** Written rows are not fsynced block by block: a killed process (SIGKILL, OOM killer,
Ctrl-C, a crash) loses nothing the kernel accepted, since ``pwrite`` puts the bytes in the page cache,
which outlives the process. Only a crash of the operating system or a power cut can lose unsynced
pages; ``state.json`` therefore records the boot id (``/proc/sys/kernel/random/boot_id``) and an import
resumed after a reboot starts over instead of trusting rows that may not have reached the disk. The
finished store is fsynced (every file, then the folder rename) before :meth:`StoreBuilder.finalise`
returns, so a store that exists survives a power cut. With ``durable=False`` (``mmgeom import
--no-sync``) nothing is fsynced and no writeback is started, as ``cp`` does: the store is complete for
every reader as soon as the rename is done, but an operating-system crash or power cut before the
kernel has written it back can lose or corrupt a finished store.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .split import DEFAULT_FRACTIONS, check_fractions
from .store_files import RowFile, boot_id, fsync_dir, fsync_json, replace_json, save_npy
from .store_format import MANIFEST, FeatureStoreError, feature_file, mask_file
from .store_writer import build_manifest, check_target, replace_folder

__all__ = ["StoreBuilder", "seeded_split"]

_STATE = "state.json"

_SEEDED_NAMES = ("test", "train", "val")  # sorted, as the manifest lists split names


def seeded_split_codes(
    labels: np.ndarray | None, n: int, fractions: Sequence[float], seed: int
) -> tuple[np.ndarray, list[str]]:
    """:func:`seeded_split` as ``(uint8 codes, names)`` without a string per row (cheap at millions of rows).

    ``names`` holds only the splits that received rows, sorted; ``codes`` index it.
    """
    _, f_val, f_test = check_fractions(fractions)
    codes = np.full(n, 1, dtype=np.uint8)  # "train"
    groups: list[tuple[list[int], np.ndarray]] = []
    if labels is not None and labels.size and (labels >= 0).all():
        groups = [([seed, int(c)], np.flatnonzero(labels == c)) for c in np.unique(labels)]
    else:
        groups = [([seed], np.arange(n))]
    for key, rows in groups:
        k = rows.size
        n_val, n_test = round(k * f_val), round(k * f_test)
        perm = rows[np.random.default_rng(key).permutation(k)]
        codes[perm[:n_val]] = 2
        codes[perm[n_val : n_val + n_test]] = 0
    used = np.bincount(codes, minlength=3) > 0
    if not used.all():  # drop empty splits and renumber the rest
        remap = np.cumsum(used) - 1
        codes = remap.astype(np.uint8)[codes]
    return codes, [name for name, u in zip(_SEEDED_NAMES, used, strict=True) if u]


def seeded_split(labels: np.ndarray | None, n: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """``(n,)`` split names: stratified by class when every row has a label (``>= 0``), else random.

    Stratified: in each class of ``k`` rows, ``round(k * f_val)`` rows go to ``val`` and ``round(k * f_test)``
    to ``test``, chosen by ``default_rng([seed, class]).permutation(k)`` (the rule of
    :func:`mmgeom.data.stratified_split`). Random: the same rule over all rows with ``default_rng([seed])``.
    """
    codes, names = seeded_split_codes(labels, n, fractions, seed)
    return np.asarray(names, dtype="<U5")[codes]


class StoreBuilder:
    """A store under construction: preallocated memory maps filled block by block (see module docstring).

    Args:
        target: the store folder to create.
        num_rows: ``N``.
        specs: modality → ``(dim, dtype)``, dtype one of the store's feature dtypes.
        fingerprint: JSON description of the input and options; a work folder left by an import with
            another fingerprint is discarded instead of resumed.
        overwrite: replace an existing store at ``target`` (never something that is not a store).
        commit_seconds: record the rows written so far in ``state.json`` at most this often (and at the
            end); a killed import redoes at most this much work. ``0``: every block.
        durable: fsync the finished store before it is renamed into place (see the module docstring).

    Raises:
        FeatureStoreError: ``target`` exists (without ``overwrite``, or is not a store); bad specs.
    """

    def __init__(
        self,
        target: str | Path,
        num_rows: int,
        specs: Mapping[str, tuple[int, str]],
        fingerprint: Mapping[str, Any],
        *,
        overwrite: bool = False,
        commit_seconds: float = 2.0,
        durable: bool = True,
    ) -> None:
        self.target, self.overwrite, self.durable = Path(target), overwrite, bool(durable)
        check_target(self.target, overwrite)
        if num_rows < 1:
            raise FeatureStoreError(f"import: the input has {num_rows} rows; expected at least one")
        self.num_rows = int(num_rows)
        self.specs = {m: (int(d), str(t)) for m, (d, t) in specs.items()}
        self.work = self.target.parent / f".{self.target.name}.import"
        state = {
            "num_rows": self.num_rows,
            "specs": self.specs,
            "fingerprint": json.loads(json.dumps(fingerprint)),
        }
        state = json.loads(json.dumps(state))  # tuples -> lists, so a reloaded state compares equal
        old = self._read_state()
        # Unsynced rows are trusted only within the boot that wrote them (module docstring).
        state["boot_id"] = boot_id()
        resume = old is not None and {k: old.get(k) for k in state} == state
        if not resume:
            self._discard_work()
            self.work.mkdir(parents=True)
        self.rows_done = int(old["rows_done"]) if resume and old is not None else 0
        self._writeback = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmgeom-writeback")
        self.features = {
            m: RowFile(
                self.work / feature_file(m),
                t,
                (self.num_rows, d),
                create=not resume,
                # Without durability there is no final fsync to shorten: leave writeback to the kernel.
                writeback=self._writeback if self.durable else None,
                durable=self.durable,
            )
            for m, (d, t) in self.specs.items()
        }
        self.present = {
            m: RowFile(
                self.work / f"presence-{m}.npy", "bool", (self.num_rows,), create=not resume, durable=False
            )
            for m in self.specs
        }
        self.commit_seconds = float(commit_seconds)
        self._pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._committed_at = time.monotonic()
        # Row blocks written after the last recorded state belong to a block that will be redone.
        for stale in self.work.glob("rows-*.npz"):
            if int(stale.stem.split("-")[1]) >= self.rows_done:
                stale.unlink()
        state["rows_done"] = self.rows_done
        self._state = state
        replace_json(self.work / _STATE, state)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads((self.work / _STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _discard_work(self) -> None:
        if not self.work.exists():
            return
        # Only a folder this builder made (it holds state.json) or an empty one is deleted.
        if not (self.work / _STATE).is_file() and any(self.work.iterdir()):
            raise FeatureStoreError(
                f"{self.work}: exists and is not an mmgeom import work folder; "
                "remove it or pick another target"
            )
        shutil.rmtree(self.work)

    def copy_rows(self, modality: str, start: int, src: int, src_pos: int, nbytes: int, where: str) -> None:
        """Copy rows of ``modality`` from ``start`` on from a file's bytes, in the kernel (no conversion).

        The rows count as written only once :meth:`write` is called for their block (with ``None`` as
        their features): a resume redoes them until then.
        """
        if start < self.rows_done:
            raise FeatureStoreError(f"import: rows from {start} are committed already")
        self.features[modality].copy_rows(start, src, src_pos, nbytes, where)

    def write(
        self,
        start: int,
        features: Mapping[str, np.ndarray | None],
        present: Mapping[str, np.ndarray],
        ids: np.ndarray,
        labels: np.ndarray,
        split: np.ndarray,
    ) -> None:
        """Write rows ``start .. start + b`` (``start`` must equal :attr:`rows_done`), then record them.

        Args:
            features: modality → ``(b, D)`` values (absent rows: anything finite, stored as given), or
                ``None`` where the rows were placed with :meth:`copy_rows` already.
            present: modality → ``(b,)`` bool.
            ids: ``(b,)`` int64 or str ids.
            labels: ``(b,)`` int64 class ids (-1: none) or str class names ("": none).
            split: ``(b,)`` split names ("": not given).
        """
        if start != self.rows_done + sum(len(p[1]) for p in self._pending):
            raise FeatureStoreError(f"import: block starts at row {start}, expected {self.rows_done}")
        b = len(ids)
        for m, x in features.items():
            if x is not None:
                self.features[m].write_rows(start, x)
            self.present[m].write_rows(start, present[m])
        self._pending.append((start, np.asarray(ids), np.asarray(labels), np.asarray(split)))
        done = start + b == self.num_rows
        if done or time.monotonic() - self._committed_at >= self.commit_seconds:
            self.commit()

    def commit(self) -> None:
        """Record the rows written so far in ``state.json`` (after their ids/labels/split side file)."""
        if not self._pending:
            return
        first = self._pending[0][0]
        cols = [np.concatenate([p[k] for p in self._pending]) for k in (1, 2, 3)]
        with open(self.work / f"rows-{first:012d}.npz", "wb") as fh:
            np.savez(fh, ids=cols[0], labels=cols[1], split=cols[2])
        self.rows_done = first + len(cols[0])
        self._pending = []
        self._state["rows_done"] = self.rows_done
        replace_json(self.work / _STATE, self._state)
        self._committed_at = time.monotonic()

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = sorted(self.work.glob("rows-*.npz"))
        cols: dict[str, list[np.ndarray]] = {"ids": [], "labels": [], "split": []}
        for part in parts:
            with np.load(part, allow_pickle=False) as z:
                for k in cols:
                    cols[k].append(z[k])
        ids, labels, split = (np.concatenate(cols[k]) for k in ("ids", "labels", "split"))
        return ids, labels, split

    def finalise(
        self,
        *,
        metadata: Mapping[str, Any] | None = None,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        seed: int = 0,
    ) -> Path:
        """Check ids and presence, write ids/labels/split/masks/manifest, rename into place.

        Labels given as names become class ids in sorted name order (``metadata["class_names"]``). Without
        a split column every row gets a seeded split (:func:`seeded_split`); a split column must name a
        split for every row.

        Raises:
            FeatureStoreError: rows missing, duplicate ids, a row with no modality present, a split column
                that leaves some rows without a split.
        """
        if self.rows_done != self.num_rows:
            raise FeatureStoreError(
                f"import: {self.rows_done} of {self.num_rows} rows written; cannot finalise"
            )
        ids, labels, split = self._rows()
        meta = dict(metadata or {})
        if ids.dtype.kind == "U" and (ids == "").any():
            raise FeatureStoreError(f"ids: row {int(np.flatnonzero(ids == '')[0])} has an empty id")
        # Increasing integer ids (row numbers, the default) are unique without a sort.
        increasing = ids.dtype.kind in "iu" and bool((ids[1:] > ids[:-1]).all())
        values, counts = (ids[:0], ids[:0]) if increasing else np.unique(ids, return_counts=True)
        if (counts > 1).any():
            dup = values[counts > 1][0]
            rows = np.flatnonzero(ids == dup)[:2].tolist()
            raise FeatureStoreError(
                f"ids: {dup.item()!r} appears more than once (rows {rows[0]} and {rows[1]})"
            )
        if labels.dtype.kind == "U":
            names = sorted(set(labels.tolist()) - {""})
            if names and all(s.lstrip("-").isdigit() for s in names):
                # Integer labels that came as text (CSV, Parquet string columns) stay class ids.
                labels = np.asarray([int(s) if s else -1 for s in labels.tolist()], dtype=np.int64)
            else:
                lookup = {s: i for i, s in enumerate(names)}
                labels = np.asarray([lookup.get(s, -1) for s in labels.tolist()], dtype=np.int64)
                meta["class_names"] = names
        labels = labels.astype(np.int64)
        given = split != ""
        if given.any() and not given.all():
            row = int(np.flatnonzero(~given)[0])
            raise FeatureStoreError(f"split: row {row} has no split name; give one for every row or none")
        if not given.any():
            codes, names = seeded_split_codes(labels, self.num_rows, fractions, seed)
            meta["split"] = {"seed": seed, "fractions": list(check_fractions(fractions))}
        else:
            uniq, inverse = np.unique(split, return_inverse=True)
            names = [str(v) for v in uniq]
            codes = inverse.reshape(-1).astype(np.uint8)
        del split
        anything = np.zeros(self.num_rows, dtype=bool)
        kept: dict[str, np.ndarray] = {}
        for m, f in self.present.items():
            mask = f.read_all()
            anything |= mask
            if not mask.all():
                kept[m] = mask
        if not anything.all():
            row = int(np.flatnonzero(~anything)[0])
            raise FeatureStoreError(f"import: row {row} has no modality present")
        for f in (*self.features.values(), *self.present.values()):
            f.close()
        self._writeback.shutdown(wait=True)
        for m, keep in kept.items():
            save_npy(self.work / mask_file(m), keep, self.durable)
        save_npy(self.work / "ids.npy", ids, self.durable)
        save_npy(self.work / "labels.npy", labels, self.durable)
        save_npy(self.work / "split.npy", codes, self.durable)
        shapes = {m: np.empty((0, d), dtype=t) for m, (d, t) in self.specs.items()}
        manifest = build_manifest(
            self.num_rows, shapes, kept, ids, codes, names, json.loads(json.dumps(meta))
        )
        self.features.clear()
        self.present.clear()
        for extra in [*self.work.glob("rows-*.npz"), *self.work.glob("presence-*.npy"), self.work / _STATE]:
            extra.unlink()
        fsync_json(self.work / MANIFEST, manifest, self.durable)
        fsync_dir(self.work, self.durable)
        check_target(self.target, self.overwrite)  # nothing new appeared at the target meanwhile
        replace_folder(self.work, self.target)
        fsync_dir(self.target.parent, self.durable)  # the rename itself
        return self.target

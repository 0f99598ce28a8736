"""``mmgeom study NAME --store PATH``: the studies whose protocol needs only features, on a user's store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["STORE_STUDIES", "run_store_study"]

#: Studies that run on a feature store (the others need bundled prompts, images or decoders).
STORE_STUDIES = ("unialign", "l2dir")


def run_store_study(
    name: str,
    *,
    store: str | Path,
    out: Path,
    anchor: str | None = None,
    modalities: Sequence[str] | None = None,
    relevance: str = "instance",
    seeds: int | None = None,
    quick: bool = False,
    val_fraction: float | None = None,
    max_rows: int | None = None,
) -> Path:
    """Run study ``name`` on the store at ``store``; returns its ``results.md``.

    ``relevance`` applies to l2dir only (UniAlign scores instance retrieval); ``val_fraction`` (share of
    the training rows held out when the store has no ``val`` split) defaults to the study's (0.1 for
    UniAlign, ``settings.val_fraction`` for l2dir).

    Raises:
        ValueError: a study that cannot run on a store, ``seeds < 1``, a relevance other than
            ``"instance"`` for UniAlign, or a bad request of the study (names the store, key and expectation).
    """
    if name not in STORE_STUDIES:
        raise ValueError(
            f"study: {name!r} does not run on a feature store; expected one of {list(STORE_STUDIES)}"
        )
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds: expected >= 1, got {seeds}")
    if name == "unialign":
        from .unialign import run_store as run_unialign

        if relevance != "instance":
            raise ValueError(
                f"relevance: the unialign study scores instance retrieval only, got {relevance!r}"
            )
        return run_unialign(
            store=store,
            out=out,
            anchor=anchor,
            modalities=modalities,
            seeds=seeds,
            quick=quick,
            val_fraction=0.1 if val_fraction is None else val_fraction,
            max_rows=max_rows,
        )
    from .l2dir.store import run_store as run_l2dir

    return run_l2dir(
        store=store,
        out=out,
        anchor=anchor,
        modalities=modalities,
        relevance=relevance,
        seeds=seeds,
        quick=quick,
        val_fraction=val_fraction,
        max_rows=max_rows,
    )

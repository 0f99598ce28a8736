"""The bundled feature sources ``mmgeom features SOURCE OUT_DIR`` writes as feature stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .features import FeatureStore

__all__ = ["FEATURE_SOURCES", "list_feature_sources", "write_fashion_image_store", "write_feature_source"]

#: Sources ``mmgeom features SOURCE OUT_DIR`` can write, with what they hold.
FEATURE_SOURCES: dict[str, str] = {
    "mfeat": "UCI Multiple Features: the six views of 2000 digits as modalities (raw, unstandardised), "
    "labels, a stratified train/val/test split (seed 0); one store in OUT_DIR",
    "fashion-text": "OUT_DIR/text: frozen all-MiniLM-L6-v2 features of 120 Fashion-MNIST class phrasings "
    "('text' = pooled, un-normalised; 'text_direction' = its direction; split train/test = held-out "
    "phrasings); OUT_DIR/images: the 70000 Fashion-MNIST images as 784 pixels in [0, 1], split train/test",
}


def list_feature_sources() -> list[str]:
    """Names accepted by :func:`write_feature_source`."""
    return sorted(FEATURE_SOURCES)


def write_feature_source(name: str, out: str | Path, *, overwrite: bool = False) -> dict[str, FeatureStore]:
    """Write the stores of a bundled source (see :data:`FEATURE_SOURCES`) under ``out``.

    Returns:
        Store name → the opened store (``{"mfeat": ...}`` or ``{"text": ..., "images": ...}``).

    Raises:
        ValueError: an unknown source name.
        DataUnavailableError: the package with the data or the backbone is missing (the message gives the
            install command).
    """
    from .split import stratified_split

    root = Path(out)
    if name == "mfeat":
        from .mfeat import load_mfeat

        data = load_mfeat()
        split = stratified_split(data.labels, seed=0)
        names = np.empty(len(data), dtype="<U5")
        for part in ("train", "val", "test"):
            names[split[part].numpy()] = part
        store = FeatureStore.write(
            root,
            data.views,
            ids=[f"digit{i:04d}" for i in range(len(data))],
            labels=data.labels,
            split=names,
            metadata={"source": "mfeat", "split_seed": 0, "standardised": False},
            overwrite=overwrite,
        )
        return {"mfeat": store}
    if name == "fashion-text":
        from .prompts import write_prompt_store

        return {
            "text": write_prompt_store(root / "text", overwrite),
            "images": write_fashion_image_store(root / "images", overwrite=overwrite),
        }
    raise ValueError(f"source: unknown name {name!r}; available: {list_feature_sources()}")


def write_fashion_image_store(
    path: str | Path,
    *,
    train_rows: int | None = None,
    test_rows: int | None = None,
    overwrite: bool = False,
) -> FeatureStore:
    """Fashion-MNIST images as ``pixels`` (784 values ``uint8 / 255``), labels and train/test split.

    Args:
        path: the store folder.
        train_rows: keep the first ``train_rows`` training images (``None``: all 60000).
        test_rows: keep the first ``test_rows`` test images (``None``: all 10000).
        overwrite: replace an existing store.
    """
    from .fashion_mnist import load_fashion_mnist

    limits = {"train": train_rows, "test": test_rows}
    parts = {s: tuple(t[: limits[s]] for t in load_fashion_mnist(s)) for s in ("train", "test")}
    pixels = torch.cat([x.reshape(len(x), -1) for x, _ in parts.values()]).float() / 255.0
    return FeatureStore.write(
        path,
        {"pixels": pixels},
        ids=[f"{s}{i:05d}" for s, (x, _) in parts.items() for i in range(len(x))],
        labels=torch.cat([y for _, y in parts.values()]),
        split=[s for s, (x, _) in parts.items() for _ in range(len(x))],
        metadata={"source": "fashion-mnist", "pixels": "uint8 / 255, row-major 28x28", "limits": limits},
        overwrite=overwrite,
    )

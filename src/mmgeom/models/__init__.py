"""Models: per-modality projection heads and the multi-view encoder that applies them.

Example:
    >>> from mmgeom.models import MultiViewEncoder
    >>> enc = MultiViewEncoder.from_dims({"pix": 240, "fou": 76}, kind="mlp", out_dim=64, hidden=128)
    >>> out = enc({"pix": torch.randn(8, 240), "fou": torch.randn(8, 76)})
    >>> out["pix"].shape
    torch.Size([8, 64])
"""

from .encoder import MultiViewEncoder
from .heads import LinearHead, MLPHead, ProjectionHead, create_head, list_heads, register_head

__all__ = [
    "LinearHead",
    "MLPHead",
    "MultiViewEncoder",
    "ProjectionHead",
    "create_head",
    "list_heads",
    "register_head",
]

# Fusion classification (issue #5): image encoder and fusion classifiers.
from .cnn import ImageCNN
from .fusion import (
    FUSIONS,
    ConcatFusionHead,
    FusionClassifier,
    FusionOutput,
    LateFusionHead,
    create_fusion_head,
)

__all__ += [
    "FUSIONS",
    "ConcatFusionHead",
    "FusionClassifier",
    "FusionOutput",
    "ImageCNN",
    "LateFusionHead",
    "create_fusion_head",
]

# L2Dir's magnitude head, and the frozen text backbone: it produces features for stores, so it lives in
# mmgeom.data (one floor down) and is re-exported here, where the docs name it. transformers is imported
# only when an encoder is built.
from ..data.text_encoder import (  # noqa: E402
    TEXT_INSTALL,
    BackboneUnavailableError,
    MiniLMTextEncoder,
    TextFeatures,
    mean_pool,
    minilm_model_path,
    text_backbone_available,
)
from .magnitude import MagnitudeHead, weight_decay_groups  # noqa: E402

__all__ += [
    "TEXT_INSTALL",
    "BackboneUnavailableError",
    "MagnitudeHead",
    "MiniLMTextEncoder",
    "TextFeatures",
    "mean_pool",
    "minilm_model_path",
    "text_backbone_available",
    "weight_decay_groups",
]

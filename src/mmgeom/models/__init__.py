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

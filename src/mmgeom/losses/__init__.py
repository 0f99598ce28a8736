"""Loss modules: hold hyper-parameters and state, validate inputs, call :mod:`mmgeom.functional`.

Every loss is called as ``loss(batch, **optional) -> LossOutput`` and is registered by name::

    from mmgeom.losses import create_loss, list_losses
    loss = create_loss("infonce", temperature=0.05, anchor="image")
"""

from .align_uniform import AlignUniformLoss
from .base import LossOutput, MultimodalLoss
from .dagr import DAGRRegularizer
from .gram import GRAMLoss
from .infonce import InfoNCELoss
from .l2dir import L2DirLoss
from .registry import create_loss, get_loss_class, list_losses, register_loss
from .siglip import SigLIPLoss
from .temperature import Temperature
from .unialign import UniAlignLoss

__all__ = [
    "AlignUniformLoss",
    "DAGRRegularizer",
    "GRAMLoss",
    "InfoNCELoss",
    "L2DirLoss",
    "LossOutput",
    "MultimodalLoss",
    "SigLIPLoss",
    "Temperature",
    "UniAlignLoss",
    "create_loss",
    "get_loss_class",
    "list_losses",
    "register_loss",
]

"""mmgeom: geometry-aware multimodal representation learning.

Subpackages: :mod:`mmgeom.functional` (equations), :mod:`mmgeom.losses` (registered loss modules),
:mod:`mmgeom.geometry` (diagnostics), :mod:`mmgeom.retrieval` (exact top-k and metrics),
:mod:`mmgeom.models`, :mod:`mmgeom.data`, :mod:`mmgeom.train`.
"""

from ._validation import set_validation, validation, validation_enabled
from .version import __version__

__all__ = ["__version__", "set_validation", "validation", "validation_enabled"]

"""The Fashion-MNIST class phrasings the studies query with; they live in :mod:`mmgeom.data.prompts`.

Re-exported here (a downward import) because the studies and their results files name this module.
"""

from ..data.prompts import (
    FASHION_PROMPTS,
    PROMPTS_PER_CLASS,
    prompt_fingerprint,
    prompt_is_heldout,
    prompt_table,
    write_prompt_store,
)

__all__ = [
    "FASHION_PROMPTS",
    "PROMPTS_PER_CLASS",
    "prompt_fingerprint",
    "prompt_is_heldout",
    "prompt_table",
    "write_prompt_store",
]

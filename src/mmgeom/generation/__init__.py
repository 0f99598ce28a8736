"""Cross-modal generation from an aligned space (UnCLIP-style decoders) and its evaluation.

A decoder is trained to reconstruct images from *frozen* embeddings of the image modality; at test time
it is fed embeddings of any other modality (or a mix of several). In a well-aligned space those land
where the image embeddings were, so the decoded images look right. No prior network is involved.
"""

from __future__ import annotations

__all__: list[str] = []

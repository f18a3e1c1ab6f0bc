"""Ingest layer: documents -> pages/figures/images/text -> lock embeddings -> Qdrant (+ blobs).

It is the only layer that writes the store.
"""

from ingest.pipeline import Ingestor
from ingest.units import Overrides

__all__ = ["Ingestor", "Overrides"]

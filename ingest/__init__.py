"""Ingest layer: documents -> pages/figures/images/text -> lock embeddings -> Qdrant (+ blobs).

It is the only layer that writes the store.
"""

from ingest.pipeline import IngestOptions, Ingestor

__all__ = ["IngestOptions", "Ingestor"]

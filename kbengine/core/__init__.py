"""kbengine's leaf layer: settings, errors, images, blobs, caches, datasets, vocabulary, schemas,
encoders and the Qdrant store. Every other layer imports it; it imports none of them."""

__version__ = "0.1.0"
"""kbengine's version (``kbengine.__version__`` is this one; a snapshot records it)."""

"""kbengine's leaf layer: settings, errors, images, blobs, caches, datasets, vocabulary, schemas,
encoders and the Qdrant store. Every other layer imports it; it imports none of them."""

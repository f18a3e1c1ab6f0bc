"""Qdrant behind one interface: embedded (qdrant-edge, the default) or a server/cluster (qdrant-client)."""

from __future__ import annotations

from kbengine.core.settings import Settings
from kbengine.core.store.base import Hit, Store, StorePoint
from kbengine.core.store.filters import Where

__all__ = ["Hit", "Store", "StorePoint", "Where", "get_store"]


def get_store(settings: Settings) -> Store:
    """The server store when a URL is set (``:memory:`` included), else the embedded store under ``settings.kb``."""
    if settings.qdrant_url:
        from kbengine.core.store.server import ServerStore

        return ServerStore(
            settings.qdrant_url,
            settings.collection,
            api_key=settings.qdrant_api_key,
            exact=settings.exact_search,
            shard_number=settings.shard_number,
            replication_factor=settings.replication_factor,
        )
    from kbengine.core.store.edge import EdgeStore

    return EdgeStore(settings.kb, hnsw_threshold=settings.hnsw_threshold, exact=settings.exact_search)

"""What a knowledge base is made of below the facade: its store, its blob folder and its settings
(which name the cache folder, ``cache.cache_folder``).

Lifecycle (snapshot, migrate, gc) and verify take these rather than the ``KnowledgeBase`` facade,
so the facade can call them without an import circle. The facade is a ``KnowledgeBaseParts`` (it
has the three attributes); ``Parts`` is one made from a store and the settings it was opened with
(a migrate's target)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kbengine.core.blobs import BlobStore
from kbengine.core.settings import Settings
from kbengine.core.store import Store


def blob_root(settings: Settings) -> Path:
    """The blob folder: ``KBENGINE_BLOB_DIR`` (in server mode a volume every worker shares), else
    ``<kb>/blobs`` beside the embedded store."""
    return Path(settings.blob_dir or (settings.kb / "blobs"))


class KnowledgeBaseParts(Protocol):
    """A knowledge base's store, blob folder and settings."""

    @property
    def store(self) -> Store: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def settings(self) -> Settings: ...


@dataclass(frozen=True)
class Parts:
    """A ``KnowledgeBaseParts`` of its own: a store, its blob folder and its settings."""

    store: Store
    blobs: BlobStore
    settings: Settings

    @classmethod
    def of(cls, settings: Settings, store: Store) -> Parts:
        """The parts of the knowledge base ``settings`` name, on ``store`` (opened from them)."""
        return cls(store, BlobStore(blob_root(settings)), settings)


__all__ = ["KnowledgeBaseParts", "Parts", "blob_root"]

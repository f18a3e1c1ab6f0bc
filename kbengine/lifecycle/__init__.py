"""A knowledge base's lifecycle beyond ingest: snapshot and restore, migrate between the embedded
store and a Qdrant server, and garbage collection of blobs and caches.

Each operation is a function on a knowledge base's parts (its store, blobs and settings:
:class:`~kbengine.core.parts.KnowledgeBaseParts`, which the facade is) or on settings, and returns
a typed report; the facade and the CLI are thin shells over them. What an operation needs beyond
the parts is passed in: ``gc`` the memory banks, ``migrate --verify`` the source's encoder. Like
``kbengine.verify`` this package sits below the facade and never imports it (an import-linter
contract in ``pyproject.toml``), so the facade can call it."""

from kbengine.lifecycle.gc import GcReport, collect_garbage
from kbengine.lifecycle.migrate import MigrateReport, MigrateVerification, migrate, migrate_to
from kbengine.lifecycle.snapshot import (
    RestoreReport,
    SnapshotManifest,
    SnapshotReport,
    create_snapshot,
    read_snapshot,
    restore_snapshot,
)

__all__ = [
    "GcReport",
    "MigrateReport",
    "MigrateVerification",
    "RestoreReport",
    "SnapshotManifest",
    "SnapshotReport",
    "collect_garbage",
    "create_snapshot",
    "migrate",
    "migrate_to",
    "read_snapshot",
    "restore_snapshot",
]

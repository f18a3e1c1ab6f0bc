"""A knowledge base's lifecycle beyond ingest: snapshot and restore, migrate between the embedded
store and a Qdrant server, and garbage collection of blobs and caches.

Each operation is a function on a :class:`~kbengine.facade.KnowledgeBase` (or settings) that
returns a typed report; the facade and the CLI are thin shells over them. Like ``kbengine.verify``
this module sits beside the facade: it reads the facade's objects but never imports the facade
at run time, so the facade can call it."""

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

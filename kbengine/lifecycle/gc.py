"""``kbengine gc``: delete the blobs and cache entries that nothing in the knowledge base uses.

- Blobs: a blob is referenced when a lock's payload names it (``blob``); every blob file in the
  blob folder that no lock names is deleted, never one that is (several documents may share a
  blob: the same photo in two folders is stored once). Temp files left by killed writers go too.
- Caches (``<kb>/cache`` or ``KBENGINE_CACHE_DIR``): a category's memory bank is kept while it
  was built from the category's current normal references (its fingerprint), the type
  centroids while the store holds locks; bank files of other fingerprints, cache files that fail
  their checksum and temp files are deleted. Every cache rebuilds itself when next used.

Safety against writers: an embedded knowledge base is locked by the process that has it open,
so nothing ingests while ``gc`` runs. A Qdrant server cannot be locked: another replica may be
ingesting, and ingest writes a photo's blob before its lock, so in server mode only blobs older
than ``min_age`` seconds (an hour by default) are deleted. In server mode the blob folder
(``KBENGINE_BLOB_DIR``) must belong to this collection alone: blobs of another collection in
the same folder are not referenced by this one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from kbengine.core.banks.references import ReferenceBanks
from kbengine.core.blobs import BLOB_NAME
from kbengine.core.cache import FINGERPRINT, STALE_TEMP_SECONDS, TEMP_PREFIX, cache_folder, damage
from kbengine.core.errors import EmptyKnowledgeBaseError, InvalidInputError
from kbengine.core.parts import KnowledgeBaseParts
from kbengine.core.schemas import BlobRef

SERVER_MIN_AGE = 3600.0
"""Server mode: an unreferenced blob younger than this may belong to an ingest still running."""


class GcReport(BaseModel):
    """What ``gc`` deleted (with ``dry_run``: would delete)."""

    dry_run: bool
    blob_dir: str
    blobs_referenced: int = Field(0, description="Distinct blobs the locks name.")
    blobs_kept: int = Field(0, description="Blob files kept (referenced, or too recent to tell).")
    blobs_recent: int = Field(0, description="Unreferenced blobs kept because they are younger than min_age.")
    blobs_missing: int = Field(0, description="Referenced blobs that are not in the folder (kbengine verify).")
    removed_blobs: list[str] = Field(default_factory=list)
    removed_caches: list[str] = Field(default_factory=list)
    removed_temps: list[str] = Field(default_factory=list)
    bytes_freed: int = 0
    seconds: float = 0.0


def collect_garbage(
    kb: KnowledgeBaseParts,
    *,
    banks: Callable[[], ReferenceBanks],
    dry_run: bool = False,
    min_age: float | None = None,
) -> GcReport:
    """Delete (``dry_run``: list) the blobs and caches of ``kb`` (its store, blobs and settings)
    nothing references; see the module docstring. ``banks``: the knowledge base's memory banks,
    asked for only when bank files are cached (their fingerprints name the encoder, which they
    load). ``min_age``: only unreferenced blobs older than this many seconds go (default 0 for an
    embedded knowledge base, an hour for a server)."""
    started = time.perf_counter()
    if min_age is not None and min_age < 0:
        raise InvalidInputError(f"min_age must be >= 0 seconds (got {min_age})")
    store = kb.store
    if store.read_meta() is None:
        raise EmptyKnowledgeBaseError(
            f"{store.location} holds no knowledge base: gc would take every blob for garbage; check --kb / --url "
            "and --collection"
        )
    age = min_age if min_age is not None else (SERVER_MIN_AGE if kb.settings.qdrant_url else 0.0)
    referenced = {name for hit in store.scroll(fields=BlobRef.fields()) if (name := BlobRef.read(hit.payload).blob)}
    report = GcReport(dry_run=dry_run, blob_dir=str(kb.blobs.root), blobs_referenced=len(referenced))
    now = time.time()
    present: set[str] = set()
    root = kb.blobs.root
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in sorted(folder.iterdir()):
            if path.name.startswith(TEMP_PREFIX):
                _temp(path, now, dry_run, report)
                continue
            if not path.is_file() or not BLOB_NAME.fullmatch(path.name):
                continue  # not ours: left alone
            if path.name in referenced:
                present.add(path.name)
                report.blobs_kept += 1
                continue
            stat = path.stat()
            if now - stat.st_mtime < age:
                report.blobs_recent += 1
                report.blobs_kept += 1
                continue
            report.removed_blobs.append(path.name)
            report.bytes_freed += stat.st_size
            if not dry_run:
                path.unlink(missing_ok=True)
        if not dry_run:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when it is empty now
    report.blobs_missing = len(referenced - present)
    _caches(kb, banks, dry_run, report, now)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _temp(path: Path, now: float, dry_run: bool, report: GcReport) -> None:
    """A temp file of a killed writer: deleted once it is old enough that no writer is still on it."""
    try:
        stat = path.stat()
    except OSError:
        return
    if not path.is_file() or now - stat.st_mtime < STALE_TEMP_SECONDS:
        return
    report.removed_temps.append(str(path))
    report.bytes_freed += stat.st_size
    if not dry_run:
        path.unlink(missing_ok=True)


def _fingerprint(path: Path) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data[FINGERPRINT])
    except Exception:  # as cache.damage: whatever a damaged file raises, it is not current
        return None


def _caches(
    kb: KnowledgeBaseParts, banks: Callable[[], ReferenceBanks], dry_run: bool, report: GcReport, now: float
) -> None:
    from retrieval.centroids import CACHE_NAME

    folder = cache_folder(kb.settings)
    if folder is None or not folder.is_dir():
        return
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    temps = [p for p in files if p.name.startswith(TEMP_PREFIX)]
    for path in temps:
        _temp(path, now, dry_run, report)
    caches = [p for p in files if p.suffix == ".npz" and not p.name.startswith(TEMP_PREFIX)]
    bank_files = [p for p in caches if p.parent.name == "banks"]
    current: set[str] = set()
    if bank_files:
        references = banks()
        for category, has_references in references.categories().items():
            if has_references:
                current.add(references.fingerprint(references.references(category)))
    has_locks = kb.store.count() > 0
    for path in caches:
        if damage(path) is not None:
            stale = True
        elif path in bank_files:
            stale = _fingerprint(path) not in current
        elif path.name == CACHE_NAME:
            stale = not has_locks
        else:
            stale = False  # a cache this version does not know: left alone
        if stale:
            size = path.stat().st_size
            report.removed_caches.append(str(path))
            report.bytes_freed += size
            if not dry_run:
                with contextlib.suppress(OSError):
                    os.unlink(path)

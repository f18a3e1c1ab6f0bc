"""``kbengine verify``: compare a knowledge base's store with its source markers, its blobs and
its caches; say exactly what is damaged and how to repair it. ``repair`` re-ingests the sources
whose files still exist and deletes damaged caches; for damage no source file can repair, it says
to restore a snapshot or to ingest the original files again.

What is checked:

- every source marker's ``locks`` against the locks stored for that source and fingerprint (region
  locks, which ingest derives afterwards, are not counted), and locks without a marker (an
  interrupted ingest);
- every blob a lock names: it exists and its bytes have the sha256 its name says (read in full);
- each source's file still exists: a moved or deleted source is said, not counted as damage (its
  locks are still served; only a repair would need the file);
- every cache file passes its checksum (``kbengine.core.cache``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, computed_field

from kbengine.core.blobs import BlobDamage, BlobStore
from kbengine.core.cache import TEMP_PREFIX, cache_folder, damage, remove_stale_temps
from kbengine.core.errors import InvalidInputError
from kbengine.core.parts import KnowledgeBaseParts
from kbengine.core.schemas import SOURCE_KIND, IngestReport, LockSource, SourceMarker
from kbengine.core.store import Store, Where

Ingest = Callable[[list[str]], IngestReport]
"""How ``repair`` ingests sources again: the facade's ``ingest`` (which keeps its caches current)."""

ProblemKind = Literal[
    "locks missing",
    "locks without marker",
    "blob missing",
    "blob damaged",
    "payload damaged",
    "cache damaged",
    "source moved or deleted",
]

NOT_FROM_SOURCES = (
    "its source file is gone: restore the knowledge base from a snapshot (a copy of the folder, or a Qdrant "
    "snapshot in server mode), or ingest the original files again (kbengine ingest PATH)"
)


class Problem(BaseModel):
    """One thing ``verify`` found: what is damaged, and how to repair it."""

    kind: ProblemKind
    source: str | None = Field(None, description="The source file whose locks or blobs are concerned.")
    files: list[str] = Field(default_factory=list, description="The damaged blobs or cache files, or point ids.")
    detail: str
    repair: str
    damage: bool = Field(True, description="False for what needs no repair (a source file moved or deleted).")


class VerifyReport(BaseModel):
    """What ``kbengine verify`` found (after ``--repair``: what is left, and what it did)."""

    location: str
    locks: int = 0
    blobs: int = 0
    sources: int = 0
    caches: int = 0
    problems: list[Problem] = Field(default_factory=list)
    repaired: list[str] = Field(default_factory=list, description="What --repair did.")
    seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Nothing is damaged (a moved or deleted source file is not damage)."""
        return not any(p.damage for p in self.problems)


@dataclass
class _Source:
    """What the store holds of one source file."""

    key: str
    document: str = ""
    markers: dict[str, int] = field(default_factory=dict)
    """Fingerprint -> the locks its marker says were stored."""
    stored: Counter[str] = field(default_factory=Counter)
    """Fingerprint -> the (non-region) locks stored."""
    blobs: set[str] = field(default_factory=set)

    @property
    def exists(self) -> bool:
        return os.path.exists(self.key)

    @property
    def ingest_path(self) -> str:
        """What to ingest to redo this source: its document's file or folder (so a folder's image
        keeps the folder's labels), else the file itself."""
        return self.document if self.document and os.path.exists(self.document) else self.key


@dataclass
class _Findings:
    report: VerifyReport
    sources: dict[str, _Source]
    recount: set[str]
    """Sources with fewer or more locks than their marker says: the marker goes before the source
    is ingested again (else ingest would find it unchanged)."""
    caches: list[Path]


def verify(kb: KnowledgeBaseParts, *, repair: bool = False, ingest: Ingest | None = None) -> VerifyReport:
    """Check ``kb`` (its store, blobs and settings; see the module docstring); with ``repair``,
    repair what can be, ingesting damaged sources again through ``ingest``, and check again."""
    started = time.perf_counter()
    if repair and ingest is None:
        raise InvalidInputError("verify(repair=True) ingests sources again: pass ingest (the facade's kb.ingest)")
    found = _inspect(kb.store, kb.blobs, cache_folder(kb.settings))
    if not repair:
        found.report.seconds = round(time.perf_counter() - started, 3)
        return found.report
    assert ingest is not None  # checked above
    done = _repair(kb, found, ingest)
    report = _inspect(kb.store, kb.blobs, cache_folder(kb.settings)).report
    report.repaired = done
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _inspect(store: Store, blobs: BlobStore, cache: Path | None) -> _Findings:
    sources: dict[str, _Source] = {}
    problems: list[Problem] = []
    locks = 0
    unreadable: list[str] = []
    for hit in store.scroll(Where.of(kind=SOURCE_KIND), fields=SourceMarker.fields()):
        try:
            marker = SourceMarker.read(hit.payload)
        except ValidationError:
            unreadable.append(hit.id)
            continue
        sources.setdefault(marker.source, _Source(marker.source)).markers[marker.source_sha] = marker.locks
    for hit in store.scroll(fields=LockSource.fields()):
        locks += 1
        try:
            lock = LockSource.read(hit.payload)
        except ValidationError:
            unreadable.append(hit.id)
            continue
        entry = sources.setdefault(lock.source, _Source(lock.source))
        entry.document = entry.document or lock.doc_source
        if lock.kind != "region":
            entry.stored[lock.source_sha] += 1
        if lock.blob:
            entry.blobs.add(lock.blob)
    if unreadable:
        problems.append(
            Problem(
                kind="payload damaged",
                files=unreadable,
                detail=f"{len(unreadable)} point(s) whose payload does not say where they came from",
                repair="their source cannot be told: restore the knowledge base from a snapshot",
            )
        )
    names = sorted({name for entry in sources.values() for name in entry.blobs})
    damaged = _check_blobs(blobs, names)
    recount: set[str] = set()
    for entry in sorted(sources.values(), key=lambda s: s.key):
        found = _source_problems(entry, blobs, damaged)
        problems += found
        if any(p.kind == "locks missing" for p in found):
            recount.add(entry.key)
    bad_caches, checked = _check_caches(cache)
    problems += [
        Problem(
            kind="cache damaged",
            files=[str(path)],
            detail=reason,
            repair="kbengine verify --repair deletes it (or it rebuilds itself, with a warning, when next used)",
        )
        for path, reason in bad_caches
    ]
    report = VerifyReport(
        location=store.location,
        locks=locks,
        blobs=len(names),
        sources=sum(1 for entry in sources.values() if entry.markers),
        caches=checked,
        problems=problems,
    )
    return _Findings(report, sources, recount, [path for path, _ in bad_caches])


def _source_problems(entry: _Source, blobs: BlobStore, damaged: Mapping[str, BlobDamage]) -> list[Problem]:
    exists = entry.exists
    repair = f"kbengine verify --repair ingests {entry.ingest_path} again" if exists else NOT_FROM_SOURCES
    found = []
    for sha, expected in sorted(entry.markers.items()):
        stored = entry.stored.get(sha, 0)
        if stored != expected:
            found.append(
                Problem(
                    kind="locks missing",
                    source=entry.key,
                    detail=f"{stored} lock(s) stored, its source marker says {expected}",
                    repair=repair,
                )
            )
    unmarked = sum(n for sha, n in entry.stored.items() if sha not in entry.markers)
    if unmarked:
        what = "a new version's ingest" if entry.markers else "its ingest"
        found.append(
            Problem(
                kind="locks without marker",
                source=entry.key,
                detail=f"{unmarked} lock(s) without a source marker: {what} was interrupted",
                repair=repair,
            )
        )
    blob_kinds: tuple[tuple[BlobDamage, ProblemKind, str], ...] = (
        ("missing", "blob missing", "are missing"),
        ("damaged", "blob damaged", "do not match their sha256 (or cannot be read)"),
    )
    for status, kind, says in blob_kinds:
        names = sorted(name for name in entry.blobs if damaged.get(name) == status)
        if names:
            found.append(
                Problem(
                    kind=kind,
                    source=entry.key,
                    files=[str(blobs.path(name)) for name in names],
                    detail=f"{len(names)} blob(s) of its locks {says}",
                    repair=repair,
                )
            )
    if not exists:
        locks = sum(entry.stored.values())
        found.append(
            Problem(
                kind="source moved or deleted",
                source=entry.key,
                detail=f"the file is gone; its {locks} lock(s) are still served, but cannot be ingested again from it",
                repair="nothing to repair; to refresh its knowledge, ingest the file where it is now",
                damage=False,
            )
        )
    return found


def _check_blobs(blobs: BlobStore, names: Iterable[str]) -> dict[str, BlobDamage]:
    """The missing or damaged blobs among ``names``, each read in full (in threads: hashing
    and reading release the GIL)."""
    workers = min(8, os.cpu_count() or 1)
    names = list(names)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(blobs.check, names)
        return {name: status for name, status in zip(names, results, strict=True) if status is not None}


def _check_caches(folder: Path | None) -> tuple[list[tuple[Path, str]], int]:
    """The cache files that fail their checksum (with why), and how many were checked."""
    if folder is None or not folder.is_dir():
        return [], 0
    files = sorted(p for p in folder.rglob("*.npz") if not p.name.startswith(TEMP_PREFIX))
    bad = [(path, reason) for path in files if (reason := damage(path)) is not None]
    return bad, len(files)


def _repair(kb: KnowledgeBaseParts, found: _Findings, ingest: Ingest) -> list[str]:
    done: list[str] = []
    for path in found.caches:
        try:
            path.unlink(missing_ok=True)
            done.append(f"deleted the damaged cache {path} (it is rebuilt when next used)")
        except OSError as e:
            done.append(f"could not delete the damaged cache {path} ({e.strerror})")
    folder = cache_folder(kb.settings)
    if folder is not None and folder.is_dir():
        left = sum(remove_stale_temps(p) for p in (folder, *(d for d in folder.rglob("*") if d.is_dir())))
        if left:
            done.append(f"deleted {left} temp file(s) left by killed runs in {folder}")
    damaged_sources = {p.source for p in found.report.problems if p.damage and p.source is not None}
    targets = [found.sources[key] for key in sorted(damaged_sources) if found.sources[key].exists]
    if not targets:
        return done
    for entry in targets:
        if entry.key in found.recount:  # without its marker, ingest redoes the source whole
            kb.store.delete(Where.of(kind=SOURCE_KIND, source=entry.key))
    paths = sorted({entry.ingest_path for entry in targets})
    result = ingest(paths)
    failed = {f.path: f.reason for f in result.failed}
    done += [f"ingested {path} again" for path in paths if path not in failed]
    done += [f"could not ingest {path} again: {reason}" for path, reason in failed.items()]
    for entry in targets:
        before = set(entry.markers) | set(entry.stored)
        if before and entry.key not in failed and kb.store.count(_markers(entry.key, before)) == 0:
            done.append(
                f"{entry.key} changed, or was first ingested with other options (--domain, --category, "
                "--defect-type, --taxonomy): it was ingested again with the defaults; check its labels "
                "(kbengine info), or ingest it as it was first"
            )
    return done


def _markers(source: str, fingerprints: Iterable[str]) -> Where:
    return Where.of(kind=SOURCE_KIND, source=source, source_sha=tuple(sorted(fingerprints)))

"""``kbengine migrate``: copy a knowledge base between the embedded store and a Qdrant server
collection (either way), with its blobs.

The copy goes in batches through the stores' export and import: the metadata point first (it
creates the target collection, with the shards and replication of the target's settings), then
every lock, then the source markers last, as ingest writes them, so a copy that is interrupted
looks like an interrupted ingest (``kbengine verify`` says "locks without marker") until it is
run again. Each batch's blobs are copied before its locks, so a stored lock never names a blob
that is not there yet.

Resumable: point ids are stable (uuid5 of content and encoder), so a second run skips every
point the target already holds with the same payload and copies the rest; run it again after a
kill and it ends with exactly the target of an uninterrupted run. A target that holds points the
source does not (another knowledge base, or a copy taken before documents were removed) is
refused unless ``replace`` is given, which deletes them once everything else is copied.

``verify`` compares the two stores: the point ids and every payload, the vectors of a sample of
points, and the seek results (top-k documents and scores) for a sample of the stored photos, each
side searched with the source's encoder.

Both sides are given as their parts (store, blobs, settings: ``kbengine.core.parts``), the facade
or not; the facade's ``migrate`` calls these functions.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field, computed_field

from kbengine.core.banks.references import ReferenceBanks
from kbengine.core.blobs import BlobStore
from kbengine.core.cache import cache_folder
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import EmptyKnowledgeBaseError, EncoderMismatchError, InvalidInputError
from kbengine.core.parts import KnowledgeBaseParts, Parts
from kbengine.core.schemas import META_KIND, SOURCE_KIND, BlobRef
from kbengine.core.settings import Settings
from kbengine.core.store import StorePoint, Where, get_store
from kbengine.core.store.base import META_ID

if TYPE_CHECKING:
    from retrieval import Seeker

Progress = Callable[[int, int, str], None]
DEFAULT_BATCH = 256
EXPORT_PAGE = 1024
"""Points read from the source per page (written ``batch`` at a time)."""
VECTOR_SAMPLE = 64
SEEK_SAMPLE = 5
SEEK_K = 5
SCORE_TOLERANCE = 1e-5
SHOWN = 10
"""Ids or names a verification lists per kind of mismatch."""


class MigrateVerification(BaseModel):
    """What ``migrate --verify`` compared, and what differed."""

    source_points: int
    target_points: int
    missing: list[str] = Field(default_factory=list, description="Point ids the target lacks (first few).")
    extra: list[str] = Field(default_factory=list, description="Point ids only the target has (first few).")
    payloads_checked: int = 0
    payload_mismatches: list[str] = Field(default_factory=list)
    vectors_checked: int = 0
    vector_mismatches: list[str] = Field(default_factory=list)
    seeks_checked: int = 0
    seek_mismatches: list[str] = Field(default_factory=list, description="The blobs whose seek results differ.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return (
            self.source_points == self.target_points
            and not self.missing
            and not self.extra
            and not self.payload_mismatches
            and not self.vector_mismatches
            and not self.seek_mismatches
        )


class MigrateReport(BaseModel):
    """What ``migrate`` copied."""

    source: str
    target: str
    points: int = Field(description="The source's points (locks, source markers, the metadata point).")
    copied: int = Field(0, description="Points written to the target.")
    skipped: int = Field(0, description="Points the target already held as they are (an earlier, interrupted run).")
    removed: int = Field(0, description="Points only the target held, deleted (replace).")
    blob_dir: str = Field(description="The target's blob folder.")
    blobs_copied: int = 0
    blobs_present: int = 0
    missing_blobs: list[str] = Field(default_factory=list, description="Blobs the source's locks name but lacks.")
    seconds: float = 0.0
    verification: MigrateVerification | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float:
        """Points copied per second."""
        return round(self.copied / self.seconds, 1) if self.seconds > 0 else 0.0


class _BlobCopier:
    def __init__(self, source: BlobStore, target: BlobStore, report: MigrateReport) -> None:
        self.source = source
        self.target = target
        self.report = report
        self.same = _same_folder(source.root, target.root)
        self.done: set[str] = set()

    def copy(self, points: Iterable[StorePoint]) -> None:
        for point in points:
            name = BlobRef.read(point.payload).blob if point.payload.get("kind") != SOURCE_KIND else None
            if not name or name in self.done:
                continue
            self.done.add(name)
            if self.same:
                if not self.source.has(name):
                    self.report.missing_blobs.append(name)
                continue
            if self.target.check(name) is None:
                self.report.blobs_present += 1
                continue
            if self.source.check(name) is not None:
                self.report.missing_blobs.append(name)
                continue
            self.target.discard(name)  # a damaged copy from before: write it again
            self.target.put_bytes(self.source.path(name).read_bytes(), name[64:])
            self.report.blobs_copied += 1


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def migrate(
    source: KnowledgeBaseParts,
    target: KnowledgeBaseParts,
    *,
    batch: int = DEFAULT_BATCH,
    verify: bool = False,
    replace: bool = False,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
) -> MigrateReport:
    """Copy ``source`` into ``target`` (see the module docstring) and return what was done.
    ``encoder``: the source's, which ``verify`` seeks with (needed with it)."""
    started = time.perf_counter()
    if batch < 1:
        raise InvalidInputError(f"batch must be at least 1 (got {batch})")
    if verify and encoder is None:
        raise InvalidInputError("migrate --verify compares seek results: it needs the source's encoder")
    src, dst = source.store, target.store
    meta = src.read_meta()
    if meta is None:
        raise EmptyKnowledgeBaseError(f"{src.location} holds no knowledge base yet: nothing to migrate")
    if _same_folder(Path(src.location), Path(dst.location)) or src.location == dst.location:
        raise InvalidInputError(f"the source and the target are the same store ({src.location})")
    here = dst.read_meta()
    if here is not None and (here.encoder != meta.encoder or here.region_dim != meta.region_dim):
        raise EncoderMismatchError(
            f"{dst.location} holds a knowledge base of {here.encoder.name}; the source's is {meta.encoder.name}: "
            "migrate into another collection or folder"
        )
    source_ids = set(src.ids())
    extra: list[str] = []
    if here is not None:
        extra = [i for i in dst.ids() if i not in source_ids]
        if extra and not replace:
            raise InvalidInputError(
                f"{dst.location} holds {len(extra)} point(s) that are not in {src.location}: it is not an "
                "(interrupted) copy of this knowledge base. Choose another collection or folder, or pass "
                "--replace to make it an exact copy (deleting them)"
            )
    report = MigrateReport(
        source=src.location, target=dst.location, points=len(source_ids), blob_dir=str(target.blobs.root)
    )
    [meta_point] = src.retrieve([META_ID])
    resuming = here is not None
    if not resuming or dst.retrieve([meta_point.id])[0].payload != meta_point.payload:
        dst.import_points([meta_point])
        report.copied += 1
    else:
        report.skipped += 1
    blobs = _BlobCopier(source.blobs, target.blobs, report)
    total = len(source_ids)

    def write(points: list[StorePoint]) -> None:
        todo = _changed(points, dst.retrieve([p.id for p in points])) if resuming else points
        report.skipped += len(points) - len(todo)
        if todo:
            blobs.copy(todo)
            dst.upsert(todo)
            report.copied += len(todo)
        if progress is not None:
            progress(report.copied + report.skipped, total, "")

    markers: list[StorePoint] = []  # written last, as ingest writes them
    for page in src.export(max(batch, EXPORT_PAGE)):  # one unfiltered pass: cheap on every backend
        markers += [p for p in page if p.payload.get("kind") == SOURCE_KIND]
        locks = [p for p in page if p.payload.get("kind") not in (SOURCE_KIND, META_KIND)]
        for i in range(0, len(locks), batch):
            write(locks[i : i + batch])
    for i in range(0, len(markers), batch):
        write(markers[i : i + batch])
    if extra:
        for i in range(0, len(extra), batch):
            dst.delete_ids(extra[i : i + batch])
        report.removed = len(extra)
    dst.finish_writes()
    report.seconds = round(time.perf_counter() - started, 3)
    if verify:
        assert encoder is not None  # checked above
        report.verification = verify_copy(source, target, encoder)
    return report


def _changed(points: Sequence[StorePoint], stored: Sequence[StorePoint]) -> list[StorePoint]:
    """The points the target does not hold with the same payload."""
    held = {p.id: p.payload for p in stored}
    return [p for p in points if held.get(p.id) != p.payload]


def migrate_to(
    source: KnowledgeBaseParts,
    target: Settings,
    *,
    batch: int = DEFAULT_BATCH,
    verify: bool = False,
    replace: bool = False,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
) -> MigrateReport:
    """Copy ``source`` into the store that ``target`` names (a server collection with
    ``qdrant_url``, else the embedded knowledge base ``target.kb``), opened and closed here.
    ``encoder``: the source's, for ``verify``."""
    store = get_store(target)
    try:
        copy = Parts.of(target, store)
        return migrate(source, copy, batch=batch, verify=verify, replace=replace, progress=progress, encoder=encoder)
    finally:
        store.close()


def _seeker(kb: KnowledgeBaseParts, encoder: Encoder) -> Seeker:
    """Seek on ``kb`` with ``encoder``: banks and type centroids of its own, as the facade wires them."""
    from retrieval import Seeker, TypeService  # the retrieval layer loads only when a migrate verifies

    banks = ReferenceBanks(kb.store, encoder, kb.blobs, kb.settings)
    types = TypeService(kb.store, cache_folder(kb.settings), encoder.identity.name)
    return Seeker(kb.store, encoder, banks, kb.settings, types)


def verify_copy(
    source: KnowledgeBaseParts,
    target: KnowledgeBaseParts,
    encoder: Encoder,
    *,
    vectors: int = VECTOR_SAMPLE,
    seeks: int = SEEK_SAMPLE,
    seed: int = 0,
    batch: int = 1024,
) -> MigrateVerification:
    """Compare ``target`` with ``source``: ids and payloads of every point, the vectors of
    ``vectors`` sampled points, and top-k seek results (with ``encoder``, the source's) for
    ``seeks`` sampled stored photos."""
    src, dst = source.store, target.store
    source_ids = list(src.ids())
    target_ids = set(dst.ids())
    result = MigrateVerification(source_points=len(source_ids), target_points=len(target_ids))
    known = set(source_ids)
    result.missing = [i for i in source_ids if i not in target_ids][:SHOWN]
    result.extra = sorted(i for i in target_ids if i not in known)[:SHOWN]
    for i in range(0, len(source_ids), batch):
        ids = source_ids[i : i + batch]
        theirs = {p.id: p.payload for p in dst.retrieve(ids)}
        for point in src.retrieve(ids):
            result.payloads_checked += 1
            if point.id in theirs and theirs[point.id] != point.payload and len(result.payload_mismatches) < SHOWN:
                result.payload_mismatches.append(point.id)
    rng = random.Random(seed)
    sample = rng.sample(source_ids, min(vectors, len(source_ids)))
    theirs_v = {p.id: p.vectors for p in dst.retrieve(sample, vectors=True)}
    for point in src.retrieve(sample, vectors=True):
        result.vectors_checked += 1
        other = theirs_v.get(point.id)
        if other is None:
            continue
        same = set(other) == set(point.vectors) and all(
            np.allclose(other[name], vector, atol=1e-6) for name, vector in point.vectors.items()
        )
        if not same and len(result.vector_mismatches) < SHOWN:
            result.vector_mismatches.append(point.id)
    photos = sorted(
        {
            str(h.payload["blob"])
            for h in src.scroll(Where.of(kind=("image", "figure")), fields=BlobRef.fields())
            if h.payload.get("blob")
        }
    )
    if seeks and photos:
        here, there = _seeker(source, encoder), _seeker(target, encoder)
        for name in rng.sample(photos, min(seeks, len(photos))):
            image = source.blobs.path(name)
            if not image.is_file():
                continue
            ours = here.seek(image, SEEK_K, "topk", include_normal=True)
            found = there.seek(image, SEEK_K, "topk", include_normal=True)
            result.seeks_checked += 1
            same_docs = [h.doc_id for h in ours.hits] == [h.doc_id for h in found.hits]
            same_scores = np.allclose([h.score for h in ours.hits], [h.score for h in found.hits], atol=SCORE_TOLERANCE)
            if not (same_docs and same_scores) and len(result.seek_mismatches) < SHOWN:
                result.seek_mismatches.append(name)
    return result

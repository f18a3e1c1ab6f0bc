"""The ingest pipeline: discover units, skip the unchanged, embed in batches, upsert, commit.

Crash safety: lock ids are deterministic (uuid5 of content sha256 + encoder), and a unit's
``source`` marker point is written only after all its locks are stored. A unit without its
marker is redone on the next run, so an ingest killed at any point and run again ends with
exactly the points of one clean run. An edited file gets new locks first, then its marker, then
its stale locks are deleted: old knowledge is never removed before the new is in.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.discover import Skipped, discover
from ingest.labels import TAXONOMY_FILE, Labeler, Taxonomy, load_taxonomy
from ingest.regions import update_regions
from ingest.units import NAMESPACE, LockItem, Overrides, SourceUnit, lock_id, lock_sha
from kbengine.core.banks.references import ReferenceBanks
from kbengine.core.banks.region import region_dim
from kbengine.core.encoders import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import (
    SOURCE_KIND,
    BlobRef,
    DocumentPreview,
    FigurePreview,
    FileFailure,
    IngestReport,
    LockPayload,
    SourceMarker,
    SourceReport,
    UnlabeledDocument,
)
from kbengine.core.settings import Settings
from kbengine.core.store import Store, StorePoint, Where

Progress = Callable[[int, int, str], None]


@dataclass
class _InFlight:
    unit: SourceUnit
    report: SourceReport
    outstanding: int = 0
    locks: int = 0
    queued: bool = False
    failed: bool = False
    doc_ids: set[str] = field(default_factory=set)
    lost_blobs: list[str] = field(default_factory=list)
    """An unchanged unit ingested again for these missing or damaged blobs."""


class _StopIngest(Exception):
    pass


def _preview(previews: dict[str, DocumentPreview], item: LockItem) -> None:
    """Add ``item`` to its document's preview."""
    doc = item.doc
    preview = previews.get(doc.doc_id)
    if preview is None:
        preview = previews[doc.doc_id] = DocumentPreview(
            source=doc.source,
            title=doc.title,
            domain=doc.domain,
            category=doc.category,
            defect_type=doc.defect_type,
            labels=doc.labels,
            sections=[name for name, _ in doc.sections.items_nonempty()],
        )
    if item.page is not None and item.page not in preview.pages:
        preview.pages.append(item.page)
    if item.ocr and item.page is not None and item.page not in preview.ocr_pages:
        preview.ocr_pages.append(item.page)
    if item.kind == "figure":
        preview.figures.append(FigurePreview(page=item.page, caption=item.text))
    elif item.kind == "image":
        preview.photos += 1
    elif item.kind == "text":
        preview.text_locks += 1


def unlabeled(preview: DocumentPreview) -> UnlabeledDocument | None:
    """A report entry for a document whose labels nothing decided (inferred labels only)."""
    labels = preview.labels
    if labels is None:
        return None
    missing = [name for name, source in (("category", labels.category), ("defect type", labels.defect_type))
               if source.source in ("file name", "default", "scan")]  # fmt: skip
    if not missing:
        return None
    scan = labels.defect_type.source == "scan"
    hint = (
        "a page without a text layer (a scan) that OCR did not read (the report's OCR lines say why): label it in "
        "a sidecar (<file>.yaml, pages: {N: {...}})"
        if scan
        else "name it in a taxonomy (--taxonomy FILE: categories/defect_types with synonyms), a sidecar, "
        "or --category/--defect-type"
    )
    page = min(preview.pages) if preview.pages else None
    return UnlabeledDocument(source=preview.source, page=page, title=preview.title, missing=missing, hint=hint)


def _found(report: IngestReport, unit: SourceUnit) -> None:
    """What reading ``unit`` found besides its locks: notes, a PDF's tables, its pages read by OCR."""
    report.notes += unit.notes
    report.tables += unit.tables
    report.ocr += unit.ocr


class Ingestor:
    """Writes knowledge into the store. One instance per knowledge base."""

    def __init__(self, store: Store, encoder: Encoder, banks: ReferenceBanks, settings: Settings) -> None:
        self.store = store
        self.encoder = encoder
        self.banks = banks
        self.blobs = banks.blobs
        self.settings = settings
        self.batch_size = settings.batch_size

    def labeler(self, taxonomy: Taxonomy | None) -> Labeler:
        """Labels for documents without them: the taxonomy given, else ``<kb>/taxonomy.yaml``, and
        what the knowledge base already holds."""
        if taxonomy is None and self.settings.taxonomy is not None:
            taxonomy = load_taxonomy(self.settings.taxonomy)
        if taxonomy is None and (self.settings.kb / TAXONOMY_FILE).is_file() and self.settings.qdrant_url is None:
            taxonomy = load_taxonomy(self.settings.kb / TAXONOMY_FILE)
        return Labeler(taxonomy, self.store, self.encoder)

    def preview(
        self, paths: Iterable[str | Path], overrides: Overrides | None = None, taxonomy: Taxonomy | None = None
    ) -> IngestReport:
        """What ``ingest`` would store, document by document, writing nothing."""
        started = time.perf_counter()
        overrides = overrides or Overrides()
        report = IngestReport(encoder=self.encoder.identity.name, dry_run=True)
        previews: dict[str, DocumentPreview] = {}
        for entry in discover([Path(p) for p in paths], overrides, self.settings, self.labeler(taxonomy)):
            if isinstance(entry, Skipped):
                if entry.failure:
                    report.failed.append(FileFailure(path=entry.path, reason=entry.reason))
                continue
            try:
                for item in entry.parts():
                    _preview(previews, item)
            except InvalidInputError as e:
                report.failed.append(FileFailure(path=entry.key, reason=str(e).removeprefix(f"{entry.key}: ")))
            except Exception as e:  # a library failing on one file must not stop the preview of the others
                report.failed.append(FileFailure(path=entry.key, reason=f"{type(e).__name__}: {e}"))
            _found(report, entry)
        report.preview = list(previews.values())
        report.documents = len(previews)
        report.unlabeled = [u for p in report.preview if (u := unlabeled(p)) is not None]
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def ingest(
        self,
        paths: Iterable[str | Path],
        overrides: Overrides | None = None,
        strict: bool = False,
        progress: Progress | None = None,
        taxonomy: Taxonomy | None = None,
        units: Iterable[SourceUnit] = (),
    ) -> IngestReport:
        """Store what ``paths`` hold, and ``units`` made by the caller (``ingest.feedback``), the
        same crash-safe way."""
        started = time.perf_counter()
        overrides = overrides or Overrides()
        self.store.ensure_collection(self.encoder.identity, region_dim(self.encoder))
        report = IngestReport(encoder=self.encoder.identity.name)
        options = overrides.model_dump_json() + f"|chunk={self.settings.text_chunk_chars}"
        given = [Path(p) for p in paths]
        labeler = self.labeler(taxonomy) if given else None
        found: list[SourceUnit | Skipped] = list(discover(given, overrides, self.settings, labeler)) if given else []
        found += units
        self._labels: dict[str, DocumentPreview] = {}
        self._pending: list[tuple[_InFlight, LockItem]] = []
        self._pending_images = 0
        self._report = report
        self._docs: set[str] = set()
        try:
            try:
                for done, entry in enumerate(found):
                    if progress:
                        progress(done, len(found), entry.path if isinstance(entry, Skipped) else entry.key)
                    if isinstance(entry, Skipped):
                        self._skipped(entry, strict)
                    else:
                        self._unit(entry, options, strict)
                self._flush()
            except _StopIngest:
                self._pending = [(f, item) for f, item in self._pending if not f.failed]
                self._flush()
            self._regions(progress)
        finally:
            self.store.finish_writes()
            if progress:
                progress(len(found), len(found), "")
        report.unlabeled = [u for p in self._labels.values() if (u := unlabeled(p)) is not None]
        for entry in found:
            if not isinstance(entry, Skipped):
                _found(report, entry)
        report.seconds = round(time.perf_counter() - started, 3)
        if strict and report.failed:
            first = report.failed[0]
            raise InvalidInputError(f"stopped at the first failure (--strict): {first.path}: {first.reason}")
        return report

    def _regions(self, progress: Progress | None) -> None:
        """Region locks up to date with the normal references (see ``ingest.regions``)."""
        meta = self.store.read_meta()
        if meta is not None and not meta.region_dim:
            self._report.notes.append(
                "this knowledge base was made before region locks: ingest into a new one to seek by defect region"
            )
            return
        update = update_regions(self.store, self.banks, progress)
        self._report.notes += [f"region locks not updated for {failure}" for failure in update.failed]
        self._report.regions_added = update.added
        self._report.regions_removed = update.removed
        self._report.without_references = update.without_references

    # -- per unit -------------------------------------------------------------------------
    def _skipped(self, entry: Skipped, strict: bool) -> None:
        if entry.failure:
            self._report.failed.append(FileFailure(path=entry.path, reason=entry.reason))
            self._report.sources.append(SourceReport(path=entry.path, status="failed", reason=entry.reason))
            if strict:
                raise _StopIngest

    def _unit(self, unit: SourceUnit, options: str, strict: bool) -> None:
        try:
            fingerprint = unit.compute_fingerprint(options)
        except OSError as e:
            self._fail(
                _InFlight(unit, SourceReport(path=unit.key, status="failed")), f"cannot read ({e.strerror})", strict
            )
            return
        marker = Where.of(kind=SOURCE_KIND, source=unit.key, source_sha=fingerprint)
        lost: list[str] = []
        if self.store.count(marker) > 0:
            lost = self._damaged_blobs(unit)
            if not lost:
                self._remove_stale(unit)
                self._report.sources.append(SourceReport(path=unit.key, status="unchanged"))
                return
            for name in lost:
                self.blobs.discard(name)  # so that storing its content writes it again
            self._report.notes.append(f"re-ingested {unit.key}: {len(lost)} blob(s) missing or damaged")
        existed = self.store.count(Where.of(source=unit.key)) > 0
        flight = _InFlight(unit, SourceReport(path=unit.key, status="replaced" if existed else "added"))
        flight.lost_blobs = lost
        self._report.sources.append(flight.report)
        try:
            for item in unit.parts():
                flight.outstanding += 1
                flight.locks += 1
                flight.doc_ids.add(item.doc.doc_id)
                if item.doc.labels is not None:
                    _preview(self._labels, item)
                self._pending.append((flight, item))
                self._pending_images += item.kind != "text"
                if self._pending_images >= self.batch_size or len(self._pending) >= 8 * self.batch_size:
                    self._flush()
        except InvalidInputError as e:
            self._fail(flight, str(e).removeprefix(f"{unit.key}: "), strict)
            return
        except Exception as e:  # a library failing on one file must not stop the others
            self._fail(flight, f"{type(e).__name__}: {e}", strict)
            return
        flight.queued = True
        if flight.outstanding == 0:
            self._commit(flight)

    def _damaged_blobs(self, unit: SourceUnit) -> list[str]:
        """The blobs the unchanged ``unit``'s locks name that are missing or not what their name
        says (deleted or edited by hand, a bad disk): the unit is then ingested again."""
        where = Where.of(source=unit.key, source_sha=unit.fingerprint)
        refs = (BlobRef.read(h.payload) for h in self.store.scroll(where, fields=BlobRef.fields()))
        names = {ref.blob for ref in refs if ref.blob}
        return sorted(name for name in names if self.blobs.check(name) is not None)

    def _fail(self, flight: _InFlight, reason: str, strict: bool) -> None:
        flight.failed = True
        self._pending = [(f, item) for f, item in self._pending if f is not flight]
        if flight.unit.fingerprint:
            self.store.delete(Where.of(source=flight.unit.key, source_sha=flight.unit.fingerprint))
        flight.report.status = "failed"
        flight.report.reason = reason
        self._report.failed.append(FileFailure(path=flight.unit.key, reason=reason))
        if strict:
            raise _StopIngest

    # -- batches ----------------------------------------------------------------------------
    def _flush(self) -> None:
        self._pending_images = 0
        while self._pending:
            batch, self._pending = self._pending[: self.batch_size * 4], self._pending[self.batch_size * 4 :]
            self._store_batch(batch)

    def _store_batch(self, batch: list[tuple[_InFlight, LockItem]]) -> None:
        images = [(f, item) for f, item in batch if item.kind != "text"]
        texts = [(f, item) for f, item in batch if item.kind == "text" and self.encoder.has_text]
        points: list[StorePoint] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            vectors = self.encoder.embed_images([item.image for _, item in chunk])  # type: ignore[misc]
            points += [self._point(f, item, "image", v) for (f, item), v in zip(chunk, vectors, strict=True)]
        for start in range(0, len(texts), self.batch_size * 2):
            chunk = texts[start : start + self.batch_size * 2]
            vectors = self.encoder.embed_texts([item.text or "" for _, item in chunk])
            points += [self._point(f, item, "text", v) for (f, item), v in zip(chunk, vectors, strict=True)]
        self.store.upsert(points)
        for flight, item in batch:
            flight.outstanding -= 1
            self._count(item)
        for flight in {id(f): f for f, _ in batch}.values():
            if flight.queued and flight.outstanding == 0 and not flight.failed:
                self._commit(flight)

    def _count(self, item: LockItem) -> None:
        report = self._report
        if item.kind == "page":
            report.pages += 1
        elif item.kind == "figure":
            report.figures += 1
        elif item.kind == "image":
            report.images += 1
        else:
            report.texts += 1
        report.locks_added += 1

    def _point(self, flight: _InFlight, item: LockItem, vector_name: str, vector: np.ndarray) -> StorePoint:
        blob = None
        if item.image_bytes is not None:
            blob = self.blobs.put_bytes(item.image_bytes, item.image_suffix)
            content = item.image_bytes
        else:
            content = (item.text or "").encode()
        sha = lock_sha(flight.unit.key, item.locator, content)
        payload = LockPayload.of(
            item.doc,
            kind=item.kind,
            source=flight.unit.key,
            source_sha=flight.unit.fingerprint,
            sha256=sha,
            encoder=self.encoder.identity.name,
            locator=item.locator,
            page=item.page,
            blob=blob,
            text=item.text,
            ocr=item.ocr,
        )
        return StorePoint(
            id=lock_id(sha, self.encoder.identity.name), vectors={vector_name: vector}, payload=payload.model_dump()
        )

    # -- commit -------------------------------------------------------------------------------
    def _commit(self, flight: _InFlight) -> None:
        unit = flight.unit
        marker = StorePoint(
            id=str(uuid.uuid5(NAMESPACE, f"source:{unit.key}:{unit.fingerprint}")),
            vectors={},
            payload=SourceMarker(
                source=unit.key,
                source_sha=unit.fingerprint,
                unit=unit.kind,
                locks=flight.locks,
                documents=len(flight.doc_ids),
            ).model_dump(),
        )
        self.store.upsert([marker])
        self._remove_stale(unit)
        gone = [name for name in flight.lost_blobs if not self.blobs.has(name)]
        if gone:  # the unit no longer gives that content (a renderer changed): its old locks go
            old = Where.of(source=unit.key, source_sha=unit.fingerprint, blob=tuple(gone))
            self._report.locks_removed += self.store.count(old)
            self.store.delete(old)
        flight.report.documents = len(flight.doc_ids)
        flight.report.locks = flight.locks
        self._docs |= flight.doc_ids
        self._report.documents = len(self._docs)

    def _remove_stale(self, unit: SourceUnit) -> None:
        stale = Where.of(source=unit.key).excluding(source_sha=unit.fingerprint)
        removed = self.store.count(stale)
        if removed:
            self.store.delete(stale)
            self._report.locks_removed += removed
        self.store.delete(Where.of(source=unit.key, kind=SOURCE_KIND).excluding(source_sha=unit.fingerprint))

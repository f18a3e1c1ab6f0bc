"""Taking knowledge out and fixing its labels: ``remove`` and ``relabel`` (ingest is the layer that
writes the store, so its edits live here too).

Both select documents (by id, by source file or folder, by category), change every lock of
them (region locks included), bring the source markers in line, and refresh what derives from
the labels: region locks (``update_regions``, by bank fingerprint, only of the categories the
edit touches: one document out of 100k example photos in ten categories took 5 s when every
category was checked) here; type centroids and memory banks notice by their fingerprints when
next read.

Crash safety: the markers are written first, from counts of what will remain, then the locks
change, then the region locks. Each step is idempotent and the selection is read again on a
second run, so a run killed at any point and run again ends in the state of one clean run (a
removed source's marker is gone before its locks, so a killed remove never leaves a complete
marker over missing locks)."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence

from ingest.regions import update_regions
from kbengine.core.banks.references import ReferenceBanks
from kbengine.core.datasets import under
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import SOURCE_KIND, EditedDocument, EditReport, SourceMarker
from kbengine.core.store import Store, StorePoint, Where
from kbengine.core.vocabulary import check_domain, normalise_name

SELECT_FIELDS = ("doc_id", "source", "doc_source", "kind", "category", "defect_type", "domain", "title")


def select(
    store: Store, *, doc_ids: Sequence[str] = (), source: str | None = None, category: str | None = None
) -> dict[str, EditedDocument]:
    """The documents chosen, with their labels and source files: ``doc_ids``, every document with
    a lock from ``source`` (a file, or a folder its files lie in), every document of ``category``.
    At least one selector is needed."""
    if not doc_ids and not source and not category:
        raise InvalidInputError("say what to change: a document id, a source (file or folder) or a category")
    where = Where.of(doc_id=tuple(doc_ids) or None, category=normalise_name(category) if category else None)
    chosen: dict[str, EditedDocument] = {}
    for hit in store.scroll(where, fields=SELECT_FIELDS):
        payload = hit.payload
        unit, folder = str(payload.get("source", "")), str(payload.get("doc_source", ""))
        if source and not (under(unit, source) or under(folder, source)):
            continue
        doc_id = str(payload["doc_id"])
        if doc_id not in chosen:
            chosen[doc_id] = EditedDocument(
                doc_id=doc_id,
                title=str(payload.get("title", "")),
                domain=str(payload.get("domain")),
                category=str(payload.get("category")),
                defect_type=str(payload.get("defect_type")),
            )
        if unit not in chosen[doc_id].sources:
            chosen[doc_id].sources.append(unit)
    return chosen


def _markers(store: Store, sources: set[str]) -> dict[str, list[tuple[str, SourceMarker]]]:
    found: dict[str, list[tuple[str, SourceMarker]]] = defaultdict(list)
    for source in sorted(sources):
        for hit in store.scroll(Where.of(kind=SOURCE_KIND, source=source)):
            found[source].append((hit.id, SourceMarker.read(hit.payload)))
    return found


def remove(
    store: Store,
    banks: ReferenceBanks,
    *,
    doc_ids: Sequence[str] = (),
    source: str | None = None,
    category: str | None = None,
    dry_run: bool = False,
) -> EditReport:
    """Remove the chosen documents: their locks, the markers of sources left with nothing (so
    ingesting the file again adds it back) or the lock counts of the others, and stale region locks."""
    chosen = select(store, doc_ids=doc_ids, source=source, category=category)
    report = EditReport(action="remove", dry_run=dry_run, documents=_summaries(chosen))
    if not chosen:
        return report
    ids = tuple(chosen)
    gone = Where.of(doc_id=ids)
    report.locks = store.count(gone)
    sources = {unit for doc in chosen.values() for unit in doc.sources}
    removed_per_source: Counter[tuple[str, str]] = Counter()
    for hit in store.scroll(gone.excluding(kind="region"), fields=("source", "source_sha")):
        removed_per_source[(str(hit.payload.get("source")), str(hit.payload.get("source_sha")))] += 1
    updates: list[StorePoint] = []
    drop: list[str] = []
    revision = uuid.uuid4().hex
    for unit, markers in _markers(store, sources).items():
        for marker_id, marker in markers:
            stored = store.count(Where.of(source=unit, source_sha=marker.source_sha).excluding(kind="region"))
            remaining = stored - removed_per_source[(unit, marker.source_sha)]  # counted again on a rerun
            if remaining <= 0:
                drop.append(marker_id)
                report.sources_removed.append(unit)
            else:
                changed = marker.model_copy(update={"locks": remaining, "revision": revision})
                updates.append(StorePoint(id=marker_id, vectors={}, payload=changed.model_dump()))
                report.sources_updated.append(unit)
    if dry_run:
        return report
    if drop:
        store.delete_ids(drop)
    if updates:
        store.upsert(updates)
    store.delete(gone)
    regions = update_regions(store, banks, categories={doc.category for doc in chosen.values()})
    report.regions_added, report.regions_removed = regions.added, regions.removed
    store.finish_writes()
    return report


def relabel(
    store: Store,
    banks: ReferenceBanks,
    *,
    doc_ids: Sequence[str] = (),
    source: str | None = None,
    category: str | None = None,
    new_category: str | None = None,
    new_defect_type: str | None = None,
    new_domain: str | None = None,
    dry_run: bool = False,
) -> EditReport:
    """Give the chosen documents a new category, defect type and/or domain: every lock's payload
    (region locks too; vectors untouched), then region locks against the new category's references."""
    values: dict[str, object] = {}
    if new_category:
        values["category"] = normalise_name(new_category)
    if new_defect_type:
        values["defect_type"] = normalise_name(new_defect_type)
    if new_domain:
        try:
            check_domain(new_domain)
        except ValueError as e:
            raise InvalidInputError(f"domain {new_domain!r}: {e}") from None
        values["domain"] = new_domain
    if not values:
        raise InvalidInputError("say the new labels: a category, a defect type and/or a domain")
    chosen = select(store, doc_ids=doc_ids, source=source, category=category)
    report = EditReport(action="relabel", dry_run=dry_run, documents=_summaries(chosen), labels=dict(values))
    if not chosen:
        return report
    where = Where.of(doc_id=tuple(chosen))
    report.locks = store.count(where)
    if dry_run:
        return report
    revision = uuid.uuid4().hex  # markers first: a run killed after them leaves derived data recomputed
    sources = {unit for doc in chosen.values() for unit in doc.sources}
    store.upsert(
        [
            StorePoint(id=marker_id, vectors={}, payload=marker.model_copy(update={"revision": revision}).model_dump())
            for markers in _markers(store, sources).values()
            for marker_id, marker in markers
        ]
    )
    report.sources_updated = sorted(sources)
    for doc_id in chosen:
        labels = _relabelled_labels(store, doc_id, values)
        store.set_payload(Where.of(doc_id=doc_id), {**values, **({"labels": labels} if labels is not None else {})})
    touched = {doc.category for doc in chosen.values()} | ({str(values["category"])} if "category" in values else set())
    regions = update_regions(store, banks, categories=touched)
    report.regions_added, report.regions_removed = regions.added, regions.removed
    store.finish_writes()
    return report


def _relabelled_labels(store: Store, doc_id: str, values: dict[str, object]) -> dict[str, object] | None:
    """The document's label provenance (from its first lock) with the changed labels marked ``relabel``."""
    for hit in store.scroll(Where.of(doc_id=doc_id), fields=("labels",)):
        labels = dict(hit.payload.get("labels") or {})
        for name in ("category", "defect_type"):
            if name in values:
                labels[name] = {"source": "relabel", "confidence": 1.0}
        return labels
    return None


def _summaries(chosen: dict[str, EditedDocument]) -> list[EditedDocument]:
    for doc in chosen.values():
        doc.sources.sort()
    return sorted(chosen.values(), key=lambda d: (d.category, d.defect_type, d.title, d.doc_id))

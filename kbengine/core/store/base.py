"""The store interface: one Qdrant collection per knowledge base, named vectors ``image`` and
``text`` (cosine), payload indexes on domain/category/defect_type, and a metadata point that
records the encoder identity. What both backends share (paging, hits, the metadata point) is
written here once."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.errors import EncoderMismatchError, InvalidInputError, StoreError
from kbengine.core.schemas.documents import PAYLOAD_FIELDS, CollectionMeta
from kbengine.core.store.filters import FilterModels, Where, locks_only

META_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "kbengine:meta"))
INDEXED_FIELDS = ("domain", "category", "defect_type", "kind", "doc_id", "source", "source_sha")
FACET_LIMIT = 1_000_000
"""Most distinct values a facet returns (categories, defect types: far fewer in practice)."""


class StorePoint(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    vectors: dict[str, np.ndarray]
    payload: dict[str, Any]


class Hit(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = Field(None, description="The named vector, when it was asked for.")


class Store(Protocol):
    """What every Qdrant backend offers; nothing else asks which backend it has."""

    kind: str
    location: str

    def read_identity(self) -> EncoderIdentity | None:
        """The encoder the collection was created with, or None when there is no collection yet."""
        ...

    def read_meta(self) -> CollectionMeta | None:
        """The collection's metadata (encoder, region vector length), or None when there is none."""
        ...

    def ensure_collection(self, identity: EncoderIdentity, region_dim: int | None = None) -> None:
        """Create the collection (vectors ``image``, ``text`` and, with ``region_dim``, ``region``;
        indexes; metadata) if it does not exist."""
        ...

    def upsert(self, points: Sequence[StorePoint]) -> None: ...

    def delete(self, where: Where) -> None: ...

    def count(self, where: Where | None = None) -> int: ...

    def facet(self, field: str, where: Where | None = None) -> dict[str, int]:
        """The number of matching points per value of the indexed payload ``field``
        (``INDEXED_FIELDS``), counted by the engine: no payload is read."""
        ...

    def scroll(
        self, where: Where | None = None, fields: Sequence[str] | None = None, vector: str | None = None
    ) -> Iterator[Hit]:
        """All matching points' payloads (``fields`` only, when given) and, when ``vector`` names
        one, that vector (points without it are left out); score is 0."""
        ...

    def scroll_vectors(
        self, vector: str, where: Where | None = None, fields: Sequence[str] | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], np.ndarray]]:
        """``scroll`` a page at a time for bulk reads of one named vector: the payloads of the
        page's points that have ``vector`` and their (n, d) float32 vectors as one matrix (no
        per-point objects: at 100k locks this is what keeps a full read of the vectors short)."""
        ...

    def search(
        self, vector_name: str, vector: np.ndarray, limit: int, where: Where | None = None, with_vector: bool = False
    ) -> list[Hit]:
        """The ``limit`` nearest locks by cosine similarity, best first."""
        ...

    def finish_writes(self) -> None:
        """Called after an ingest: flush, and build the search index where the size calls for it."""
        ...

    def set_payload(self, where: Where, values: Mapping[str, Any]) -> None:
        """Set these payload fields (``LockPayload`` field names) on every matching lock, keeping
        their other fields and their vectors."""
        ...

    def export(self, batch: int = 256, where: Where | None = None) -> Iterator[list[StorePoint]]:
        """Every point (locks, source markers and the metadata point; ``where`` as given, no
        lock-only default) with all its named vectors and whole payload, ``batch`` at a time,
        in point-id order."""
        ...

    def import_points(self, points: Iterable[StorePoint]) -> int:
        """Upsert exported points as they are (markers and metadata included), creating the
        collection from the metadata point when there is none yet; the number written."""
        ...

    def retrieve(self, ids: Sequence[str], vectors: bool = False) -> list[StorePoint]:
        """The points with these ids that exist (payload, and every vector with ``vectors``)."""
        ...

    def ids(self, where: Where | None = None, batch: int = 1024) -> Iterator[str]:
        """Every point id (``where`` as given: markers and metadata included), in id order."""
        ...

    def delete_ids(self, ids: Sequence[str]) -> None:
        """Delete these points (any kind)."""
        ...

    def close(self) -> None: ...


def named_vector(raw: Any, name: str) -> np.ndarray | None:
    """The ``name`` vector out of a backend's vector field (a dict of named vectors)."""
    if isinstance(raw, Mapping) and raw.get(name) is not None:
        return np.asarray(raw[name], np.float32)
    return None


def scored_hit(point: Any, vector_name: str | None) -> Hit:
    """A backend's scored point (``id``, ``score``, ``payload``, ``vector``) as a :class:`Hit`."""
    return Hit(
        id=str(point.id),
        score=float(point.score),
        payload=dict(point.payload or {}),
        vector=named_vector(point.vector, vector_name) if vector_name else None,
    )


def meta_payload(identity: EncoderIdentity, region_dim: int | None = None) -> dict[str, Any]:
    return CollectionMeta(encoder=identity, region_dim=region_dim).to_payload()


def vector_sizes(identity: EncoderIdentity, region_dim: int | None) -> list[tuple[str, int]]:
    """The collection's named vectors and their lengths (all cosine)."""
    sizes = [("image", identity.image_dim)]
    if identity.text_dim:
        sizes.append(("text", identity.text_dim))
    if region_dim:
        sizes.append(("region", region_dim))
    return sizes


def store_point(record: Any) -> StorePoint:
    """A backend's record (``id``, ``vector``: a dict of named vectors or None, ``payload``) as a
    :class:`StorePoint` (float32 vectors)."""
    raw = record.vector if isinstance(record.vector, Mapping) else {}
    return StorePoint(
        id=str(record.id),
        vectors={name: np.asarray(v, np.float32) for name, v in raw.items() if v is not None},
        payload=dict(record.payload or {}),
    )


def check_payload_fields(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - PAYLOAD_FIELDS)
    if unknown:
        raise InvalidInputError(f"cannot set {', '.join(unknown)}: not a lock payload field")
    if "kind" in values:
        raise InvalidInputError("cannot set a lock's kind: it says what the lock's vectors are")


Page = tuple[Sequence[Any], Any]
"""One page of a backend's scroll: its records and the next offset (None at the end)."""


def paged_hits(fetch: Callable[[Any], Page], vector: str | None) -> Iterator[Hit]:
    """Every record of a backend's paged scroll as a :class:`Hit` (score 0); with ``vector``,
    only the records that have it, the vector attached."""
    offset = None
    while True:
        records, offset = fetch(offset)
        for r in records:
            if vector is None:
                yield Hit(id=str(r.id), score=0.0, payload=dict(r.payload or {}))
            elif (found := named_vector(r.vector, vector)) is not None:
                yield Hit(id=str(r.id), score=0.0, payload=dict(r.payload or {}), vector=found)
        if offset is None:
            return


class QdrantBackend(ABC):
    """What the embedded and the server store share, written once: identity, count, delete,
    scroll and search over the backend's few primitives (a filter, a page, a query)."""

    filters: FilterModels
    location: str
    PAGE_SIZE = 1024
    META_ID = META_ID
    INDEXED_FIELDS = INDEXED_FIELDS

    @staticmethod
    def collection_plan(
        identity: EncoderIdentity, region_dim: int | None
    ) -> tuple[list[tuple[str, int]], dict[str, Any]]:
        """What a new collection needs: its named vectors with their lengths, and the metadata payload."""
        return vector_sizes(identity, region_dim), meta_payload(identity, region_dim)

    @property
    @abstractmethod
    def exists(self) -> bool:
        """Whether the collection exists yet (it is created on the first ingest)."""

    @abstractmethod
    def _meta_payload(self) -> Mapping[str, Any] | None:
        """The metadata point's payload, or None."""

    @abstractmethod
    def _count(self, flt: Any) -> int: ...

    @abstractmethod
    def _facet(self, field: str, flt: Any) -> dict[str, int]: ...

    @abstractmethod
    def _delete(self, flt: Any) -> None: ...

    @abstractmethod
    def _page(self, flt: Any, offset: Any, fields: list[str] | None, vector: str | None) -> Page: ...

    @abstractmethod
    def _query(self, vector_name: str, vector: list[float], limit: int, flt: Any, with_vector: bool) -> list[Any]:
        """The backend's scored points (``id``, ``score``, ``payload``, ``vector``), best first."""

    @abstractmethod
    def _raw_page(self, flt: Any, offset: Any, limit: int, payload: bool, vectors: bool) -> Page:
        """One page of records, in id order: the whole payload or none, every vector or none."""

    @abstractmethod
    def _retrieve(self, ids: list[str], payload: bool, vectors: bool) -> Sequence[Any]:
        """The records of the ids that exist."""

    @abstractmethod
    def _set_payload(self, flt: Any, values: dict[str, Any]) -> None: ...

    @abstractmethod
    def _delete_ids(self, ids: list[str]) -> None: ...

    @abstractmethod
    def upsert(self, points: Sequence[StorePoint]) -> None: ...

    @abstractmethod
    def ensure_collection(self, identity: EncoderIdentity, region_dim: int | None = None) -> None: ...

    def read_meta(self) -> CollectionMeta | None:
        return CollectionMeta.parse(self._meta_payload()) if self.exists else None

    def read_identity(self) -> EncoderIdentity | None:
        meta = self.read_meta()
        return meta.encoder if meta is not None else None

    def count(self, where: Where | None = None) -> int:
        return self._count(self.filters.build(locks_only(where))) if self.exists else 0

    def facet(self, field: str, where: Where | None = None) -> dict[str, int]:
        if field not in INDEXED_FIELDS:
            raise ValueError(f"facet needs an indexed payload field ({', '.join(INDEXED_FIELDS)}), not {field!r}")
        if not self.exists:
            return {}
        try:
            return self._facet(field, self.filters.build(locks_only(where)))
        except Exception:  # a collection made without that payload index: count by reading the field
            found = (h.payload.get(field) for h in self.scroll(where, fields=[field]))
            return dict(Counter(str(value) for value in found if value is not None))

    def delete(self, where: Where) -> None:
        if self.exists:
            self._delete(self.filters.build(locks_only(where)))

    def scroll(
        self, where: Where | None = None, fields: Sequence[str] | None = None, vector: str | None = None
    ) -> Iterator[Hit]:
        if not self.exists:
            return
        flt = self.filters.build(locks_only(where))
        wanted = list(fields) if fields else None
        yield from paged_hits(lambda offset: self._page(flt, offset, wanted, vector), vector)

    def scroll_vectors(
        self, vector: str, where: Where | None = None, fields: Sequence[str] | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], np.ndarray]]:
        if not self.exists:
            return
        flt = self.filters.build(locks_only(where))
        wanted = list(fields) if fields else None
        offset = None
        while True:
            records, offset = self._page(flt, offset, wanted, vector)
            payloads, rows = [], []
            for r in records:
                raw = r.vector
                if isinstance(raw, dict) and raw.get(vector) is not None:
                    payloads.append(dict(r.payload or {}))
                    rows.append(raw[vector])
            if rows:
                yield payloads, np.asarray(rows, np.float32)
            if offset is None:
                return

    def search(
        self, vector_name: str, vector: np.ndarray, limit: int, where: Where | None = None, with_vector: bool = False
    ) -> list[Hit]:
        if not self.exists:
            return []
        query = np.asarray(vector, np.float32).tolist()
        points = self._query(vector_name, query, limit, self.filters.build(where), with_vector)
        return [scored_hit(p, vector_name if with_vector else None) for p in points]

    def set_payload(self, where: Where, values: Mapping[str, Any]) -> None:
        check_payload_fields(values)
        if self.exists and values:
            flt = self.filters.build(locks_only(where))
            self._set_payload(flt if flt is not None else self.filters.combine(None, None), dict(values))

    def export(self, batch: int = 256, where: Where | None = None) -> Iterator[list[StorePoint]]:
        if batch < 1:
            raise InvalidInputError(f"batch must be at least 1 (got {batch})")
        if not self.exists:
            return
        flt = self.filters.build(where)
        offset = None
        while True:
            records, offset = self._raw_page(flt, offset, batch, True, True)
            if records:
                yield [store_point(r) for r in records]
            if offset is None:
                return

    def ids(self, where: Where | None = None, batch: int = 1024) -> Iterator[str]:
        if not self.exists:
            return
        flt = self.filters.build(where)
        offset = None
        while True:
            records, offset = self._raw_page(flt, offset, batch, False, False)
            yield from (str(r.id) for r in records)
            if offset is None:
                return

    def retrieve(self, ids: Sequence[str], vectors: bool = False) -> list[StorePoint]:
        if not self.exists or not ids:
            return []
        return [store_point(r) for r in self._retrieve(list(ids), True, vectors)]

    def delete_ids(self, ids: Sequence[str]) -> None:
        if self.exists and ids:
            self._delete_ids(list(ids))

    def import_points(self, points: Iterable[StorePoint]) -> int:
        batch = list(points)
        meta_point = next((p for p in batch if p.id == self.META_ID), None)
        incoming = CollectionMeta.parse(meta_point.payload) if meta_point is not None else None
        if meta_point is not None and incoming is None:
            raise StoreError("the metadata point being imported has no collection metadata: the export is damaged")
        if not self.exists:
            if incoming is None:
                raise StoreError(
                    "cannot import into a store without a collection before its metadata point: "
                    "import the export's metadata point first"
                )
            self.ensure_collection(incoming.encoder, incoming.region_dim)
        elif incoming is not None:
            here = self.read_meta()
            if here is not None and (here.encoder != incoming.encoder or here.region_dim != incoming.region_dim):
                raise EncoderMismatchError(
                    f"{self.location} holds {here.encoder.name} locks (region vectors: {here.region_dim}); "
                    f"the points come from {incoming.encoder.name} (region vectors: {incoming.region_dim}): "
                    "import them into a new collection or knowledge base"
                )
        if batch:
            self.upsert(batch)
        return len(batch)

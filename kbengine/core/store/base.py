"""The store interface: one Qdrant collection per knowledge base, named vectors ``image`` and
``text`` (cosine), payload indexes on domain/category/defect_type, and a metadata point that
records the encoder identity. What both backends share (paging, hits, the metadata point) is
written here once."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.schemas.documents import CollectionMeta
from kbengine.core.store.filters import FilterModels, Where, locks_only

META_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "kbengine:meta"))
INDEXED_FIELDS = ("domain", "category", "defect_type", "kind", "doc_id", "source", "source_sha")


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

    def scroll(
        self, where: Where | None = None, fields: Sequence[str] | None = None, vector: str | None = None
    ) -> Iterator[Hit]:
        """All matching points' payloads (``fields`` only, when given) and, when ``vector`` names
        one, that vector (points without it are left out); score is 0."""
        ...

    def search(
        self, vector_name: str, vector: np.ndarray, limit: int, where: Where | None = None, with_vector: bool = False
    ) -> list[Hit]:
        """The ``limit`` nearest locks by cosine similarity, best first."""
        ...

    def finish_writes(self) -> None:
        """Called after an ingest: flush, and build the search index where the size calls for it."""
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
    def _delete(self, flt: Any) -> None: ...

    @abstractmethod
    def _page(self, flt: Any, offset: Any, fields: list[str] | None, vector: str | None) -> Page: ...

    @abstractmethod
    def _query(self, vector_name: str, vector: list[float], limit: int, flt: Any, with_vector: bool) -> list[Any]:
        """The backend's scored points (``id``, ``score``, ``payload``, ``vector``), best first."""

    def read_meta(self) -> CollectionMeta | None:
        return CollectionMeta.parse(self._meta_payload()) if self.exists else None

    def read_identity(self) -> EncoderIdentity | None:
        meta = self.read_meta()
        return meta.encoder if meta is not None else None

    def count(self, where: Where | None = None) -> int:
        return self._count(self.filters.build(locks_only(where))) if self.exists else 0

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

    def search(
        self, vector_name: str, vector: np.ndarray, limit: int, where: Where | None = None, with_vector: bool = False
    ) -> list[Hit]:
        if not self.exists:
            return []
        query = np.asarray(vector, np.float32).tolist()
        points = self._query(vector_name, query, limit, self.filters.build(where), with_vector)
        return [scored_hit(p, vector_name if with_vector else None) for p in points]

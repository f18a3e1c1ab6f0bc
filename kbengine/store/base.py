"""The store interface: one Qdrant collection per knowledge base, named vectors ``image`` and
``text`` (cosine), payload indexes on domain/category/defect_type, and a metadata point that
records the encoder identity."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kbengine.encoders.base import EncoderIdentity

META_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "kbengine:meta"))
META_KIND = "meta"
SOURCE_KIND = "source"
"""Marker points (no vectors): ``meta`` records the encoder; ``source`` says a source file's locks
are all stored (written last, so an interrupted ingest is redone on the next run)."""
INDEXED_FIELDS = ("domain", "category", "defect_type", "kind", "doc_id", "source", "source_sha")
SCHEMA_VERSION = 1

Value = str | int | bool


class Where(BaseModel):
    """A payload filter: every ``must`` field equals its value (or one of its values), no
    ``must_not`` field does. Metadata points are always excluded from search and count."""

    model_config = ConfigDict(frozen=True)

    must: dict[str, Value | tuple[Value, ...]] = Field(default_factory=dict)
    must_not: dict[str, Value | tuple[Value, ...]] = Field(default_factory=dict)

    @classmethod
    def of(cls, **must: Value | Sequence[Value] | None) -> Where:
        """Build from keyword arguments, dropping ``None`` values (``Where.of(category=None)`` = all)."""
        return cls(must={k: tuple(v) if isinstance(v, list | tuple) else v for k, v in must.items() if v is not None})


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

    def ensure_collection(self, identity: EncoderIdentity) -> None:
        """Create the collection (vectors, indexes, metadata) if it does not exist."""
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


def meta_payload(identity: EncoderIdentity) -> dict[str, Any]:
    return {"kind": META_KIND, "schema": SCHEMA_VERSION, "encoder": identity.model_dump()}


def identity_from_meta(payload: Mapping[str, Any] | None) -> EncoderIdentity | None:
    if not payload or payload.get("kind") != META_KIND:
        return None
    return EncoderIdentity.model_validate(payload["encoder"])


def with_meta_excluded(where: Where | None) -> Where:
    """Restrict to locks unless the filter names a kind itself."""
    where = where or Where()
    if "kind" in where.must:
        return where
    return Where(must=where.must, must_not={**where.must_not, "kind": (META_KIND, SOURCE_KIND)})

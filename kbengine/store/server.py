"""Qdrant server or cluster through qdrant-client (``--url``); ``:memory:`` (and ``path:DIR``,
qdrant-client's on-disk local mode) run the same code path in-process: the tests use
``:memory:`` when no server is configured."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kbengine.encoders.base import EncoderIdentity
from kbengine.errors import StoreError
from kbengine.store.base import (
    INDEXED_FIELDS,
    META_ID,
    Hit,
    StorePoint,
    Value,
    Where,
    identity_from_meta,
    meta_payload,
    named_vector,
    scored_hit,
    with_meta_excluded,
)

BATCH = 256


def _match(m: Any, key: str, value: Value | tuple[Value, ...]) -> Any:
    if isinstance(value, tuple):
        return m.FieldCondition(key=key, match=m.MatchAny(any=list(value)))
    return m.FieldCondition(key=key, match=m.MatchValue(value=value))


def _filter(m: Any, where: Where | None) -> Any:
    if where is None or (not where.must and not where.must_not):
        return None
    return m.Filter(
        must=[_match(m, k, v) for k, v in where.must.items()] or None,
        must_not=[_match(m, k, v) for k, v in where.must_not.items()] or None,
    )


class ServerStore:
    kind = "server (qdrant-client)"

    def __init__(
        self,
        url: str,
        collection: str,
        api_key: str | None = None,
        exact: bool = False,
        shard_number: int = 1,
        replication_factor: int = 1,
    ) -> None:
        from qdrant_client import QdrantClient, models

        self.m = models
        self.collection = collection
        self.location = f"{url} collection {collection}"
        self.exact = exact
        self.local = url == ":memory:" or url.startswith("path:")
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        try:
            if url == ":memory:":
                self.client = QdrantClient(location=":memory:")
            elif url.startswith("path:"):
                self.client = QdrantClient(path=url.removeprefix("path:"))
            else:
                self.client = QdrantClient(url=url, api_key=api_key, timeout=30)
            self._exists = self.client.collection_exists(collection)
        except Exception as e:
            raise StoreError(
                f"cannot reach the Qdrant server at {url}: {e}. Is it running "
                "(docker compose up -d qdrant)? Check --url / KBENGINE_QDRANT_URL and the API key."
            ) from e

    def read_identity(self) -> EncoderIdentity | None:
        if not self._exists:
            return None
        records = self.client.retrieve(self.collection, [META_ID], with_payload=True)
        return identity_from_meta(records[0].payload if records else None)

    def ensure_collection(self, identity: EncoderIdentity) -> None:
        if self._exists:
            return
        m = self.m
        vectors = {"image": m.VectorParams(size=identity.image_dim, distance=m.Distance.COSINE)}
        if identity.text_dim:
            vectors["text"] = m.VectorParams(size=identity.text_dim, distance=m.Distance.COSINE)
        self.client.create_collection(
            self.collection,
            vectors_config=vectors,
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
        )
        for field in INDEXED_FIELDS if not self.local else ():  # local mode ignores payload indexes
            self.client.create_payload_index(self.collection, field, m.PayloadSchemaType.KEYWORD)
        self.client.upsert(
            self.collection, [m.PointStruct(id=META_ID, vector={}, payload=meta_payload(identity))], wait=True
        )
        self._exists = True

    def upsert(self, points: Sequence[StorePoint]) -> None:
        m = self.m
        for i in range(0, len(points), BATCH):
            batch = [
                m.PointStruct(id=p.id, vector={k: v.tolist() for k, v in p.vectors.items()}, payload=p.payload)
                for p in points[i : i + BATCH]
            ]
            self.client.upsert(self.collection, batch, wait=True)

    def delete(self, where: Where) -> None:
        if not self._exists:
            return
        selector = self.m.FilterSelector(filter=_filter(self.m, with_meta_excluded(where)))
        self.client.delete(self.collection, selector, wait=True)

    def count(self, where: Where | None = None) -> int:
        if not self._exists:
            return 0
        flt = _filter(self.m, with_meta_excluded(where))
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def scroll(
        self, where: Where | None = None, fields: Sequence[str] | None = None, vector: str | None = None
    ) -> Iterator[Hit]:
        if not self._exists:
            return
        offset = None
        flt = _filter(self.m, with_meta_excluded(where))
        while True:
            records, offset = self.client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=1024,
                offset=offset,
                with_payload=list(fields) if fields else True,
                with_vectors=[vector] if vector else False,
            )
            for r in records:
                if vector is None:
                    yield Hit(id=str(r.id), score=0.0, payload=dict(r.payload or {}))
                elif (found := named_vector(r.vector, vector)) is not None:
                    yield Hit(id=str(r.id), score=0.0, payload=dict(r.payload or {}), vector=found)
            if offset is None:
                return

    def search(
        self, vector_name: str, vector: np.ndarray, limit: int, where: Where | None = None, with_vector: bool = False
    ) -> list[Hit]:
        if not self._exists:
            return []
        result = self.client.query_points(
            self.collection,
            query=np.asarray(vector, np.float32).tolist(),
            using=vector_name,
            limit=limit,
            query_filter=_filter(self.m, where),
            with_payload=True,
            with_vectors=[vector_name] if with_vector else False,
            search_params=self.m.SearchParams(exact=True) if self.exact and not self.local else None,
        )
        return [scored_hit(p, vector_name if with_vector else None) for p in result.points]

    def finish_writes(self) -> None:
        """The server indexes on its own."""

    def close(self) -> None:
        self.client.close()

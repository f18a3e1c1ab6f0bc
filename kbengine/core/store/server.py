"""Qdrant server or cluster through qdrant-client (``--url``); ``:memory:`` (and ``path:DIR``,
qdrant-client's on-disk local mode) run the same code path in-process: the tests use
``:memory:`` when no server is configured."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.errors import StoreError
from kbengine.core.store.base import FACET_LIMIT, Page, QdrantBackend, StorePoint
from kbengine.core.store.filters import FilterModels

BATCH = 256


class ServerStore(QdrantBackend):
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

        self.models = models
        self.filters = FilterModels(
            any_of=lambda key, values: models.FieldCondition(key=key, match=models.MatchAny(any=values)),
            equals=lambda key, value: models.FieldCondition(key=key, match=models.MatchValue(value=value)),
            combine=lambda must, must_not: models.Filter(must=must, must_not=must_not),
        )
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

    @property
    def exists(self) -> bool:
        return self._exists

    def _meta_payload(self) -> Mapping[str, Any] | None:
        records = self.client.retrieve(self.collection, [self.META_ID], with_payload=True)
        return records[0].payload if records else None

    def ensure_collection(self, identity: EncoderIdentity, region_dim: int | None = None) -> None:
        if self._exists:
            return
        models = self.models
        sizes, meta = self.collection_plan(identity, region_dim)
        vectors = {name: models.VectorParams(size=size, distance=models.Distance.COSINE) for name, size in sizes}
        self.client.create_collection(
            self.collection,
            vectors_config=vectors,
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
        )
        for field in self.INDEXED_FIELDS if not self.local else ():  # local mode ignores payload indexes
            self.client.create_payload_index(self.collection, field, models.PayloadSchemaType.KEYWORD)
        self.client.upsert(
            self.collection,
            [models.PointStruct(id=self.META_ID, vector={}, payload=meta)],
            wait=True,
        )
        self._exists = True

    def upsert(self, points: Sequence[StorePoint]) -> None:
        models = self.models
        for i in range(0, len(points), BATCH):
            batch = [
                models.PointStruct(id=p.id, vector={k: v.tolist() for k, v in p.vectors.items()}, payload=p.payload)
                for p in points[i : i + BATCH]
            ]
            self.client.upsert(self.collection, batch, wait=True)

    def _delete(self, flt: Any) -> None:
        self.client.delete(self.collection, self.models.FilterSelector(filter=flt), wait=True)

    def _count(self, flt: Any) -> int:
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def _facet(self, field: str, flt: Any) -> dict[str, int]:
        found = self.client.facet(self.collection, field, facet_filter=flt, limit=FACET_LIMIT, exact=True)
        return {str(hit.value): int(hit.count) for hit in found.hits}

    def _page(self, flt: Any, offset: Any, fields: list[str] | None, vector: str | None) -> Page:
        return self.client.scroll(
            self.collection,
            scroll_filter=flt,
            limit=self.PAGE_SIZE,
            offset=offset,
            with_payload=fields or True,
            with_vectors=[vector] if vector else False,
        )

    def _query(self, vector_name: str, vector: list[float], limit: int, flt: Any, with_vector: bool) -> list[Any]:
        result = self.client.query_points(
            self.collection,
            query=vector,
            using=vector_name,
            limit=limit,
            query_filter=flt,
            with_payload=True,
            with_vectors=[vector_name] if with_vector else False,
            search_params=self.models.SearchParams(exact=True) if self.exact and not self.local else None,
        )
        return list(result.points)

    def _raw_page(self, flt: Any, offset: Any, limit: int, payload: bool, vectors: bool) -> Page:
        return self.client.scroll(
            self.collection, scroll_filter=flt, limit=limit, offset=offset, with_payload=payload, with_vectors=vectors
        )

    def _retrieve(self, ids: list[str], payload: bool, vectors: bool) -> Sequence[Any]:
        return self.client.retrieve(self.collection, ids, with_payload=payload, with_vectors=vectors)

    def _set_payload(self, flt: Any, values: dict[str, Any]) -> None:
        self.client.set_payload(self.collection, values, self.models.FilterSelector(filter=flt), wait=True)

    def _delete_ids(self, ids: list[str]) -> None:
        self.client.delete(self.collection, self.models.PointIdsList(points=list(ids)), wait=True)

    def finish_writes(self) -> None:
        """The server indexes on its own."""

    def close(self) -> None:
        self.client.close()

"""Embedded store on qdrant-edge (Qdrant's own engine in-process), under the knowledge base folder.

Chosen by measurement (benchmarks/store.py): qdrant-client's local mode is 10-50x slower to
query and inserts ~100 points/s on disk. The shard searches exactly (plain index) until it holds
``hnsw_threshold`` locks; past that, :meth:`finish_writes` builds the HNSW index once per ingest.
Exact search is 15 ms p50 at 100k 768-d locks here, while an HNSW build takes minutes on 2 cores.
An exclusive file lock keeps a second process out with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import portalocker

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.errors import StoreError, StoreInUseError
from kbengine.core.store.base import FACET_LIMIT, Page, QdrantBackend, StorePoint
from kbengine.core.store.filters import FilterModels

BATCH = 512


def _require_edge() -> Any:
    import qdrant_edge

    return qdrant_edge


class EdgeStore(QdrantBackend):
    kind = "embedded (qdrant-edge)"

    def __init__(self, root: Path, hnsw_threshold: int = 200_000, exact: bool = False) -> None:
        self.root = root
        self.path = root / "qdrant"
        self.location = str(self.path)
        self.hnsw_threshold = hnsw_threshold
        self.exact = exact
        self.qdrant = qdrant = _require_edge()
        self.filters = FilterModels(
            any_of=lambda key, values: qdrant.FieldCondition(key=key, match=qdrant.MatchAny(values)),
            equals=lambda key, value: qdrant.FieldCondition(key=key, match=qdrant.MatchValue(value)),
            combine=lambda must, must_not: qdrant.Filter(must=must, must_not=must_not),
        )
        root.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(root / ".lock", "a+")  # noqa: SIM115 - held for the store's lifetime
        try:
            portalocker.lock(self._lock_file, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.LockException as e:
            self._lock_file.close()
            raise StoreInUseError(
                f"the knowledge base at {root} is in use by another kbengine process; wait for it "
                "to finish, or use a Qdrant server (--url) for concurrent access"
            ) from e
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        self.shard: Any = None
        if (self.path / "edge_config.json").exists():
            try:
                self.shard = self.qdrant.EdgeShard.load(str(self.path))
            except Exception as e:
                self.close()
                raise StoreError(f"cannot open the embedded store at {self.path}: {e}") from e

    @property
    def exists(self) -> bool:
        return self.shard is not None

    def _meta_payload(self) -> Mapping[str, Any] | None:
        records = self.shard.retrieve([self.META_ID], True, False)
        return records[0].payload if records else None

    def ensure_collection(self, identity: EncoderIdentity, region_dim: int | None = None) -> None:
        if self.shard is not None:
            return
        qdrant = self.qdrant
        sizes, meta = self.collection_plan(identity, region_dim)
        # vectors memory-mapped from disk, not read in at open (benchmarks/seek.py at 100k 1280-d
        # locks: 0.79 GB resident after opening instead of 1.75 GB, peak 2.1 GB instead of 2.6 GB,
        # the same search latency once the pages are cached)
        vectors = {
            name: qdrant.EdgeVectorParams(size=size, distance=qdrant.Distance.Cosine, on_disk=True)
            for name, size in sizes
        }
        self.shard = qdrant.EdgeShard.create(str(self.path), qdrant.EdgeConfig(vectors=vectors))
        for field in self.INDEXED_FIELDS:
            self.shard.update(qdrant.UpdateOperation.create_field_index(field, qdrant.PayloadSchemaType.Keyword))
        self.shard.update(qdrant.UpdateOperation.upsert_points([qdrant.Point(self.META_ID, {}, meta)]))
        self.shard.flush()

    def upsert(self, points: Sequence[StorePoint]) -> None:
        qdrant = self.qdrant
        for i in range(0, len(points), BATCH):
            batch = [
                qdrant.Point(p.id, {k: v.tolist() for k, v in p.vectors.items()}, p.payload)
                for p in points[i : i + BATCH]
            ]
            self.shard.update(qdrant.UpdateOperation.upsert_points(batch))

    def _delete(self, flt: Any) -> None:
        self.shard.update(self.qdrant.UpdateOperation.delete_points_by_filter(flt))

    def _count(self, flt: Any) -> int:
        return int(self.shard.count(self.qdrant.CountRequest(filter=flt)))

    def _facet(self, field: str, flt: Any) -> dict[str, int]:
        request = self.qdrant.FacetRequest(field, limit=FACET_LIMIT, exact=True, filter=flt)
        return {str(hit.value): int(hit.count) for hit in self.shard.facet(request).hits}

    def _page(self, flt: Any, offset: Any, fields: list[str] | None, vector: str | None) -> Page:
        request = self.qdrant.ScrollRequest(
            offset=offset,
            limit=self.PAGE_SIZE,
            filter=flt,
            with_payload=fields or True,
            with_vector=[vector] if vector else None,
        )
        return self.shard.scroll(request)

    def _query(self, vector_name: str, vector: list[float], limit: int, flt: Any, with_vector: bool) -> list[Any]:
        qdrant = self.qdrant
        request = qdrant.QueryRequest(
            limit=limit,
            query=qdrant.Query.Nearest(vector, using=vector_name),
            filter=flt,
            with_payload=True,
            with_vector=[vector_name] if with_vector else None,
            params=qdrant.SearchParams(exact=True) if self.exact else None,
        )
        return self.shard.query(request)

    def _raw_page(self, flt: Any, offset: Any, limit: int, payload: bool, vectors: bool) -> Page:
        request = self.qdrant.ScrollRequest(
            offset=offset, limit=limit, filter=flt, with_payload=payload, with_vector=vectors
        )
        return self.shard.scroll(request)

    def _retrieve(self, ids: list[str], payload: bool, vectors: bool) -> Sequence[Any]:
        return self.shard.retrieve(ids, payload, vectors)

    def _set_payload(self, flt: Any, values: dict[str, Any]) -> None:
        self.shard.update(self.qdrant.UpdateOperation.set_payload_by_filter(flt, values))

    def _delete_ids(self, ids: list[str]) -> None:
        self.shard.update(self.qdrant.UpdateOperation.delete_points(ids))

    def finish_writes(self) -> None:
        if self.shard is None:
            return
        self.shard.flush()
        if self.count() >= self.hnsw_threshold:
            self.shard.optimize()

    def close(self) -> None:
        if getattr(self, "shard", None) is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None
        if not self._lock_file.closed:
            portalocker.unlock(self._lock_file)
            self._lock_file.close()

"""Embedded store on qdrant-edge (Qdrant's own engine in-process), under the knowledge base folder.

Chosen by measurement (benchmarks/store.py): qdrant-client's local mode is 10-50x slower to
query and inserts ~100 points/s on disk. The shard searches exactly (plain index) until it holds
``hnsw_threshold`` locks; past that, :meth:`finish_writes` builds the HNSW index once per ingest.
Exact search is 15 ms p50 at 100k 768-d locks here, while an HNSW build takes minutes on 2 cores.
An exclusive file lock keeps a second process out with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import portalocker

from kbengine.encoders.base import EncoderIdentity
from kbengine.errors import StoreError, StoreInUseError
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

BATCH = 512


def _require_edge() -> Any:
    import qdrant_edge

    return qdrant_edge


def _match(q: Any, key: str, value: Value | tuple[Value, ...]) -> Any:
    if isinstance(value, tuple):
        return q.FieldCondition(key=key, match=q.MatchAny(list(value)))
    return q.FieldCondition(key=key, match=q.MatchValue(value))


def _filter(q: Any, where: Where | None) -> Any:
    if where is None or (not where.must and not where.must_not):
        return None
    return q.Filter(
        must=[_match(q, k, v) for k, v in where.must.items()] or None,
        must_not=[_match(q, k, v) for k, v in where.must_not.items()] or None,
    )


class EdgeStore:
    kind = "embedded (qdrant-edge)"

    def __init__(self, root: Path, hnsw_threshold: int = 200_000, exact: bool = False) -> None:
        self.root = root
        self.path = root / "qdrant"
        self.location = str(self.path)
        self.hnsw_threshold = hnsw_threshold
        self.exact = exact
        self.q = _require_edge()
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
                self.shard = self.q.EdgeShard.load(str(self.path))
            except Exception as e:
                self.close()
                raise StoreError(f"cannot open the embedded store at {self.path}: {e}") from e

    def read_identity(self) -> EncoderIdentity | None:
        if self.shard is None:
            return None
        records = self.shard.retrieve([META_ID], True, False)
        return identity_from_meta(records[0].payload if records else None)

    def ensure_collection(self, identity: EncoderIdentity) -> None:
        if self.shard is not None:
            return
        q = self.q
        vectors = {"image": q.EdgeVectorParams(size=identity.image_dim, distance=q.Distance.Cosine)}
        if identity.text_dim:
            vectors["text"] = q.EdgeVectorParams(size=identity.text_dim, distance=q.Distance.Cosine)
        self.shard = q.EdgeShard.create(str(self.path), q.EdgeConfig(vectors=vectors))
        for field in INDEXED_FIELDS:
            self.shard.update(q.UpdateOperation.create_field_index(field, q.PayloadSchemaType.Keyword))
        self.shard.update(q.UpdateOperation.upsert_points([q.Point(META_ID, {}, meta_payload(identity))]))
        self.shard.flush()

    def upsert(self, points: Sequence[StorePoint]) -> None:
        q = self.q
        for i in range(0, len(points), BATCH):
            batch = [
                q.Point(p.id, {k: v.tolist() for k, v in p.vectors.items()}, p.payload) for p in points[i : i + BATCH]
            ]
            self.shard.update(q.UpdateOperation.upsert_points(batch))

    def delete(self, where: Where) -> None:
        if self.shard is None:
            return
        self.shard.update(self.q.UpdateOperation.delete_points_by_filter(_filter(self.q, with_meta_excluded(where))))

    def count(self, where: Where | None = None) -> int:
        if self.shard is None:
            return 0
        return int(self.shard.count(self.q.CountRequest(filter=_filter(self.q, with_meta_excluded(where)))))

    def scroll(
        self, where: Where | None = None, fields: Sequence[str] | None = None, vector: str | None = None
    ) -> Iterator[Hit]:
        if self.shard is None:
            return
        q = self.q
        offset = None
        flt = _filter(q, with_meta_excluded(where))
        with_payload: Any = list(fields) if fields else True
        while True:
            records, offset = self.shard.scroll(
                q.ScrollRequest(
                    offset=offset,
                    limit=1024,
                    filter=flt,
                    with_payload=with_payload,
                    with_vector=[vector] if vector else None,
                )
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
        if self.shard is None:
            return []
        q = self.q
        request = q.QueryRequest(
            limit=limit,
            query=q.Query.Nearest(np.asarray(vector, np.float32).tolist(), using=vector_name),
            filter=_filter(q, where),
            with_payload=True,
            with_vector=[vector_name] if with_vector else None,
            params=q.SearchParams(exact=True) if self.exact else None,
        )
        return [scored_hit(p, vector_name if with_vector else None) for p in self.shard.query(request)]

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

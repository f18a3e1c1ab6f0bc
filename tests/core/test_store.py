"""Both Qdrant backends behind one interface: the embedded qdrant-edge store and qdrant-client
(``:memory:`` here; a real server when KBENGINE_QDRANT_URL is set)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.errors import StoreInUseError
from kbengine.core.settings import Settings
from kbengine.core.store import StorePoint, Where, get_store

IDENTITY = EncoderIdentity(name="test:enc", image_dim=8, text_dim=4, joint_space=False)


def _backends(tmp_path):
    yield "edge", Settings(kb=tmp_path / "kb")
    yield "memory", Settings(qdrant_url=":memory:", collection=f"t{uuid.uuid4().hex[:8]}")
    if os.environ.get("KBENGINE_QDRANT_URL"):
        yield "server", Settings(qdrant_url=os.environ["KBENGINE_QDRANT_URL"], collection=f"t{uuid.uuid4().hex[:8]}")


def _points(n: int, rng: np.random.Generator) -> list[StorePoint]:
    return [
        StorePoint(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))),
            vectors={"image": rng.normal(size=8).astype(np.float32)},
            payload={
                "category": "a" if i % 2 else "b",
                "defect_type": "x",
                "kind": "image",
                "source": f"s{i % 3}",
                "i": i,
            },
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_store_roundtrip(tmp_path, backend, monkeypatch):
    settings = dict(_backends(tmp_path))[backend]
    store = get_store(settings)
    try:
        assert store.read_identity() is None and store.count() == 0
        store.ensure_collection(IDENTITY)
        assert store.read_identity() == IDENTITY
        rng = np.random.default_rng(0)
        points = _points(50, rng)
        store.upsert(points)
        store.upsert(points[:10])  # idempotent
        assert store.count() == 50
        assert store.count(Where.of(category="a")) == 25
        query = points[7].vectors["image"]
        hits = store.search("image", query, 5)
        assert hits[0].id == points[7].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
        vectors = np.stack([p.vectors["image"] for p in points])
        exact = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
        assert [h.id for h in hits] == [points[i].id for i in np.argsort(-exact)[:5]]
        filtered = store.search("image", query, 5, Where.of(category="b"))
        assert all(h.payload["category"] == "b" for h in filtered) and len(filtered) == 5
        assert store.count(Where.of(source=["s0", "s1"])) == 34
        assert store.facet("category") == {"a": 25, "b": 25}
        assert store.facet("source", Where.of(category="a")) == {"s0": 8, "s1": 9, "s2": 8}
        assert store.facet("category", Where.of(category="nowhere")) == {}
        with pytest.raises(ValueError, match="indexed payload field"):
            store.facet("i")
        with monkeypatch.context() as patch:  # a collection without the payload index: the same counts, read

            def no_index(self, field, flt):
                raise RuntimeError(f"No appropriate index for faceting: `{field}`")

            patch.setattr(type(store), "_facet", no_index)
            assert store.facet("source", Where.of(category="a")) == {"s0": 8, "s1": 9, "s2": 8}
        store.delete(Where(must={"source": "s0"}, must_not={"category": "a"}))
        assert store.count() == 50 - 9
        assert len(list(store.scroll(fields=["i"]))) == 41
        one_by_one = {h.payload["i"]: h.vector for h in store.scroll(Where.of(category="a"), ["i"], vector="image")}
        pages = list(store.scroll_vectors("image", Where.of(category="a"), fields=["i"]))
        assert sum(len(payloads) for payloads, _ in pages) == len(one_by_one) > 0
        for payloads, matrix in pages:
            assert matrix.dtype == np.float32 and matrix.shape == (len(payloads), 8)
            for payload, row in zip(payloads, matrix, strict=True):
                assert set(payload) == {"i"}
                np.testing.assert_array_equal(row, one_by_one[payload["i"]])
        assert list(store.scroll_vectors("text")) == []  # no point has a text vector
        assert store.read_identity() == IDENTITY  # metadata survives deletes
    finally:
        store.close()


def test_server_store_against_real_server(tmp_path):
    if not os.environ.get("KBENGINE_QDRANT_URL"):
        pytest.skip("set KBENGINE_QDRANT_URL to a running Qdrant server to run the server tests")
    settings = dict(_backends(tmp_path))["server"]
    store = get_store(settings)
    try:
        store.ensure_collection(IDENTITY)
        store.upsert(_points(20, np.random.default_rng(1)))
        assert store.count() == 20 and store.read_identity() == IDENTITY
    finally:
        store.delete(Where())
        store.close()


def test_embedded_store_reopens_with_its_data(tmp_path):
    store = get_store(Settings(kb=tmp_path / "kb"))
    store.ensure_collection(IDENTITY)
    store.upsert(_points(5, np.random.default_rng(2)))
    store.close()
    again = get_store(Settings(kb=tmp_path / "kb"))
    assert again.count() == 5 and again.read_identity() == IDENTITY
    again.close()


def test_second_process_gets_store_in_use(tmp_path):
    store = get_store(Settings(kb=tmp_path / "kb"))
    store.ensure_collection(IDENTITY)
    try:
        with pytest.raises(StoreInUseError):
            get_store(Settings(kb=tmp_path / "kb"))
        result = subprocess.run(
            [sys.executable, "-m", "kbengine.cli", "info", "--kb", str(tmp_path / "kb")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2
        assert "in use by another kbengine process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        store.close()

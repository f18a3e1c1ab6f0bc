"""Type centroids extended after an ingest that only added sources: the same as computing them
from the whole store, by the same rules (examples, or pages for a type without examples), and
the facade takes that path only when the ingest added and removed nothing else."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.settings import Settings
from kbengine.core.store import StorePoint, get_store
from retrieval import centroids
from retrieval.centroids import compute_centroids, with_sources
from tests.conftest import open_kb

IDENTITY = EncoderIdentity(name="test:enc", image_dim=8, text_dim=4, joint_space=False)


def lock(source: str, category: str, defect_type: str, kind: str, vector: np.ndarray) -> StorePoint:
    return StorePoint(
        id=str(uuid.uuid4()),
        vectors={"image": vector.astype(np.float32)},
        payload={
            "doc_id": f"{source}#{defect_type}",
            "domain": "industrial",
            "category": category,
            "defect_type": defect_type,
            "kind": kind,
            "source": source,
        },
    )


def batch(rng: np.random.Generator, source: str, spec: list[tuple[str, str, int]]) -> list[StorePoint]:
    return [lock(source, "tile", t, kind, rng.normal(size=8)) for t, kind, n in spec for _ in range(n)]


def assert_same(a: centroids.TypeCentroids, b: centroids.TypeCentroids) -> None:
    assert a.keys == b.keys
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.from_pages is not None and b.from_pages is not None
    np.testing.assert_array_equal(a.from_pages, b.from_pages)
    np.testing.assert_allclose(a.sums, b.sums, rtol=1e-9, atol=1e-9)


def test_extending_gives_what_a_full_computation_gives(tmp_path):
    store = get_store(Settings(kb=tmp_path / "kb"))
    try:
        store.ensure_collection(IDENTITY)
        rng = np.random.default_rng(0)
        store.upsert(
            batch(rng, "old.pdf", [("crack", "figure", 2), ("crack", "page", 2), ("stain", "page", 3)])
            + batch(rng, "old-photos", [("hole", "image", 2), ("good", "image", 2)])
        )
        before = compute_centroids(store)
        assert dict(zip(before.keys, before.from_pages.tolist(), strict=True)) == {
            ("industrial", "tile", "crack"): False,
            ("industrial", "tile", "hole"): False,
            ("industrial", "tile", "stain"): True,  # pages only
        }
        store.upsert(
            batch(rng, "new-a", [("stain", "image", 2), ("crack", "page", 4), ("unspecified", "image", 1)])
            + batch(rng, "new-b", [("scratch", "page", 2), ("hole", "image", 1), ("good", "image", 3)])
            + batch(rng, "other", [("hole", "image", 5)])  # not among the added sources
        )
        extended = with_sources(before, store, ["new-a", "new-b"])
        store.delete(centroids.Where.of(source="other"))
        assert_same(extended, compute_centroids(store))
        index = {k: i for i, k in enumerate(extended.keys)}
        stain = index[("industrial", "tile", "stain")]
        assert not extended.from_pages[stain] and extended.counts[stain] == 2  # examples replaced the pages
        assert extended.counts[index[("industrial", "tile", "crack")]] == 2  # new pages ignored
        assert extended.from_pages[index[("industrial", "tile", "scratch")]]  # a new type with pages only
    finally:
        store.close()


def test_ingest_extends_only_after_adding(tmp_path, material, packaged, monkeypatch):
    path = tmp_path / "kb"
    with open_kb(path, packaged) as kb:
        kb.ingest([material["documents"]])

        def no_full(store):
            raise AssertionError("the ingest computed every centroid again")

        with monkeypatch.context() as patch:
            patch.setattr(centroids, "compute_centroids", no_full)
            report = kb.ingest([material["dataset"]])
        assert {s.status for s in report.sources} == {"added"}
        extended = kb.types.get()
        assert_same(extended, compute_centroids(kb.store))
        calls = []

        def counted(store):
            calls.append(1)
            return compute_centroids(store)

        with monkeypatch.context() as patch:
            patch.setattr(centroids, "compute_centroids", counted)
            removed = kb.remove(source=material["dataset"] / "tile")  # invalidates: the next reader computes
            kb.types.get()
        assert removed.locks > 0
        assert calls == [1]
    with open_kb(path, packaged) as kb, monkeypatch.context() as patch:  # a new reader finds the extended cache
        patch.setattr(centroids, "compute_centroids", no_full)
        assert_same(kb.types.get(), compute_centroids(kb.store))


@pytest.mark.parametrize("change", ["missing marker", "extra marker"])
def test_extend_refuses_a_store_that_changed_otherwise(tmp_path, material, packaged, change):
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest([material["documents"]])
        before = kb.types.snapshot()
        assert before is not None
        kb.ingest([material["dataset"]])
        added = [s.path for s in kb.ingest([material["dataset"]]).sources]
        wrong = added[1:] if change == "missing marker" else [*added, "/nowhere/else.png"]
        assert not kb.types.extend(before, wrong)
        assert kb.types.extend(before, added)  # the sources it did add
        assert_same(kb.types.get(), compute_centroids(kb.store))

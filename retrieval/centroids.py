"""Type-level feature: one centroid per (domain, category, defect type) of the knowledge base's
defect examples, and the nearest centroid of a query key.

A centroid is the L2-normalised mean of the normalised image vectors of that type's reference
photos and PDF figures; a type with neither falls back to its rendered pages (a page is mostly
layout and text, so it is the weaker evidence). Normal references (``good``) and images of
unknown type (``unspecified``) have no centroid: a centroid answers "which defect is this?".

Centroids are computed from the store on first use and cached: in memory for the life of the
knowledge base object, and on disk (``<cache>/type-centroids.npz``) keyed by a fingerprint of
the encoder, the store's location and its source markers, so a new process reuses them until an
ingest changes a source. (In server mode another process's ingest is seen after a reopen.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbengine.cache import load_arrays, save_arrays
from kbengine.encoders.base import l2_normalise
from kbengine.schemas import NORMAL_TYPE, TypePrediction, TypeScore
from kbengine.store.base import SOURCE_KIND, Store, Where

UNSPECIFIED_TYPE = "unspecified"
EXAMPLE_KINDS = ("image", "figure")
FALLBACK_KINDS = ("page",)
CACHE_NAME = "type-centroids.npz"
RANKING_SIZE = 5


@dataclass(frozen=True)
class TypeCentroids:
    keys: list[tuple[str, str, str]]
    """(domain, category, defect type) per row."""
    sums: np.ndarray
    """(T, D) sums of the normalised example vectors (kept so examples can be left out)."""
    counts: np.ndarray
    from_pages: np.ndarray | None = None
    """Per row, whether the centroid fell back to rendered pages."""

    @property
    def empty(self) -> bool:
        return not self.keys

    def without(self, vectors: Sequence[tuple[tuple[str, str, str], str, np.ndarray]]) -> TypeCentroids:
        """The centroids with these (key, lock kind, vector) examples left out (leave-one-out),
        by the same rules that put them in (kind, valid vector)."""
        sums, counts = self.sums.copy(), self.counts.copy()
        index = {k: i for i, k in enumerate(self.keys)}
        pages = self.from_pages if self.from_pages is not None else np.zeros(len(self.keys), bool)
        for key, kind, vector in vectors:
            i = index.get(key)
            if i is None or not np.all(np.isfinite(vector)) or not np.any(vector):
                continue
            if kind not in (*EXAMPLE_KINDS, *FALLBACK_KINDS) or (kind in FALLBACK_KINDS) != bool(pages[i]):
                continue
            sums[i] -= l2_normalise(vector[None])[0]
            counts[i] -= 1
        return TypeCentroids(self.keys, sums, counts, self.from_pages)


def source_fingerprint(store: Store) -> str:
    """A digest of every source marker (file and content hash): changes whenever ingest does."""
    entries = sorted(
        f"{h.payload.get('source')}\0{h.payload.get('source_sha')}"
        for h in store.scroll(Where(must={"kind": SOURCE_KIND}), fields=("source", "source_sha"))
    )
    return hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape")).hexdigest()


def compute_centroids(store: Store) -> TypeCentroids:
    """Stream the defect examples' image vectors out of the store into per-type sums."""
    sums: dict[tuple[str, str, str], np.ndarray] = {}
    counts: dict[tuple[str, str, str], int] = {}
    page_sums: dict[tuple[str, str, str], np.ndarray] = {}
    page_counts: dict[tuple[str, str, str], int] = {}
    where = Where(
        must={"kind": (*EXAMPLE_KINDS, *FALLBACK_KINDS)},
        must_not={"defect_type": (NORMAL_TYPE, UNSPECIFIED_TYPE)},
    )
    for hit in store.scroll(where, fields=("domain", "category", "defect_type", "kind"), vector="image"):
        if hit.vector is None or not np.all(np.isfinite(hit.vector)) or not np.any(hit.vector):
            continue
        p = hit.payload
        key = (str(p.get("domain")), str(p.get("category")), str(p.get("defect_type")))
        target, tally = (page_sums, page_counts) if p.get("kind") in FALLBACK_KINDS else (sums, counts)
        vector = l2_normalise(hit.vector[None])[0].astype(np.float64)
        target[key] = target[key] + vector if key in target else vector
        tally[key] = tally.get(key, 0) + 1
    fallback = set()
    for key in page_sums:
        if key not in sums:
            sums[key], counts[key] = page_sums[key], page_counts[key]
            fallback.add(key)
    keys = sorted(sums)
    if not keys:
        return TypeCentroids([], np.zeros((0, 0)), np.zeros(0, np.int64))
    return TypeCentroids(
        keys,
        np.stack([sums[k] for k in keys]),
        np.array([counts[k] for k in keys], np.int64),
        np.array([k in fallback for k in keys]),
    )


def predict_type(
    centroids: TypeCentroids,
    key: np.ndarray,
    *,
    domain: str | None = None,
    category: str | None = None,
) -> TypePrediction | None:
    """The nearest centroid (cosine) among those of ``domain``/``category`` (all when None), with
    its margin over the runner-up. None when no centroid qualifies."""
    rows = [
        i
        for i, (d, c, _) in enumerate(centroids.keys)
        if centroids.counts[i] > 0 and (domain is None or d == domain) and (category is None or c == category)
    ]
    if not rows or not np.all(np.isfinite(key)):
        return None
    means = l2_normalise(centroids.sums[rows])
    similarity = means @ l2_normalise(np.asarray(key, np.float32)[None])[0]
    order = np.argsort(-similarity, kind="stable")
    ranking = [
        TypeScore(
            category=centroids.keys[rows[i]][1],
            defect_type=centroids.keys[rows[i]][2],
            similarity=float(similarity[i]),
            examples=int(centroids.counts[rows[i]]),
        )
        for i in order[:RANKING_SIZE]
    ]
    best = ranking[0]
    return TypePrediction(
        category=best.category,
        defect_type=best.defect_type,
        similarity=best.similarity,
        margin=best.similarity - ranking[1].similarity if len(ranking) > 1 else None,
        ranking=ranking,
    )


class CentroidCache:
    """Centroids computed once per store state (see the module docstring)."""

    def __init__(self, store: Store, folder: Path | None, encoder: str = "") -> None:
        self.store = store
        self.folder = folder
        self.encoder = encoder
        self._centroids: TypeCentroids | None = None

    def invalidate(self) -> None:
        self._centroids = None

    def get(self) -> TypeCentroids:
        if self._centroids is None:
            self._centroids = self._load_or_compute()
        return self._centroids

    def _load_or_compute(self) -> TypeCentroids:
        if self.folder is None:
            return compute_centroids(self.store)
        fingerprint = hashlib.sha256(
            f"{self.encoder}\0{self.store.location}\0{source_fingerprint(self.store)}".encode()
        ).hexdigest()
        path = self.folder / CACHE_NAME
        cached = load_arrays(path, fingerprint)
        if cached is not None:
            return _from_arrays(cached)
        centroids = compute_centroids(self.store)
        save_arrays(path, fingerprint, _to_arrays(centroids))
        return centroids


def _to_arrays(centroids: TypeCentroids) -> dict[str, np.ndarray]:
    return {
        "keys": np.array(centroids.keys, dtype=str).reshape(-1, 3),
        "sums": centroids.sums,
        "counts": centroids.counts,
        "from_pages": centroids.from_pages if centroids.from_pages is not None else np.zeros(0, bool),
    }


def _from_arrays(data: dict[str, np.ndarray]) -> TypeCentroids:
    keys = [(str(row[0]), str(row[1]), str(row[2])) for row in data["keys"]]
    pages = data.get("from_pages")
    return TypeCentroids(
        keys, data["sums"], data["counts"], pages if pages is not None and len(pages) == len(keys) else None
    )

"""The type-prediction service: one centroid per (domain, category, defect type) of the knowledge
base's defect examples, and the nearest centroid of a query key. Seek's ``predicted_defect_type``,
detect's type guess and the zero-shot type-level prompts all come from here.

A centroid is the L2-normalised mean of the normalised image vectors of that type's reference
photos and PDF figures; a type with neither falls back to its rendered pages (a page is mostly
layout and text, so it is the weaker evidence). Normal references (``good``) and images of
unknown type (``unspecified``) have no centroid: a centroid answers "which defect is this?".

Centroids are computed from the store on first use and cached: in memory for the life of the
knowledge base object, and on disk (``<cache>/type-centroids.npz``) keyed by a fingerprint of
the encoder, the store's location and its source markers, so a new process reuses them until an
ingest changes a source. (In server mode another process's ingest is seen after a reopen.)
An ingest that only adds sources extends the cached centroids with its new locks
(:func:`with_sources`, ``TypeService.extend``) rather than reading every vector again: 16.3 s
to compute them all at 100k example photos, against 4-6 ms to add 18 new sources.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbengine.core.cache import load_arrays, save_arrays
from kbengine.core.encoders.base import l2_normalise
from kbengine.core.schemas import SOURCE_KIND, LockLabel, SourceMarker, TypePrediction, TypeScore
from kbengine.core.store import Store, Where
from kbengine.core.vocabulary import NORMAL_TYPE, UNSPECIFIED_TYPE

TypeKey = tuple[str, str, str]
"""(domain, category, defect type)."""
EXAMPLE_KINDS = ("image", "figure")
FALLBACK_KINDS = ("page",)
REGION_KINDS = ("region",)
CACHE_NAME = "type-centroids.npz"
SOURCES_PER_READ = 512
"""New sources per filtered read when centroids are extended after an ingest."""
RANKING_SIZE = 5
REGION_WEIGHT = 1.0
"""Weight of the region centroids' standardised similarity against the global ones' (1) in a fused
type prediction; the same rule as seek's fusion of the region and image pipelines."""


@dataclass(frozen=True)
class TypeCentroids:
    keys: list[TypeKey]
    """(domain, category, defect type) per row."""
    sums: np.ndarray
    """(T, D) sums of the normalised example vectors (kept so examples can be left out)."""
    counts: np.ndarray
    from_pages: np.ndarray | None = None
    """Per row, whether the centroid fell back to rendered pages."""

    @property
    def empty(self) -> bool:
        return not self.keys

    def without(self, vectors: Sequence[tuple[TypeKey, str, np.ndarray]]) -> TypeCentroids:
        """The centroids with these (key, lock kind, vector) examples left out (leave-one-out),
        by the same rules that put them in (kind, valid vector)."""
        sums, counts = self.sums.copy(), self.counts.copy()
        index = {k: i for i, k in enumerate(self.keys)}
        pages = self.from_pages if self.from_pages is not None else np.zeros(len(self.keys), bool)
        for key, kind, vector in vectors:
            i = index.get(key)
            if i is None or not np.all(np.isfinite(vector)) or not np.any(vector):
                continue
            if kind not in (*EXAMPLE_KINDS, *FALLBACK_KINDS, *REGION_KINDS) or (kind in FALLBACK_KINDS) != bool(
                pages[i]
            ):
                continue
            sums[i] -= l2_normalise(vector[None])[0]
            counts[i] -= 1
        return TypeCentroids(self.keys, sums, counts, self.from_pages)


def source_entries(store: Store) -> frozenset[str]:
    """One entry per source marker (file, content hash, edit revision)."""
    markers = (SourceMarker.read(h.payload) for h in store.scroll(Where.of(kind=SOURCE_KIND)))
    return frozenset(f"{m.source}\0{m.source_sha}\0{m.revision}" for m in markers)


def source_fingerprint(store: Store, entries: frozenset[str] | None = None) -> str:
    """A digest of every source marker: changes whenever ingest, remove or relabel does."""
    listed = sorted(source_entries(store) if entries is None else entries)
    return hashlib.sha256("\n".join(listed).encode("utf-8", "surrogateescape")).hexdigest()


def _page_sums(
    store: Store, vector: str, where: Where, kind_of: Callable[[LockLabel], bool] | None = None
) -> tuple[dict[TypeKey, np.ndarray], dict[TypeKey, int], dict[TypeKey, np.ndarray], dict[TypeKey, int]]:
    """Per type key, the sum and count of the normalised ``vector`` of the matching locks (a page
    at a time: one matrix per page), split in two by ``kind_of`` (True: the second pair)."""
    sums: dict[TypeKey, np.ndarray] = {}
    counts: dict[TypeKey, int] = {}
    other_sums: dict[TypeKey, np.ndarray] = {}
    other_counts: dict[TypeKey, int] = {}
    for payloads, matrix in store.scroll_vectors(vector, where, fields=LockLabel.fields()):
        valid = np.all(np.isfinite(matrix), axis=1) & np.any(matrix != 0, axis=1)
        unit = l2_normalise(np.where(valid[:, None], matrix, 0.0)).astype(np.float64)
        groups: dict[tuple[bool, TypeKey], list[int]] = defaultdict(list)
        for row, payload in enumerate(payloads):
            if valid[row]:
                label = LockLabel.read(payload)
                groups[(kind_of(label) if kind_of else False, label.type_key)].append(row)
        for (second, key), rows in groups.items():
            target, tally = (other_sums, other_counts) if second else (sums, counts)
            total = unit[rows].sum(axis=0)
            target[key] = target[key] + total if key in target else total
            tally[key] = tally.get(key, 0) + len(rows)
    return sums, counts, other_sums, other_counts


def compute_centroids(store: Store) -> TypeCentroids:
    """Stream the defect examples' image vectors out of the store into per-type sums."""
    where = Where.of(kind=(*EXAMPLE_KINDS, *FALLBACK_KINDS)).excluding(defect_type=(NORMAL_TYPE, UNSPECIFIED_TYPE))
    sums, counts, page_sums, page_counts = _page_sums(store, "image", where, lambda label: label.kind in FALLBACK_KINDS)
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


def with_sources(centroids: TypeCentroids, store: Store, sources: Sequence[str]) -> TypeCentroids:
    """``centroids`` of the store before an ingest that only added ``sources`` (no lock removed or
    replaced), plus the defect examples and pages those sources wrote: the same result as
    :func:`compute_centroids` on the store after it, to float rounding, at the cost of reading the
    new locks only. The rule is kept: a type's centroid sums its examples, or its pages when it has
    no example (a type that had only pages and gains an example drops its pages)."""
    if centroids.from_pages is None:
        raise ValueError("these centroids do not record which types fell back to pages")
    examples: dict[TypeKey, tuple[np.ndarray, int]] = {}
    pages: dict[TypeKey, tuple[np.ndarray, int]] = {}
    for i in range(0, len(sources), SOURCES_PER_READ):
        where = Where.of(kind=(*EXAMPLE_KINDS, *FALLBACK_KINDS), source=tuple(sources[i : i + SOURCES_PER_READ]))
        found = _page_sums(
            store,
            "image",
            where.excluding(defect_type=(NORMAL_TYPE, UNSPECIFIED_TYPE)),
            lambda label: label.kind in FALLBACK_KINDS,
        )
        for tally, sums, counts in ((examples, found[0], found[1]), (pages, found[2], found[3])):
            for key, total in sums.items():
                before, count = tally.get(key, (np.zeros_like(total), 0))
                tally[key] = (before + total, count + counts[key])
    merged = {
        key: (centroids.sums[i], int(centroids.counts[i]), bool(centroids.from_pages[i]))
        for i, key in enumerate(centroids.keys)
    }
    for key, (total, count) in examples.items():  # examples add to examples, or replace pages
        old = merged.get(key)
        merged[key] = (total, count, False) if old is None or old[2] else (old[0] + total, old[1] + count, False)
    for key, (total, count) in pages.items():  # pages count only for a type still without examples
        old = merged.get(key)
        if old is None or old[2]:
            merged[key] = (total, count, True) if old is None else (old[0] + total, old[1] + count, True)
    keys = sorted(merged)
    if not keys:
        return centroids
    return TypeCentroids(
        keys,
        np.stack([merged[k][0] for k in keys]),
        np.array([merged[k][1] for k in keys], np.int64),
        np.array([merged[k][2] for k in keys]),
    )


def compute_region_centroids(store: Store, category: str, bank: str) -> TypeCentroids:
    """Per type of ``category``, the sum of its defect examples' region vectors computed with the
    bank ``bank`` (``ingest.regions``; locks of another bank are not comparable)."""
    where = Where.of(kind=REGION_KINDS, category=category, bank=bank).excluding(
        defect_type=(NORMAL_TYPE, UNSPECIFIED_TYPE)
    )
    sums, counts, _, _ = _page_sums(store, "region", where)
    keys = sorted(sums)
    if not keys:
        return TypeCentroids([], np.zeros((0, 0)), np.zeros(0, np.int64))
    return TypeCentroids(keys, np.stack([sums[k] for k in keys]), np.array([counts[k] for k in keys], np.int64))


def _similarities(
    centroids: TypeCentroids, key: np.ndarray, domain: str | None, category: str | None
) -> dict[TypeKey, tuple[float, int]]:
    """Cosine of ``key`` to each qualifying centroid, with its example count."""
    rows = [
        i
        for i, (d, c, _) in enumerate(centroids.keys)
        if centroids.counts[i] > 0 and (domain is None or d == domain) and (category is None or c == category)
    ]
    if not rows or not np.all(np.isfinite(key)):
        return {}
    similarity = l2_normalise(centroids.sums[rows]) @ l2_normalise(np.asarray(key, np.float32)[None])[0]
    return {centroids.keys[r]: (float(s), int(centroids.counts[r])) for r, s in zip(rows, similarity, strict=True)}


def _prediction(
    scores: dict[TypeKey, tuple[float, int]], key_name: str, order_by: dict[TypeKey, float] | None = None
) -> TypePrediction | None:
    """Ranked by ``order_by`` (a fused score) when given, else by the cosine; ``similarity`` is
    always the cosine, the margin is in the ranking's own score."""
    if not scores:
        return None
    rank = order_by or {k: v[0] for k, v in scores.items()}
    order = sorted(scores, key=lambda k: (-rank[k], k))
    ranking = [
        TypeScore(
            category=k[1],
            defect_type=k[2],
            similarity=scores[k][0],
            examples=scores[k][1],
            fused=rank[k] if order_by is not None else None,
        )
        for k in order[:RANKING_SIZE]
    ]
    best = ranking[0]
    return TypePrediction(
        category=best.category,
        defect_type=best.defect_type,
        similarity=best.similarity,
        margin=rank[order[0]] - rank[order[1]] if len(order) > 1 else None,
        ranking=ranking,
        key=key_name,
    )


MIN_FUSED_TYPES = 3
"""Fewer shared types than this: standardised scores say nothing (two types are always +-1), so
the region similarity decides alone."""


def fuse_type_scores(
    image: dict[TypeKey, tuple[float, int]], region: dict[TypeKey, tuple[float, int]]
) -> dict[TypeKey, float]:
    """For the types both keys score, each similarity standardised over those types, combined as
    the ``REGION_WEIGHT``-weighted mean (region) with the image's (weight 1)."""
    shared = sorted(set(image) & set(region))

    def z(values: np.ndarray) -> np.ndarray:
        spread = values.std()
        return (values - values.mean()) / spread if spread > 1e-12 else np.zeros_like(values)

    fused = REGION_WEIGHT * z(np.array([region[k][0] for k in shared])) + z(np.array([image[k][0] for k in shared]))
    fused /= REGION_WEIGHT + 1.0
    return {k: float(v) for k, v in zip(shared, fused, strict=True)}


def predict_type(
    centroids: TypeCentroids,
    key: np.ndarray,
    *,
    domain: str | None = None,
    category: str | None = None,
) -> TypePrediction | None:
    """The nearest centroid (cosine) among those of ``domain``/``category`` (all when None), with
    its margin over the runner-up. None when no centroid qualifies."""
    return _prediction(_similarities(centroids, key, domain, category), "global")


class TypeService:
    """The type-prediction service over one knowledge base: centroids computed once per store
    state and cached (see the module docstring), the nearest centroid of a key, and the defect
    types a category has."""

    def __init__(self, store: Store, folder: Path | None, encoder: str = "") -> None:
        self.store = store
        self.folder = folder
        self.encoder = encoder
        self._centroids: TypeCentroids | None = None
        self._regions: dict[tuple[str, str], TypeCentroids] = {}

    def invalidate(self) -> None:
        self._centroids = None
        self._regions.clear()

    def regions(self, category: str, bank: str) -> TypeCentroids:
        """Centroids of a category's region locks of one bank (in memory, renewed by :meth:`invalidate`)."""
        if (category, bank) not in self._regions:
            self._regions[(category, bank)] = compute_region_centroids(self.store, category, bank)
        return self._regions[(category, bank)]

    def get(self) -> TypeCentroids:
        if self._centroids is None:
            self._centroids = self._load_or_compute()
        return self._centroids

    def defect_types(self, category: str) -> list[str]:
        """The defect types the knowledge base has examples of for ``category``."""
        return sorted({t for _, c, t in self.get().keys if c == category})

    def predict(
        self,
        key: np.ndarray,
        *,
        domain: str | None = None,
        category: str | None = None,
        exclude_sources: Sequence[str] = (),
        region_key: np.ndarray | None = None,
        region_category: str | None = None,
        region_bank: str | None = None,
    ) -> TypePrediction | None:
        """The nearest defect-type centroid of the global ``key``; with a ``region_key`` (of
        ``region_category``), the fused prediction of region and global centroids of that
        category (``fuse_type_scores``). ``exclude_sources`` leaves those files' examples out of
        their centroids (leave-one-out evaluation)."""
        centroids = self._left_out(self.get(), exclude_sources, "image")
        if region_key is None or region_category is None or region_bank is None:
            return predict_type(centroids, key, domain=domain, category=category)
        if category and category != region_category:
            return predict_type(centroids, key, domain=domain, category=category)
        regions = self._left_out(self.regions(region_category, region_bank), exclude_sources, "region")
        by_region = _similarities(regions, region_key, domain, region_category)
        if not by_region:
            return predict_type(centroids, key, domain=domain, category=category)
        by_image = _similarities(centroids, key, domain, region_category)
        shared = set(by_image) & set(by_region)
        if len(shared) < MIN_FUSED_TYPES:
            return _prediction(by_region, "region")
        return _prediction({k: by_region[k] for k in shared}, "region+global", fuse_type_scores(by_image, by_region))

    def _left_out(self, centroids: TypeCentroids, sources: Sequence[str], vector: str) -> TypeCentroids:
        if centroids.empty or not sources:
            return centroids
        found = self.store.scroll(Where.of(source=tuple(sources)), fields=LockLabel.fields(), vector=vector)
        left_out = [
            (label.type_key, label.kind, h.vector)
            for h in found
            if h.vector is not None
            for label in (LockLabel.read(h.payload),)
        ]
        return centroids.without(left_out)

    def _fingerprint(self, entries: frozenset[str] | None = None) -> str:
        return hashlib.sha256(
            f"{self.encoder}\0{self.store.location}\0{source_fingerprint(self.store, entries)}".encode()
        ).hexdigest()

    def _load_or_compute(self) -> TypeCentroids:
        if self.folder is None:
            return compute_centroids(self.store)
        fingerprint = self._fingerprint()
        path = self.folder / CACHE_NAME
        cached = load_arrays(path, fingerprint)
        if cached is not None:
            return _from_arrays(cached)
        centroids = compute_centroids(self.store)
        save_arrays(path, fingerprint, _to_arrays(centroids))
        return centroids

    def snapshot(self) -> CentroidSnapshot | None:
        """Before an ingest: the disk cache's centroids when they match the store as it is (never
        computed here), with the source markers they belong to; None without a valid cache."""
        if self.folder is None or not (self.folder / CACHE_NAME).is_file():
            return None
        entries = source_entries(self.store)
        cached = load_arrays(self.folder / CACHE_NAME, self._fingerprint(entries))
        if cached is None:
            return None
        centroids = _from_arrays(cached)
        return CentroidSnapshot(centroids, entries) if centroids.from_pages is not None else None

    def extend(self, before: CentroidSnapshot, added: Sequence[str]) -> bool:
        """After an ingest that only added the sources ``added``: ``before``'s centroids plus their
        locks (:func:`with_sources`), kept in memory and in the disk cache. False, with nothing
        changed, when the store's source markers are not ``before``'s plus one per added source
        (a removal, a replaced source, another writer): the caller computes them afresh."""
        if self.folder is None:
            return False
        entries = source_entries(self.store)
        new = entries - before.entries
        if before.entries - entries or len(new) != len(added) or {e.split("\0", 1)[0] for e in new} != set(added):
            return False
        extended = with_sources(before.centroids, self.store, list(added))
        save_arrays(self.folder / CACHE_NAME, self._fingerprint(entries), _to_arrays(extended))
        self._centroids = extended
        self._regions.clear()
        return True


@dataclass(frozen=True)
class CentroidSnapshot:
    """Type centroids and the source markers of the store state they were computed from."""

    centroids: TypeCentroids
    entries: frozenset[str]


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

"""A knowledge base's normal references and their memory banks, one per category.

The bank of a category is built from its normal ("good") reference photos (at most
``detect_max_references``, in a stable order; past that cap, the medoids of as many clusters of
their global embeddings: ``selection``) and identified by a fingerprint of the encoder, the
bank code's version and the references' content hashes: a change of the references gives a new
fingerprint, and everything derived from the bank (anomaly maps, region locks) notices by it.
Banks are cached in memory and in ``<cache>/banks`` (npz, written atomically; one file per
category, holding the bank of its latest fingerprint).

When the references change by additions only (an inspector's ``good`` feedback), the previous
bank (in memory, else the category's cache file, whose fingerprint is recomputed from the
reference hashes it stores, so a bank of another encoder, version or setting is never grown) is
extended rather than rebuilt where that stays correct (``extension``: a subsampled coreset, the
same reading of the photos, a bounded growth); otherwise, and below the coreset's capacity, where
a rebuild is cheap and exact, it is rebuilt. Either way the bank is saved under the new
fingerprint, and ``ReferenceBank.made`` says which it was."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbengine.core.banks.extension import CannotExtend, extend_bank
from kbengine.core.banks.memory_bank import MAX_PATCHES, MemoryBank, build_bank
from kbengine.core.banks.selection import cluster_medoids
from kbengine.core.blobs import BlobStore
from kbengine.core.cache import FINGERPRINT, cache_folder, load_arrays, save_arrays
from kbengine.core.encoders.base import Encoder, l2_normalise
from kbengine.core.images import load_image
from kbengine.core.schemas import LockLabel, LockPayload
from kbengine.core.settings import Settings
from kbengine.core.store import Store, Where
from kbengine.core.vocabulary import NORMAL_TYPE

REFERENCE_KINDS = ("image", "figure")
EXAMPLE_KINDS = ("image", "figure")
"""Locks that are photos: a category's normal references, and its defect examples."""
BANK_VERSION = "7"

log = logging.getLogger("kbengine")


@dataclass(frozen=True)
class ReferenceBank:
    category: str
    fingerprint: str
    bank: MemoryBank
    made: str = "built"
    """How this process got it: ``loaded`` (the cache), ``built`` or ``extended`` (``extension``)."""


class ReferenceBanks:
    """The memory banks of one knowledge base's categories."""

    max_patches = MAX_PATCHES
    """The coreset's capacity for a bank read whole (a tiled bank's is smaller: ``build_bank``)."""

    def __init__(self, store: Store, encoder: Encoder, blobs: BlobStore, settings: Settings) -> None:
        self.store = store
        self.encoder = encoder
        self.blobs = blobs
        self.settings = settings
        folder = cache_folder(settings)
        self.folder = folder / "banks" if folder else None
        self._banks: dict[str, ReferenceBank] = {}
        self._selected: dict[str, list[LockPayload]] = {}

    def references(self, category: str) -> list[LockPayload]:
        """The category's normal reference photos in a stable order (by content hash): all of
        them, or, past ``detect_max_references``, the medoids of that many clusters of their
        global embeddings (``selection``; chosen once per set of references in this process)."""
        where = Where.of(category=category, defect_type=NORMAL_TYPE, kind=REFERENCE_KINDS)
        locks = [LockPayload.read(h.payload) for h in self.store.scroll(where)]
        locks = sorted((lock for lock in locks if lock.blob), key=lambda lock: lock.sha256)
        cap = self.settings.detect_max_references
        if len(locks) <= cap:
            return locks
        key = hashlib.sha256("\n".join([str(cap), *(lock.sha256 for lock in locks)]).encode()).hexdigest()
        if key not in self._selected:
            found: dict[str, tuple[LockPayload, np.ndarray]] = {}
            for hit in self.store.scroll(where, vector="image"):
                lock = LockPayload.read(hit.payload)
                if lock.blob and hit.vector is not None and np.all(np.isfinite(hit.vector)):
                    found.setdefault(lock.sha256, (lock, hit.vector))  # a photo stored twice counts once
            ordered = [found[sha] for sha in sorted(found)]
            keys = l2_normalise(np.stack([vector for _, vector in ordered])) if ordered else np.zeros((0, 1))
            self._selected[key] = [ordered[i][0] for i in cluster_medoids(keys, cap)]  # by sha256 already
        return self._selected[key]

    def path_of(self, lock: LockPayload) -> Path:
        return self.blobs.path(str(lock.blob))

    def fingerprint(self, references: list[LockPayload]) -> str:
        return self._fingerprint([lock.sha256 for lock in references])

    def _fingerprint(self, shas: Sequence[str]) -> str:
        parts = [BANK_VERSION, self.encoder.identity.name, self.settings.detect_augment, self.settings.detect_tiles]
        return hashlib.sha256("\n".join([*parts, *shas]).encode()).hexdigest()

    def get(self, category: str, references: list[LockPayload] | None = None) -> ReferenceBank | None:
        """The category's bank (built once per set of references, then cached); None without
        references. ``references``: the category's, when the caller has read them already."""
        references = self.references(category) if references is None else references
        if not references:
            return None
        fingerprint = self.fingerprint(references)
        cached = self._banks.get(category)
        if cached is not None and cached.fingerprint == fingerprint:
            return cached
        path = self._path(category)
        stored = load_arrays(path, fingerprint)
        if stored is not None:
            found = ReferenceBank(category, fingerprint, MemoryBank.from_arrays(stored), "loaded")
        else:
            found = self._make(category, fingerprint, references, cached, path)
            save_arrays(path, fingerprint, found.bank.to_arrays())
        self._banks[category] = found
        return found

    def _make(
        self,
        category: str,
        fingerprint: str,
        references: list[LockPayload],
        cached: ReferenceBank | None,
        path: Path | None,
    ) -> ReferenceBank:
        """The bank of ``references``: the previous bank extended where ``extension`` allows, else built."""
        start = time.perf_counter()
        shas = [lock.sha256 for lock in references]
        images = [load_image(self.path_of(lock), self.settings.max_image_pixels) for lock in references]
        augment, tiles = self.settings.detect_augment, self.settings.detect_tiles
        reason = "no previous bank"
        for previous in self._previous(cached, path):
            try:
                bank = extend_bank(self.encoder, previous, images, shas, augment=augment, tiles=tiles)
            except CannotExtend as e:
                reason = str(e)
                continue
            log.info(
                "memory bank of %s extended from %d to %d references (%d -> %d patches) in %.1f s",
                category, previous.references, bank.references, len(previous.patches), len(bank.patches),
                time.perf_counter() - start,
            )  # fmt: skip
            return ReferenceBank(category, fingerprint, bank, "extended")
        bank = build_bank(self.encoder, images, self.max_patches, augment=augment, tiles=tiles, shas=shas)
        log.info("memory bank of %s built from %d references (not extended: %s)", category, len(shas), reason)
        return ReferenceBank(category, fingerprint, bank, "built")

    def _previous(self, cached: ReferenceBank | None, path: Path | None) -> list[MemoryBank]:
        """The banks an extension may start from: this process's, then the cache file's (its own
        fingerprint recomputed from the reference hashes it stores, so it was built by this bank
        version, encoder and settings)."""
        found = [cached.bank] if cached is not None else []
        if path is None or not path.is_file():
            return found
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = str(data[FINGERPRINT])
        except Exception:  # as cache.load_arrays: a damaged file is only not a previous bank
            return found
        if cached is not None and stored == cached.fingerprint:
            return found
        arrays = load_arrays(path, stored)
        if arrays is not None:
            bank = MemoryBank.from_arrays(arrays)
            if bank.shas and self._fingerprint(bank.shas) == stored:
                found.append(bank)
        return found

    def category_of(self, key: np.ndarray, exclude_sources: Sequence[str] = ()) -> str | None:
        """The category of the photo or page nearest the global embedding ``key`` (references
        included; ``exclude_sources`` left out, as leave-one-out evaluation needs)."""
        hits = self.store.search("image", key, 1, Where.of().excluding(source=tuple(exclude_sources) or None))
        return LockLabel.read(hits[0].payload).category if hits else None

    def categories(self) -> dict[str, bool]:
        """Every category that has defect examples or references -> whether it has references."""
        every = self.store.facet("category", Where.of(kind=EXAMPLE_KINDS))
        with_references = self.store.facet("category", Where.of(kind=EXAMPLE_KINDS, defect_type=NORMAL_TYPE))
        return {category: category in with_references for category in sorted(every)}

    def _path(self, category: str) -> Path | None:
        if self.folder is None:
            return None
        safe = hashlib.sha256(f"{category}:{self.encoder.identity.name}".encode()).hexdigest()[:16]
        return self.folder / f"{safe}.npz"

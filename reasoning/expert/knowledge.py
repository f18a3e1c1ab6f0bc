"""What the AD Expert reads from the knowledge base: the category of an image, a category's
normal references and their memory bank (cached by a fingerprint of the references), its domain
file, and the zero-shot prompt embeddings built from the defect types the knowledge base holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kbengine.core.blobs import BlobStore
from kbengine.core.cache import cache_folder, load_arrays, save_arrays
from kbengine.core.encoders.base import Encoder
from kbengine.core.images import load_image
from kbengine.core.schemas import LockLabel, LockPayload
from kbengine.core.settings import Settings
from kbengine.core.store import Store, Where
from kbengine.core.vocabulary import DEFAULT_DOMAIN, NORMAL_TYPE
from reasoning.expert.domains import Domain, load_domain
from reasoning.expert.memory_bank import MemoryBank, build_bank
from reasoning.expert.zero_shot import TextPair, text_pair
from retrieval.centroids import TypeService

REFERENCE_KINDS = ("image", "figure")
BANK_VERSION = "3"


class ExpertKnowledge:
    """The expert's view of one knowledge base, with its caches (banks, prompt embeddings)."""

    def __init__(
        self, store: Store, encoder: Encoder, blobs: BlobStore, settings: Settings, types: TypeService
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.blobs = blobs
        self.settings = settings
        self.types = types
        folder = cache_folder(settings)
        self.bank_folder = folder / "banks" if folder else None
        self._banks: dict[str, tuple[str, MemoryBank | None]] = {}
        self._texts: dict[tuple[str, str], TextPair] = {}

    def infer_category(self, key: np.ndarray) -> str | None:
        """The category of the knowledge lock nearest the global embedding ``key`` (normal
        references included)."""
        hits = self.store.search("image", key, 1)
        return LockLabel.read(hits[0].payload).category if hits else None

    def reference_locks(self, category: str) -> list[LockPayload]:
        """The category's normal reference photos, at most ``detect_max_references``, in a stable order."""
        where = Where.of(category=category, defect_type=NORMAL_TYPE, kind=REFERENCE_KINDS)
        locks = [LockPayload.read(h.payload) for h in self.store.scroll(where)]
        locks = sorted((lock for lock in locks if lock.blob), key=lambda lock: lock.sha256)
        return locks[: self.settings.detect_max_references]

    def reference_path(self, lock: LockPayload) -> Path:
        return self.blobs.path(str(lock.blob))

    def domain_of(self, category: str | None) -> tuple[Domain, list[str]]:
        """The category's domain file (the built-in industrial words when it has none)."""
        name = DEFAULT_DOMAIN
        if category:
            for hit in self.store.scroll(Where.of(category=category), fields=LockLabel.fields()):
                name = LockLabel.read(hit.payload).domain
                break
        folders = [f for f in (self.settings.domains_dir, self.settings.kb / "domains") if f is not None]
        domain, note = load_domain(name, folders)
        return domain, [note] if note else []

    def reference_bank(self, category: str) -> MemoryBank | None:
        """The category's memory bank, built once per set of normal references and cached."""
        locks = self.reference_locks(category)
        if not locks:
            return None
        digest = hashlib.sha256(
            "\n".join([BANK_VERSION, self.encoder.identity.name, *(lock.sha256 for lock in locks)]).encode()
        ).hexdigest()
        cached = self._banks.get(category)
        if cached and cached[0] == digest:
            return cached[1]
        path = self._bank_path(category)
        stored = load_arrays(path, digest)
        bank = MemoryBank.from_arrays(stored) if stored is not None else None
        if bank is None:
            images = [load_image(self.reference_path(lock), self.settings.max_image_pixels) for lock in locks]
            bank = build_bank(self.encoder, images)
            save_arrays(path, digest, bank.to_arrays())
        self._banks[category] = (digest, bank)
        return bank

    def _bank_path(self, category: str) -> Path | None:
        if self.bank_folder is None:
            return None
        safe = hashlib.sha256(f"{category}:{self.encoder.identity.name}".encode()).hexdigest()[:16]
        return self.bank_folder / f"{safe}.npz"

    def forget_texts(self) -> None:
        """Drop the cached prompt embeddings (the knowledge base's defect types may have changed)."""
        self._texts.clear()

    def texts(self, category: str | None, domain: Domain) -> TextPair:
        """Object- and type-level prompt embeddings for ``category`` in ``domain`` (cached)."""
        key = (domain.name, category or "object")
        if key not in self._texts:
            types = self.types.defect_types(category) if category else []
            self._texts[key] = text_pair(self.encoder, domain, category or "object", types)
        return self._texts[key]

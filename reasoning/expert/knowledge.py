"""What the AD Expert reads from the knowledge base: the category of an image, a category's
memory bank (``kbengine.core.banks.references``, shared with seek and ingest), its domain file,
and the zero-shot prompt embeddings built from the defect types the knowledge base holds."""

from __future__ import annotations

import numpy as np

from kbengine.core.banks.references import ReferenceBanks
from kbengine.core.encoders.base import Encoder
from kbengine.core.schemas import LockLabel
from kbengine.core.settings import Settings
from kbengine.core.store import Store, Where
from kbengine.core.vocabulary import DEFAULT_DOMAIN
from reasoning.expert.domains import Domain, load_domain
from reasoning.expert.zero_shot import TextPair, text_pair
from retrieval.centroids import TypeService


class ExpertKnowledge:
    """The expert's view of one knowledge base, with its caches (banks, prompt embeddings)."""

    def __init__(
        self, store: Store, encoder: Encoder, banks: ReferenceBanks, settings: Settings, types: TypeService
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.banks = banks
        self.settings = settings
        self.types = types
        self._texts: dict[tuple[str, str], TextPair] = {}

    def infer_category(self, key: np.ndarray) -> str | None:
        """The category of the knowledge nearest the global embedding ``key``."""
        return self.banks.category_of(key)

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

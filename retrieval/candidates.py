"""Candidate documents for a query: the retrieval pipelines, grouping locks into documents, and
the fusion of the pipelines' scores before sampling.

Pipelines (the paper's "textual and visual retrieval pipelines"):

- ``image>image``: the query image's key against the image locks (pages, figures, photos); always.
- ``image>text``: the same key against the text locks, when the encoder is a joint space (CLIP).
- ``text>text``: the user's text query against the text locks, when one is given.
- ``text>image``: the text query against the image locks, when the encoder is a joint space.
- ``region>region``: the query's region key (its anomalous region against its category's normal
  references, ``kbengine.core.banks.region``) against the region locks of that category, when the
  category has normal references.
- ``focus>image``: the embedding of the query's defect region (a crop around the strongest region
  of its reference map, ``Seeker.focus_key``) against the image locks, when the caller gives one
  (``kb.seek(focus=...)``).

Each pipeline asks the store for its top ``M`` locks. A document with many locks (a dataset
folder of hundreds of photos) could fill all M, so when the locks found name fewer than
``want_documents`` documents, the pipeline searches again with those documents excluded (at most
``MAX_ROUNDS`` searches); each document's best lock is still exact, since every lock of a later
round scores below the locks of the rounds before it.

Fusion rule. A document's score in a pipeline is its best lock's cosine. With one pipeline the
fused score is that cosine. With several, cosines of different pipelines are not comparable
(CLIP image-text cosines sit near 0.3, image-image near 0.8), so each pipeline's document scores
are standardised over its own candidates (z-scores; a document the pipeline did not return counts
one standard deviation below its lowest candidate, so any match beats none), and the fused score
is their weighted mean (``Pipeline.weight``; all 1: measured for the region pipeline, docs/seek.md
has the table). A
document matching both the picture and the words thus ranks above one matching only one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kbengine.core.schemas import LockPayload
from kbengine.core.store import Hit, Store, Where

MAX_ROUNDS = 3


@dataclass(frozen=True)
class Pipeline:
    name: str
    vector: str
    key: np.ndarray
    weight: float = 1.0
    """Its share in the fused score (see the module docstring)."""
    where: Where | None = None
    """Its own filter, in place of the query's (the region pipeline searches one category)."""


@dataclass
class LockHit:
    """A lock a pipeline found: the store's hit and its parsed payload."""

    hit: Hit
    lock: LockPayload
    pipeline: str
    vector_name: str


@dataclass
class DocCandidate:
    """One document among the candidates, with its best lock per pipeline."""

    doc_id: str
    best: dict[str, LockHit] = field(default_factory=dict)
    fused: float = float("nan")

    @property
    def top(self) -> LockHit:
        """The document's best lock over all pipelines (by raw cosine)."""
        return max(self.best.values(), key=lambda h: _finite(h.hit.score))

    @property
    def lock(self) -> LockPayload:
        return self.top.lock

    def best_image_lock(self) -> LockHit | None:
        image = [h for h in self.best.values() if h.vector_name == "image"]
        return max(image, key=lambda h: _finite(h.hit.score)) if image else None

    def representative(self, dim: int) -> np.ndarray | None:
        """A vector for similarity between documents (MMR): the best lock's, among locks of ``dim``."""
        for lock in sorted(self.best.values(), key=lambda h: -_finite(h.hit.score)):
            if lock.hit.vector is not None and len(lock.hit.vector) == dim:
                return lock.hit.vector
        return None


@dataclass
class Candidates:
    documents: list[DocCandidate]
    locks_per_pipeline: dict[str, int]
    documents_per_pipeline: dict[str, int]


def search_pipeline(
    store: Store, pipeline: Pipeline, where: Where, limit: int, want_documents: int, with_vector: bool
) -> list[LockHit]:
    """The pipeline's candidate locks, best first, widened until they name ``want_documents``
    documents or the store has no more (see the module docstring)."""
    hits: list[LockHit] = []
    found: dict[str, None] = {}
    condition = where
    for _ in range(MAX_ROUNDS):
        batch = store.search(pipeline.vector, pipeline.key, limit, condition, with_vector=with_vector)
        for h in batch:
            lock = LockPayload.read(h.payload)
            hits.append(LockHit(h, lock, pipeline.name, pipeline.vector))
            found.setdefault(lock.doc_id, None)
        if len(batch) < limit or len(found) >= want_documents:
            break
        condition = where.excluding(doc_id=tuple(found))
    return hits


def gather(
    store: Store,
    pipelines: list[Pipeline],
    where: Where,
    limit: int,
    want_documents: int,
    with_vector: bool = False,
) -> Candidates:
    """Run the pipelines, group their locks into documents and fuse the scores."""
    documents: dict[str, DocCandidate] = {}
    locks: dict[str, int] = {}
    per_pipeline_docs: dict[str, int] = {}
    for pipeline in pipelines:
        hits = search_pipeline(store, pipeline, pipeline.where or where, limit, want_documents, with_vector)
        locks[pipeline.name] = len(hits)
        seen: set[str] = set()
        for found in hits:
            doc = found.lock.doc_id
            seen.add(doc)
            candidate = documents.setdefault(doc, DocCandidate(doc_id=doc))
            current = candidate.best.get(pipeline.name)
            if current is None or _better(found.hit.score, current.hit.score):
                candidate.best[pipeline.name] = found
        per_pipeline_docs[pipeline.name] = len(seen)
    docs = list(documents.values())
    fuse(docs, pipelines)
    return Candidates(docs, locks, per_pipeline_docs)


def _finite(score: float) -> float:
    return score if np.isfinite(score) else -np.inf


def _better(score: float, than: float) -> bool:
    return bool(np.isnan(than)) or (not np.isnan(score) and score > than)


def fuse(documents: list[DocCandidate], pipelines: list[Pipeline]) -> None:
    """Set each document's fused score (the rule in the module docstring)."""
    if not documents:
        return
    active = [p for p in pipelines if any(p.name in d.best for d in documents)]
    if len(active) <= 1:
        for d in documents:
            d.fused = d.top.hit.score
        return
    total = np.zeros(len(documents))
    weights = 0.0
    for p in active:
        raw = np.array([d.best[p.name].hit.score if p.name in d.best else np.nan for d in documents])
        present = np.isfinite(raw)
        mean, std = raw[present].mean(), raw[present].std()
        z = (raw - mean) / std if std > 1e-12 else np.where(present, 0.0, np.nan)
        floor = (np.nanmin(z) if present.any() else 0.0) - 1.0
        total += p.weight * np.where(present, z, floor)
        weights += p.weight
    for d, value in zip(documents, total / weights, strict=True):
        d.fused = float(value)

"""Q2K RAG end to end: key embedding -> pipelines -> documents -> strategy -> ``SeekResult``.

Normal references in seek. A user who shows a part wants the defect knowledge that explains it,
and a global embedding mostly describes the object: the normal photos of the same product would
crowd the defect documents out of the top ranks. So seek leaves documents of defect type ``good``
out unless ``include_normal=True`` or ``defect_type="good"`` is asked for. They stay in the
knowledge base for the AD Expert, whose normal-reference memory bank is built from them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from kbengine.core.banks.references import ReferenceBanks
from kbengine.core.banks.region import region_fingerprint
from kbengine.core.cache import elapsed_ms
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import EmptyKnowledgeBaseError, InvalidInputError, KBEngineError
from kbengine.core.images import ImageInput
from kbengine.core.query import Query
from kbengine.core.schemas import (
    ClusterStat,
    LockMatch,
    LockPayload,
    PipelineStat,
    RegionKeyStat,
    SeekDiagnostics,
    SeekHit,
    SeekResult,
)
from kbengine.core.settings import Settings
from kbengine.core.store import Store, Where
from kbengine.core.vocabulary import NORMAL_TYPE
from retrieval.candidates import Candidates, DocCandidate, LockHit, Pipeline, gather
from retrieval.centroids import TypeService
from retrieval.sampling import STRATEGIES, Selection, Strategy, select

KEYS = ("auto", "global", "region")
REGION_WEIGHT = 1.0
"""The region pipeline's weight in the fusion, the same as the others': measured against 2 and 0.5
(docs/seek.md has the table)."""


@dataclass(frozen=True)
class RegionKey:
    """The query's region key, or why there is none."""

    key: np.ndarray | None
    note: str | None
    category: str | None = None
    inferred: bool = False
    where: Where | None = None
    references: int = 0
    bank: str | None = None
    """The region locks' fingerprint the key compares with."""


class Seeker:
    """Seeks knowledge in one knowledge base (the facade holds one; ``KnowledgeBase.seek``)."""

    def __init__(
        self, store: Store, encoder: Encoder, banks: ReferenceBanks, settings: Settings, types: TypeService
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.banks = banks
        self.blobs = banks.blobs
        self.settings = settings
        self.types = types

    def seek(
        self,
        image: ImageInput | Query,
        k: int = 5,
        strategy: str = "kde",
        *,
        category: str | None = None,
        domain: str | None = None,
        defect_type: str | None = None,
        text: str | None = None,
        include_normal: bool = False,
        candidates: int | None = None,
        exclude_sources: Sequence[str] = (),
        seed: int | None = None,
        focus_key: np.ndarray | None = None,
        key: str = "auto",
    ) -> SeekResult:
        """Rank the knowledge documents for ``image`` (and ``text``, when given).

        ``key``: ``auto`` (default) searches with the global embedding and, when the category (given,
        else the nearest knowledge's) has normal references and region locks, with the region key
        too, fused; ``global`` only the former; ``region`` only the latter (an error when there is
        none). ``focus_key``, an embedding of the image's defect region crop (``Seeker.focus_key``),
        adds the ``focus>image`` pipeline and is the key of the defect-type prediction."""
        if key not in KEYS:
            raise InvalidInputError(f"unknown key {key!r}; choose one of {', '.join(KEYS)}")
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        if strategy not in STRATEGIES:
            raise InvalidInputError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if text is not None and not text.strip():
            raise InvalidInputError("the text query is empty; leave it out or give some words")
        limit = candidates or self.settings.seek_candidates
        if limit < 1:
            raise InvalidInputError(f"candidates must be at least 1, got {limit}")
        if self.store.count() == 0:
            raise EmptyKnowledgeBaseError(
                f"the knowledge base at {self.store.location} holds no knowledge yet; add some with: "
                "kbengine ingest PATH"
            )
        seed = self.settings.seek_seed if seed is None else seed
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        query = Query.of(image, self.encoder, self.settings.max_image_pixels)
        global_key = self._image_key(query)
        pipelines = self._pipelines(global_key, text) if key != "region" else self._pipelines(None, text)
        if focus_key is not None:
            pipelines.insert(1, Pipeline("focus>image", "image", np.asarray(focus_key, np.float32)))
        timings["embed"] = elapsed_ms(clock)

        clock = time.perf_counter()
        where = self._where(domain, category, defect_type, include_normal, exclude_sources)
        region = (
            self._region(query, category, where, exclude_sources)
            if key != "global"
            else RegionKey(None, "not asked for")
        )
        if region.key is not None:
            pipelines.insert(0, Pipeline("region>region", "region", region.key, REGION_WEIGHT, region.where))
        elif key == "region":
            raise InvalidInputError(f"no region key for {query.name}: {region.note}")
        timings["region"] = elapsed_ms(clock)

        clock = time.perf_counter()
        found = gather(
            self.store,
            pipelines,
            where,
            limit,
            want_documents=max(4 * k, 32),
            with_vector=strategy == "mmr",
        )
        timings["search"] = elapsed_ms(clock)

        clock = time.perf_counter()
        docs = found.documents
        scores = np.array([d.fused for d in docs], np.float64)
        vectors = self._representatives(docs) if strategy == "mmr" else None
        selection = select(
            cast(Strategy, strategy),
            scores,
            k,
            vectors=vectors,
            max_clusters=self.settings.seek_max_clusters,
            seed=seed,
            mmr_lambda=self.settings.mmr_lambda,
        )
        timings["sample"] = elapsed_ms(clock)

        clock = time.perf_counter()
        hits = [self._hit(rank, docs[i], selection, global_key) for rank, i in enumerate(selection.indices.tolist(), 1)]
        timings["hits"] = elapsed_ms(clock)

        clock = time.perf_counter()
        type_key = focus_key if focus_key is not None else global_key
        prediction = self.types.predict(
            type_key,
            domain=domain,
            category=category,
            exclude_sources=exclude_sources,
            region_key=region.key if focus_key is None else None,
            region_category=region.category,
            region_bank=region.bank,
        )
        timings["type"] = elapsed_ms(clock)

        filters = {n: v for n, v in (("domain", domain), ("category", category), ("defect_type", defect_type)) if v}
        return SeekResult(
            query=query.name,
            text=text,
            strategy=strategy,
            k=k,
            filters=filters,
            include_normal=include_normal,
            encoder=self.encoder.identity.name,
            hits=hits,
            predicted_defect_type=prediction,
            diagnostics=self._diagnostics(found, pipelines, docs, scores, selection, seed, timings, region),
            note=self._note(hits, k, filters, selection),
        )

    # -- keys and pipelines --------------------------------------------------------------------
    def focus_key(self, image: ImageInput | Query, category: str | None) -> np.ndarray | None:
        """The ``focus_key`` of ``seek(focus=True)``: the embedding of the crop around the defect
        region of ``image`` against the normal references of its category (given, else the
        nearest knowledge's; ``Query.focus_key``), binarised at the detect threshold; None when
        that category has no normal references."""
        query = Query.of(image, self.encoder, self.settings.max_image_pixels)
        category = category or self.banks.category_of(query.global_key)
        bank = self.banks.get(category) if category is not None else None
        return query.focus_key(bank, self.settings.detect_threshold) if bank is not None else None

    def _image_key(self, query: Query) -> np.ndarray:
        key = query.global_key
        if not np.all(np.isfinite(key)) or not np.any(key):
            raise InvalidInputError(
                f"the encoder gave a zero or non-finite embedding for {query.name}; the image "
                "cannot be compared with the knowledge"
            )
        return key

    def _region(self, query: Query, category: str | None, where: Where, exclude_sources: Sequence[str]) -> RegionKey:
        """The query's region key against its category's bank (the category given, else the
        nearest knowledge's), when that category has normal references and region locks."""
        meta = self.store.read_meta()
        if meta is None or not meta.region_dim:
            return RegionKey(None, "the knowledge base has no region locks (made before them)")
        inferred = category is None
        category = category or self.banks.category_of(query.global_key, exclude_sources)
        if category is None:
            return RegionKey(None, "no category to compare with")
        references = self.banks.references(category)
        if not references:
            return RegionKey(None, f"category {category!r} has no normal references", category, inferred)
        fingerprint = region_fingerprint(self.banks.fingerprint(references))
        if self.store.count(Where.of(category=category, kind="region", bank=fingerprint)) == 0:
            stale = self.store.count(Where.of(category=category, kind="region")) > 0
            note = "its region locks predate its current normal references: run kbengine ingest to renew them"
            return RegionKey(
                None, f"category {category!r}: " + (note if stale else "no region locks"), category, inferred
            )
        try:
            bank = self.banks.get(category, references)
        except KBEngineError as e:  # a damaged reference: seek still answers, with the global key
            return RegionKey(None, f"category {category!r}: its references cannot be read ({e})", category, inferred)
        if bank is None:
            return RegionKey(None, f"category {category!r} has no normal references", category, inferred)
        narrowed = where.narrowed(category=category, kind="region", bank=fingerprint)
        return RegionKey(query.region_key(bank), None, category, inferred, narrowed, bank.bank.references, fingerprint)

    def _pipelines(self, key: np.ndarray | None, text: str | None) -> list[Pipeline]:
        identity = self.encoder.identity
        joint = identity.joint_space and identity.text_dim is not None
        pipelines = []
        if key is not None:
            pipelines.append(Pipeline("image>image", "image", key))
        if key is not None and joint:
            pipelines.append(Pipeline("image>text", "text", key))
        if text is not None:
            if not self.encoder.has_text or identity.text_dim is None:
                raise InvalidInputError(
                    f"the encoder {identity.name} has no text embeddings: a text query cannot be used"
                )
            text_key = self.encoder.embed_texts([text])[0]
            pipelines.append(Pipeline("text>text", "text", text_key))
            if joint:
                pipelines.append(Pipeline("text>image", "image", text_key))
        return pipelines

    @staticmethod
    def _where(
        domain: str | None,
        category: str | None,
        defect_type: str | None,
        include_normal: bool,
        exclude_sources: Sequence[str],
    ) -> Where:
        return Where.of(domain=domain, category=category, defect_type=defect_type).excluding(
            defect_type=NORMAL_TYPE if not include_normal and defect_type is None else None,
            source=tuple(exclude_sources) or None,
        )

    def _representatives(self, docs: list[DocCandidate]) -> np.ndarray:
        dim = self.encoder.identity.image_dim
        rows = [d.representative(dim) for d in docs]
        if not rows:
            return np.zeros((0, dim), np.float32)
        return np.stack([r if r is not None else np.zeros(dim, np.float32) for r in rows])

    # -- results -------------------------------------------------------------------------------
    def _hit(self, rank: int, doc: DocCandidate, selection: Selection, key: np.ndarray) -> SeekHit:
        top = doc.top
        lock = top.lock
        index = int(np.flatnonzero(selection.considered == selection.indices[rank - 1])[0])
        cluster = selection.fit.labels[index] if selection.fit is not None else None
        weight = (
            float(selection.cluster_weights[cluster])
            if cluster is not None and selection.cluster_weights is not None
            else None
        )
        image_lock = doc.best_image_lock() or self._image_lock_of(doc.doc_id, key)
        return SeekHit(
            **lock.document().model_dump(),
            rank=rank,
            score=float(top.hit.score),
            fused_score=float(doc.fused),
            pipeline_scores={name: float(h.hit.score) for name, h in doc.best.items()},
            best_lock=self._lock(top),
            image_path=self._blob_path(image_lock.lock.blob) if image_lock else None,
            cluster=int(cluster) if cluster is not None else None,
            cluster_weight=weight,
        )

    def _image_lock_of(self, doc_id: str, key: np.ndarray) -> LockHit | None:
        """The document's image lock nearest the query, when only text pipelines found it."""
        found = self.store.search("image", key, 1, Where.of(doc_id=doc_id))
        return LockHit(found[0], LockPayload.read(found[0].payload), "image>image", "image") if found else None

    def _lock(self, found: LockHit) -> LockMatch:
        return LockMatch(
            id=found.hit.id,
            kind=found.lock.kind,
            pipeline=found.pipeline,
            score=float(found.hit.score),
            page=found.lock.page,
            text=found.lock.text,
            image_path=self._blob_path(found.lock.blob),
        )

    def _blob_path(self, blob: str | None) -> str | None:
        return str(self.blobs.path(blob).absolute()) if blob else None

    @staticmethod
    def _diagnostics(
        found: Candidates,
        pipelines: list[Pipeline],
        docs: list[DocCandidate],
        scores: np.ndarray,
        selection: Selection,
        seed: int,
        timings: dict[str, float],
        region: RegionKey,
    ) -> SeekDiagnostics:
        order = selection.considered
        fit = selection.fit
        clusters: list[ClusterStat] = []
        if fit is not None and selection.cluster_weights is not None and selection.takes is not None:
            sizes = np.bincount(fit.labels, minlength=fit.k)
            clusters = [
                ClusterStat(
                    index=i,
                    size=int(sizes[i]),
                    mean=float(fit.means[i]),
                    variance=float(fit.variances[i]),
                    mixture_weight=float(fit.mixture_weights[i]),
                    kde_weight=float(selection.cluster_weights[i]),
                    taken=int(selection.takes[i]),
                )
                for i in range(fit.k)
            ]
        return SeekDiagnostics(
            pipelines=[
                PipelineStat(
                    name=p.name,
                    vector=p.vector,
                    weight=p.weight,
                    locks=found.locks_per_pipeline.get(p.name, 0),
                    documents=found.documents_per_pipeline.get(p.name, 0),
                )
                for p in pipelines
            ],
            candidate_locks=sum(found.locks_per_pipeline.values()),
            doc_ids=[docs[i].doc_id for i in order.tolist()],
            scores=[float(scores[i]) for i in order.tolist()],
            dropped_nonfinite=len(docs) - len(order),
            k_clusters=fit.k if fit is not None else None,
            labels=fit.labels.tolist() if fit is not None else None,
            clusters=clusters,
            kde_log_density=selection.log_density.tolist() if selection.log_density is not None else None,
            kde_bandwidth=selection.bandwidth,
            seed=seed,
            timings_ms=timings,
            region=RegionKeyStat(
                used=region.key is not None,
                category=region.category,
                category_inferred=region.inferred,
                references=region.references,
                note=region.note,
            ),
        )

    @staticmethod
    def _note(hits: list[SeekHit], k: int, filters: dict[str, str], selection: Selection) -> str | None:
        if not hits:
            where = ", ".join(f"{n}={v!r}" for n, v in filters.items())
            if where:
                return f"no knowledge matches {where}; `kbengine info` lists what the knowledge base holds"
            return "no defect knowledge to compare with (only normal references?); try include_normal"
        if len(hits) < k:
            return f"only {len(selection.considered)} document(s) qualify, fewer than k={k}"
        return None

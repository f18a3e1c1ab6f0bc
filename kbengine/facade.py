"""The ``KnowledgeBase`` facade: opens the store, picks the encoder, wires the layers.

The shell sits on top of every layer; it imports them inside the methods that need them, so
``import kbengine`` and ``kbengine --help`` stay fast. Lifecycle and verify take the facade's
parts (store, blobs, settings: ``kbengine.core.parts``) and what else they use (the encoder, a
way to ingest), never the facade: it calls them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kbengine.core.blobs import BlobStore
from kbengine.core.cache import cache_folder
from kbengine.core.datasets import under
from kbengine.core.encoders import Encoder, EncoderIdentity, get_encoder
from kbengine.core.errors import InvalidInputError, KBEngineError
from kbengine.core.images import ImageInput
from kbengine.core.parts import blob_root
from kbengine.core.schemas import (
    SOURCE_KIND,
    Answer,
    CategoryInfo,
    Detection,
    DocumentList,
    DocumentSummary,
    EditReport,
    Feedback,
    FeedbackReport,
    FileFailure,
    IngestReport,
    KBInfo,
    LockLabel,
    SeekResult,
)
from kbengine.core.settings import Settings
from kbengine.core.store import Store, Where, get_store
from kbengine.core.vocabulary import FEEDBACK_SOURCE, NORMAL_TYPE, check_domain, normalise_name

if TYPE_CHECKING:
    from kbengine.core.banks.references import ReferenceBanks
    from kbengine.core.query import Query
    from kbengine.lifecycle import GcReport, MigrateReport, RestoreReport, SnapshotReport
    from kbengine.verify import VerifyReport
    from reasoning.asker import Asker
    from reasoning.expert.detector import Detector
    from reasoning.llm.base import LLM
    from retrieval import Seeker, TypeService
    from retrieval.centroids import CentroidSnapshot


class KnowledgeBase:
    """A knowledge base: one Qdrant collection, its blob folder and its encoder.

    >>> kb = KnowledgeBase.open("./kb")                   # embedded store under ./kb
    >>> kb = KnowledgeBase.open(url="http://localhost:6333", collection="seek")
    """

    def __init__(
        self, settings: Settings, store: Store, encoder: Encoder | None = None, *, lazy_encoder: bool = False
    ) -> None:
        self.settings = settings
        self.store = store
        self._encoder = encoder
        self._identity: EncoderIdentity | None = store.read_identity()
        self.blobs = BlobStore(blob_root(settings))
        self._types: TypeService | None = None
        self._banks: ReferenceBanks | None = None
        self._seeker: Seeker | None = None
        self._detector: Detector | None = None
        self._asker: Asker | None = None
        if settings.encoder != "auto" and encoder is None and not lazy_encoder:
            self._encoder = get_encoder(settings, self.identity)

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        url: str | None = None,
        collection: str | None = None,
        encoder: str | None = None,
        settings: Settings | None = None,
        lazy_encoder: bool = False,
        **overrides: Any,
    ) -> KnowledgeBase:
        """Open (or create on first ingest) a knowledge base: embedded under ``path`` (default
        ``./kb`` or ``KBENGINE_KB``), or on a Qdrant server at ``url``. ``lazy_encoder``: load the
        encoder on first use (on the thread that uses it: the service's model thread), not now."""
        base = settings or Settings()
        changes: dict[str, Any] = dict(overrides)
        if path is not None:
            changes["kb"] = Path(path)
        if url is not None:
            changes["qdrant_url"] = url
        if collection is not None:
            changes["collection"] = collection
        if encoder is not None:
            changes["encoder"] = encoder
        settings = base.model_copy(update=changes)
        store = get_store(settings)
        try:
            return cls(settings, store, lazy_encoder=lazy_encoder)
        except BaseException:
            store.close()
            raise

    @property
    def identity(self) -> EncoderIdentity | None:
        """The encoder the knowledge base was built with; None before anything is stored, and read
        from the store again while it is None (so a knowledge base a migrate filled learns it)."""
        if self._identity is None:
            self._identity = self.store.read_identity()
        return self._identity

    @identity.setter
    def identity(self, identity: EncoderIdentity | None) -> None:
        self._identity = identity

    @property
    def encoder(self) -> Encoder:
        """The knowledge base's encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = get_encoder(self.settings, self.identity)
        return self._encoder

    def ingest(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        domain: str | None = None,
        category: str | None = None,
        defect_type: str | None = None,
        strict: bool = False,
        progress: Any = None,
        taxonomy: str | Path | None = None,
        dry_run: bool = False,
    ) -> IngestReport:
        """Ingest PDFs, document folders, image folders and MVTec-layout datasets.

        ``taxonomy``: a file of categories and defect types with synonyms that labels PDF sections
        without labels of their own (default ``<kb>/taxonomy.yaml``). ``dry_run``: report the
        documents, their labels and where each label came from, writing nothing."""
        from ingest import Ingestor, Overrides
        from ingest.labels import load_taxonomy

        _check_domain(domain)
        items: Iterable[str | Path] = [paths] if isinstance(paths, str | Path) else paths
        ingestor = Ingestor(self.store, self.encoder, self.banks, self.settings)
        options = Overrides(domain=domain, category=category, defect_type=defect_type)
        words = load_taxonomy(Path(taxonomy)) if taxonomy is not None else None
        if dry_run:
            return ingestor.preview(items, options, words)
        before = self.types.snapshot()
        report = ingestor.ingest(items, options, strict=strict, progress=progress, taxonomy=words)
        self._ingested(report, before)
        return report

    def _ingested(self, report: IngestReport, before: CentroidSnapshot | None) -> None:
        """After an ingest or a feedback: the identity, the cached prompt texts and the type centroids follow."""
        self.identity = self.encoder.identity
        if self._detector is not None:
            self._detector.knowledge.forget_texts()
        if report.locks_added or report.locks_removed:
            self._refresh_types(report, before)
        elif self._types is not None:
            self._types.invalidate()

    def feedback(
        self,
        image: ImageInput | bytes,
        *,
        category: str,
        defect_type: str,
        domain: str | None = None,
        note: str | None = None,
    ) -> FeedbackReport:
        """An inspector's verdict on ``image`` becomes knowledge: a labelled example of
        (``category``, ``defect_type``), or a normal reference of ``category`` when ``defect_type``
        is ``good`` (its memory bank grows by it). Stored once per photo content; the same photo
        again relabels it; ``remove(source="feedback/<sha256>")`` undoes it. ``domain``: default
        the photo's earlier feedback's, else the category's, else industrial. See :mod:`ingest.feedback`."""
        import time

        from ingest import Ingestor
        from ingest.feedback import feedback_unit, photo_bytes, source_of
        from ingest.units import doc_id

        started = time.perf_counter()
        _check_domain(domain)
        data, suffix, picture = photo_bytes(image, self.settings.max_image_pixels)
        key = source_of(data)
        category, defect_type = normalise_name(category), normalise_name(defect_type)
        stored_before = self.store.scroll(Where.of(source=key, kind="image"), fields=LockLabel.fields())
        earlier = [LockLabel.read(hit.payload) for hit in stored_before]
        known = self.store.facet("defect_type", Where.of(category=category)) if self.identity else {}
        if domain is None:
            domain = earlier[0].domain if earlier else self._domain_of(category)
        unit = feedback_unit(
            data, suffix, picture, category=category, defect_type=defect_type, domain=domain, note=note
        )
        ingestor = Ingestor(self.store, self.encoder, self.banks, self.settings)
        before = self.types.snapshot()
        report = ingestor.ingest([], units=[unit])
        self._ingested(report, before)
        if report.failed:
            raise InvalidInputError(f"feedback not stored: {report.failed[0].reason}")
        notes = list(report.notes)
        if not known:
            notes.append(f"category {category!r} is new to the knowledge base")
        elif defect_type not in known:
            notes.append(f"defect type {defect_type!r} is new to category {category!r}")
        previous = f"{earlier[0].category}/{earlier[0].defect_type}" if earlier else None
        moved = previous is not None and previous != f"{category}/{defect_type}"
        state = report.sources[0].status if report.sources else "unchanged"
        status = (
            "added"
            if state == "added"
            else "unchanged"
            if state == "unchanged"
            else ("relabelled" if moved else "updated")
        )
        stored = self.store.scroll(Where.of(source=key, kind="image"), fields=["feedback"])
        record = next((h.payload["feedback"] for h in stored if h.payload.get("feedback")), None)
        if record is None:  # pragma: no cover - the lock was just written
            raise KBEngineError(f"feedback {key} was not stored")
        return FeedbackReport(
            doc_id=doc_id(key),
            source=key,
            domain=domain,
            category=category,
            defect_type=defect_type,
            status=status,
            previous=previous if moved else None,
            normal_reference=defect_type == NORMAL_TYPE,
            feedback=record,
            locks=report.locks_added,
            regions_added=report.regions_added,
            regions_removed=report.regions_removed,
            notes=notes,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _domain_of(self, category: str) -> str | None:
        """The domain of ``category``'s documents (the first in order), None for a new category."""
        if not self.identity:
            return None
        domains = self.store.facet("domain", Where.of(category=category))
        return sorted(domains)[0] if domains else None

    @property
    def banks(self) -> ReferenceBanks:
        """The categories' normal-reference memory banks (cached) that ingest, seek and detect share."""
        if self._banks is None:
            from kbengine.core.banks.references import ReferenceBanks

            self._banks = ReferenceBanks(self.store, self.encoder, self.blobs, self.settings)
        return self._banks

    def query(self, image: ImageInput | Query) -> Query:
        """``image`` as a query: pass it to several calls (``seek``, ``detect``, ``ask``) and the
        photo is decoded, embedded and scored against its category's references once."""
        from kbengine.core.query import Query

        return Query.of(image, self.encoder, self.settings.max_image_pixels)

    @property
    def types(self) -> TypeService:
        """The type-prediction service (defect-type centroids, cached) that seek and detect share."""
        if self._types is None:
            from retrieval import TypeService

            self._types = TypeService(self.store, cache_folder(self.settings), self.encoder.identity.name)
        return self._types

    @property
    def seeker(self) -> Seeker:
        """The retrieval layer on this knowledge base."""
        if self._seeker is None:
            from retrieval import Seeker

            self._seeker = Seeker(self.store, self.encoder, self.banks, self.settings, self.types)
        return self._seeker

    @property
    def detector(self) -> Detector:
        """The AD Expert on this knowledge base (it caches memory banks and prompt embeddings)."""
        if self._detector is None:
            from reasoning.expert.detector import Detector
            from reasoning.expert.knowledge import ExpertKnowledge

            knowledge = ExpertKnowledge(self.store, self.encoder, self.banks, self.settings, self.types)
            self._detector = Detector(self.encoder, knowledge, self.types, self.settings)
        return self._detector

    def detect(
        self,
        image: ImageInput | Query,
        category: str | None = None,
        *,
        mode: str = "auto",
        prompts: str | Path | None = None,
    ) -> Detection:
        """The AD Expert: anomaly score, map, mask, regions and the defect-type guess; see
        :mod:`reasoning.expert.detector`. ``prompts``: a file written by ``train-prompts``."""
        category = normalise_name(category) if category else None
        learned, name = (None, None)
        if prompts is not None:
            from reasoning.expert.training import load_learned_texts

            learned, name = load_learned_texts(self.encoder, Path(prompts)), str(prompts)
        return self.detector.detect(image, category, mode=mode, learned=learned, learned_name=name)

    def seek_many(
        self, images: Iterable[ImageInput], *, batch_size: int = 8, **options: Any
    ) -> Iterator[SeekResult | FileFailure]:
        """``seek`` over many photos (``options`` as ``seek`` takes them), yielded in order; every
        ``batch_size`` photos share one encoder pass, and a photo that cannot be read yields a
        ``FileFailure`` instead of stopping the rest."""
        from kbengine.core.query import query_batches

        for item in query_batches(images, self.query, batch_size):
            yield item if isinstance(item, FileFailure) else self.seek(item, **options)

    def detect_many(
        self,
        images: Iterable[ImageInput],
        category: str | None = None,
        *,
        mode: str = "auto",
        prompts: str | Path | None = None,
        batch_size: int = 8,
    ) -> Iterator[Detection | FileFailure]:
        """``detect`` over many photos, yielded in order as each finishes; every ``batch_size``
        photos share one encoder pass, and a photo that cannot be read yields a ``FileFailure``
        (path and reason) instead of stopping the rest."""
        category = normalise_name(category) if category else None
        learned, name = (None, None)
        if prompts is not None:
            from reasoning.expert.training import load_learned_texts

            learned, name = load_learned_texts(self.encoder, Path(prompts)), str(prompts)
        return self.detector.detect_many(
            images, category, mode=mode, batch_size=batch_size, learned=learned, learned_name=name
        )

    def ask(
        self,
        image: ImageInput | Query,
        question: str,
        llm: LLM | str | None = None,
        *,
        setting: str = "seek",
        knowledge: bool = True,
        expert: bool = True,
        category: str | None = None,
        options: dict[str, str] | None = None,
        template: ImageInput | None = None,
        k: int = 3,
        stream: Callable[[str], Any] | None = None,
    ) -> Answer:
        """Answer ``question`` about ``image`` from the retrieved knowledge and the AD Expert's
        findings. ``llm``: a backend name (``none``, ``openai``, ``hf``; default ``KBENGINE_LLM``)
        or an LLM object; ``none`` writes the grounded report. See :mod:`reasoning.asker`."""
        from reasoning.llm import get_llm

        category = normalise_name(category) if category else None
        model = get_llm(self.settings, llm) if llm is None or isinstance(llm, str) else llm
        if self._asker is None:
            from reasoning.asker import Asker

            self._asker = Asker(self.seeker, self.detector, self.settings)
        return self._asker.ask(
            image,
            question,
            llm=model,
            setting=setting,
            knowledge=knowledge,
            expert=expert,
            category=category,
            options=options,
            template=template,
            k=k,
            stream=stream,
        )

    def seek(
        self,
        image: ImageInput | Query,
        k: int = 5,
        strategy: str = "kde",
        category: str | None = None,
        text: str | None = None,
        *,
        domain: str | None = None,
        defect_type: str | None = None,
        include_normal: bool = False,
        candidates: int | None = None,
        exclude_sources: Sequence[str] = (),
        seed: int | None = None,
        focus: bool | None = None,
        key: str = "auto",
    ) -> SeekResult:
        """Q2K RAG: the ``k`` knowledge documents for ``image`` (strategy ``kde``, ``topk`` or
        ``mmr``), optionally filtered and with a text query; see :mod:`retrieval`.

        ``key``: ``auto`` fuses the global embedding with the region key (the defect's region
        against the category's normal references) when the category has them; ``global`` or
        ``region`` use one alone (see :class:`retrieval.seeker.Seeker`).

        ``focus=True``: the defect region against the category's normal references (given or
        inferred; they are needed) is cropped, and the crop's embedding becomes a second key and the
        key of the type prediction (:meth:`retrieval.seeker.Seeker.focus_key`). Off by default (docs/detect.md
        has the measurements)."""
        category = normalise_name(category) if category else None
        defect_type = normalise_name(defect_type) if defect_type else None
        query = self.query(image)
        focus_key = self.seeker.focus_key(query, category) if focus else None
        if focus and focus_key is None:
            raise InvalidInputError(
                "focus needs normal references of the part's category in the knowledge base; none found"
            )
        return self.seeker.seek(
            query,
            k,
            strategy,
            category=category,
            domain=domain,
            defect_type=defect_type,
            text=text,
            include_normal=include_normal,
            candidates=candidates,
            exclude_sources=exclude_sources,
            seed=seed,
            focus_key=focus_key,
            key=key,
        )

    def info(self) -> KBInfo:
        """What the knowledge base holds, per (category, defect type)."""
        entries: dict[tuple[str, str], CategoryInfo] = {}
        docs: dict[tuple[str, str], set[str]] = defaultdict(set)
        all_docs: set[str] = set()
        domains: set[str] = set()
        with_examples: set[str] = set()
        with_references: set[str] = set()
        locks = 0
        fed_back: dict[tuple[str, str], set[str]] = defaultdict(set)
        for hit in self.store.scroll(fields=[*LockLabel.fields(), "source"]):
            label = LockLabel.read(hit.payload)
            if str(hit.payload.get("source", "")).startswith(FEEDBACK_SOURCE + "/"):
                fed_back[(label.category, label.defect_type)].add(label.doc_id)
            if label.kind in ("image", "figure"):
                (with_references if label.defect_type == NORMAL_TYPE else with_examples).add(label.category)
            key = (label.category, label.defect_type)
            entry = entries.setdefault(key, CategoryInfo(category=key[0], defect_type=key[1]))
            entry.locks[label.kind] = entry.locks.get(label.kind, 0) + 1
            docs[key].add(label.doc_id)
            all_docs.add(label.doc_id)
            domains.add(label.domain)
            locks += 1
        for key, entry in entries.items():
            entry.documents = len(docs[key])
            entry.feedback = len(fed_back[key])
        identity = self.identity
        meta = self.store.read_meta()
        return KBInfo(
            location=self.store.location,
            store=self.store.kind,
            encoder=identity.name if identity else "(none yet: set on first ingest)",
            image_dim=identity.image_dim if identity else 0,
            text_dim=identity.text_dim if identity else None,
            joint_space=identity.joint_space if identity else False,
            locks=locks,
            documents=len(all_docs),
            sources=self.store.count(Where.of(kind=SOURCE_KIND)),
            domains=sorted(domains),
            entries=sorted(entries.values(), key=lambda e: (e.category, e.defect_type)),
            region_locks=bool(meta and meta.region_dim),
            without_references=sorted(with_examples - with_references),
        )

    def documents(
        self,
        *,
        category: str | None = None,
        defect_type: str | None = None,
        domain: str | None = None,
        source: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> DocumentList:
        """The knowledge documents, filtered by their labels (``source``: the document's file or a
        folder it lies in), sorted by category, defect type and title, ``limit`` from ``offset``.

        One scroll over the locks' payloads (no vectors); a document's summary is its locks'."""
        if offset < 0 or limit < 1:
            raise InvalidInputError(f"offset must be >= 0 and limit >= 1 (got {offset}, {limit})")
        filters = {
            name: normalise_name(value) if name != "domain" else value
            for name, value in (("category", category), ("defect_type", defect_type), ("domain", domain))
            if value
        }
        fields = [*LockLabel.fields(), "title", "doc_source", "page", "blob", "feedback"]
        found: dict[str, DocumentSummary] = {}
        for hit in self.store.scroll(Where.of(**filters), fields=fields):
            payload = hit.payload
            label = LockLabel.read(payload)
            doc_source = str(payload.get("doc_source", ""))
            if source and not under(doc_source, source):
                continue
            doc = found.get(label.doc_id)
            if doc is None:
                doc = found[label.doc_id] = DocumentSummary(
                    doc_id=label.doc_id,
                    title=str(payload.get("title", "")),
                    domain=label.domain,
                    category=label.category,
                    defect_type=label.defect_type,
                    source=doc_source,
                )
            if doc.feedback is None and isinstance(payload.get("feedback"), dict):
                doc.feedback = Feedback.model_validate(payload["feedback"])
            doc.kinds[label.kind] = doc.kinds.get(label.kind, 0) + 1
            page = payload.get("page")
            if isinstance(page, int) and page not in doc.pages:
                doc.pages.append(page)
            blob = payload.get("blob")
            if doc.image_path is None and isinstance(blob, str) and blob:
                doc.image_path = str(self.blobs.path(blob))
        ordered = sorted(found.values(), key=lambda d: (d.category, d.defect_type, d.title, d.doc_id))
        for doc in ordered:
            doc.pages.sort()
        if source:
            filters["source"] = source
        return DocumentList(
            total=len(ordered), offset=offset, limit=limit, filters=filters, documents=ordered[offset : offset + limit]
        )

    def remove(
        self,
        doc: str | Sequence[str] | None = None,
        *,
        source: str | Path | None = None,
        category: str | None = None,
        dry_run: bool = False,
    ) -> EditReport:
        """Take documents out: by id (``doc``), by ``source`` (a file, or every file in a folder) or
        a whole ``category``. Every lock goes, region locks included; a source left empty loses its
        marker (ingesting it again adds it back); type centroids and memory banks notice by their
        fingerprints. ``dry_run``: what would go. See :mod:`ingest.edit`."""
        from ingest.edit import remove

        report = remove(
            self.store,
            self.banks,
            doc_ids=[doc] if isinstance(doc, str) else list(doc or ()),
            source=str(source) if source is not None else None,
            category=category,
            dry_run=dry_run,
        )
        self._changed(report)
        return report

    def relabel(
        self,
        doc: str | Sequence[str] | None = None,
        *,
        source: str | Path | None = None,
        in_category: str | None = None,
        category: str | None = None,
        defect_type: str | None = None,
        domain: str | None = None,
        dry_run: bool = False,
    ) -> EditReport:
        """Fix the labels of documents chosen by id (``doc``), ``source`` or ``in_category``: the
        new ``category``, ``defect_type`` and/or ``domain`` on every lock (vectors untouched);
        region locks and type centroids follow. ``dry_run``: what would change. See :mod:`ingest.edit`."""
        from ingest.edit import relabel

        report = relabel(
            self.store,
            self.banks,
            doc_ids=[doc] if isinstance(doc, str) else list(doc or ()),
            source=str(source) if source is not None else None,
            category=in_category,
            new_category=category,
            new_defect_type=defect_type,
            new_domain=domain,
            dry_run=dry_run,
        )
        self._changed(report)
        return report

    def snapshot(self, path: str | Path, *, force: bool = False) -> SnapshotReport:
        """Write the knowledge base (its points, blobs and a manifest of sha256 sums) to ``path``
        (``.tar.zst``, ``.tar.gz`` or ``.tar``); see :mod:`kbengine.lifecycle.snapshot`."""
        from kbengine.lifecycle import create_snapshot

        return create_snapshot(self, path, force=force)

    @classmethod
    def restore(
        cls, snapshot: str | Path, path: str | Path, *, force: bool = False, settings: Settings | None = None
    ) -> RestoreReport:
        """Restore ``snapshot`` as the embedded knowledge base at ``path`` after verifying every
        member; an existing knowledge base there is replaced only with ``force``."""
        from kbengine.lifecycle import restore_snapshot

        base = settings or Settings()
        return restore_snapshot(snapshot, base.model_copy(update={"kb": Path(path), "qdrant_url": None}), force=force)

    def migrate(
        self,
        *,
        to_url: str | None = None,
        to_kb: str | Path | None = None,
        collection: str | None = None,
        verify: bool = False,
        replace: bool = False,
        progress: Any = None,
    ) -> MigrateReport:
        """Copy this knowledge base to a Qdrant server collection (``to_url``) or an embedded one
        (``to_kb``), in batches, resumable; ``verify`` compares ids, payloads, sampled vectors and
        seek results. See :mod:`kbengine.lifecycle.migrate`."""
        from kbengine.lifecycle import migrate_to

        if (to_url is None) == (to_kb is None):
            raise InvalidInputError("migrate needs one target: to_url (a Qdrant server) or to_kb (a folder)")
        changes: dict[str, Any] = {"qdrant_url": to_url} if to_url else {"kb": Path(str(to_kb)), "qdrant_url": None}
        if collection:
            changes["collection"] = collection
        target = self.settings.model_copy(update=changes)
        encoder = self.encoder if verify else None
        return migrate_to(self, target, verify=verify, replace=replace, progress=progress, encoder=encoder)

    def gc(self, *, dry_run: bool = False, min_age: float | None = None) -> GcReport:
        """Delete blobs and cache files nothing references (never a referenced one); see
        :mod:`kbengine.lifecycle.gc`."""
        from kbengine.lifecycle import collect_garbage

        return collect_garbage(self, banks=lambda: self.banks, dry_run=dry_run, min_age=min_age)

    def _changed(self, report: EditReport) -> None:
        """Drop what this object caches about the labels after a remove or relabel."""
        if report.dry_run or not report.documents:
            return
        if self._types is not None:
            self._types.invalidate()
        if self._detector is not None:
            self._detector.knowledge.forget_texts()

    def _refresh_types(self, report: IngestReport, before: CentroidSnapshot | None) -> None:
        """After an ingest, bring the type centroids up to date and cache them on disk now, so the
        processes that only read (seek, detect, serve) load them instead of scrolling every
        vector in the store. The scroll maps the vector files a second time beside the search's
        own mapping (a first seek at 100k locks peaked at 1.9 GiB, one that found the cache at
        1.4 GiB), and it is slow: 16-18 s at 100k example photos. An ingest that only added
        sources (none replaced, no lock removed, nothing failed) reads only the new locks and adds
        them to the centroids cached before it (``TypeService.extend``); any other computes them
        afresh. Remove and relabel only invalidate (one document out of 100k stays a 40 ms edit);
        the next reader rebuilds the cache."""
        types = self.types
        added = [s.path for s in report.sources if s.status == "added"]
        only_added = all(s.status in ("added", "unchanged") for s in report.sources)
        clean = only_added and not report.locks_removed and not report.failed
        if before is not None and clean and types.extend(before, added):
            return
        types.invalidate()
        if types.folder is not None:
            types.get()

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Compare the store with its source markers, blobs and caches: what is damaged and how to
        repair it. ``repair``: ingest again the sources whose files exist, delete damaged caches,
        and check again; see :mod:`kbengine.verify`."""
        from kbengine.verify import verify

        return verify(self, repair=repair, ingest=self.ingest)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_domain(domain: str | None) -> None:
    """Refuse a domain name the vocabulary does not allow (ingest and feedback take one)."""
    if domain is not None:
        try:
            check_domain(domain)
        except ValueError as e:
            raise InvalidInputError(f"--domain {domain!r}: {e}") from None


__all__ = ["KBEngineError", "KnowledgeBase"]

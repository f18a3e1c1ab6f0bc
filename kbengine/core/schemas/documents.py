"""Knowledge documents and the payloads stored with their locks.

:class:`LockPayload` is the one shape of a lock's payload: ingest writes it, retrieval, reasoning
and the shell read it through this model (or the :class:`LockLabel` view of its indexed labels),
never as a dict read by string keys. :class:`SourceMarker` and :class:`CollectionMeta` are the
two kinds of vector-less marker points.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.errors import StoreError
from kbengine.core.vocabulary import NORMAL_TYPE, SECTION_NAMES

LockKind = Literal["page", "figure", "image", "text", "region"]
"""page: a rendered PDF page; figure: an image embedded in a PDF; image: a reference photo;
text: a chunk of a document's text; region: the descriptor of a defect example's anomalous
region against its category's normal references (``ingest.regions``)."""

SOURCE_KIND: Literal["source"] = "source"
META_KIND: Literal["meta"] = "meta"
"""Marker points (no vectors): ``meta`` records the encoder; ``source`` says a source file's locks
are all stored (written last, so an interrupted ingest is redone on the next run)."""

SCHEMA_VERSION = 1
SUMMARY_CHARS = 1000
"""Each section of a document as every lock's payload carries it (``TextSections.summary``)."""


class TextSections(BaseModel):
    """The text of a knowledge document, in the sections the paper's documents use
    (``vocabulary.SECTION_NAMES``, in that order)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    appearance: str = ""
    causes: str = ""
    consequences: str = ""
    production_scenarios: str = ""
    application_scenarios: str = ""

    def items_nonempty(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.model_dump().items() if v.strip()]

    def summary(self, chars: int = SUMMARY_CHARS) -> TextSections:
        """Each section cut to at most ``chars`` characters (at a word, marked with an ellipsis):
        what every lock of a document carries, so a lock's payload does not grow with its
        document (a lock's own chunk is its ``text``)."""
        return TextSections(**{k: _cut(v, chars) for k, v in self.model_dump().items()})


def _cut(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    head = text[: chars - 1]
    space = head.rfind(" ")
    return (head[:space] if space > chars // 2 else head).rstrip() + "\u2026"


if tuple(TextSections.model_fields) != SECTION_NAMES:  # pragma: no cover - a guard against drift
    raise RuntimeError("TextSections must have exactly the fields of vocabulary.SECTION_NAMES, in order")


class LabelSource(BaseModel):
    """Where a label came from and how sure it is (``ingest.labels`` lists the sources)."""

    source: str = Field(
        description="option | sidecar | line | card | folder | taxonomy | knowledge base | text embedding | "
        "figure | file name | default | relabel"
    )
    confidence: float = Field(1.0, ge=0.0, le=1.0)


class Labels(BaseModel):
    """The provenance of a document's category and defect type."""

    category: LabelSource = Field(default_factory=lambda: LabelSource(source="default"))
    defect_type: LabelSource = Field(default_factory=lambda: LabelSource(source="default"))


class Feedback(BaseModel):
    """An inspector's verdict that made a document (``kb.feedback``): when, and what was said."""

    at: str = Field(description="When it was given (UTC, ISO 8601).")
    note: str | None = Field(None, description="The inspector's note, if any.")


class KnowledgeDocument(BaseModel):
    """One (domain, category, defect type) entry, or a normal reference (defect type ``good``)."""

    doc_id: str
    domain: str
    category: str
    defect_type: str
    title: str
    sections: TextSections = Field(default_factory=TextSections)
    source: str = Field(description="The file or folder it came from.")
    page: int | None = Field(None, description="1-based PDF page number, when it is a page (its first page).")
    labels: Labels | None = Field(None, description="Where category and defect type came from, when inferred.")
    feedback: Feedback | None = Field(None, description="Set when an inspection's feedback made the document.")

    @property
    def is_normal(self) -> bool:
        return self.defect_type == NORMAL_TYPE


DOCUMENT_LABELS = {"doc_id", "domain", "category", "defect_type", "title", "sections", "labels", "feedback"}
"""The fields a lock payload copies from its document under the same names."""


class _Payload(BaseModel):
    """A view of a stored payload: :meth:`fields` names what to fetch, :meth:`read` parses it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The payload fields this view reads (ask the store for these only)."""
        return tuple(cls.model_fields)

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> Self:
        return cls.model_validate(payload)


class LockLabel(_Payload):
    """The indexed labels every lock carries: cheap to scroll over a whole knowledge base."""

    doc_id: str
    domain: str
    category: str
    defect_type: str
    kind: LockKind

    @property
    def type_key(self) -> tuple[str, str, str]:
        """(domain, category, defect type): what a defect-type centroid averages over."""
        return (self.domain, self.category, self.defect_type)


class LockPayload(LockLabel):
    """A lock's whole payload: its document, where it came from, and its own content."""

    title: str
    sections: TextSections = Field(default_factory=TextSections)
    labels: Labels | None = None
    feedback: Feedback | None = None
    doc_source: str = Field(description="The document's file or folder (``KnowledgeDocument.source``).")
    source: str = Field(description="The source unit (file) whose ingest wrote the lock.")
    source_sha: str = Field(description="That unit's fingerprint when the lock was written.")
    page: int | None = None
    sha256: str = Field(description="sha256 of the lock's content and provenance.")
    encoder: str
    blob: str | None = Field(None, description="Blob name of the page/figure/image, if any.")
    text: str | None = Field(None, description="A text lock's chunk.")
    locator: str = Field(description="Where in the source the lock's content is, e.g. 'page:2:figure:0'.")
    region_of: str | None = Field(None, description="A region lock: the id of the example photo it describes.")
    bank: str | None = Field(None, description="A region lock: the fingerprint of the bank it was computed with.")
    ocr: bool = Field(False, description="Its content was read by OCR from a page image (a scanned PDF page).")

    @classmethod
    def of(
        cls,
        doc: KnowledgeDocument,
        *,
        kind: LockKind,
        source: str,
        source_sha: str,
        sha256: str,
        encoder: str,
        locator: str,
        page: int | None = None,
        blob: str | None = None,
        text: str | None = None,
        ocr: bool = False,
    ) -> LockPayload:
        labels = doc.model_dump(include=DOCUMENT_LABELS)
        labels["sections"] = doc.sections.summary().model_dump()
        return cls(
            **labels,
            doc_source=doc.source,
            kind=kind,
            source=source,
            source_sha=source_sha,
            page=page,
            sha256=sha256,
            encoder=encoder,
            blob=blob,
            text=text,
            locator=locator,
            ocr=ocr,
        )

    def document(self) -> KnowledgeDocument:
        """The knowledge document this lock belongs to."""
        return KnowledgeDocument(**self.model_dump(include=DOCUMENT_LABELS), source=self.doc_source, page=self.page)


class BlobRef(_Payload):
    """The blob a lock names (ingest checks an unchanged source's blobs with it)."""

    blob: str | None = None


class LockSource(_Payload):
    """Where a lock came from and which blob it names (``kbengine verify`` reads these only)."""

    kind: str
    source: str
    source_sha: str
    doc_source: str
    blob: str | None = None


class RegionLabel(_Payload):
    """What a region lock records of its making: the example it describes, the bank it used."""

    region_of: str
    bank: str


class SourceMarker(_Payload):
    """Written after every lock of a source unit is stored: the unit is complete."""

    kind: Literal["source"] = "source"
    source: str
    source_sha: str
    unit: str = Field("", description="pdf, card, image, ...")
    locks: int = 0
    documents: int = 0
    revision: str = Field(
        "", description="Set by remove/relabel: derived data keyed by the markers (type centroids) notices edits."
    )


class CollectionMeta(_Payload):
    """The collection's metadata point: the encoder it was built with."""

    kind: Literal["meta"] = "meta"
    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    encoder: EncoderIdentity
    region_dim: int | None = Field(
        None, description="Length of the 'region' vector; None for collections made before region locks."
    )

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    @classmethod
    def parse(cls, payload: Mapping[str, Any] | None) -> CollectionMeta | None:
        """The metadata in ``payload``; None when there is none. A damaged metadata point is an
        error, never read as "no encoder yet" (that would let another encoder's vectors in)."""
        if not payload or payload.get("kind") != META_KIND:
            return None
        try:
            return cls.read(payload)
        except ValidationError as e:
            raise StoreError(
                f"the knowledge base's metadata is damaged or from a newer kbengine ({e.error_count()} problem(s)): "
                "open it with the kbengine that made it, or restore it from a snapshot"
            ) from e


PAYLOAD_FIELDS: frozenset[str] = frozenset(LockPayload.model_fields) | frozenset(SourceMarker.model_fields)
"""Every field a filter may name."""

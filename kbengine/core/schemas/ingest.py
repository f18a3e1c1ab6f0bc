"""What ingest reports and what a knowledge base holds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from kbengine.core.schemas.documents import Feedback, Labels
from kbengine.core.vocabulary import printable


class FileFailure(BaseModel):
    path: str
    reason: str

    _printable = field_validator("path", "reason")(printable)


class SourceReport(BaseModel):
    path: str
    status: Literal["added", "replaced", "unchanged", "failed"]
    documents: int = 0
    locks: int = 0
    reason: str | None = None


class FigurePreview(BaseModel):
    page: int | None = None
    caption: str | None = None


class TableFound(BaseModel):
    """A defect table found in a PDF: one document per row; its header names the columns."""

    source: str
    pages: list[int]
    ruling: Literal["grid", "rules", "whitespace"] = Field(
        description="grid: ruled both ways; rules: horizontal lines only; whitespace: columns aligned, no lines."
    )
    header: list[str]
    rows: int


class OcrPage(BaseModel):
    """A PDF page read by OCR, or one without a text layer that OCR could not read (``problem``)."""

    source: str
    page: int
    language: str
    dpi: int | None = None
    characters: int = 0
    problem: str | None = Field(None, description="Why it was not read, and what to do (e.g. install Tesseract).")

    @property
    def read(self) -> bool:
        return self.problem is None


class DocumentPreview(BaseModel):
    """What one knowledge document would be (``ingest --dry-run``)."""

    source: str
    title: str
    pages: list[int] = Field(default_factory=list)
    domain: str
    category: str
    defect_type: str
    labels: Labels | None = None
    figures: list[FigurePreview] = Field(default_factory=list)
    photos: int = 0
    sections: list[str] = Field(default_factory=list, description="Its non-empty text sections.")
    text_locks: int = 0
    ocr_pages: list[int] = Field(default_factory=list, description="Its pages whose content was read by OCR.")


class UnlabeledDocument(BaseModel):
    """A document whose category or defect type nothing decided."""

    source: str
    page: int | None = None
    title: str
    missing: list[str] = Field(description="'category' (it fell back to the file name) and/or 'defect type'.")
    hint: str


class IngestReport(BaseModel):
    """What one ``ingest`` call did."""

    encoder: str
    sources: list[SourceReport] = Field(default_factory=list)
    failed: list[FileFailure] = Field(default_factory=list)
    documents: int = 0
    pages: int = 0
    figures: int = 0
    images: int = 0
    texts: int = 0
    locks_added: int = 0
    locks_removed: int = 0
    regions_added: int = Field(0, description="Region locks written (defect examples against normal references).")
    regions_removed: int = Field(0, description="Region locks removed (their bank or example changed).")
    without_references: list[str] = Field(
        default_factory=list, description="Categories with defect examples but no normal references: no region locks."
    )
    unlabeled: list[UnlabeledDocument] = Field(
        default_factory=list, description="Documents whose category or defect type could not be told."
    )
    tables: list[TableFound] = Field(default_factory=list, description="Defect tables found in PDFs read.")
    ocr: list[OcrPage] = Field(
        default_factory=list, description="PDF pages read by OCR, and pages without a text layer it could not read."
    )
    dry_run: bool = False
    preview: list[DocumentPreview] = Field(default_factory=list, description="With dry_run: what would go in.")
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class DocumentSummary(BaseModel):
    """One knowledge document as ``kb.documents`` lists it: its labels and what its locks hold."""

    doc_id: str
    title: str
    domain: str
    category: str
    defect_type: str
    source: str = Field(description="The file or folder the document came from.")
    kinds: dict[str, int] = Field(default_factory=dict, description="Locks per kind.")
    pages: list[int] = Field(default_factory=list, description="PDF pages its locks come from.")
    image_path: str | None = Field(None, description="A page/figure/image of the document (its first), if any.")
    feedback: Feedback | None = Field(None, description="Set when an inspection's feedback made the document.")


class DocumentList(BaseModel):
    """A page of ``kb.documents``: ``total`` documents match, ``documents`` holds ``offset`` on."""

    total: int
    offset: int
    limit: int
    filters: dict[str, str] = Field(default_factory=dict)
    documents: list[DocumentSummary] = Field(default_factory=list)


class EditedDocument(BaseModel):
    """A document ``remove`` or ``relabel`` chose, with its labels before the change."""

    doc_id: str
    title: str
    domain: str
    category: str
    defect_type: str
    sources: list[str] = Field(default_factory=list, description="The source files its locks come from.")


class EditReport(BaseModel):
    """What ``remove`` or ``relabel`` changed (or, with ``dry_run``, would change)."""

    action: Literal["remove", "relabel"]
    dry_run: bool = False
    documents: list[EditedDocument] = Field(default_factory=list)
    locks: int = Field(0, description="Locks removed or relabelled (region locks included).")
    labels: dict[str, str] = Field(default_factory=dict, description="relabel: the new labels.")
    sources_removed: list[str] = Field(
        default_factory=list, description="Sources left without locks: their markers go, so ingest adds them back."
    )
    sources_updated: list[str] = Field(default_factory=list, description="Sources whose marker's lock count changed.")
    regions_added: int = 0
    regions_removed: int = 0


class CategoryInfo(BaseModel):
    category: str
    defect_type: str
    documents: int = 0
    locks: dict[str, int] = Field(default_factory=dict, description="Locks per kind.")
    feedback: int = Field(0, description="Of its documents, those an inspection's feedback made.")


class KBInfo(BaseModel):
    """What a knowledge base holds."""

    location: str
    store: str
    encoder: str
    image_dim: int
    text_dim: int | None
    joint_space: bool
    locks: int
    documents: int
    sources: int
    domains: list[str]
    entries: list[CategoryInfo]
    region_locks: bool = Field(
        False, description="The collection has a 'region' vector (knowledge bases made before it do not)."
    )
    without_references: list[str] = Field(
        default_factory=list,
        description="Categories with defect examples but no normal references: seek cannot use a region key there.",
    )


class FeedbackReport(BaseModel):
    """What ``kb.feedback`` stored: the photo as a labelled example (or a normal reference), once
    per content (``source`` is ``feedback/<sha256>``; the same photo again relabels it)."""

    doc_id: str
    source: str = Field(description="feedback/<sha256 of the photo>: what `kbengine remove --source` takes.")
    domain: str
    category: str
    defect_type: str
    status: Literal["added", "relabelled", "updated", "unchanged"] = Field(
        description="added: a new photo; relabelled: its labels changed; updated: its note changed; unchanged."
    )
    previous: str | None = Field(None, description="relabelled: the category/defect type it had before.")
    normal_reference: bool = Field(description="It became a normal reference of its category (defect type good).")
    feedback: Feedback
    locks: int = Field(0, description="Locks written (its image lock; region locks are counted apart).")
    regions_added: int = 0
    regions_removed: int = 0
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0

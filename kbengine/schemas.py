"""Pydantic models at the boundaries: knowledge documents, locks, ingest reports, store info."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NORMAL_TYPE = "good"
"""The defect type of a normal ("good") reference, as in the MVTec layout."""

LockKind = Literal["page", "figure", "image", "text"]
"""page: a rendered PDF page; figure: an image embedded in a PDF; image: a reference photo;
text: a chunk of a document's text."""

VectorName = Literal["image", "text"]


class TextSections(BaseModel):
    """The text of a knowledge document, in the sections the paper's documents use."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    appearance: str = ""
    causes: str = ""
    consequences: str = ""
    production_scenarios: str = ""
    application_scenarios: str = ""

    def items_nonempty(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.model_dump().items() if v.strip()]


class KnowledgeDocument(BaseModel):
    """One (domain, category, defect type) entry, or a normal reference (defect type ``good``)."""

    doc_id: str
    domain: str
    category: str
    defect_type: str
    title: str
    sections: TextSections = Field(default_factory=TextSections)
    source: str = Field(description="The file or folder it came from.")
    page: int | None = Field(None, description="1-based PDF page number, when it is a page.")

    @property
    def is_normal(self) -> bool:
        return self.defect_type == NORMAL_TYPE


class Lock(BaseModel):
    """A lock embedding's identity and payload (the vector itself travels beside it)."""

    id: str = Field(description="uuid5 of the content sha256 and the encoder name.")
    doc_id: str
    kind: LockKind
    vector: VectorName
    sha256: str = Field(description="sha256 of the lock's content and provenance.")
    blob: str | None = Field(None, description="Blob name of the page/figure/image, if any.")
    text: str | None = None
    page: int | None = None


class FileFailure(BaseModel):
    path: str
    reason: str


class SourceReport(BaseModel):
    path: str
    status: Literal["added", "replaced", "unchanged", "failed"]
    documents: int = 0
    locks: int = 0
    reason: str | None = None


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
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class CategoryInfo(BaseModel):
    category: str
    defect_type: str
    documents: int = 0
    locks: dict[str, int] = Field(default_factory=dict, description="Locks per kind.")


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

"""What ingest reports and what a knowledge base holds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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
    regions_added: int = Field(0, description="Region locks written (defect examples against normal references).")
    regions_removed: int = Field(0, description="Region locks removed (their bank or example changed).")
    without_references: list[str] = Field(
        default_factory=list, description="Categories with defect examples but no normal references: no region locks."
    )
    notes: list[str] = Field(default_factory=list)
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
    region_locks: bool = Field(
        False, description="The collection has a 'region' vector (knowledge bases made before it do not)."
    )
    without_references: list[str] = Field(
        default_factory=list,
        description="Categories with defect examples but no normal references: seek cannot use a region key there.",
    )

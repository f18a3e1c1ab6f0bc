"""Pydantic models at the boundaries: knowledge documents, locks, ingest reports, store info."""

from __future__ import annotations

from typing import Literal

import numpy as np
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


# -- seek (Q2K retrieval) ------------------------------------------------------------------------


class LockMatch(BaseModel):
    """The lock of a document that matched the query best."""

    id: str
    kind: LockKind
    pipeline: str = Field(description="Which retrieval pipeline found it, e.g. 'image>image', 'text>text'.")
    score: float = Field(description="Cosine similarity between the query key and this lock.")
    page: int | None = None
    text: str | None = None
    image_path: str | None = Field(None, description="The lock's page/figure/image in the blob store.")


class SeekHit(BaseModel):
    """One retrieved knowledge document and why it was chosen."""

    rank: int
    doc_id: str
    title: str
    domain: str
    category: str
    defect_type: str
    sections: TextSections
    source: str = Field(description="The file or folder the document came from.")
    page: int | None = None
    score: float = Field(description="Cosine similarity of the document's best-matching lock.")
    fused_score: float = Field(description="The score the strategy ranked by (see retrieval.candidates).")
    pipeline_scores: dict[str, float] = Field(default_factory=dict, description="Best cosine per pipeline.")
    best_lock: LockMatch
    image_path: str | None = Field(None, description="The document's page/figure/image that best matches the query.")
    cluster: int | None = Field(None, description="KDE strategy: the score cluster it was taken from (0 = best).")
    cluster_weight: float | None = Field(None, description="KDE strategy: that cluster's weight W_n.")

    @property
    def is_normal(self) -> bool:
        return self.defect_type == NORMAL_TYPE


class PipelineStat(BaseModel):
    name: str
    vector: str
    weight: float
    locks: int = Field(description="Candidate locks it returned.")
    documents: int


class ClusterStat(BaseModel):
    index: int
    size: int
    mean: float
    variance: float
    mixture_weight: float = Field(description="The Bayesian mixture's weight for this component.")
    kde_weight: float = Field(description="W_n = (1/K) sum exp(W*(m) - max W*) over its members (eq. 6).")
    taken: int


class SeekDiagnostics(BaseModel):
    """Everything the strategy saw, so a user can see why these documents were chosen."""

    pipelines: list[PipelineStat] = Field(default_factory=list)
    candidate_locks: int = 0
    doc_ids: list[str] = Field(default_factory=list, description="Documents considered, best first.")
    scores: list[float] = Field(default_factory=list, description="Their fused scores (aligned with doc_ids).")
    dropped_nonfinite: int = Field(0, description="Candidates left out because their score was NaN/inf.")
    k_clusters: int | None = None
    labels: list[int] | None = Field(None, description="Cluster of each considered document.")
    clusters: list[ClusterStat] = Field(default_factory=list)
    kde_log_density: list[float] | None = Field(None, description="W* at each considered document.")
    kde_bandwidth: float | None = None
    seed: int = 0
    timings_ms: dict[str, float] = Field(default_factory=dict)


class TypeScore(BaseModel):
    category: str
    defect_type: str
    similarity: float
    examples: int = Field(description="Defect examples the centroid averages.")


class TypePrediction(BaseModel):
    """The nearest defect-type centroid of the knowledge base's defect examples."""

    category: str
    defect_type: str
    similarity: float
    margin: float | None = Field(None, description="Similarity minus the runner-up's; None when there is none.")
    ranking: list[TypeScore] = Field(default_factory=list, description="The best few centroids.")


class SeekResult(BaseModel):
    """Ranked knowledge for a query image, with the diagnostics of the choice."""

    query: str
    text: str | None = None
    strategy: str
    k: int
    filters: dict[str, str] = Field(default_factory=dict)
    include_normal: bool = False
    encoder: str
    hits: list[SeekHit] = Field(default_factory=list)
    predicted_defect_type: TypePrediction | None = None
    diagnostics: SeekDiagnostics = Field(default_factory=SeekDiagnostics)
    note: str | None = Field(None, description="Why there are fewer hits than asked, when there are.")


class SeekEvalRow(BaseModel):
    category: str
    queries: int
    top1: float = Field(description="Right (category, defect type) document ranked first.")
    top3: float
    category_top1: float
    category_top3: float
    type_accuracy: float | None = Field(None, description="predicted_defect_type right (leave-one-out centroids).")


class SeekEvalQuery(BaseModel):
    path: str
    category: str
    defect_type: str
    retrieved: list[str] = Field(description="'category/defect_type' of the hits, in rank order.")
    predicted_type: str | None = None


class SeekEvalReport(BaseModel):
    """``kbengine eval seek``: seek accuracy on an MVTec-layout dataset (the paper's 83%)."""

    dataset: str
    knowledge: str = Field(description="'leave-one-out' or the knowledge base used.")
    strategy: str
    k: int
    rows: list[SeekEvalRow]
    overall: SeekEvalRow
    queries: list[SeekEvalQuery] = Field(default_factory=list)
    seconds: float = 0.0


# -- detect (AD Expert) --------------------------------------------------------------------------


class Region(BaseModel):
    """One connected region of the binarised anomaly map."""

    bbox: tuple[int, int, int, int] = Field(description="x0, y0, x1, y1 in image pixels (x1, y1 exclusive).")
    area: int = Field(description="Pixels in the region.")
    area_fraction: float
    location: str = Field(description="Where it is, e.g. 'bottom right', 'center'.")
    peak: float = Field(description="The map's highest value in the region.")
    mean: float


class Evidence(BaseModel):
    """Which evidence produced a detection."""

    zero_shot: bool = Field(False, description="CLIP prompts (object- and type-level) scored the patches.")
    references: int = Field(0, description="Normal reference images in the memory bank (0 = none used).")
    learned_prompts: str | None = Field(None, description="The learned prompt file, when one was used.")
    calibrated: bool = Field(False, description="Thresholds come from scoring normal references.")
    fusion: str | None = Field(None, description="How zero-shot and reference maps were combined.")
    domain: str = "industrial"
    notes: list[str] = Field(default_factory=list)


class Detection(BaseModel):
    """The AD Expert's verdict on one image."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: str
    category: str | None
    score: float = Field(description="Image-level anomaly score (higher = more anomalous).")
    threshold: float | None = Field(None, description="Score above which the image is anomalous, when calibrated.")
    is_anomalous: bool | None = Field(None, description="None when there is no calibrated threshold.")
    regions: list[Region] = Field(default_factory=list)
    predicted_defect_type: TypePrediction | None = None
    evidence: Evidence = Field(default_factory=Evidence)
    width: int
    height: int
    anomaly_map: np.ndarray = Field(exclude=True, repr=False, description="(height, width) float32, in [0, 1].")
    mask: np.ndarray = Field(exclude=True, repr=False, description="(height, width) bool: the binarised map.")
    timings_ms: dict[str, float] = Field(default_factory=dict)


class ZsadRow(BaseModel):
    category: str
    images: int
    defective: int
    image_auroc: float | None = None
    image_ap: float | None = None
    image_f1_max: float | None = None
    pixel_auroc: float | None = None
    pixel_aupro: float | None = None
    pixel_f1_max: float | None = None


class ZsadReport(BaseModel):
    """``kbengine eval zsad``: detection metrics per category and their mean."""

    dataset: str
    mode: str
    shots: int
    encoder: str
    prompts: str | None = None
    rows: list[ZsadRow]
    mean: ZsadRow
    seconds: float = 0.0
    ms_per_image: float = 0.0


# -- ask (reasoning) -----------------------------------------------------------------------------


class PromptPart(BaseModel):
    """One part of what the MLLM was sent, in order (the audit trail)."""

    role: str
    kind: Literal["text", "image"]
    text: str | None = None
    image: str | None = Field(None, description="The image's file (blob, query) when it has one.")
    label: str | None = Field(None, description="What the image is: 'template: knowledge page', 'query', ...")


class Answer(BaseModel):
    """The answer to a question about an image, with what grounded it."""

    question: str
    text: str
    llm: str = Field(description="The backend that wrote the text ('none' = the grounded report).")
    setting: Literal["seek", "vanilla"] = "seek"
    choice: str | None = Field(None, description="The option letter chosen, for a multiple-choice question.")
    hits: list[SeekHit] = Field(default_factory=list, description="The knowledge documents cited.")
    detection: Detection | None = None
    prompt: list[PromptPart] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)

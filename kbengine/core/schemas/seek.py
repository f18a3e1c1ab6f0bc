"""Seek (Q2K retrieval) results: ranked knowledge documents, the type prediction, diagnostics."""

from __future__ import annotations

from pydantic import BaseModel, Field

from kbengine.core.schemas.documents import LockKind, TextSections
from kbengine.core.vocabulary import NORMAL_TYPE


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
    weight: float = Field(1.0, description="Its weight in the fused score.")
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


class RegionKeyStat(BaseModel):
    """Whether seek used a region key, for which category, and why not when it did not."""

    used: bool = False
    category: str | None = Field(None, description="The category whose normal references gave the key.")
    category_inferred: bool = Field(False, description="The category came from the nearest knowledge.")
    references: int = Field(0, description="Normal references in that category's memory bank.")
    note: str | None = None


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
    region: RegionKeyStat = Field(default_factory=RegionKeyStat)


class TypeScore(BaseModel):
    category: str
    defect_type: str
    similarity: float = Field(description="Cosine of the key to the centroid (the region key's when there is one).")
    examples: int = Field(description="Defect examples the centroid averages.")
    fused: float | None = Field(None, description="With key 'region+global': the fused score it was ranked by.")


class TypePrediction(BaseModel):
    """The nearest defect-type centroid of the knowledge base's defect examples."""

    category: str
    defect_type: str
    similarity: float
    margin: float | None = Field(
        None, description="The ranking score (the fused one, else the cosine) minus the runner-up's; None without one."
    )
    ranking: list[TypeScore] = Field(default_factory=list, description="The best few centroids.")
    key: str = Field(
        "global",
        description="'global': the global embedding against the type centroids; 'region': the region key "
        "against the region locks' centroids (a category with fewer than 3 types); 'region+global': both, "
        "each standardised over the category's types and averaged.",
    )


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

"""What the evaluations report: seek accuracy, detection metrics, the MMAD score table."""

from __future__ import annotations

from pydantic import BaseModel, Field

from kbengine.evaluation.mmad.scoring import MMADScore


class KeyScore(BaseModel):
    """Seek accuracy with one key: ``global`` (the photo's embedding), ``region`` (its defect's
    region against the category's normal references) or ``auto`` (the two fused, the default)."""

    queries: int = Field(description="Queries this key could answer (a region key needs references).")
    top1: float
    top3: float
    type_accuracy: float | None = None


class SeekEvalRow(BaseModel):
    category: str
    queries: int
    top1: float = Field(description="Right (category, defect type) document ranked first (default key).")
    top3: float
    category_top1: float
    category_top3: float
    type_accuracy: float | None = Field(None, description="predicted_defect_type right (leave-one-out centroids).")
    keys: dict[str, KeyScore] = Field(default_factory=dict, description="The same per key.")


class SeekEvalQuery(BaseModel):
    path: str
    category: str
    defect_type: str
    retrieved: list[str] = Field(description="'category/defect_type' of the hits, in rank order.")
    predicted_type: str | None = None
    by_key: dict[str, list[str]] = Field(default_factory=dict, description="``retrieved`` per key.")
    predicted_by_key: dict[str, str | None] = Field(default_factory=dict, description="``predicted_type`` per key.")


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


ZSAD_METRICS = (
    "image_auroc",
    "image_ap",
    "image_f1_max",
    "pixel_auroc",
    "pixel_aupro",
    "pixel_f1_max",
    "region_recall",
    "box_precision",
)
"""The metrics of a ``ZsadRow``, in the order tables print them."""


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
    region_recall: float | None = Field(
        None, description="Ground-truth regions at least half inside the predicted region boxes."
    )
    box_precision: float | None = Field(None, description="Predicted region boxes that hold a defect pixel.")
    score_rule: str | None = Field(None, description="The image score rule the category's references chose.")
    views: str | None = Field(None, description="How the category's photos were read (tiles, brightness, flips).")


class ZsadReport(BaseModel):
    """``kbengine eval zsad``: detection metrics per category and their mean."""

    dataset: str
    mode: str
    shots: int
    pick: str = Field("first", description="How the shots were taken from train/good: 'first' N, or 'diverse'.")
    encoder: str
    prompts: str | None = None
    rows: list[ZsadRow]
    mean: ZsadRow
    seconds: float = 0.0
    ms_per_image: float = 0.0


class MMADEvalReport(BaseModel):
    """``kbengine eval mmad``: the score table and where the per-question records are."""

    file: str
    images: str
    setting: str
    llm: str
    questions: int
    resumed: int = Field(description="Questions already answered in the records file (not asked again).")
    records: str
    score: MMADScore
    seconds: float = 0.0

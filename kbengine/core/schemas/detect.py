"""Detect (the AD Expert) results: score, map, regions, type, evidence."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kbengine.core.schemas.seek import TypePrediction
from kbengine.core.vocabulary import DEFAULT_DOMAIN


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
    domain: str = DEFAULT_DOMAIN
    score_rule: str | None = Field(None, description="How the reference evidence's image score was read off.")
    views: str | None = Field(
        None, description="How the category's photos are read: tiles, brightness standardisation, flipped references."
    )
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

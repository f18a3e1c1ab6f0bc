"""The AD Expert's evidence for one image, each kind a [0, 1] map at image resolution (0.5 = its
own decision threshold) and an image score, and the verdict that fuses them.

- ``references``: nearest-normal-patch distances against the category's memory bank, read as z
  against the normal distances of each patch's ring from the border (``MemoryBank.patch_z``) and
  scaled by the bank's leave-one-out calibration (the map: ``kbengine.core.maps.reference_map``,
  which seek's focus key reads too); the image score is the logistic of the local score's z
  (``Calibration.image_z``) over 3.
- ``zero_shot``: the eq. 2 map of CLIP patch tokens against the prompt pair.
- the verdict: the mean of the maps and of the scores (``anomaly_map.fuse``), binarised at the
  settings' threshold with hysteresis (``kbengine.core.regions.grow``), with regions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kbengine.core.banks.references import ReferenceBank
from kbengine.core.banks.scoring import image_score
from kbengine.core.maps import logistic, reference_map, upsample, working_size
from kbengine.core.query import Query
from kbengine.core.regions import find_regions, grow
from kbengine.core.schemas import Region
from reasoning.expert.anomaly_map import fuse
from reasoning.expert.zero_shot import TextPair, zero_shot

FUSION_RULE = "mean of the [0, 1] maps and of the image scores"
LOCAL_RULE = "local z (top-1% mean of the smoothed patch distances, each a z against its border ring)"
POOLED_RULE = "local z (top-1% mean of the smoothed patch z, one ring: the references' border is not farther)"


def score_rule(reference: ReferenceBank) -> str:
    """The image score rule a bank's profile chose, in words (``Evidence.score_rule``)."""
    bank = reference.bank
    if bank.calibration is None:
        return "top-1% mean of the smoothed patch distances (uncalibrated: one reference)"
    rings = bank.calibration.rings
    return LOCAL_RULE if rings is None or rings.by_ring else POOLED_RULE


@dataclass
class MapEvidence:
    anomaly_map: np.ndarray
    """float32 in [0, 1], at the photo's working resolution (``kbengine.core.maps.working_size``)."""
    score: float | None
    """The image score in [0, 1]; None when it is a raw distance that must not be averaged."""
    calibrated: bool
    notes: list[str] = field(default_factory=list)


def reference_evidence(query: Query, reference: ReferenceBank, *, alone: bool) -> MapEvidence:
    """Evidence from normal references. ``alone``: no other evidence will be fused, so an
    uncalibrated (one-reference) raw score may stand as the image score."""
    bank = reference.bank
    distances = query.patch_scores(reference).distance_grid
    anomaly_map = reference_map(distances, bank, query.size)
    c = bank.calibration
    if c is not None:
        z = c.image_z(image_score(bank.patch_z(distances)))
        return MapEvidence(anomaly_map, float(logistic(z / 3.0)), calibrated=True)
    return MapEvidence(
        anomaly_map,
        image_score(distances) if alone else None,  # a raw distance is not a probability: never average it
        calibrated=False,
        notes=["one normal reference: no calibrated threshold; add more good images"],
    )


def zero_shot_evidence(query: Query, texts: TextPair, form: str) -> MapEvidence:
    """Evidence from CLIP prompts; its scale is the prompts' own, so it counts as calibrated."""
    grid, score = zero_shot(query.encoder, query.picture, query.global_key, texts, form)
    return MapEvidence(upsample(grid, *working_size(*query.size)), score, calibrated=True)


@dataclass
class Verdict:
    anomaly_map: np.ndarray
    mask: np.ndarray
    regions: list[Region]
    score: float
    calibrated: bool
    fusion: str | None


def verdict(evidence: list[MapEvidence], threshold: float, *, references_calibrated: bool | None) -> Verdict:
    """Fuse the evidence. ``references_calibrated``: whether reference evidence (when there is
    any, else None) carried a calibration; zero-shot evidence calibrates only on its own."""
    maps = [e.anomaly_map for e in evidence]
    anomaly_map = np.clip(fuse(maps) if len(maps) > 1 else maps[0], 0.0, 1.0)
    scores = [e.score for e in evidence if e.score is not None]
    calibrated = bool(references_calibrated) if references_calibrated is not None else True
    mask = grow(anomaly_map, threshold)
    return Verdict(
        anomaly_map=anomaly_map,
        mask=mask,
        regions=find_regions(anomaly_map, mask),
        score=float(np.mean(scores)),
        calibrated=calibrated,
        fusion=FUSION_RULE if len(maps) > 1 else None,
    )

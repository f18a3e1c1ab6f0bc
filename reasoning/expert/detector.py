"""``kb.detect``: the AD Expert on one image -> ``Detection``. This module orchestrates; the
evidence is computed in ``evidence``, the knowledge read in ``knowledge``.

Evidence, by ``mode``:
- ``references``: the category's normal ("good") reference photos in the knowledge base form a
  patch memory bank (``memory_bank``), cached per category and rebuilt when the category's
  normal references change;
- ``zero-shot``: CLIP prompts (``zero_shot``), words from the category's domain file;
- ``both``: the two maps fused (``anomaly_map.fuse``);
- ``auto`` (default): every kind of evidence the encoder and the knowledge base allow.

One global embedding per image serves the category guess, the global z of the references, the
zero-shot image score, learned prompts and the predicted defect type: the nearest defect-type
centroid (the type service seek uses). Region-focused type keys were measured against it
(docs/detect.md has the figures); seek's ``focus`` key, the crop around the strongest region of the same
reference map, is computed below the layers (``Query.focus_key``), not here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kbengine.core.banks.references import ReferenceBank
from kbengine.core.banks.region import region_fingerprint
from kbengine.core.cache import elapsed_ms
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import ImageInput
from kbengine.core.maps import resize_map
from kbengine.core.query import Query, query_batches
from kbengine.core.regions import scale_regions
from kbengine.core.schemas import Detection, Evidence, FileFailure
from kbengine.core.settings import Settings
from reasoning.expert.domains import Domain
from reasoning.expert.evidence import MapEvidence, reference_evidence, score_rule, verdict, zero_shot_evidence
from reasoning.expert.knowledge import ExpertKnowledge
from reasoning.expert.zero_shot import TextPair, require_joint
from retrieval.centroids import TypeService

if TYPE_CHECKING:
    from reasoning.expert.training import LearnedPrompts

MODES: tuple[str, ...] = ("auto", "zero-shot", "references", "both")
MIN_SIDE = 16


@dataclass
class DetectionPlan:
    """What a detection of one category uses, decided once per category (evaluation reuses it
    over many images): the memory bank, the zero-shot prompts, the domain."""

    category: str | None
    domain: Domain
    bank: ReferenceBank | None = None
    zero_shot: bool = False
    texts: TextPair | None = None
    learned: LearnedPrompts | None = None
    learned_name: str | None = None
    notes: list[str] = field(default_factory=list)

    def prompts_for(self, global_key: np.ndarray) -> TextPair:
        if self.learned is not None:
            return self.learned.texts_for(global_key)
        assert self.texts is not None
        return self.texts


class Detector:
    """The AD Expert over one knowledge base (the facade holds one)."""

    def __init__(self, encoder: Encoder, knowledge: ExpertKnowledge, types: TypeService, settings: Settings) -> None:
        self.encoder = encoder
        self.knowledge = knowledge
        self.types = types
        self.settings = settings

    def detect(
        self,
        image: ImageInput | Query,
        category: str | None = None,
        *,
        mode: str = "auto",
        learned: LearnedPrompts | None = None,
        learned_name: str | None = None,
    ) -> Detection:
        """Detect on one image; without ``category`` the nearest knowledge's category is used."""
        clock = time.perf_counter()
        query = self.load(image)
        notes: list[str] = []
        if category is None:
            category = self.knowledge.infer_category(query.global_key)
            if category:
                notes.append(f"category {category!r} inferred from the nearest knowledge")
        plan = self.plan(category, mode, learned=learned, learned_name=learned_name)
        plan.notes[:0] = notes
        prepared = elapsed_ms(clock)
        detection = self.run(query, plan)
        detection.timings_ms = {"prepare": prepared, **detection.timings_ms}
        return detection

    def detect_many(
        self,
        images: Iterable[ImageInput | Query],
        category: str | None = None,
        *,
        mode: str = "auto",
        batch_size: int = 8,
        learned: LearnedPrompts | None = None,
        learned_name: str | None = None,
    ) -> Iterator[Detection | FileFailure]:
        """``detect`` over many photos, in order: each batch of ``batch_size`` photos shares one
        encoder pass; a photo that cannot be read gives a ``FileFailure`` and the rest go on."""
        for item in query_batches(images, self.load, batch_size):
            if isinstance(item, FileFailure):
                yield item
            else:
                yield self.detect(item, category, mode=mode, learned=learned, learned_name=learned_name)

    def load(self, image: ImageInput | Query) -> Query:
        """``image`` as a query, refused when it is too small to inspect."""
        query = Query.of(image, self.encoder, self.settings.max_image_pixels)
        width, height = query.size
        if min(width, height) < MIN_SIDE:
            raise InvalidInputError(
                f"{query.name} is {width}x{height}: too small to inspect (at least {MIN_SIDE}x{MIN_SIDE})"
            )
        return query

    def plan(
        self,
        category: str | None,
        mode: str = "auto",
        *,
        bank: ReferenceBank | None = None,
        learned: LearnedPrompts | None = None,
        learned_name: str | None = None,
    ) -> DetectionPlan:
        """Decide the evidence for ``category``: its bank (``bank`` replaces the knowledge base's
        own, for evaluation shots), zero-shot prompts when the encoder and ``mode`` allow."""
        if mode not in MODES:
            raise InvalidInputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        domain, notes = self.knowledge.domain_of(category)
        use_zero_shot = mode in ("zero-shot", "both") or (
            mode == "auto" and self.encoder.joint_space and self.encoder.has_text
        )
        if use_zero_shot:
            require_joint(self.encoder)
        if mode == "zero-shot":
            bank = None
        elif bank is None and category is not None:
            bank = self.knowledge.banks.get(category)
        if bank is None and mode in ("references", "both"):
            raise InvalidInputError(
                f"no normal references for category {category!r} in the knowledge base; ingest photos of good "
                "parts (a <category>/good/ folder or an MVTec train/good) or use --mode zero-shot"
            )
        if bank is None and not use_zero_shot:
            raise InvalidInputError(
                f"nothing to detect with: no normal references for category {category!r} and the encoder "
                f"{self.encoder.identity.name} has no joint text space for zero-shot prompts"
            )
        texts = self.knowledge.texts(category, domain) if use_zero_shot and learned is None else None
        return DetectionPlan(
            category=category,
            domain=domain,
            bank=bank,
            zero_shot=use_zero_shot,
            texts=texts,
            learned=learned,
            learned_name=learned_name,
            notes=notes,
        )

    def run(self, query: Query, plan: DetectionPlan) -> Detection:
        """The plan's evidence on one query."""
        timings: dict[str, float] = {}
        evidence: list[MapEvidence] = []
        if plan.bank is not None:
            clock = time.perf_counter()
            evidence.append(reference_evidence(query, plan.bank, alone=not plan.zero_shot))
            timings["references"] = elapsed_ms(clock)
        if plan.zero_shot:
            clock = time.perf_counter()
            texts = plan.prompts_for(query.global_key)
            evidence.append(zero_shot_evidence(query, texts, self.settings.detect_map_form))
            timings["zero_shot"] = elapsed_ms(clock)
        threshold = self.settings.detect_threshold
        found = verdict(
            evidence, threshold, references_calibrated=evidence[0].calibrated if plan.bank is not None else None
        )
        clock = time.perf_counter()
        region_key = query.region_key(plan.bank) if plan.bank is not None else None
        prediction = self.types.predict(
            query.global_key,
            category=plan.category,
            region_key=region_key,
            region_category=plan.category,
            region_bank=region_fingerprint(plan.bank.fingerprint) if plan.bank is not None else None,
        )
        timings["type"] = elapsed_ms(clock)
        width, height = query.size
        working = found.anomaly_map.shape[1], found.anomaly_map.shape[0]
        return Detection(
            image=query.name,
            category=plan.category,
            score=found.score,
            threshold=threshold if found.calibrated else None,
            is_anomalous=(found.score >= threshold) if found.calibrated else None,
            regions=scale_regions(found.regions, working, (width, height)),
            predicted_defect_type=prediction,
            evidence=Evidence(
                zero_shot=plan.zero_shot,
                references=plan.bank.bank.references if plan.bank is not None else 0,
                learned_prompts=plan.learned_name,
                calibrated=found.calibrated,
                fusion=found.fusion,
                domain=plan.domain.name,
                score_rule=score_rule(plan.bank) if plan.bank is not None else None,
                views=plan.bank.bank.profile.describe() if plan.bank is not None else None,
                notes=[*plan.notes, *(n for e in evidence for n in e.notes)],
            ),
            width=width,
            height=height,
            anomaly_map=resize_map(found.anomaly_map, width, height),
            mask=resize_map(found.mask, width, height, nearest=True),
            timings_ms=timings,
        )


__all__ = ["MODES", "DetectionPlan", "Detector"]

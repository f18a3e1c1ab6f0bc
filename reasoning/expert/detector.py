"""``kb.detect``: the AD Expert on one image -> ``Detection``.

Evidence, by ``mode``:
- ``references``: the category's normal ("good") reference photos in the knowledge base form a
  patch memory bank (``memory_bank``), cached per category under ``<cache>/banks`` and rebuilt
  when the category's normal references change;
- ``zero-shot``: CLIP prompts (``zero_shot``), words from the category's domain file;
- ``both``: the two maps fused (``anomaly_map.fuse``);
- ``auto`` (default): every kind of evidence the encoder and the knowledge base allow.

The predicted defect type is the nearest defect-type centroid (shared with seek) of the image's
global embedding. Region-focused keys were measured against it (``benchmarks/real_textures.py``
and the generated set, leave-one-out, packaged encoder): global 86% / 98% type top-1, the crop
around the strongest region 75% / 96% (crop centroids) and 67% / 83% (whole-image centroids), the
mean of the 8 most anomalous patch features 81% / 98%, their residual to the nearest normal
patches 79% / 96%. The crop remains available as seek's ``focus`` key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from kbengine.blobs import BlobStore
from kbengine.cache import cache_folder, elapsed_ms, load_arrays, save_arrays
from kbengine.encoders.base import Encoder
from kbengine.errors import InvalidInputError
from kbengine.images import ImageInput, describe, load_image
from kbengine.schemas import NORMAL_TYPE, Detection, Evidence, Region, TypePrediction
from kbengine.settings import Settings
from kbengine.store.base import Store, Where
from reasoning.expert.anomaly_map import fuse, image_score, logistic, scale_distances, upsample
from reasoning.expert.domains import BUILTIN, Domain, load_domain
from reasoning.expert.memory_bank import MemoryBank, build_bank, reference_layers, score_patches
from reasoning.expert.regions import find_regions
from reasoning.expert.zero_shot import TextPair, require_joint, text_pair, zero_shot

if TYPE_CHECKING:
    from reasoning.expert.training import LearnedPrompts
from retrieval import Seeker, predict_type

Mode = Literal["auto", "zero-shot", "references", "both"]
MODES: tuple[str, ...] = ("auto", "zero-shot", "references", "both")
REFERENCE_KINDS = ("image", "figure")
BANK_VERSION = "2"


def focus_crop(picture: Image.Image, anomaly_map: np.ndarray, regions: list[Region]) -> Image.Image:
    """A square crop around the strongest region (or the map's peak), at least a third of the
    image's shorter side and 1.5x the region's box."""
    width, height = picture.size
    if regions:
        x0, y0, x1, y1 = regions[0].bbox
        cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.5 * max(x1 - x0, y1 - y0)
    else:
        peak_y, peak_x = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
        cx, cy, side = float(peak_x), float(peak_y), 0.0
    side = min(max(side, min(width, height) / 3), min(width, height))
    left = int(np.clip(cx - side / 2, 0, width - side))
    top = int(np.clip(cy - side / 2, 0, height - side))
    return picture.crop((left, top, left + int(side), top + int(side)))


class Detector:
    """The AD Expert over one knowledge base (the facade holds one)."""

    def __init__(self, store: Store, encoder: Encoder, blobs: BlobStore, settings: Settings, seeker: Seeker) -> None:
        self.store = store
        self.encoder = encoder
        self.blobs = blobs
        self.settings = settings
        self.seeker = seeker
        folder = cache_folder(settings)
        self.bank_folder = folder / "banks" if folder else None
        self._banks: dict[str, tuple[str, MemoryBank | None]] = {}
        self._texts: dict[tuple[str, str], TextPair] = {}

    # -- knowledge the expert reads ------------------------------------------------------------
    def infer_category(self, image: Image.Image | np.ndarray) -> str | None:
        """The category of the knowledge lock nearest the image or its global embedding (normal
        references included)."""
        key = image if isinstance(image, np.ndarray) else self.encoder.embed_images([image])[0]
        hits = self.store.search("image", key, 1)
        return str(hits[0].payload.get("category")) if hits else None

    def reference_locks(self, category: str) -> list[dict[str, object]]:
        """Payloads (blob, sha256, domain) of the category's normal reference photos, at most
        ``detect_max_references``, in a stable order."""
        where = Where(must={"category": category, "defect_type": NORMAL_TYPE, "kind": REFERENCE_KINDS})
        locks = [
            h.payload for h in self.store.scroll(where, fields=("blob", "sha256", "domain")) if h.payload.get("blob")
        ]
        locks.sort(key=lambda p: str(p.get("sha256")))
        return locks[: self.settings.detect_max_references]

    def domain_of(self, category: str | None) -> tuple[Domain, list[str]]:
        name = BUILTIN
        if category:
            hits = list(self._first(Where(must={"category": category}), ("domain",)))
            name = str(hits[0].get("domain")) if hits else BUILTIN
        folders = [f for f in (self.settings.domains_dir, self.settings.kb / "domains") if f is not None]
        domain, note = load_domain(name, folders)
        return domain, [note] if note else []

    def _first(self, where: Where, fields: tuple[str, ...]) -> list[dict[str, object]]:
        for hit in self.store.scroll(where, fields=fields):
            return [hit.payload]
        return []

    def defect_types(self, category: str) -> list[str]:
        keys = self.seeker.centroids.get().keys
        return sorted({t for _, c, t in keys if c == category})

    def reference_bank(self, category: str) -> MemoryBank | None:
        """The category's memory bank, built once per set of normal references and cached."""
        locks = self.reference_locks(category)
        if not locks:
            return None
        digest = hashlib.sha256(
            "\n".join([BANK_VERSION, self.encoder.identity.name, *(str(p.get("sha256")) for p in locks)]).encode()
        ).hexdigest()
        cached = self._banks.get(category)
        if cached and cached[0] == digest:
            return cached[1]
        path = self._bank_path(category)
        stored = load_arrays(path, digest)
        bank = MemoryBank.from_arrays(stored) if stored is not None else None
        if bank is None:
            images = [load_image(self.blobs.path(str(p["blob"])), self.settings.max_image_pixels) for p in locks]
            bank = build_bank(self.encoder, images)
            save_arrays(path, digest, bank.to_arrays())
        self._banks[category] = (digest, bank)
        return bank

    def _bank_path(self, category: str) -> Path | None:
        if self.bank_folder is None:
            return None
        safe = hashlib.sha256(f"{category}:{self.encoder.identity.name}".encode()).hexdigest()[:16]
        return self.bank_folder / f"{safe}.npz"

    def forget_texts(self) -> None:
        """Drop the cached prompt embeddings (the knowledge base's defect types may have changed)."""
        self._texts.clear()

    def texts(self, category: str | None, domain: Domain) -> TextPair:
        key = (domain.name, category or "object")
        if key not in self._texts:
            types = self.defect_types(category) if category else []
            self._texts[key] = text_pair(self.encoder, domain, category or "object", types)
        return self._texts[key]

    # -- detect --------------------------------------------------------------------------------
    def detect(
        self,
        image: ImageInput,
        category: str | None = None,
        *,
        mode: str = "auto",
        bank: MemoryBank | None = None,
        learned: LearnedPrompts | None = None,
        learned_name: str | None = None,
        form: str | None = None,
        with_type: bool = True,
    ) -> Detection:
        if mode not in MODES:
            raise InvalidInputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        picture = load_image(image, self.settings.max_image_pixels)
        width, height = picture.size
        if min(width, height) < 16:
            raise InvalidInputError(f"{describe(image)} is {width}x{height}: too small to inspect (at least 16x16)")
        notes: list[str] = []
        glob: np.ndarray | None = None
        if category is None and bank is None:
            glob = self.encoder.embed_images([picture])[0]
            category = self.infer_category(glob)
            if category:
                notes.append(f"category {category!r} inferred from the nearest knowledge")
        domain, domain_notes = self.domain_of(category) if category else (load_domain(BUILTIN, [])[0], [])
        notes += domain_notes
        use_zero_shot = mode in ("zero-shot", "both") or (
            mode == "auto" and self.encoder.joint_space and self.encoder.has_text
        )
        if use_zero_shot:
            require_joint(self.encoder)
        if mode == "zero-shot":
            bank = None
        elif bank is None and category is not None:
            bank = self.reference_bank(category)
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
        timings["prepare"] = elapsed_ms(clock)

        maps: list[np.ndarray] = []
        scores: list[float] = []
        calibrated = False
        clock = time.perf_counter()
        needs_global = with_type or (bank is not None and bank.calibration is not None)
        if glob is None and needs_global:
            glob = self.encoder.embed_images([picture])[0]
        if bank is not None:
            distances = score_patches(self.encoder, bank, [picture])[0]
            c = bank.calibration
            if c is not None:
                maps.append(upsample(scale_distances(distances, c.patch_mean, c.patch_threshold), width, height))
                z = c.image_z(image_score(distances), bank.global_distance(glob) if glob is not None else None)
                scores.append(float(logistic(z / 3.0)))
                calibrated = True
            else:
                low, high = float(np.median(distances)), float(np.quantile(distances, 0.99))
                maps.append(upsample(scale_distances(distances, low, high), width, height))
                if not use_zero_shot:  # a raw distance is not a probability: never average it with one
                    scores.append(image_score(distances))
                notes.append("one normal reference: no calibrated threshold; add more good images")
            timings["references"] = elapsed_ms(clock)
        clock = time.perf_counter()
        if use_zero_shot:
            if learned is not None:
                texts = learned.texts_for(self.encoder.embed_images([picture])[0])
            else:
                texts = self.texts(category, domain)
            grid, score, _ = zero_shot(self.encoder, picture, texts, form or self.settings.detect_map_form)
            maps.append(upsample(grid, width, height))
            scores.append(score)
            calibrated = calibrated or bank is None
            timings["zero_shot"] = elapsed_ms(clock)

        anomaly_map = np.clip(fuse(maps) if len(maps) > 1 else maps[0], 0.0, 1.0)
        score = float(np.mean(scores))
        threshold = self.settings.detect_threshold
        mask = anomaly_map >= threshold
        regions = find_regions(anomaly_map, mask)
        prediction: TypePrediction | None = None
        if with_type:
            clock = time.perf_counter()
            prediction = self.predict_type(glob if glob is not None else picture, category)
            timings["type"] = elapsed_ms(clock)
        return Detection(
            image=describe(image),
            category=category,
            score=score,
            threshold=threshold if calibrated else None,
            is_anomalous=(score >= threshold) if calibrated else None,
            regions=regions,
            predicted_defect_type=prediction,
            evidence=Evidence(
                zero_shot=use_zero_shot,
                references=bank.references if bank is not None else 0,
                learned_prompts=learned_name,
                calibrated=calibrated,
                fusion="mean of the [0, 1] maps and of the image scores" if len(maps) > 1 else None,
                domain=domain.name,
                notes=notes,
            ),
            width=width,
            height=height,
            anomaly_map=anomaly_map,
            mask=mask,
            timings_ms=timings,
        )

    def focus_for(self, image: ImageInput, category: str | None) -> tuple[np.ndarray, str] | None:
        """Seek's ``focus`` key: the defect-region embedding of ``image`` and its category, when the
        (given or inferred) category has normal references; else None."""
        picture = load_image(image, self.settings.max_image_pixels)
        category = category or self.infer_category(picture)
        if category is None or not self.reference_locks(category):
            return None
        det = self.detect(picture, category, mode="references", with_type=False)
        return self.focus_key(picture, det.anomaly_map, det.regions), category

    def focus_key(self, picture: Image.Image, anomaly_map: np.ndarray, regions: list[Region]) -> np.ndarray:
        """The defect-region key: the embedding of the crop around the strongest region."""
        return self.encoder.embed_images([focus_crop(picture, anomaly_map, regions)])[0]

    def predict_type(self, image: Image.Image | np.ndarray, category: str | None) -> TypePrediction | None:
        """The nearest defect-type centroid of the global embedding (given, or of ``image``)."""
        centroids = self.seeker.centroids.get()
        if centroids.empty:
            return None
        key = image if isinstance(image, np.ndarray) else self.encoder.embed_images([image])[0]
        return predict_type(centroids, key, category=category)


def bank_from_images(encoder: Encoder, images: Sequence[Image.Image]) -> MemoryBank:
    """A memory bank from explicit normal images (evaluation shots)."""
    return build_bank(encoder, list(images))


__all__ = ["MODES", "Detector", "Mode", "bank_from_images", "focus_crop", "reference_layers"]

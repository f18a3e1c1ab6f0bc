"""Heatmap overlays: the query image, the jet-coloured anomaly map blended over it, region boxes
with their location and peak."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kbengine.core.images import ImageInput, load_image
from kbengine.core.schemas import Detection


def jet(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8, the classic jet colour map."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def write_overlay(image: ImageInput, detection: Detection, path: Path, alpha: float = 0.45) -> Path:
    """Write the overlay (format from the file suffix); returns ``path``."""
    picture = load_image(image).convert("RGB")
    heat = Image.fromarray(jet(detection.anomaly_map))
    blended = Image.blend(picture, heat, alpha)
    draw = ImageDraw.Draw(blended)
    for region in detection.regions:
        draw.rectangle(region.bbox, outline=(255, 255, 255), width=2)
        label = f"{region.location} {region.peak:.2f}"
        draw.text((region.bbox[0] + 3, region.bbox[1] + 2), label, fill=(255, 255, 255))
    verdict = {True: "ANOMALOUS", False: "normal", None: "uncalibrated"}[detection.is_anomalous]
    draw.text((4, 4), f"{verdict} score {detection.score:.3f}", fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    blended.save(path)
    return path

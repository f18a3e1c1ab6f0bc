"""The anomaly map as a transparent PNG for the page: jet colours, opacity rising with the score,
at most 512 px on the longer side (the page stretches it over the photo)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from kbengine.core.schemas import Detection
from reasoning.expert.overlay import jet

MAX_SIDE = 512


def heatmap_png(detection: Detection, max_side: int = MAX_SIDE) -> bytes:
    """RGBA PNG: colour = jet(map), alpha = 0 below 0.2 rising to 0.7 at 1 (normal pixels stay clear)."""
    values = np.asarray(detection.anomaly_map, dtype=np.float32)
    height, width = values.shape
    scale = min(1.0, max_side / max(height, width, 1))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        values = np.asarray(Image.fromarray(values, mode="F").resize(size, Image.Resampling.BILINEAR))
    alpha = (np.clip((values - 0.2) / 0.8, 0.0, 1.0) * 0.7 * 255).astype(np.uint8)
    rgba = np.concatenate([jet(values), alpha[..., None]], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def heatmap_data_url(detection: Detection) -> str:
    return "data:image/png;base64," + base64.b64encode(heatmap_png(detection)).decode("ascii")

"""Anomaly-map math on arrays: the zero-shot map of eq. 2, scaling reference distances to [0, 1],
upsampling and smoothing, and the fusion rule (the image score of a patch grid lives in
``kbengine.core.banks.scoring``, shared with region keys).

Every map handed to a user is in [0, 1] with ``0.5`` meaning "at the decision threshold", so maps
from different evidence can be averaged and binarised the same way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from kbengine.core.banks.scoring import image_score, smooth_grid

SIGMA_PIXELS_AT_256 = 4.0
LOGISTIC_SLOPE = 4.0
WORK_SIDE = 512
"""Maps are smoothed, binarised and cut into regions at most 512 px on their longer side, then
resized once to the photo's pixels: a 4000 px photo costs what a 512 px one does."""


def working_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the map's working resolution for a ``width`` x ``height`` photo."""
    scale = min(1.0, WORK_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_map(values: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """A working-resolution map (or, ``nearest``, a mask) at ``width`` x ``height``."""
    if values.shape == (height, width):
        return values
    if nearest:
        image = Image.fromarray(values.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
        return np.asarray(image) > 127
    resized = Image.fromarray(values.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.float32)


def zero_shot_map(patches: np.ndarray, normal: np.ndarray, abnormal: np.ndarray, form: str = "ratio") -> np.ndarray:
    """Eq. 2 on (h, w, D) patch embeddings and unit normal/abnormal text embeddings: the abnormal
    share cos(E_p, E_t^a) / (cos(E_p, E_t^a) + cos(E_p, E_t^n)). DESIGN.md writes the normal
    cosine in the numerator, which is the normality (1 - this); we return the anomaly side.
    Cosines are clipped at 1e-6 so the ratio stays in [0, 1]. ``form="softmax"``: the softmax of
    the two cosines at CLIP's temperature (100), as WinCLIP/AnomalyCLIP."""
    p = patches / np.maximum(np.linalg.norm(patches, axis=-1, keepdims=True), 1e-12)
    cos_n, cos_a = p @ normal, p @ abnormal
    if form == "softmax":
        return (1.0 / (1.0 + np.exp(-100.0 * (cos_a - cos_n)))).astype(np.float32)
    if form != "ratio":
        raise ValueError(f"unknown map form {form!r}; use 'ratio' or 'softmax'")
    cos_n, cos_a = np.maximum(cos_n, 1e-6), np.maximum(cos_a, 1e-6)
    return (cos_a / (cos_a + cos_n)).astype(np.float32)


def logistic(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-LOGISTIC_SLOPE * (np.asarray(x, np.float64) - 1.0)))


def scale_distances(distances: np.ndarray, low: float, threshold: float) -> np.ndarray:
    """Reference distances to [0, 1]: ``low`` (the normal mean) -> ~0.02, ``threshold`` -> 0.5, via
    a logistic of (d - low) / (threshold - low)."""
    span = max(threshold - low, 1e-12)
    return logistic((distances - low) / span).astype(np.float32)


def upsample(grid: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w) -> (height, width), bilinear, then Gaussian-smoothed (sigma 4 px at 256 px)."""
    image = Image.fromarray(grid.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    sigma = SIGMA_PIXELS_AT_256 * max(width, height) / 256
    return gaussian_filter(np.asarray(image, np.float32), sigma=sigma, mode="nearest")


def fuse(maps: list[np.ndarray]) -> np.ndarray:
    """The fusion rule: both maps are in [0, 1] with 0.5 at their own decision threshold, so the
    fused map is their mean (an anomaly both see stays above 0.5; one only one sees, strongly,
    can still cross it)."""
    return np.mean(np.stack(maps), axis=0).astype(np.float32)


__all__ = [
    "fuse",
    "image_score",
    "logistic",
    "resize_map",
    "scale_distances",
    "smooth_grid",
    "upsample",
    "working_size",
    "zero_shot_map",
]

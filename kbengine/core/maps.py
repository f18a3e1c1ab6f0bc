"""A photo's anomaly map against a category's memory bank, and the array math under every map:
scaling distances to [0, 1], upsampling and smoothing, the working resolution (the image score
of a patch grid lives in ``kbengine.core.banks.scoring``, shared with region keys).

Every map handed to a user is in [0, 1] with ``0.5`` meaning "at the decision threshold", so maps
from different evidence can be averaged and binarised the same way. The reference map is here,
below the layers, because detect (reasoning) draws it and seek's ``focus`` key (retrieval) crops
around its strongest region; the zero-shot map and the fusion rule stay in ``reasoning.expert``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from kbengine.core.banks.memory_bank import MemoryBank

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


def reference_map(distances: np.ndarray, bank: MemoryBank, size: tuple[int, int]) -> np.ndarray:
    """The [0, 1] map of a ``size`` (width, height) photo's nearest-normal patch ``distances``
    against ``bank``, at the working resolution: each patch's z against its border ring
    (``MemoryBank.patch_z``) scaled by the bank's leave-one-out calibration (0.5 at its patch
    threshold); uncalibrated (one reference), the distances between their median and their 99th
    percentile."""
    width, height = working_size(*size)
    c = bank.calibration
    if c is not None:
        return upsample(scale_distances(bank.patch_z(distances), c.patch_mean, c.patch_threshold), width, height)
    low, high = float(np.median(distances)), float(np.quantile(distances, 0.99))
    return upsample(scale_distances(distances, low, high), width, height)


__all__ = ["logistic", "reference_map", "resize_map", "scale_distances", "upsample", "working_size"]

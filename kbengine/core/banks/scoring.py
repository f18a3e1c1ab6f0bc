"""Scores read off a patch grid of anomaly evidence (nearest-normal distances or a [0, 1] map)."""

from __future__ import annotations

import numpy as np

TOP_FRACTION = 0.01


KERNEL = np.exp(-0.5 * np.arange(-4, 5) ** 2)
KERNEL /= KERNEL.sum()
"""A Gaussian of sigma 1 truncated at 4 sigma, as SciPy's ``gaussian_filter`` draws it."""


def smooth_grid(grid: np.ndarray) -> np.ndarray:
    """The patch grid smoothed over one patch (sigma 1, edges repeated), before the image score is
    read off it: ``scipy.ndimage.gaussian_filter(grid, 1, mode="nearest")`` in two 1-d passes of
    NumPy, so a seek does not import ``scipy.ndimage`` (0.14 s of a cold start)."""
    out = grid.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(4, 4) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, len(KERNEL), axis=axis)
        out = windows @ KERNEL
    return out.astype(np.float32)


def image_score(grid: np.ndarray) -> float:
    """Mean of the top 1% (at least one) of the smoothed patch grid: steadier than the single max
    and still driven by a small defect (docs/detect.md has the comparison)."""
    flat = smooth_grid(grid).ravel()
    top = max(1, round(TOP_FRACTION * flat.size))
    return float(np.partition(flat, flat.size - top)[-top:].mean())

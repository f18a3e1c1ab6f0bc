"""Anomaly-map math of the AD Expert on arrays: the zero-shot map of eq. 2 and the fusion rule.
The reference map and the math every map shares (scaling to [0, 1], upsampling, the working
resolution) live in ``kbengine.core.maps``, which seek's focus key reads too; the image score of a
patch grid lives in ``kbengine.core.banks.scoring``, shared with region keys.

Every map handed to a user is in [0, 1] with ``0.5`` meaning "at the decision threshold", so maps
from different evidence can be averaged and binarised the same way.
"""

from __future__ import annotations

import numpy as np

from kbengine.core.banks.scoring import image_score, smooth_grid


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


def fuse(maps: list[np.ndarray]) -> np.ndarray:
    """The fusion rule: both maps are in [0, 1] with 0.5 at their own decision threshold, so the
    fused map is their mean (an anomaly both see stays above 0.5; one only one sees, strongly,
    can still cross it)."""
    return np.mean(np.stack(maps), axis=0).astype(np.float32)


__all__ = ["fuse", "image_score", "smooth_grid", "zero_shot_map"]

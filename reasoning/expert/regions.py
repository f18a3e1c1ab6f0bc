"""Regions of a binarised anomaly map: connected components (8-connectivity), their boxes,
areas, peaks and a location phrase a person would use."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from kbengine.core.schemas import Region

MIN_AREA_FRACTION = 0.0005
MAX_REGIONS = 10


def location_phrase(cy: float, cx: float, height: int, width: int) -> str:
    """A 3x3 grid over the image: 'top left', 'top', 'top right', 'left', 'center', ..."""
    row = ("top", "", "bottom")[min(2, int(3 * cy / max(height, 1)))]
    col = ("left", "", "right")[min(2, int(3 * cx / max(width, 1)))]
    return " ".join(w for w in (row, col) if w) or "center"


def scale_regions(regions: list[Region], working: tuple[int, int], size: tuple[int, int]) -> list[Region]:
    """Regions found on a ``working`` (width, height) map, in the pixels of a ``size`` photo."""
    if working == size:
        return regions
    sx, sy = size[0] / working[0], size[1] / working[1]
    return [
        r.model_copy(
            update={
                "bbox": (
                    int(r.bbox[0] * sx),
                    int(r.bbox[1] * sy),
                    min(size[0], int(np.ceil(r.bbox[2] * sx))),
                    min(size[1], int(np.ceil(r.bbox[3] * sy))),
                ),
                "area": round(r.area * sx * sy),
            }
        )
        for r in regions
    ]


def find_regions(anomaly_map: np.ndarray, mask: np.ndarray) -> list[Region]:
    """Regions of ``mask`` (at least 0.05% of the image), the strongest first, at most ten.

    Areas, peaks, means and map-weighted centres come from one pass over the masked pixels
    (``bincount``), not ``ndimage``'s per-label statistics, which sort the whole map."""
    height, width = mask.shape
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    regions: list[Region] = []
    if count == 0:
        return regions
    where = np.flatnonzero(labels)
    label = labels.ravel()[where]
    values = anomaly_map.ravel()[where].astype(np.float64)
    ys, xs = np.divmod(where, width)
    size = count + 1
    areas = np.bincount(label, minlength=size)
    sums = np.bincount(label, weights=values, minlength=size)
    peaks = np.full(size, -np.inf)
    np.maximum.at(peaks, label, values)
    weights = np.where(sums > 0, sums, 1.0)
    cys = np.bincount(label, weights=values * ys, minlength=size) / weights
    cxs = np.bincount(label, weights=values * xs, minlength=size) / weights
    boxes = ndimage.find_objects(labels)
    for i in range(1, size):
        box = boxes[i - 1]
        if areas[i] < MIN_AREA_FRACTION * height * width or box is None:
            continue
        rows, cols = box
        regions.append(
            Region(
                bbox=(int(cols.start), int(rows.start), int(cols.stop), int(rows.stop)),
                area=int(areas[i]),
                area_fraction=float(areas[i] / (height * width)),
                location=location_phrase(float(cys[i]), float(cxs[i]), height, width),
                peak=float(peaks[i]),
                mean=float(sums[i] / areas[i]),
            )
        )
    regions.sort(key=lambda r: -r.peak)
    return regions[:MAX_REGIONS]

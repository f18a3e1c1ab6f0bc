"""Anomaly-detection metrics as pure, vectorised numpy functions (no scikit-learn at run time).

Every label metric works from one sort: the scores are sorted once in descending order, and cumulative sums
of the labels are read off at the last element of each run of equal scores, so each *distinct* score is one
threshold ("anomalous if score >= threshold") and tied scores always move together. The cost is one argsort
(``O(n log n)``) plus a few linear passes; there are no Python loops over elements, which keeps pixel-level
metrics on ~10 million pixels to about a second.

Metrics
-------
``auroc``
    Area under the ROC curve (TPR over FPR), trapezoid rule over the distinct thresholds, starting at (0, 0).
    Tied scores form one diagonal step, which is what ``sklearn.metrics.roc_auc_score`` computes (and equal to
    the Mann-Whitney rank statistic with ties counted as 1/2). The area is accumulated in exact integer
    arithmetic and divided once. Needs both classes: ``ValueError`` otherwise.
``average_precision``
    ``sum_k (R_k - R_{k-1}) * P_k`` over the distinct thresholds, step-wise with no interpolation, as
    ``sklearn.metrics.average_precision_score``. Needs at least one positive (all-positive input gives 1.0).
``f1_max``
    The best F1 = 2TP / (2TP + FP + FN) over all distinct thresholds, and the threshold that attains it (as
    anomalib's ``F1Max``, built on the precision-recall curve). F1 is computed as an exact ratio of integers
    (no epsilon), so exact ties are detected; among tied thresholds the *lowest* one is returned, which is
    what ``argmax`` over the ascending thresholds of a precision-recall curve gives. Needs one positive.
``pixel_auroc``
    ``auroc`` over all pixels of all images, flattened.
``aupro``
    Area under the per-region-overlap (PRO) curve up to a false-positive rate ``fpr_limit``, divided by
    ``fpr_limit`` so that a perfect detector scores 1.0 (MVTec AD benchmark; anomalib's ``AUPRO``).
    Regions are the connected components of each ground-truth mask, found per image with
    ``scipy.ndimage.label`` and **8-connectivity** (pixels touching at a corner are one region), as in the
    MVTec AD evaluation code. At a threshold, PRO is the mean over all regions of all images of the fraction
    of the region's pixels at or above the threshold, and FPR is the fraction of all normal pixels (mask
    False, over all images) at or above it. The curve is computed exactly at every distinct score: each
    defect pixel carries a weight ``1 / (region_size * n_regions)`` towards PRO and each normal pixel
    ``1 / n_normal`` towards FPR, and both are cumulated in descending score order. PRO is integrated over FPR
    with the trapezoid rule from (0, 0) to ``fpr_limit``, the curve being linearly interpolated at exactly
    ``fpr_limit``. A map with one constant value gives the diagonal, i.e. ``fpr_limit / 2``; an inverted map
    gives 0. With ``num_thresholds`` the curve is instead evaluated at that many score quantiles (lower data
    values, so every point lies on the exact curve): less memory, slightly coarser.
``image_metrics`` / ``pixel_metrics``
    Dictionaries of the above; ``pixel_metrics`` sorts the pixels once and shares the order.
``region_coverage`` / ``box_precision``
    What a user sees: the share of ground-truth regions whose pixels lie at least half inside the
    predicted region boxes (region recall), and the share of boxes that hold a defect pixel.

Inputs
------
Labels and masks are bool or numeric 0/1 (anything else is an error); scores and maps are real numbers and
must all be finite. Shapes must agree (masks and maps are ``(N, H, W)``, a single ``(H, W)`` image is
accepted). Violations raise ``ValueError`` naming the problem.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "aupro",
    "auroc",
    "average_precision",
    "box_precision",
    "f1_max",
    "image_metrics",
    "pixel_auroc",
    "pixel_metrics",
    "region_coverage",
]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
IntArray = npt.NDArray[np.int64]
ScoreArray = npt.NDArray[np.floating[Any]]

# 8-connectivity inside each (H, W) plane, no connection between the images of an (N, H, W) stack.
_EIGHT_CONNECTED_PER_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_CONNECTED_PER_IMAGE[1] = True


class _Order(NamedTuple):
    """Pixels sorted by descending score, and where each run of equal scores ends."""

    order: IndexArray  # indices sorting the scores in descending order
    ends: IndexArray  # position (in sorted order) of the last element of each run of equal scores
    thresholds: ScoreArray  # the distinct scores, descending


class _Curve(NamedTuple):
    """Counts at each distinct threshold (descending): predictions are ``score >= threshold``."""

    thresholds: ScoreArray
    tps: IntArray
    fps: IntArray


# ---------------------------------------------------------------------------------------------- validation


def _scores(values: npt.ArrayLike, name: str) -> ScoreArray:
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    scores: ScoreArray = array if array.dtype.kind == "f" else array.astype(np.float64)
    bad = scores.size - int(np.count_nonzero(np.isfinite(scores)))
    if bad:
        raise ValueError(f"{name} contain {bad} non-finite value(s) (NaN or ±inf) out of {scores.size}")
    return scores


def _binary(values: npt.ArrayLike, name: str) -> BoolArray:
    array = np.asarray(values)
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be bool or 0/1 numbers, got dtype {array.dtype}")
    binary: BoolArray = array != 0
    if not np.array_equal(array, binary):
        found = np.unique(array[(array != 0) & (array != 1)])[:5]
        raise ValueError(f"{name} must be binary (bool or 0/1), found other values such as {found.tolist()}")
    return binary


def _labels_and_scores(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[BoolArray, ScoreArray]:
    y = _binary(labels, "labels")
    s = _scores(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same shape, got {y.shape} and {s.shape}")
    return y.ravel(), s.ravel()


def _masks_and_maps(masks: npt.ArrayLike, maps: npt.ArrayLike) -> tuple[BoolArray, ScoreArray]:
    m = _binary(masks, "masks")
    a = _scores(maps, "maps")
    if m.shape != a.shape:
        raise ValueError(f"masks and maps must have the same shape, got {m.shape} and {a.shape}")
    if m.ndim == 2:
        m, a = m[None], a[None]
    if m.ndim != 3:
        raise ValueError(f"masks and maps must be (N, H, W) (or one (H, W) image), got shape {m.shape}")
    return m, a


def _check_fpr_limit(fpr_limit: float) -> None:
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")


# ------------------------------------------------------------------------------------------------- curves


def _descending(scores: ScoreArray) -> _Order:
    """Sort once; tied scores are contiguous, and only the last element of each run is read, so their
    internal order does not matter."""
    order = np.argsort(scores)[::-1]
    ordered = scores[order]
    ends = np.flatnonzero(ordered[1:] != ordered[:-1])
    ends = np.append(ends, ordered.size - 1)
    return _Order(order, ends, ordered[ends])


def _curve(labels: BoolArray, scores: ScoreArray, order: _Order | None = None) -> _Curve:
    order = _descending(scores) if order is None else order
    tps = np.cumsum(labels[order.order], dtype=np.int64)[order.ends]
    fps = (order.ends + 1).astype(np.int64) - tps
    return _Curve(order.thresholds, tps, fps)


def _auroc(curve: _Curve) -> float:
    positives, negatives = int(curve.tps[-1]), int(curve.fps[-1])
    if positives == 0 or negatives == 0:
        raise ValueError(
            "AUROC is undefined when only one class is present in labels "
            f"(got {positives} positive and {negatives} negative)"
        )
    # Trapezoids between consecutive distinct thresholds, in integers: width dFP, heights TP_prev and TP.
    tp_before = np.concatenate(([0], curve.tps[:-1]))
    fp_step = np.diff(curve.fps, prepend=0)
    twice_area = int(np.sum(fp_step * (curve.tps + tp_before)))
    return twice_area / (2 * positives * negatives)


def _require_positive(curve: _Curve, metric: str) -> int:
    positives = int(curve.tps[-1])
    if positives == 0:
        raise ValueError(f"{metric} is undefined when labels contain no positive (anomalous) sample")
    return positives


def _average_precision(curve: _Curve) -> float:
    positives = _require_positive(curve, "average precision")
    precision = curve.tps / (curve.tps + curve.fps)
    recall_step = np.diff(curve.tps, prepend=0)
    return float(np.sum(recall_step * precision)) / positives


def _f1_max(curve: _Curve) -> tuple[float, float]:
    positives = _require_positive(curve, "F1")
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P): an exact ratio of integers, so equal values tie exactly.
    f1 = (2 * curve.tps) / (curve.tps + curve.fps + positives)
    best = f1.size - 1 - int(np.argmax(f1[::-1]))  # the last (lowest-threshold) maximum
    return float(f1[best]), float(curve.thresholds[best])


def _pro_curve(
    masks: BoolArray, maps: ScoreArray, num_thresholds: int | None = None, order: _Order | None = None
) -> tuple[FloatArray, FloatArray]:
    """(FPR, PRO) at every distinct score (or at ``num_thresholds`` score quantiles), from (0, 0) to (1, 1)."""
    regions, n_regions = ndimage.label(masks, structure=_EIGHT_CONNECTED_PER_IMAGE)
    if n_regions == 0:
        raise ValueError("AUPRO is undefined: the masks contain no defect region")
    region_of = np.asarray(regions).ravel()
    sizes = np.bincount(region_of, minlength=n_regions + 1)
    n_normal = int(sizes[0])
    if n_normal == 0:
        raise ValueError("AUPRO is undefined: the masks contain no normal pixel, so the FPR cannot be computed")
    weight_of_region = np.zeros(n_regions + 1)
    weight_of_region[1:] = 1.0 / (sizes[1:] * float(n_regions))  # region 0 (normal) adds nothing to PRO
    scores = maps.ravel()
    if num_thresholds is None:
        order = _descending(scores) if order is None else order
        sorted_regions = region_of[order.order]
        pro = np.cumsum(weight_of_region[sorted_regions])[order.ends]
        false_positives = np.cumsum(sorted_regions == 0, dtype=np.int64)[order.ends]
    else:
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
        # Thresholds are data values (ascending, the minimum first), so every point lies on the exact curve.
        levels = np.linspace(0.0, 1.0, num_thresholds)
        thresholds = np.unique(np.quantile(scores, levels, method="lower"))
        bins = np.searchsorted(thresholds, scores, side="right") - 1  # the highest threshold <= score
        pro_mass = np.bincount(bins, weights=weight_of_region[region_of], minlength=thresholds.size)
        normal_count = np.bincount(bins[region_of == 0], minlength=thresholds.size).astype(np.int64)
        pro = np.cumsum(pro_mass[::-1])
        false_positives = np.cumsum(normal_count[::-1])
    fpr = np.concatenate(([0.0], false_positives / n_normal))
    pro = np.concatenate(([0.0], np.minimum(pro, 1.0)))  # the cumulative sum may overshoot 1 by rounding
    return fpr, pro


def _area_up_to(x: FloatArray, y: FloatArray, limit: float) -> float:
    """Trapezoid area under y(x) for x in [0, limit]; x is non-decreasing from 0, interpolated at ``limit``."""
    inside = int(np.searchsorted(x, limit, side="right"))  # x[:inside] <= limit, and x[0] = 0 < limit
    if inside < x.size:
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]  # x0 <= limit < x1
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        x = np.append(x[:inside], limit)
        y = np.append(y[:inside], y_limit)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]))) / 2.0


# ------------------------------------------------------------------------------------------ public: images


def auroc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC of ``scores`` (higher = more anomalous) against binary ``labels``; ties as scikit-learn."""
    y, s = _labels_and_scores(labels, scores)
    return _auroc(_curve(y, s))


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Step-wise average precision, equal to ``sklearn.metrics.average_precision_score``."""
    y, s = _labels_and_scores(labels, scores)
    return _average_precision(_curve(y, s))


def f1_max(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[float, float]:
    """The best F1 over all thresholds and the (lowest) threshold attaining it (``score >= threshold``)."""
    y, s = _labels_and_scores(labels, scores)
    return _f1_max(_curve(y, s))


def image_metrics(labels: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, float]:
    """``image_auroc``, ``image_ap`` and ``image_f1_max`` of per-image scores, from one sort."""
    y, s = _labels_and_scores(labels, scores)
    curve = _curve(y, s)
    return {
        "image_auroc": _auroc(curve),
        "image_ap": _average_precision(curve),
        "image_f1_max": _f1_max(curve)[0],
    }


# ------------------------------------------------------------------------------------------ public: pixels


def pixel_auroc(masks: npt.ArrayLike, maps: npt.ArrayLike) -> float:
    """ROC AUC over all pixels: ``masks`` (N, H, W) bool ground truth, ``maps`` (N, H, W) anomaly scores."""
    m, a = _masks_and_maps(masks, maps)
    return _auroc(_curve(m.ravel(), a.ravel()))


def aupro(
    masks: npt.ArrayLike, maps: npt.ArrayLike, fpr_limit: float = 0.3, num_thresholds: int | None = None
) -> float:
    """Area under the per-region-overlap curve for FPR in [0, ``fpr_limit``], divided by ``fpr_limit``.

    Exact over every distinct score by default; ``num_thresholds`` evaluates the curve at that many score
    quantiles instead (less memory on very large inputs)."""
    m, a = _masks_and_maps(masks, maps)
    _check_fpr_limit(fpr_limit)
    fpr, pro = _pro_curve(m, a, num_thresholds)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def pixel_metrics(masks: npt.ArrayLike, maps: npt.ArrayLike, fpr_limit: float = 0.3) -> dict[str, float]:
    """``pixel_auroc``, ``pixel_aupro`` (exact, up to ``fpr_limit``) and ``pixel_f1_max``, sorting the pixels once."""
    m, a = _masks_and_maps(masks, maps)
    _check_fpr_limit(fpr_limit)
    order = _descending(a.ravel())
    curve = _curve(m.ravel(), a.ravel(), order)
    pixel_auroc_value = _auroc(curve)  # raises first, with the clearest message, on one-class masks
    fpr, pro = _pro_curve(m, a, order=order)
    return {
        "pixel_auroc": pixel_auroc_value,
        "pixel_aupro": _area_up_to(fpr, pro, fpr_limit) / fpr_limit,
        "pixel_f1_max": _f1_max(curve)[0],
    }


# ------------------------------------------------------------------------------------------ public: regions

Box = tuple[int, int, int, int]


def region_coverage(mask: npt.ArrayLike, boxes: list[Box], cover: float = 0.5) -> tuple[int, int]:
    """(covered, total) ground-truth regions of one image: a region (8-connected component of
    ``mask``) is covered when at least ``cover`` of its pixels lie inside the union of the
    predicted ``boxes`` ((x0, y0, x1, y1), exclusive ends, as ``Region.bbox``)."""
    m = np.asarray(mask).astype(bool)
    labels, count = ndimage.label(m, structure=np.ones((3, 3), bool))
    if count == 0:
        return 0, 0
    inside = np.zeros_like(m)
    for x0, y0, x1, y1 in boxes:
        inside[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(m, np.float64), labels, index)
    covered = ndimage.sum_labels(inside.astype(np.float64), labels, index)
    return int(np.sum(covered >= cover * sizes)), int(count)


def box_precision(mask: npt.ArrayLike, boxes: list[Box]) -> tuple[int, int]:
    """(touching, total) predicted boxes of one image: a box touches when it holds a defect pixel."""
    m = np.asarray(mask).astype(bool)
    touching = sum(bool(m[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].any()) for x0, y0, x1, y1 in boxes)
    return touching, len(boxes)

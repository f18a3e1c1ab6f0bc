"""Anomaly-detection metrics: equality with scikit-learn (ties included), AUPRO against hand-computed cases
and against a brute-force per-threshold reference, and input validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from reasoning.expert.metrics import (
    aupro,
    auroc,
    average_precision,
    box_precision,
    f1_max,
    image_metrics,
    pixel_auroc,
    pixel_metrics,
    region_coverage,
)

TOL = 1e-12


def _random_case(seed: int, size: int, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels with both classes and scores that are continuous, rounded to 1 decimal, or 3 levels."""
    rng = np.random.default_rng(seed)
    labels = rng.random(size) < rng.uniform(0.05, 0.95)
    labels[0], labels[-1] = True, False  # both classes present
    rng.shuffle(labels)
    scores = rng.normal(size=size) + labels * rng.uniform(0.0, 2.0)
    if ties == "decimal":
        scores = np.round(scores, 1)
    elif ties == "levels":
        scores = rng.integers(0, 3, size).astype(float) + labels * (rng.random(size) < 0.3)
    return labels, scores


def _sklearn_f1(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(f1.max()), f1[:-1], thresholds  # the last (precision 1, recall 0) point has no threshold


def _check_against_sklearn(labels: np.ndarray, scores: np.ndarray) -> None:
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=TOL)
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=TOL)
    best, threshold = f1_max(labels, scores)
    reference_best, reference_f1, thresholds = _sklearn_f1(labels, scores)
    assert best == pytest.approx(reference_best, abs=TOL)
    # The threshold is the lowest one attaining the maximum (argmax over ascending thresholds, as anomalib).
    attaining = thresholds[reference_f1 >= reference_best - TOL]
    assert threshold == attaining.min()
    predicted = scores >= threshold
    true_positives = np.sum(predicted & labels)
    assert 2 * true_positives / (predicted.sum() + labels.sum()) == pytest.approx(best, abs=TOL)


# ----------------------------------------------------------------------------------- image-level metrics


@pytest.mark.parametrize("ties", ["none", "decimal", "levels"])
@pytest.mark.parametrize("size", [2, 3, 7, 50, 1000, 20000])
def test_label_metrics_equal_sklearn_over_seeds(size, ties):
    for seed in range(8):
        _check_against_sklearn(*_random_case(seed, size, ties))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(2, 300),
    ties=st.sampled_from(["none", "decimal", "levels"]),
)
def test_label_metrics_equal_sklearn_property(seed, size, ties):
    _check_against_sklearn(*_random_case(seed, size, ties))


def test_label_metrics_accept_int_labels_float32_and_int_scores():
    labels, scores = _random_case(3, 500, "decimal")
    reference = roc_auc_score(labels, scores)
    assert auroc(labels.astype(np.int64), scores.astype(np.float32)) == pytest.approx(
        roc_auc_score(labels, scores.astype(np.float32)), abs=TOL
    )
    assert auroc(labels.astype(float), scores) == pytest.approx(reference, abs=TOL)
    levels = np.round(scores * 10).astype(np.int32)
    assert auroc(labels, levels) == pytest.approx(roc_auc_score(labels, levels), abs=TOL)
    assert auroc(labels.tolist(), scores.tolist()) == pytest.approx(reference, abs=TOL)


def test_hand_values():
    # One positive above every negative, one positive tied with a negative: ROC (0,0) -> (0,1/2) [0.9] ->
    # (1/2,1) [0.5, the tie is a diagonal step] -> (1,1) [0.1]. Area 1/2 * 3/4 + 1/2 * 1 = 7/8, which is also
    # the rank statistic: 0.9 beats both negatives, 0.5 beats 0.1 and ties 0.5 (counts 1/2), 3.5 / 4.
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    assert auroc(labels, scores) == 0.875
    # AP: threshold 0.9 -> recall 1/2 at precision 1; threshold 0.5 -> recall 1 at precision 2/3.
    assert average_precision(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # F1: at 0.9, 2*1/(1+0+2) = 2/3; at 0.5, 2*2/(2+1+2) = 4/5; at 0.1, 2*2/(2+2+2) = 2/3.
    assert f1_max(labels, scores) == pytest.approx((0.8, 0.5))
    assert image_metrics(labels, scores) == pytest.approx(
        {"image_auroc": 0.875, "image_ap": 0.5 + 1 / 3, "image_f1_max": 0.8}
    )


def test_f1_ties_return_the_lowest_threshold():
    # Threshold 3 -> TP 1, FP 0: F1 = 2/(1+2) = 2/3; threshold 1 -> TP 2, FP 2: F1 = 4/(4+2) = 2/3.
    labels = np.array([1, 0, 0, 1])
    scores = np.array([3.0, 2.0, 2.0, 1.0])
    assert f1_max(labels, scores) == (pytest.approx(2 / 3), 1.0)


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.7, 0.8, 0.9])
    assert auroc(labels, scores) == 1.0
    assert auroc(labels, -scores) == 0.0
    assert average_precision(labels, scores) == 1.0
    assert f1_max(labels, scores) == (1.0, 0.7)


def test_one_class_raises():
    with pytest.raises(ValueError, match="only one class"):
        auroc(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match="only one class"):
        auroc(np.ones(5, dtype=bool), np.arange(5.0))
    with pytest.raises(ValueError, match="only one class"):
        image_metrics(np.ones(5), np.arange(5.0))
    with pytest.raises(ValueError, match="no positive"):
        average_precision(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match="no positive"):
        f1_max(np.zeros(5), np.arange(5.0))
    # With positives only, precision is 1 everywhere: AP and F1 are well defined.
    assert average_precision(np.ones(4), np.arange(4.0)) == 1.0
    assert f1_max(np.ones(4), np.arange(4.0)) == (1.0, 0.0)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        (np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3]), "non-finite"),
        (np.array([0, 1, 1]), np.array([0.1, np.inf, 0.3]), "non-finite"),
        (np.array([0, 1]), np.array([0.1, 0.2, 0.3]), "same shape"),
        (np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]), "binary"),
        (np.array([0, 1, np.nan]), np.array([0.1, 0.2, 0.3]), "binary"),
        (np.array(["a", "b"]), np.array([0.1, 0.2]), "bool or 0/1"),
        (np.array([0, 1]), np.array(["x", "y"]), "real numbers"),
        (np.array([0, 1]), np.array([1 + 1j, 2]), "real numbers"),
        (np.array([], dtype=bool), np.array([]), "empty"),
    ],
)
def test_invalid_inputs_raise(labels, scores, message):
    for metric in (auroc, average_precision, f1_max, image_metrics):
        with pytest.raises(ValueError, match=message):
            metric(labels, scores)


# ----------------------------------------------------------------------------------- pixel-level metrics


def _random_masks_maps(seed: int, shape: tuple[int, int, int] = (3, 12, 12)) -> tuple[np.ndarray, np.ndarray]:
    """Sparse random masks (many small regions, some touching only at a corner) and tied, partly informative
    maps."""
    rng = np.random.default_rng(seed)
    masks = rng.random(shape) < 0.12
    masks[0, 0, 0] = True  # at least one region
    masks[-1, -1, -1] = False  # at least one normal pixel
    maps = rng.random(shape) + masks * rng.uniform(0.0, 1.0, shape)
    if seed % 2:
        maps = np.round(maps, 1)
    return masks, maps


def _reference_aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float) -> float:
    """Brute force: label regions image by image (8-connectivity), evaluate PRO and FPR threshold by threshold,
    then integrate segment by segment up to ``fpr_limit``."""
    region_overlaps = []  # per region: a function of the threshold giving the covered fraction
    for mask, anomaly_map in zip(masks, maps, strict=True):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        region_overlaps.extend(anomaly_map[labelled == region] for region in range(1, count + 1))
    normal = maps[~masks]
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        pro = np.mean([np.mean(values >= threshold) for values in region_overlaps])
        points.append((float(np.mean(normal >= threshold)), float(pro)))
    area = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def test_pixel_auroc_equals_sklearn_on_flattened_pixels():
    for seed in range(6):
        masks, maps = _random_masks_maps(seed, (4, 20, 16))
        assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=TOL)


def test_aupro_of_a_perfect_map_is_one():
    masks, _ = _random_masks_maps(0, (3, 16, 16))
    # Threshold 1 takes every defect pixel and no normal one: the curve goes straight up to PRO 1 at FPR 0.
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0, abs=TOL)
    assert aupro(masks, masks.astype(float), fpr_limit=0.05) == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("fpr_limit", [0.05, 0.25, 0.3, 1.0])
def test_aupro_of_a_constant_map_is_half_the_limit(fpr_limit):
    # One threshold only: everything below it is predicted normal, at it everything anomalous, so the curve is
    # the segment (0, 0) -> (1, 1), i.e. PRO = FPR. Area up to L is L^2 / 2, normalised by L: L / 2.
    masks, _ = _random_masks_maps(1, (2, 10, 10))
    assert aupro(masks, np.full(masks.shape, 0.7), fpr_limit=fpr_limit) == pytest.approx(fpr_limit / 2, abs=TOL)


def test_aupro_averages_regions_not_pixels():
    # Two regions of different sizes in two images. The 2-pixel region scores 1.0 (found before any normal
    # pixel), the 6-pixel region scores 0.0 (below every normal pixel, so only found at FPR 1). Curve:
    # (0, 0) -> (0, 1/2) [threshold 1.0] -> ... normal pixels raise FPR at PRO 1/2 ... -> (1, 1/2) -> (1, 1).
    # PRO is 1/2 over the whole range [0, 0.3], so AUPRO = 0.5 (a pixel-wise recall would say 2/8).
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[0, 1, 1:3] = True
    masks[1, 2:4, 2:5] = True
    maps = np.random.default_rng(0).uniform(0.2, 0.8, masks.shape)
    maps[0, 1, 1:3] = 1.0
    maps[1, 2:4, 2:5] = 0.0
    assert aupro(masks, maps) == pytest.approx(0.5, abs=TOL)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.5, abs=TOL)  # PRO jumps to 1 only at FPR 1


def test_aupro_uses_eight_connectivity_within_each_image_only():
    # Image 0: pixels (0,0) and (1,1) touch at a corner: one region of 2 pixels under 8-connectivity (two
    # regions under 4-connectivity). Image 1: one pixel at (0,0), directly "below" image 0's (0,0) in the
    # stack but in another image, so a separate region. The map finds image 0's (0,0) and image 1's pixel
    # first (threshold 1.0, FPR 0): PRO = (1/2 + 1) / 2 = 3/4 (4-connectivity would give (1 + 0 + 1) / 3).
    # (1,1) scores 0.0, below every normal pixel, so PRO stays 3/4 until FPR 1.
    masks = np.zeros((2, 5, 5), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[1, 0, 0] = True
    maps = np.full(masks.shape, 0.5)
    maps[0, 0, 0] = maps[1, 0, 0] = 1.0
    maps[0, 1, 1] = 0.0
    assert aupro(masks, maps) == pytest.approx(0.75, abs=TOL)


def test_aupro_interpolates_at_the_limit():
    # Ten normal pixels scored 0.1 .. 1.0 and a one-pixel region scored 0.95. Curve: (0, 0) -> (0.1, 0)
    # [threshold 1.0] -> (0.1, 1) [0.95] -> (1, 1). Up to 0.3: area 0.2, / 0.3 = 2/3; up to 0.15: 0.05 / 0.15.
    masks = np.zeros((1, 1, 11), dtype=bool)
    masks[0, 0, 10] = True
    maps = np.append(np.arange(1, 11) / 10, 0.95).reshape(1, 1, 11)
    assert aupro(masks, maps) == pytest.approx(2 / 3, abs=TOL)
    assert aupro(masks, maps, fpr_limit=0.15) == pytest.approx(1 / 3, abs=TOL)
    assert aupro(masks, maps, fpr_limit=0.1) == pytest.approx(0.0, abs=TOL)
    assert aupro(masks[0], maps[0]) == pytest.approx(2 / 3, abs=TOL)  # a single (H, W) image is accepted


def test_aupro_of_an_inverted_map_is_zero():
    # 1 - mask: threshold 1 takes every normal pixel and no defect pixel, so the curve runs along PRO = 0 up to
    # FPR 1 before rising: no area below any limit.
    masks, _ = _random_masks_maps(2, (3, 16, 16))
    assert aupro(masks, 1.0 - masks) == pytest.approx(0.0, abs=TOL)


def test_aupro_with_one_region_and_full_range_is_pixel_auroc():
    # One region: PRO is the pixel TPR, so the whole-range AUPRO is the ROC area (ties included).
    rng = np.random.default_rng(5)
    masks = np.zeros((2, 16, 16), dtype=bool)
    masks[1, 3:9, 4:7] = True
    maps = np.round(rng.random(masks.shape) + 0.4 * masks, 1)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=TOL)


@pytest.mark.parametrize("fpr_limit", [0.01, 0.1, 0.3, 0.77, 1.0])
def test_aupro_equals_brute_force_reference(fpr_limit):
    for seed in range(10):
        masks, maps = _random_masks_maps(seed)
        assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(
            _reference_aupro(masks, maps, fpr_limit), abs=1e-10
        )


def test_aupro_with_quantile_thresholds():
    masks, maps = _random_masks_maps(3, (4, 32, 32))
    exact = aupro(masks, maps)
    assert aupro(masks, maps, num_thresholds=2000) == pytest.approx(exact, abs=0.02)
    # With few distinct scores, each holding much more than 1/num_thresholds of the pixels, every distinct score
    # is a quantile: the binned curve is the exact one.
    levels = np.random.default_rng(3).integers(0, 5, masks.shape) + 2.0 * masks
    assert aupro(masks, levels, num_thresholds=500) == pytest.approx(aupro(masks, levels), abs=TOL)
    with pytest.raises(ValueError, match="num_thresholds"):
        aupro(masks, maps, num_thresholds=1)


def test_pixel_metrics_match_the_single_metrics():
    masks, maps = _random_masks_maps(4, (3, 24, 24))
    result = pixel_metrics(masks, maps, fpr_limit=0.2)
    assert set(result) == {"pixel_auroc", "pixel_aupro", "pixel_f1_max"}
    assert result["pixel_auroc"] == pixel_auroc(masks, maps)
    assert result["pixel_aupro"] == aupro(masks, maps, fpr_limit=0.2)
    assert result["pixel_f1_max"] == f1_max(masks.ravel(), maps.ravel())[0]
    assert result["pixel_f1_max"] == pytest.approx(_sklearn_f1(masks.ravel(), maps.ravel())[0], abs=TOL)


def test_pixel_one_class_and_invalid_inputs_raise():
    maps = np.random.default_rng(0).random((2, 4, 4))
    with pytest.raises(ValueError, match="only one class"):
        pixel_auroc(np.zeros((2, 4, 4), dtype=bool), maps)
    with pytest.raises(ValueError, match="only one class"):
        pixel_metrics(np.zeros((2, 4, 4), dtype=bool), maps)
    with pytest.raises(ValueError, match="no defect region"):
        aupro(np.zeros((2, 4, 4), dtype=bool), maps)
    with pytest.raises(ValueError, match="no normal pixel"):
        aupro(np.ones((2, 4, 4), dtype=bool), maps)
    masks = maps > 0.5
    with pytest.raises(ValueError, match="same shape"):
        aupro(masks, maps[:1])
    with pytest.raises(ValueError, match="same shape"):
        pixel_metrics(masks[:, :2], maps)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(masks.ravel(), maps.ravel())
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pixel_metrics(masks[None], maps[None])
    bad = maps.copy()
    bad[1, 2, 3] = np.nan
    for metric in (pixel_auroc, aupro, pixel_metrics):
        with pytest.raises(ValueError, match="maps contain 1 non-finite"):
            metric(masks, bad)
    for limit in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fpr_limit"):
            aupro(masks, maps, fpr_limit=limit)
        with pytest.raises(ValueError, match="fpr_limit"):
            pixel_metrics(masks, maps, fpr_limit=limit)


def test_region_recall_counts_regions_half_inside_the_boxes():
    mask = np.zeros((20, 20), bool)
    mask[2:4, 2:6] = True  # 8 pixels
    mask[10:14, 10:14] = True  # 16 pixels, apart from the first
    assert region_coverage(mask, []) == (0, 2)
    assert region_coverage(mask, [(2, 2, 4, 4)]) == (1, 2)  # half of the first region
    assert region_coverage(mask, [(2, 2, 3, 4)]) == (0, 2)  # a quarter is not enough
    assert region_coverage(mask, [(0, 0, 20, 20)]) == (2, 2)
    assert region_coverage(np.zeros((5, 5), bool), [(0, 0, 5, 5)]) == (0, 0)
    assert box_precision(mask, [(0, 0, 20, 20), (15, 0, 20, 5)]) == (1, 2)
    assert box_precision(mask, []) == (0, 0)

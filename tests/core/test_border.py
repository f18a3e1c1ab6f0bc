"""Patch distances read as z against the normal distances of their ring from the border."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kbengine.core.banks.border import RING_DEPTH, RingStats, ring_depth, rings
from kbengine.core.banks.memory_bank import MemoryBank, build_bank, score_images


def test_rings_count_patches_to_the_nearest_border_of_each_tile():
    whole = rings((28, 28))
    assert whole.shape == (28, 28) and whole.max() == RING_DEPTH
    assert (whole[0] == 0).all() and (whole[:, -1] == 0).all() and whole[1, 1] == 1 and whole[14, 14] == RING_DEPTH
    tiled = rings((56, 56), (2, 2))  # each tile's border counts: the seams are ring 0 too
    assert (tiled[27] == 0).all() and (tiled[28] == 0).all() and (tiled[:, 27] == 0).all()
    np.testing.assert_array_equal(tiled[:28, :28], whole)
    assert ring_depth((14, 14)) == 3 and rings((14, 14)).max() == 3  # a ViT grid keeps an interior
    assert ring_depth((2, 2)) == 0 and (rings((2, 3)) == 0).all()


def test_ring_z_brings_a_noisy_border_to_the_interior_scale_and_keeps_the_interior_order():
    rng = np.random.default_rng(0)
    ring = rings((20, 20))
    scale = np.where(ring == 0, 0.3, 0.1)
    normal = [1.0 + 0.5 * (ring == 0) + scale * rng.normal(size=(20, 20)) for _ in range(16)]
    stats = RingStats.fit(normal)
    z = np.stack([stats.z(g) for g in normal])
    for r in range(int(ring.max()) + 1):
        assert abs(z[:, ring == r].mean()) < 1e-5 and abs(z[:, ring == r].std() - 1) < 1e-5
    query = normal[0].copy()
    query[10, 10] = 1.6  # an interior defect as far above normal as a typical border patch is
    assert np.argmax(query) != (10 * 20 + 10) and np.argmax(stats.z(query)) == 10 * 20 + 10
    inner = ring == ring.max()
    assert (np.argsort(stats.z(query)[inner]) == np.argsort(query[inner])).all()


def test_references_without_a_border_effect_share_one_pooled_ring():
    """A part on a plain background: its border is nearer normal than its interior, and a per-ring
    z would raise the background's small distances to the part's scale."""
    rng = np.random.default_rng(0)
    ring = rings((20, 20))
    normal = [np.where(ring == 0, 0.3, 0.6) + 0.1 * rng.normal(size=(20, 20)) for _ in range(16)]
    stats = RingStats.fit(normal)
    assert not stats.by_ring and len(stats.mean) == 1
    stack = np.stack(normal)
    np.testing.assert_allclose(stats.z(normal[0]), (normal[0] - stack.mean()) / stack.std(), rtol=1e-5)
    assert RingStats.fit([g[::-1] + 0.5 * (ring == 0) for g in normal]).by_ring


def test_a_constant_ring_does_not_divide_by_zero():
    stats = RingStats.fit([np.ones((12, 12)), np.ones((12, 12))])
    assert np.isfinite(stats.z(np.full((12, 12), 2.0))).all()


def textures(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(np.clip(rng.normal(128, 30, (112, 112)), 0, 255).astype(np.uint8)).convert("RGB")
        for _ in range(count)
    ]


def test_a_bank_calibrates_on_ring_z_and_keeps_the_rings_in_its_arrays(packaged):
    bank = build_bank(packaged, textures(4))
    c = bank.calibration
    assert c is not None and c.rings is not None and len(c.rings.mean) == RING_DEPTH + 1
    assert c.rings.mean[0] > c.rings.mean[-1]  # the border is farther from normal, as on real photos
    assert abs(c.patch_mean) < 0.5 and c.patch_threshold > 1  # the patch statistics are in z units
    (scores,) = score_images(packaged, bank, textures(1, seed=9))
    z = bank.patch_z(scores.distance_grid)
    np.testing.assert_allclose(z, c.rings.z(scores.distance_grid))
    loaded = MemoryBank.from_arrays(bank.to_arrays())
    assert loaded.calibration is not None and loaded.calibration.rings is not None
    np.testing.assert_allclose(loaded.patch_z(scores.distance_grid), z)


@pytest.mark.parametrize(
    "rings_array", [None, np.zeros((0, 0)), np.ones((3, 4)), np.ones(6), np.array([[1.0, np.nan], [1.0, 1.0]])]
)
def test_a_bank_without_usable_rings_reads_distances_as_they_are(packaged, rings_array):
    arrays = build_bank(packaged, textures(2)).to_arrays()
    if rings_array is None:
        del arrays["rings"]  # a bank cached before ring statistics
    else:
        arrays["rings"] = rings_array
    bank = MemoryBank.from_arrays(arrays)
    grid = np.random.default_rng(1).random((28, 28)).astype(np.float32)
    np.testing.assert_array_equal(bank.patch_z(grid), grid)

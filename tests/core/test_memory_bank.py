"""The memory bank's building blocks: features assembled batch by batch, a bounded coreset, the
smoothing of a patch grid."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from kbengine.core.banks.memory_bank import POOL_FACTOR, coreset, embed_patches, reference_layers
from kbengine.core.banks.scoring import smooth_grid


def photos(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (80 + 8 * i, 96, 3), dtype=np.uint8)) for i in range(count)]


def test_features_are_the_same_whatever_the_batch(packaged):
    images, layers = photos(5), reference_layers(packaged)
    one, scale, grid = embed_patches(packaged, images, layers, None, batch=64)
    many, scale_many, grid_many = embed_patches(packaged, images, layers, None, batch=2)
    assert grid == grid_many and one.shape == (5, grid[0] * grid[1], one.shape[2])
    np.testing.assert_allclose(scale, scale_many, rtol=1e-5)
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-5)
    tiled, _, tiled_grid = embed_patches(packaged, images, layers, scale, batch=3, tiles=(2, 2))
    assert tiled_grid == (2 * grid[0], 2 * grid[1]) and len(tiled) == 5
    raw = packaged.patch_features(images[:2], layers)
    np.testing.assert_allclose(embed_patches(packaged, images[:2], layers, scale, raw=raw)[0], one[:2], atol=1e-5)


def test_the_coreset_draws_from_a_bounded_pool_and_still_covers_every_cluster():
    rng = np.random.default_rng(0)
    clusters = rng.normal(size=(12, 16)) * 10
    points = (clusters[rng.integers(0, 12, 6000)] + rng.normal(size=(6000, 16))).astype(np.float32)
    chosen = coreset(points, 100)
    assert len(chosen) == len(set(chosen.tolist())) == 100 and chosen.max() < len(points)
    np.testing.assert_array_equal(chosen, coreset(points, 100))  # seeded: the same bank every build
    assert len(points) > POOL_FACTOR * 100  # the pool path was taken
    assert len({int(np.argmin(((clusters - points[i]) ** 2).sum(1))) for i in chosen}) == 12


@pytest.mark.parametrize("shape", [(28, 28), (56, 40), (3, 5), (1, 1)])
def test_the_grid_is_smoothed_as_scipy_smooths_it(shape):
    grid = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(smooth_grid(grid), gaussian_filter(grid, 1.0, mode="nearest"), atol=1e-6)

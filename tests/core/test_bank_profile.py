"""The per-category bank profile: decided from the references alone, applied alike to queries."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kbengine.core.banks.memory_bank import MemoryBank, _stitch, build_bank, score_images
from kbengine.core.banks.profile import (
    profile_references,
    split,
    standardise,
    tiles_along,
)


def texture(seed: int, size: tuple[int, int] = (96, 96), gain: float = 1.0) -> Image.Image:
    rng = np.random.default_rng(seed)
    grey = np.clip((rng.normal(128, 40, size[::-1])) * gain, 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def part(seed: int, size: tuple[int, int] = (96, 96), gain: float = 1.0) -> Image.Image:
    """The same disc on a plain background, a little noise, a brightness ``gain``."""
    image = Image.new("L", size, 60)
    ImageDraw.Draw(image).ellipse((20, 20, size[0] - 20, size[1] - 20), fill=200)
    rng = np.random.default_rng(seed)
    grey = np.clip((np.asarray(image, np.float64) + rng.normal(0, 4, size[::-1])) * gain, 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def test_textures_are_flipped_on_request_and_aligned_parts_only_when_forced():
    textured = profile_references([texture(i) for i in range(8)], "auto")
    aligned = profile_references([part(i) for i in range(8)], "auto")
    assert textured.alignment < 0.3 and textured.augment
    assert aligned.alignment > 0.8 and not aligned.augment
    assert not profile_references([texture(0)], "auto").augment  # one reference: nothing to compare
    assert not profile_references([texture(i) for i in range(8)]).augment  # opt-in: never by default
    assert profile_references([part(i) for i in range(8)], "always").augment


def test_brightness_standardisation_only_when_the_references_exposure_varies():
    steady = profile_references([part(i) for i in range(8)])
    varying = profile_references([part(i, gain=g) for i, g in enumerate((0.6, 0.8, 1.0, 1.2, 0.7, 0.9, 1.1, 1.25))])
    assert not steady.photometric and steady.brightness_cv < 0.1
    assert varying.photometric and varying.brightness_cv > 0.1
    a, b = np.asarray(standardise(part(0, gain=0.6)), float), np.asarray(standardise(part(0, gain=1.0)), float)
    assert np.abs(a - b).mean() < 3.0  # one photo at two exposures reads (almost) alike


def test_large_photos_are_tiled_on_a_grid_in_relative_coordinates():
    assert tiles_along(300) == 1 and tiles_along(448) == 2 and tiles_along(4000) == 2
    assert profile_references([part(i, size=(1000, 300)) for i in range(2)], tiles="auto").tiles == (1, 2)
    assert profile_references([part(i, size=(1000, 300)) for i in range(2)]).tiles == (1, 1)  # opt-in
    tiles = split(Image.new("RGB", (101, 50)), (2, 3))
    assert [t.size for t in tiles] == [(34, 25), (33, 25), (34, 25), (34, 25), (33, 25), (34, 25)]
    # stitching puts each tile's grid back where the tile was: row-major tiles, (C, h, w) each
    grids = np.arange(2 * 6 * 1 * 2 * 2, dtype=np.float32).reshape(12, 1, 2, 2)
    whole = _stitch(grids, (2, 3))
    assert whole.shape == (2, 1, 4, 6)
    assert np.array_equal(whole[0, 0, :2, 2:4], grids[1, 0]) and np.array_equal(whole[1, 0, 2:, 4:], grids[11, 0])


def test_alignment_tells_a_texture_from_an_aligned_part(packaged):
    assert build_bank(packaged, [texture(s) for s in range(4)]).profile.alignment < 0.3
    assert build_bank(packaged, [part(s) for s in range(4)]).profile.alignment >= 0.5


def test_a_bank_cached_with_the_global_term_still_loads(packaged):
    """Profiles and calibrations cached before the global term went had two more fields each."""
    bank = build_bank(packaged, [part(s) for s in range(3)])
    arrays = bank.to_arrays()
    p = bank.profile
    legacy = {
        **arrays,
        "profile": np.array([p.photometric, p.augment, 1.0, *p.tiles, p.alignment, p.brightness_cv, 0.3]),
        "calibration": np.concatenate([arrays["calibration"], [0.1, 0.02]]),
    }
    loaded = MemoryBank.from_arrays(legacy)
    assert loaded.profile == p and loaded.calibration is not None
    assert loaded.calibration.image_mean == bank.calibration.image_mean  # type: ignore[union-attr]


@pytest.mark.parametrize("gain", [0.7, 1.2])
def test_a_standardising_bank_reads_a_photo_alike_at_any_exposure(packaged, gain):
    references = [part(i, gain=g) for i, g in enumerate((0.6, 0.8, 1.0, 1.2, 0.7, 0.9))]
    bank = build_bank(packaged, references)
    assert bank.profile.photometric
    plain, exposed = score_images(packaged, bank, [part(99), part(99, gain=gain)])
    assert abs(plain.distances.mean() - exposed.distances.mean()) < 0.05 * plain.distances.mean() + 1e-3
    restored = MemoryBank.from_arrays(bank.to_arrays())
    assert restored.profile == bank.profile


def test_a_tiled_bank_scores_on_the_stitched_grid(packaged):
    references = [part(i, size=(480, 240)) for i in range(3)]
    bank = build_bank(packaged, references, tiles="auto")
    assert bank.profile.tiles == (1, 2) and bank.profile.describe().startswith("1x2 tiles")
    (scored,) = score_images(packaged, bank, [part(7, size=(480, 240))])
    assert scored.grid[1] == 2 * scored.grid[0]  # two square tiles side by side
    # the seam between the tiles is a border too: its ring statistics are the outer ring's
    assert bank.calibration is not None and bank.calibration.rings is not None
    z = bank.patch_z(scored.distance_grid)
    seam, inner = scored.grid[0] - 1, scored.grid[0] // 2
    ring = bank.calibration.rings
    row = scored.grid[0] // 2
    assert np.isclose(z[row, seam], (scored.distance_grid[row, seam] - ring.mean[0]) / ring.std[0], rtol=1e-5)
    assert np.isclose(z[row, inner], (scored.distance_grid[row, inner] - ring.mean[-1]) / ring.std[-1], rtol=1e-5)

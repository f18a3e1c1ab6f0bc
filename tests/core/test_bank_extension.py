"""A bank extended by added references instead of rebuilt: when, and that it stays correct."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kbengine.core.banks.extension import CannotExtend, extend_bank, projection
from kbengine.core.banks.memory_bank import MemoryBank, build_bank, calibrate, embed_patches, leave_one_out
from kbengine.core.banks.nearest import nearest_distance

SHAS = [f"{i:064x}" for i in range(8)]


def texture(seed: int) -> Image.Image:
    grey = np.clip(np.random.default_rng(seed).normal(128, 40, (96, 96)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


@pytest.fixture(scope="module")
def grown(packaged):
    images = [texture(i) for i in range(7)]
    old = build_bank(packaged, images[:6], max_patches=2000, shas=SHAS[:6])
    return images, old, extend_bank(packaged, old, images, SHAS[:7])


def test_an_added_reference_extends_a_subsampled_bank_and_every_new_patch_is_covered(packaged, grown):
    images, old, new = grown
    assert old.coverage is not None and old.coverage.subsampled
    assert new.references == 7 and len(new.patches) > len(old.patches)
    np.testing.assert_array_equal(new.patches[: len(old.patches)], old.patches)  # old patches stay
    assert new.origin is not None and set(new.origin[len(old.patches) :].tolist()) == {6}
    feats, _, _ = embed_patches(packaged, images[6:], new.layers, new.layer_scale)
    p = projection(feats.shape[-1], 0)
    assert p is not None
    far = nearest_distance(feats[0] @ p, new.patches @ p)
    assert far.max() <= old.coverage.radius * (1 + 1e-4) + 1e-5  # the covering invariant
    again = extend_bank(packaged, old, images, SHAS[:7])
    np.testing.assert_array_equal(again.patches, new.patches)  # deterministic


def test_the_calibration_is_the_leave_one_out_of_the_grown_bank(packaged, grown):
    images, _, new = grown
    feats, _, grid = embed_patches(packaged, images, new.layers, new.layer_scale)
    assert new.origin is not None and new.loo is not None and new.calibration is not None
    loo = leave_one_out(feats, grid, new.patches, new.origin)
    np.testing.assert_allclose(new.loo, loo, rtol=1e-3, atol=1e-4)
    assert np.isclose(new.calibration.image_mean, calibrate(loo, (1, 1)).image_mean, rtol=1e-3)


def test_a_normal_query_scores_alike_on_the_grown_and_a_rebuilt_bank(packaged, grown):
    images, _, new = grown
    rebuilt = build_bank(packaged, images, max_patches=2000, shas=SHAS[:7])
    from kbengine.core.banks.memory_bank import score_images
    from kbengine.core.banks.scoring import image_score

    z = []
    for bank in (new, rebuilt):
        (scored,) = score_images(packaged, bank, [texture(99)])
        assert bank.calibration is not None
        z.append(bank.calibration.image_z(image_score(bank.patch_z(scored.distance_grid))))
    assert abs(z[0] - z[1]) < 1.0


def test_the_grown_bank_round_trips_through_its_arrays_and_extends_again(packaged, grown):
    images, _, new = grown
    back = MemoryBank.from_arrays(new.to_arrays())
    assert back.shas == new.shas and back.coverage == new.coverage
    np.testing.assert_array_equal(back.origin, new.origin)
    more = extend_bank(packaged, back, [*images, texture(7)], SHAS[:8], growth=2.0)
    assert more.references == 8


def test_a_rebuild_when_extension_would_not_be_right(packaged, grown):
    images, old, _ = grown
    with pytest.raises(CannotExtend, match="removed or reordered"):
        extend_bank(packaged, old, images[1:], SHAS[1:7])
    small = build_bank(packaged, images[:2], shas=SHAS[:2])  # every patch kept
    with pytest.raises(CannotExtend, match="keeps every patch"):
        extend_bank(packaged, small, images[:3], SHAS[:3])
    legacy = MemoryBank.from_arrays({k: v for k, v in old.to_arrays().items() if k != "origin"})
    with pytest.raises(CannotExtend, match="no extension data"):
        extend_bank(packaged, legacy, images, SHAS[:7])
    with pytest.raises(CannotExtend, match="bound"):
        extend_bank(packaged, old, images, SHAS[:7], growth=1.0)

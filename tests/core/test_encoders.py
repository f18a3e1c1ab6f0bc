"""Encoders: the packaged real weights and the open_clip path on a tiny random-init model,
checked against open_clip's own outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kbengine import synth
from kbengine.core.encoders import get_encoder
from kbengine.core.encoders.openclip import OpenClipEncoder
from kbengine.core.errors import EncoderMismatchError, WeightsNotFoundError
from kbengine.core.settings import Settings


def _images() -> list[Image.Image]:
    return [synth.sample("tile", None, 1, 96)[0], synth.sample("disc", "scratch", 2, 96)[0]]


def test_packaged_image_embeddings_are_normalised_and_deterministic(packaged):
    a = packaged.embed_images(_images())
    b = packaged.embed_images(_images())
    assert a.shape == (2, 1280) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_packaged_features_tell_categories_apart(packaged):
    tiles = packaged.embed_images([synth.sample("tile", None, s, 128)[0] for s in range(3)])
    discs = packaged.embed_images([synth.sample("disc", None, s, 128)[0] for s in range(3)])
    assert (tiles @ tiles.T).min() > (tiles @ discs.T).max()


def test_packaged_patch_features_are_multi_scale(packaged):
    maps = packaged.patch_features(_images())
    assert {k: v.shape for k, v in maps.items()} == {
        2: (2, 72, 72, 24),  # a new knowledge base's Lite0 reads at 288 px
        4: (2, 36, 36, 40),
        7: (2, 18, 18, 80),
        10: (2, 18, 18, 112),
    }


def test_packaged_text_embeddings_are_semantic(packaged):
    t = packaged.embed_texts(["a crack in a ceramic tile", "a fractured tile", "oil stain on fabric"])
    assert t.shape == (3, 384)
    assert t[0] @ t[1] > t[0] @ t[2]


def test_open_clip_text_equals_encode_text(tiny_clip):
    tokens = tiny_clip.tokenizer(["a photo of a damaged tile"])
    with torch.no_grad():
        ref = tiny_clip.model.encode_text(tokens).numpy()
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(tiny_clip.embed_texts(["a photo of a damaged tile"]), ref, atol=1e-5)


def test_open_clip_patch_path_reproduces_encode_image(tiny_clip):
    """The class token at the last layer, through ln_post and proj, is exactly encode_image."""
    visual = tiny_clip.model.visual
    x = tiny_clip._batch(_images())
    last = len(visual.transformer.resblocks) - 1
    with torch.no_grad():
        out = visual.forward_intermediates(
            x, indices=[last], intermediates_only=True, output_fmt="NLC", output_extra_tokens=True
        )
        cls = visual.ln_post(out["image_intermediates_prefix"][0][:, 0]) @ visual.proj
        ref = tiny_clip.model.encode_image(x)
    torch.testing.assert_close(cls, ref, atol=1e-5, rtol=1e-4)
    maps = tiny_clip.patch_features(_images(), [last])
    with torch.no_grad():
        tokens = visual.ln_post(out["image_intermediates"][0]) @ visual.proj
    np.testing.assert_allclose(maps[last].reshape(2, -1, 32), tokens.numpy(), atol=1e-5)


def test_open_clip_default_layers_are_quarters(tiny_clip):
    assert tiny_clip.patch_layers == (0, 1, 2, 3)
    maps = tiny_clip.patch_features(_images())
    assert all(m.shape == (2, 4, 4, 32) for m in maps.values())
    assert tiny_clip.identity.name.endswith("@random") and tiny_clip.identity.joint_space


def test_missing_clip_weights_say_what_to_do(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # huggingface_hub reads HF_HUB_OFFLINE when it is first imported, which an earlier test may have
    # done: set the constant too, so the hub is never tried whatever the test order.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="KBENGINE_CLIP_PRETRAINED"):
        OpenClipEncoder("ViT-B-32", "openai", cache_dir=tmp_path)


def test_local_dir_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="holds none of"):
        OpenClipEncoder(f"local-dir:{tmp_path}", "openai")


def test_get_encoder_refuses_another_space(packaged, tiny_clip_name):
    settings = Settings(encoder="open_clip", clip_model=tiny_clip_name, clip_pretrained="random")
    with pytest.raises(EncoderMismatchError, match="was built with encoder packaged"):
        get_encoder(settings, packaged.identity)


def test_the_thread_policy_divides_the_cores_among_workers():
    import os

    from kbengine.core.encoders import torch_threads

    cores = len(os.sched_getaffinity(0))
    assert torch_threads(Settings(workers=1)) == cores
    assert torch_threads(Settings(workers=cores * 4)) == 1  # never zero
    assert torch_threads(Settings(workers=2, torch_threads=3)) == 3  # an explicit count wins
    before = torch.get_num_threads()
    try:
        get_encoder(Settings(encoder="packaged", torch_threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

"""clip_patch_tokens against open_clip's own forward, on tiny random-init ViTs."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from open_clip.transformer import VisionTransformer
from PIL import Image
from torch import Tensor, nn

from kbengine.core.encoders.clip_patches import clip_patch_tokens, interpolate_pos_embed


def _images(n: int = 3, size: int = 80) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 8 * i, 3), dtype=np.uint8)) for i in range(n)]


def _pixels(batch: int, size: int | tuple[int, int]) -> Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, h, w, generator=gen)


def _custom_vit() -> VisionTransformer:
    """A ViT whose blocks use open_clip's own Attention class (in_proj_* weights, batch-first only)."""
    torch.manual_seed(3)
    vit = VisionTransformer(
        image_size=32,
        patch_size=8,
        width=32,
        layers=3,
        heads=2,
        mlp_ratio=2.0,
        output_dim=16,
        block_type="custom",
    )
    with torch.no_grad():  # in_proj_bias and out_proj bias start at 0: give them something to do
        for block in vit.transformer.resblocks:
            block.attn.in_proj_bias.normal_(std=0.1)
            block.attn.out_proj.bias.normal_(std=0.1)
    return vit.eval()


def _reference_vv(visual: Any, pixels: Tensor, vv_blocks: int) -> dict[int, Tensor]:
    """The surgery stream built from open_clip's own modules: each block's attention, copied, with
    its q and k projections overwritten by its v projection, is V-V attention."""
    blocks = list(visual.transformer.resblocks)
    n = len(blocks)
    out = visual.forward_intermediates(
        pixels, indices=list(range(n)), intermediates_only=True, output_fmt="NLC", output_extra_tokens=True
    )
    outputs = [
        torch.cat([cls, patches], dim=1)
        for cls, patches in zip(out["image_intermediates_prefix"], out["image_intermediates"], strict=True)
    ]
    batch, gh, gw = pixels.shape[0], pixels.shape[-2] // visual.patch_size[0], pixels.shape[-1] // visual.patch_size[1]
    first = n - vv_blocks
    y = outputs[first - 1] if first > 0 else visual._embeds(pixels)
    result: dict[int, Tensor] = {}
    for index in range(first, n):
        x_in = outputs[index - 1] if index > 0 else visual._embeds(pixels)
        block = blocks[index]
        attn = copy.deepcopy(block.attn)
        dim = attn.in_proj_weight.shape[1]
        with torch.no_grad():
            attn.in_proj_weight[: 2 * dim] = attn.in_proj_weight[2 * dim :].repeat(2, 1)
            attn.in_proj_bias[: 2 * dim] = attn.in_proj_bias[2 * dim :].repeat(2)
        h = block.ln_1(x_in)
        vv = attn(h, h, h, need_weights=False)[0] if isinstance(attn, nn.MultiheadAttention) else attn(h)
        if hasattr(block, "ln_attn"):
            vv = block.ln_attn(vv)
        y = y + block.ls_1(vv)
        result[index] = (visual.ln_post(y[:, 1:]) @ visual.proj).reshape(batch, gh, gw, -1)
    return result


@torch.inference_mode()
def test_plain_forward_matches_open_clip_and_the_encoder(tiny_clip: Any) -> None:
    images = _images()
    pixels = tiny_clip._batch(images)
    visual = tiny_clip.model.visual
    layers = list(range(len(visual.transformer.resblocks)))
    tokens, pooled = clip_patch_tokens(visual, pixels, layers)
    torch.testing.assert_close(pooled, tiny_clip.model.encode_image(pixels), atol=1e-5, rtol=0)
    expected = tiny_clip.patch_features(images, layers)
    assert list(tokens) == layers
    for layer in layers:
        assert tokens[layer].shape == (3, 4, 4, 32)
        np.testing.assert_allclose(tokens[layer].numpy(), expected[layer], atol=1e-5, rtol=0)


@torch.inference_mode()
def test_vv_blocks_change_only_the_surgery_layers(tiny_clip: Any) -> None:
    visual = tiny_clip.model.visual
    pixels = _pixels(2, 64)
    layers = [0, 1, 2, 3]
    plain, plain_pooled = clip_patch_tokens(visual, pixels, layers)
    surgery, surgery_pooled = clip_patch_tokens(visual, pixels, layers, vv_blocks=2)
    assert {k: v.shape for k, v in surgery.items()} == {k: v.shape for k, v in plain.items()}
    for layer in (0, 1):
        torch.testing.assert_close(surgery[layer], plain[layer], atol=0, rtol=0)
    for layer in (2, 3):
        assert not torch.allclose(surgery[layer], plain[layer], atol=1e-3)
    torch.testing.assert_close(surgery_pooled, plain_pooled, atol=0, rtol=0)
    reference = _reference_vv(visual, pixels, vv_blocks=2)
    for layer in (2, 3):
        torch.testing.assert_close(surgery[layer], reference[layer], atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_vv_over_every_block_starts_from_the_embeddings(tiny_clip: Any) -> None:
    visual = tiny_clip.model.visual
    pixels = _pixels(1, 64)
    tokens, _ = clip_patch_tokens(visual, pixels, [0, 3], vv_blocks=4)
    reference = _reference_vv(visual, pixels, vv_blocks=4)
    for layer in (0, 3):
        torch.testing.assert_close(tokens[layer], reference[layer], atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_open_clip_attention_class_blocks() -> None:
    vit = _custom_vit()
    assert not isinstance(vit.transformer.resblocks[0].attn, nn.MultiheadAttention)
    pixels = _pixels(2, 32)
    tokens, pooled = clip_patch_tokens(vit, pixels, [0, 1, 2])
    torch.testing.assert_close(pooled, vit(pixels), atol=1e-5, rtol=0)
    out = vit.forward_intermediates(pixels, indices=[0, 1, 2], intermediates_only=True, output_fmt="NLC")
    for layer, raw in zip([0, 1, 2], out["image_intermediates"], strict=True):
        expected = (vit.ln_post(raw) @ vit.proj).reshape(2, 4, 4, -1)
        torch.testing.assert_close(tokens[layer], expected, atol=1e-5, rtol=0)
    surgery, surgery_pooled = clip_patch_tokens(vit, pixels, [0, 1, 2], vv_blocks=2)
    torch.testing.assert_close(surgery_pooled, pooled, atol=0, rtol=0)
    torch.testing.assert_close(surgery[0], tokens[0], atol=0, rtol=0)
    reference = _reference_vv(vit, pixels, vv_blocks=2)
    for layer in (1, 2):
        torch.testing.assert_close(surgery[layer], reference[layer], atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_sequence_first_transformer_gives_the_same_result(tiny_clip: Any) -> None:
    visual = tiny_clip.model.visual
    flipped = copy.deepcopy(visual)
    flipped.transformer.batch_first = False
    for block in flipped.transformer.resblocks:
        block.attn.batch_first = False
    pixels = _pixels(2, 64)
    torch.testing.assert_close(flipped(pixels), visual(pixels), atol=1e-5, rtol=0)
    for vv in (0, 2):
        tokens, pooled = clip_patch_tokens(visual, pixels, [1, 3], vv_blocks=vv)
        flipped_tokens, flipped_pooled = clip_patch_tokens(flipped, pixels, [1, 3], vv_blocks=vv)
        torch.testing.assert_close(flipped_pooled, pooled, atol=1e-5, rtol=0)
        for layer in (1, 3):
            torch.testing.assert_close(flipped_tokens[layer], tokens[layer], atol=1e-5, rtol=0)


@torch.inference_mode()
@pytest.mark.parametrize(("size", "grid"), [(96, (6, 6)), ((48, 80), (3, 5))])
def test_other_resolutions(tiny_clip: Any, size: int | tuple[int, int], grid: tuple[int, int]) -> None:
    visual = tiny_clip.model.visual
    for vv in (0, 2):
        tokens, pooled = clip_patch_tokens(visual, _pixels(2, size), [1, 3], vv_blocks=vv)
        assert pooled.shape == (2, 32)
        assert torch.isfinite(pooled).all()
        for layer in (1, 3):
            assert tokens[layer].shape == (2, *grid, 32)
            assert torch.isfinite(tokens[layer]).all()


def test_positional_interpolation() -> None:
    pos = torch.randn(1 + 4 * 4, 8)
    assert interpolate_pos_embed(pos, (4, 4), (4, 4)) is pos
    resized = interpolate_pos_embed(pos, (4, 4), (6, 3))
    assert resized.shape == (1 + 6 * 3, 8)
    torch.testing.assert_close(resized[0], pos[0], atol=0, rtol=0)
    constant = torch.cat([pos[:1], torch.full((16, 8), 0.25)])
    torch.testing.assert_close(
        interpolate_pos_embed(constant, (4, 4), (7, 7))[1:], torch.full((49, 8), 0.25), atol=1e-6, rtol=0
    )
    with pytest.raises(ValueError, match="does not match a 5x5 patch grid"):
        interpolate_pos_embed(pos, (5, 5), (6, 6))


def test_native_resolution_uses_the_positional_embedding_as_is(tiny_clip: Any, monkeypatch: Any) -> None:
    import kbengine.core.encoders.clip_patches as module

    calls: list[tuple[Any, ...]] = []
    original = module.interpolate_pos_embed

    def spy(pos: Tensor, old: tuple[int, int], new: tuple[int, int]) -> Tensor:
        result = original(pos, old, new)
        calls.append((old, new, result is pos))
        return result

    monkeypatch.setattr(module, "interpolate_pos_embed", spy)
    with torch.inference_mode():
        clip_patch_tokens(tiny_clip.model.visual, _pixels(1, 64), [3])
        clip_patch_tokens(tiny_clip.model.visual, _pixels(1, 96), [3])
    assert calls == [((4, 4), (4, 4), True), ((4, 4), (6, 6), False)]


@torch.inference_mode()
def test_numpy_and_repeated_layers(tiny_clip: Any) -> None:
    tokens, _ = clip_patch_tokens(tiny_clip.model.visual, _pixels(1, 64), [np.int64(3), 1, 3])  # type: ignore[list-item]
    assert list(tokens) == [3, 1]
    assert all(type(k) is int for k in tokens)


@pytest.mark.parametrize("layers", [[4], [-1], [0, 7], [1.0], [True]])
def test_bad_layer_index(tiny_clip: Any, layers: list[Any]) -> None:
    with pytest.raises(ValueError, match=r"has 4 blocks, so layers must be integers in 0\.\.3"):
        clip_patch_tokens(tiny_clip.model.visual, _pixels(1, 64), layers)


@pytest.mark.parametrize("vv_blocks", [-1, 5])
def test_bad_vv_blocks(tiny_clip: Any, vv_blocks: int) -> None:
    with pytest.raises(ValueError, match=r"vv_blocks must be an integer in 0\.\.4"):
        clip_patch_tokens(tiny_clip.model.visual, _pixels(1, 64), [0], vv_blocks=vv_blocks)


def test_bad_pixels(tiny_clip: Any) -> None:
    with pytest.raises(ValueError, match="pixels must be"):
        clip_patch_tokens(tiny_clip.model.visual, torch.zeros(3, 64, 64), [0])
    with pytest.raises(ValueError, match="smaller than one patch"):
        clip_patch_tokens(tiny_clip.model.visual, torch.zeros(1, 3, 8, 8), [0])

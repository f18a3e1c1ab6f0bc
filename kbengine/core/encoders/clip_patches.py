"""Multi-layer CLIP patch tokens, at any input resolution, with optional V-V ("surgery") attention.

:func:`clip_patch_tokens` runs an open_clip ``VisionTransformer`` forward by hand so that it can

* return the patch tokens after any set of blocks, each passed through ``ln_post`` and ``proj``
  exactly as :meth:`kbengine.core.encoders.openclip.OpenClipEncoder.patch_features` does, reshaped to
  the patch grid;
* accept input resolutions other than the model's native one, by bicubic interpolation of the
  positional embedding of the patch tokens (the class token's embedding is kept as is);
* keep, in the last ``vv_blocks`` blocks, a second stream with value-value self-attention as in
  CLIP Surgery (Li et al. 2023) and AnomalyCLIP's DPAM (Zhou et al. 2024), whose patch tokens are
  far better localised than those of the q-k attention CLIP was trained with.

With ``vv_blocks=0`` the global embedding is exactly ``model.encode_image`` (unnormalised) and the
patch tokens are exactly the encoder's; tests check both against open_clip on a tiny random model.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["clip_patch_tokens", "interpolate_pos_embed"]


def interpolate_pos_embed(pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """A ViT positional embedding (1 + gh*gw, D) for another patch grid.

    The class token's row is kept; the patch rows are laid out on ``old_grid`` and resized
    bicubically (``align_corners=False``, as timm and open_clip's own resizer do) to ``new_grid``.
    At ``new_grid == old_grid`` the input tensor itself is returned, untouched.
    """
    old_grid, new_grid = (int(old_grid[0]), int(old_grid[1])), (int(new_grid[0]), int(new_grid[1]))
    if old_grid == new_grid:
        return pos
    n_old = old_grid[0] * old_grid[1]
    if pos.ndim != 2 or pos.shape[0] != n_old + 1:
        raise ValueError(
            f"positional embedding of shape {tuple(pos.shape)} does not match a {old_grid[0]}x{old_grid[1]} "
            f"patch grid plus a class token ({n_old + 1} rows expected)"
        )
    dim = pos.shape[1]
    patches = pos[1:].reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=new_grid, mode="bicubic", align_corners=False)
    patches = patches.to(pos.dtype).permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], dim)
    return torch.cat([pos[:1], patches], dim=0)


class _ValueProjection(NamedTuple):
    weight: Tensor  # (D, D_in)
    bias: Tensor | None
    num_heads: int
    scale: float
    after_heads: Any  # callable on (N, heads, L, head_dim) -> same, e.g. a per-head scale
    after_merge: Any  # module on (N, L, D): inner norm, then the output projection


def _identity(t: Tensor) -> Tensor:
    return t


def _value_projection(attn: nn.Module) -> _ValueProjection:
    """The value projection and output path of a block's attention, whatever its class.

    ``nn.MultiheadAttention`` (open_clip's default blocks) packs q, k, v in ``in_proj_weight`` /
    ``in_proj_bias`` (or keeps separate ``v_proj_weight`` when kdim/vdim differ); open_clip's own
    ``Attention`` (custom blocks) uses the same ``in_proj_*`` names plus optional ``head_scale`` and
    ``ln_inner``; timm-style modules have a ``qkv`` linear layer and ``proj``.
    """
    a: Any = attn
    if isinstance(attn, nn.MultiheadAttention):
        if a.bias_k is not None or a.bias_v is not None:
            raise ValueError("V-V attention does not support nn.MultiheadAttention with add_bias_kv")
        dim = a.embed_dim
        weight = a.in_proj_weight[2 * dim :] if a.in_proj_weight is not None else a.v_proj_weight
        bias = a.in_proj_bias[2 * dim :] if a.in_proj_bias is not None else None
        return _ValueProjection(weight, bias, int(a.num_heads), float(a.head_dim) ** -0.5, _identity, a.out_proj)
    if isinstance(getattr(a, "in_proj_weight", None), Tensor):  # open_clip.transformer.Attention
        weight3 = a.in_proj_weight
        bias3 = getattr(a, "in_proj_bias", None)
        out_proj = a.out_proj
    elif isinstance(getattr(a, "qkv", None), nn.Linear):  # timm-style Attention
        weight3, bias3 = a.qkv.weight, a.qkv.bias
        out_proj = a.out_proj if isinstance(getattr(a, "out_proj", None), nn.Module) else a.proj
    else:
        raise TypeError(f"cannot find the value projection of attention module {type(attn).__name__}")
    dim = weight3.shape[0] // 3
    num_heads = int(a.num_heads)
    head_dim = dim // num_heads
    scale = float(getattr(a, "scale", head_dim**-0.5))
    head_scale = getattr(a, "head_scale", None)
    after_heads = (lambda t: t * head_scale) if isinstance(head_scale, Tensor) else _identity
    ln_inner = getattr(a, "ln_inner", None)
    after_merge = nn.Sequential(ln_inner, out_proj) if isinstance(ln_inner, nn.Module) else out_proj
    bias = bias3[2 * dim :] if bias3 is not None else None
    return _ValueProjection(weight3[2 * dim :], bias, num_heads, scale, after_heads, after_merge)


def _vv_attention(attn: nn.Module, h: Tensor) -> Tensor:
    """Value-value self-attention of ``h`` (N, L, D) with the block's own projections.

    q, k and v are all the value projection of ``h``; the weights are softmax(v v^T * scale) per
    head; the output goes through the module's output path (``out_proj``).
    """
    p = _value_projection(attn)
    n, length, _ = h.shape
    v = F.linear(h, p.weight, p.bias)
    v = v.reshape(n, length, p.num_heads, -1).transpose(1, 2)  # (N, heads, L, head_dim)
    out = F.scaled_dot_product_attention(v, v, v, scale=p.scale)
    out = p.after_heads(out).transpose(1, 2).reshape(n, length, -1)
    return p.after_merge(out)


def _as_index(value: object) -> int | None:
    """``value`` as an int if it is an integer (Python or NumPy, not bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _project(visual: Any, tokens: Tensor) -> Tensor:
    tokens = visual.ln_post(tokens)
    if visual.proj is not None:
        tokens = tokens @ visual.proj
    return tokens


def clip_patch_tokens(
    visual: nn.Module, pixels: Tensor, layers: Sequence[int], vv_blocks: int = 0
) -> tuple[dict[int, Tensor], Tensor]:
    """Patch tokens after the given blocks and the global image embedding of an open_clip ViT.

    Args:
        visual: an open_clip ``VisionTransformer`` (``model.visual``) without attentional pooling.
        pixels: preprocessed images (B, 3, H, W). H and W need not be the model's native size: the
            patch positional embedding is interpolated bicubically to the (H // p, W // p) grid
            (an exact no-op at the native size). Patch dropout is skipped (it is off at inference).
        layers: 0-based block indices; each must be in ``range(len(blocks))``.
        vv_blocks: how many of the last blocks also run V-V attention (0: plain CLIP forward).

    Returns:
        ``({layer: (B, gh, gw, D)}, (B, D))``: for each requested block, its patch tokens through
        ``ln_post`` and ``proj``; and the global embedding, pooled from the original stream through
        ``ln_post`` and ``proj`` exactly as ``model.encode_image`` does (unnormalised).

    V-V attention, as CLIP Surgery's dual path and AnomalyCLIP's DPAM: with ``n`` blocks, the last
    ``vv_blocks`` (indices ``n - vv_blocks`` .. ``n - 1``) keep a second, "surgery" stream ``y``.
    ``y`` starts as ``x``, the input of block ``n - vv_blocks`` (as in CLIP Surgery, not zeros), and
    in each of those blocks becomes ``y + ls_1(out_proj(VV(ln_1(x))))``, where ``x`` is the original
    stream's input to that block and ``VV`` is the block's own attention with its value projection
    used for q, k and v (weights ``softmax(v v^T * scale)`` per head); ``y`` skips the MLP. The
    original stream ``x`` runs each block unchanged (q-k attention and MLP). Requested layers in the
    V-V range return ``y``'s patch tokens, earlier layers return ``x``'s; the class token and the
    global embedding always come from ``x``, so they do not depend on ``vv_blocks``.

    Gradients follow the caller's grad mode (wrap in ``torch.inference_mode()`` for inference).
    """
    vis: Any = visual
    blocks = list(vis.transformer.resblocks)
    n_blocks = len(blocks)
    chosen: list[int] = []
    for layer in layers:
        index = _as_index(layer)
        if index is None or not 0 <= index < n_blocks:
            raise ValueError(
                f"layer {layer!r} is not a block index of this model: it has {n_blocks} blocks, "
                f"so layers must be integers in 0..{n_blocks - 1}"
            )
        if index not in chosen:
            chosen.append(index)
    if isinstance(vv_blocks, bool) or not isinstance(vv_blocks, int) or not 0 <= vv_blocks <= n_blocks:
        raise ValueError(f"vv_blocks must be an integer in 0..{n_blocks} (the model has {n_blocks} blocks)")
    if getattr(vis, "attn_pool", None) is not None:
        raise ValueError("attentional-pooling vision towers (CoCa) have no per-patch ln_post/proj tokens")
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be (B, 3, H, W), got {tuple(pixels.shape)}")

    # patch embedding, class token, positional embedding (resized to the grid), ln_pre
    patch_h, patch_w = vis.conv1.kernel_size
    if pixels.shape[-2] < patch_h or pixels.shape[-1] < patch_w:
        raise ValueError(
            f"images of {pixels.shape[-2]}x{pixels.shape[-1]} are smaller than one patch ({patch_h}x{patch_w})"
        )
    x = vis.conv1(pixels.to(vis.conv1.weight.dtype))  # (B, width, gh, gw)
    batch, width, gh, gw = x.shape
    x = x.reshape(batch, width, gh * gw).permute(0, 2, 1)
    cls = vis.class_embedding.to(x.dtype).view(1, 1, -1).expand(batch, -1, -1)
    x = torch.cat([cls, x], dim=1)
    native = (int(vis.grid_size[0]), int(vis.grid_size[1]))
    x = x + interpolate_pos_embed(vis.positional_embedding, native, (gh, gw)).to(x.dtype)
    x = vis.ln_pre(x)

    # the blocks; x is kept (B, L, D) here and handed to each block in the layout it expects
    seq_first = not getattr(vis.transformer, "batch_first", True)
    first_vv = n_blocks - vv_blocks
    wanted = set(chosen)
    found: dict[int, Tensor] = {}
    y: Tensor | None = None
    for index, block in enumerate(blocks):
        if index >= first_vv:
            if y is None:
                y = x
            vv = _vv_attention(block.attn, block.ln_1(x))
            if hasattr(block, "ln_attn"):
                vv = block.ln_attn(vv)
            y = y + block.ls_1(vv)
        x = block(x.transpose(0, 1)).transpose(0, 1) if seq_first else block(x)
        if index in wanted:
            stream = y if y is not None else x
            found[index] = stream[:, 1:]

    # in the caller's order, duplicates once
    tokens = {layer: _project(vis, found[layer]).reshape(batch, gh, gw, -1) for layer in chosen}
    pooled, _ = vis._pool(x)  # open_clip's own pooling: class token (or mean), ln_post
    if vis.proj is not None:
        pooled = pooled @ vis.proj
    return tokens, pooled

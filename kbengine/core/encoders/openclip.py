"""The ``open_clip`` backend: any open_clip model; image and text share one space.

Weights are resolved without surprises: a local file or ``local-dir:`` directory, the open_clip /
Hugging Face cache, or a download where the hub is reachable. When none works the error says what
to download and where to put it. ``pretrained="random"`` builds a randomly initialised model from
its config; it exists for tests of the code path and is recorded in the encoder name, so a
knowledge base built with it can never be mixed with real weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kbengine.core.encoders.base import EncoderIdentity, l2_normalise, require
from kbengine.core.encoders.clip_patches import clip_patch_tokens
from kbengine.core.errors import WeightsNotFoundError

RANDOM = "random"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _open_clip() -> Any:
    return require("open_clip", "open_clip_torch", "open_clip encoder")


def cached_weights(model: str, pretrained: str, cache_dir: Path | None = None) -> Path | None:
    """The local weight file for (model, pretrained) if one is on this machine, else None."""
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:"))
        return next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if pretrained == RANDOM:
        return None
    if Path(pretrained).is_file():
        return Path(pretrained)
    open_clip = _open_clip()
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        return None
    hub = (cfg.get("hf_hub") or "").strip("/")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        for filename in WEIGHT_FILES:
            hit = try_to_load_from_cache(hub, filename, cache_dir=str(cache_dir) if cache_dir else None)
            if isinstance(hit, str):
                return Path(hit)
    url = cfg.get("url") or ""
    if url:
        local = (cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        if local.is_file():
            return local
    return None


def weights_available(model: str, pretrained: str, cache_dir: Path | None = None) -> bool:
    return cached_weights(model, pretrained, cache_dir) is not None


def _missing_weights_message(model: str, pretrained: str, cause: Exception) -> str:
    open_clip = _open_clip()
    cfg = open_clip.get_pretrained_cfg(model, pretrained) if not model.startswith("local-dir:") else {}
    hub = (cfg.get("hf_hub") or "").strip("/") if cfg else ""
    where = [
        f"- a local file: set KBENGINE_CLIP_PRETRAINED=/path/to/weights (for {model}), or",
        "- a folder with open_clip_config.json and open_clip_model.safetensors: "
        "KBENGINE_CLIP_MODEL=local-dir:/path/to/folder, or",
    ]
    if hub:
        where.append(
            f"- the Hugging Face cache: on a machine with internet run "
            f"`huggingface-cli download {hub}` and copy ~/.cache/huggingface/hub here"
        )
    return (
        f"open_clip weights for {model} ({pretrained}) are not on this machine and could not be "
        f"downloaded ({type(cause).__name__}: {cause}). Provide them as\n"
        + "\n".join(where)
        + "\nor use the offline packaged encoder: --encoder packaged (KBENGINE_ENCODER=packaged)."
    )


class OpenClipEncoder:
    """CLIP image/text embeddings and multi-layer patch tokens through ``ln_post`` and ``proj``."""

    joint_space = True
    has_text = True

    def __init__(
        self,
        model: str = "ViT-L-14-336",
        pretrained: str = "openai",
        device: str = "cpu",
        cache_dir: Path | None = None,
        vv_blocks: int | None = None,
    ) -> None:
        open_clip = _open_clip()
        self.device = torch.device(device)
        local = cached_weights(model, pretrained, cache_dir)
        if model.startswith("local-dir:"):
            if local is None:
                raise WeightsNotFoundError(
                    f"{model.removeprefix('local-dir:')} holds none of {', '.join(WEIGHT_FILES)}"
                )
            kwargs: dict[str, Any] = {}
        elif pretrained == RANDOM:
            kwargs = {"pretrained": None}
        else:
            kwargs = {"pretrained": str(local) if local is not None and local.is_file() else pretrained}
        try:
            clip, _, preprocess = open_clip.create_model_and_transforms(
                model, device=self.device, cache_dir=str(cache_dir) if cache_dir else None, **kwargs
            )
        except (OSError, RuntimeError, ValueError) as e:
            if pretrained == RANDOM or model.startswith("local-dir:"):
                raise
            raise WeightsNotFoundError(_missing_weights_message(model, pretrained, e)) from e
        self.model = clip.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model)
        with torch.inference_mode():
            dim = int(self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])
        source = "local-dir" if model.startswith("local-dir:") else Path(pretrained).name
        self.identity = EncoderIdentity(
            backend="open_clip", model=model, weights=source, image_dim=dim, text_dim=dim, joint_space=True
        )
        n = len(self.model.visual.transformer.resblocks)
        self.patch_layers = tuple(sorted({max(0, n * q // 4 - 1) for q in (1, 2, 3, 4)}))
        self.vv_blocks = n // 2 if vv_blocks is None else max(0, min(vv_blocks, n))
        """Blocks with V-V attention for ``local=True`` (default: the last half, as CLIP Surgery)."""

    def _batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.identity.image_dim), np.float32)
        return l2_normalise(self.model.encode_image(self._batch(images)).float().cpu().numpy())

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.image_dim), np.float32)
        tokens = self.tokenizer(list(texts)).to(self.device)
        return l2_normalise(self.model.encode_text(tokens).float().cpu().numpy())

    @torch.inference_mode()
    def patch_features(
        self, images: Sequence[Image.Image], layers: Sequence[int] | None = None, local: bool = False
    ) -> dict[int, np.ndarray]:
        """Patch tokens after the given blocks (0-based), through ``ln_post`` and ``proj``, as
        (N, H, W, D); with ``local``, blocks in the last ``vv_blocks`` give V-V attention tokens."""
        chosen = list(layers) if layers is not None else list(self.patch_layers)
        tokens, _ = clip_patch_tokens(
            self.model.visual, self._batch(images), chosen, vv_blocks=self.vv_blocks if local else 0
        )
        return {layer: t.float().cpu().numpy() for layer, t in tokens.items()}

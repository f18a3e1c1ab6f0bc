"""The ``dinov2`` backend: DINOv2 through transformers (``Dinov2Model``), image-only.

Weights come from ``KBENGINE_DINO_MODEL``: a local transformers folder (``config.json`` and
``model.safetensors``, as ``save_pretrained`` or ``huggingface-cli download --local-dir`` write
it), or a hub id (``facebook/dinov2-base``) that is already in the local Hugging Face cache. Nothing
is ever downloaded; when the weights are not here the error says what to download and where to put
it. Checkpoints with registers (``dinov2_with_registers``) load too; their register tokens are
dropped with the class token.

Choices:

* Input: every image is resized whole (no crop, bicubic) to ``image_size`` square, rounded to the
  nearest multiple of the patch size (14 px) so the patch grid covers it exactly; the position
  embeddings are interpolated by the model for any grid. Pixels are normalised with the folder's
  image processor mean/std (``preprocessor_config.json``), ImageNet's when it has none.
* Global key: the class token after the final layernorm (``pooler_output``), L2-normalised.
* Patch features: the tokens after block ``i`` (0-based; ``hidden_states[i + 1]``), through the
  final layernorm as DINOv2's own ``get_intermediate_layers(norm=True)`` does for dense tasks, so
  the last block's are exactly ``last_hidden_state[:, 1 + registers:]``. Default blocks: the
  quarter points, as for open_clip. ``local`` is ignored: DINOv2's tokens are already local.
* Identity: ``model`` is the folder or hub id as given, ``weights`` a fingerprint of the weights
  and preprocessing plus the input size (``<12 hex>-224px``): a knowledge base reopens with the
  same weights wherever they lie, and never mixes resolutions in one bank or space.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kbengine.core.encoders.base import EncoderIdentity, l2_normalise, require
from kbengine.core.errors import InvalidInputError, WeightsNotFoundError

IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)
MODEL_TYPES = ("dinov2", "dinov2_with_registers")
FINGERPRINT_SAMPLES = 4096
"""Values per weight tensor the fingerprint reads (evenly strided): cheap at any model size."""
_SIZE = re.compile(r"-(\d+)px$")


def _where() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return (
        "On a machine with internet run `huggingface-cli download facebook/dinov2-base --local-dir dinov2-base` "
        "(or dinov2-small / -large / -giant), copy the folder here and set KBENGINE_DINO_MODEL=/path/to/dinov2-base; "
        f"or copy that machine's ~/.cache/huggingface/hub to {HF_HUB_CACHE} here and set "
        "KBENGINE_DINO_MODEL=facebook/dinov2-base (hub ids are read from the local cache only, never downloaded). "
        "Or use the offline packaged encoder: --encoder packaged (KBENGINE_ENCODER=packaged)."
    )


def download_hint(model: str | None) -> str:
    """What is missing, what to download and where to put it."""
    from huggingface_hub.constants import HF_HUB_CACHE

    if not model:
        return f"the dinov2 encoder needs weights and KBENGINE_DINO_MODEL is not set. {_where()}"
    return (
        f"the DINOv2 weights {model!r} are not on this machine: neither a model folder here nor a model in the "
        f"local Hugging Face cache ({HF_HUB_CACHE}). {_where()}"
    )


def stored_image_size(weights: str) -> int | None:
    """The input size recorded in an identity's ``weights`` (``...-224px``), None if absent."""
    found = _SIZE.search(weights)
    return int(found.group(1)) if found else None


def _transformers() -> Any:
    transformers = require("transformers", "transformers", "dinov2 encoder")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return transformers


def _load(model: str) -> tuple[Any, Any]:
    """(model, image processor or None) from a local folder or the local HF cache, never the hub."""
    transformers = _transformers()
    folder = Path(model).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(f"{folder} is not a transformers model folder (no config.json). {_where()}")
        source = str(folder)
    else:
        source = model
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightsNotFoundError(download_hint(model)) from e  # --debug shows transformers' own words
    if config.model_type not in MODEL_TYPES:
        raise InvalidInputError(
            f"{model} holds a {config.model_type!r} model, not DINOv2 ({' or '.join(MODEL_TYPES)}); "
            "point KBENGINE_DINO_MODEL at a DINOv2 folder"
        )
    cls = transformers.Dinov2Model if config.model_type == "dinov2" else transformers.Dinov2WithRegistersModel
    try:
        net = cls.from_pretrained(source, local_files_only=True)
    except OSError as e:
        raise WeightsNotFoundError(f"{model}: no model weights could be read ({e}). {_where()}") from e
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        processor = None  # no preprocessor_config.json: ImageNet mean/std
    return net, processor


def _pixels(processor: Any) -> tuple[tuple[float, ...], tuple[float, ...], float, Image.Resampling]:
    """(mean, std, rescale factor, resampling) from the folder's image processor; ImageNet's
    statistics, 1/255 and bicubic (DINOv2's own) when it has none."""
    mean, std, rescale, resample = IMAGENET_MEAN, IMAGENET_STD, 1 / 255, Image.Resampling.BICUBIC
    if processor is None:
        return mean, std, rescale, resample
    if getattr(processor, "do_normalize", True):
        mean = tuple(float(m) for m in processor.image_mean)
        std = tuple(float(s) for s in processor.image_std)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0
    if getattr(processor, "resample", None) is not None:
        resample = Image.Resampling(int(processor.resample))
    return mean, std, rescale, resample


def _fingerprint(net: Any, mean: Sequence[float], std: Sequence[float], rescale: float) -> str:
    """12 hex digits naming the weights and the normalisation: the architecture fields that change
    the output, then every tensor's name, shape and an evenly strided sample of its values."""
    config = net.config
    digest = hashlib.sha256()
    head = {
        "model_type": config.model_type,
        "patch_size": config.patch_size,
        "registers": getattr(config, "num_register_tokens", 0),
        "act": str(config.hidden_act),
        "eps": float(config.layer_norm_eps),
        "mean": [round(float(m), 6) for m in mean],
        "std": [round(float(s), 6) for s in std],
        "rescale": round(float(rescale), 9),
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for name, tensor in sorted(net.state_dict().items()):
        if name.endswith("mask_token"):
            continue  # unused at inference; initialised at random when a checkpoint lacks it
        flat = tensor.detach().reshape(-1).float().cpu()
        step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(flat[::step].numpy().tobytes())
    return digest.hexdigest()[:12]


class Dinov2Encoder:
    """DINOv2 class-token embeddings and multi-layer patch tokens; no text."""

    joint_space = False
    has_text = False

    def __init__(self, model: str | None, image_size: int = 224, device: str = "cpu") -> None:
        if not model:
            raise WeightsNotFoundError(download_hint(None))
        net, processor = _load(model)
        self.device = torch.device(device)
        self.model = net.eval().to(self.device)
        config = net.config
        self.patch_size = int(config.patch_size)
        self.registers = int(getattr(config, "num_register_tokens", 0))
        self.image_size = max(self.patch_size, round(image_size / self.patch_size) * self.patch_size)
        """The side images are resized to: the requested size on the patch grid."""
        self.mean, self.std, self.rescale, self.resample = _pixels(processor)
        self.depth = int(config.num_hidden_layers)
        self.patch_layers = tuple(sorted({max(0, self.depth * q // 4 - 1) for q in (1, 2, 3, 4)}))
        weights = f"{_fingerprint(net, self.mean, self.std, self.rescale)}-{self.image_size}px"
        self.identity = EncoderIdentity(
            backend="dinov2",
            model=model,
            weights=weights,
            image_dim=int(config.hidden_size),
            text_dim=None,
            joint_space=False,
        )

    def _batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize whole to ``image_size`` square, rescale and normalise (N, 3, S, S)."""
        size = (self.image_size, self.image_size)
        arrays = [np.asarray(im.convert("RGB").resize(size, self.resample), dtype=np.float32) for im in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) * self.rescale
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((batch - mean) / std).to(self.device)

    def _check(self, layers: Sequence[int]) -> list[int]:
        chosen = list(layers)
        bad = [i for i in chosen if not 0 <= i < self.depth]
        if bad:
            raise InvalidInputError(f"DINOv2 has blocks 0..{self.depth - 1}; no block {bad[0]}")
        return chosen

    def _forward(
        self, images: Sequence[Image.Image], layers: Sequence[int]
    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        grid, dim = self.image_size // self.patch_size, self.identity.image_dim
        if not images:
            return np.zeros((0, dim), np.float32), {i: np.zeros((0, grid, grid, dim), np.float32) for i in layers}
        out = self.model(pixel_values=self._batch(images), output_hidden_states=True)
        skip = 1 + self.registers
        patches = {}
        for i in layers:
            tokens = self.model.layernorm(out.hidden_states[i + 1][:, skip:])
            patches[i] = tokens.reshape(len(images), grid, grid, -1).float().cpu().numpy()
        return l2_normalise(out.pooler_output.float().cpu().numpy()), patches

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._forward(images, [])[0]

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image], layers: Sequence[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The global embeddings and the patch features at ``layers``, from one forward pass."""
        return self._forward(images, self._check(layers))

    @torch.inference_mode()
    def patch_features(
        self, images: Sequence[Image.Image], layers: Sequence[int] | None = None, local: bool = False
    ) -> dict[int, np.ndarray]:
        """Per block (0-based), (N, S/14, S/14, hidden) tokens through the final layernorm."""
        chosen = self._check(layers if layers is not None else self.patch_layers)
        return self._forward(images, chosen)[1]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise InvalidInputError(
            "the dinov2 encoder has no text embeddings (DINOv2 is image-only): query with images, or use an "
            "encoder with text (--encoder packaged or open_clip)"
        )

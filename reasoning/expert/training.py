"""``kbengine train-prompts``: learnable prompts with HSP, trained on an MVTec-layout dataset.

Model: object-agnostic learnable contexts for "normal"/"abnormal" text prompts (``PromptLearner``,
as AnomalyCLIP) whose deep prompts at text blocks ``stages`` are the learner's own tokens plus the
hierarchical sparse prompts of the query (``SparsePrompt``, eqs. 7-9): the query's global image
embedding, projected, sparse-coded by ISTA over a learnable dictionary and decoded to tokens.
CLIP stays frozen; only the learner and the HSP module train.

Loss per image (paper / AnomalyCLIP): focal + dice between the abnormal-probability map (softmax of
100 * cosine of local patch tokens with the two text embeddings, averaged over patch layers, at
patch resolution) and the downsampled ground-truth mask, plus cross-entropy of the global
embedding's two logits against the image label. Train on one dataset, evaluate on another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from kbengine.core.datasets import DatasetImage, mvtec_images
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import load_image
from reasoning.expert.hsp import SparsePrompt
from reasoning.expert.prompts_learned import PromptLearner, text_features_from_tokens
from reasoning.expert.zero_shot import TextPair, require_joint

FORMAT = "kbengine-hsp-prompts"


class PromptModel(nn.Module):
    """The learnable prompt learner and the HSP module over one frozen CLIP model."""

    def __init__(self, encoder: Any, n_ctx: int = 8, stages: Sequence[int] | None = None, deep_len: int = 4) -> None:
        super().__init__()
        clip = encoder.model
        blocks = len(clip.transformer.resblocks)
        self.stages = tuple(stages) if stages is not None else tuple(range(1, min(4, blocks)))
        self.learner = PromptLearner(
            encoder.model, encoder.tokenizer, n_ctx=n_ctx, deep_layers=self.stages, deep_len=deep_len
        )
        self.hsp = SparsePrompt(
            feature_dim=encoder.identity.image_dim,
            prompt_dim=self.learner.width,
            n_prompts=deep_len,
            stages=self.stages,
        )
        self.config = {"n_ctx": n_ctx, "stages": list(self.stages), "deep_len": deep_len}

    def text_features(self, image_features: Tensor) -> Tensor:
        """(B, 2, D) unit text features per image: row 0 normal, row 1 abnormal."""
        b = image_features.shape[0]
        sparse = self.hsp(image_features.float())
        tokens = self.learner.token_embeddings()  # (2, L, w)
        ids = self.learner.token_ids
        deep = {s: self.learner.deep_prompts()[s][None] + sparse[s] for s in self.stages}  # (B, n, w)
        batched_tokens = tokens[None].expand(b, -1, -1, -1).reshape(2 * b, *tokens.shape[1:])
        batched_ids = ids[None].expand(b, -1, -1).reshape(2 * b, -1)
        batched_deep = {s: v[:, None].expand(-1, 2, -1, -1).reshape(2 * b, *v.shape[1:]) for s, v in deep.items()}
        feats = text_features_from_tokens(
            self.learner.clip_model,
            batched_tokens,
            batched_ids,
            deep=batched_deep,
            deep_start=self.learner.ctx_start,
            normalize=True,
        )
        return feats.reshape(b, 2, -1)

    def save(self, path: Path, model_name: str) -> Path:
        from safetensors.torch import save_file

        tensors = {f"learner.{k}": v.detach().cpu().contiguous() for k, v in self.learner.state_dict().items()}
        tensors |= {f"hsp.{k}": v.detach().cpu().contiguous() for k, v in self.hsp.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            tensors, str(path), metadata={"format": FORMAT, "model": model_name, "config": json.dumps(self.config)}
        )
        return path

    @classmethod
    def load(cls, encoder: Any, path: Path) -> PromptModel:
        from safetensors import safe_open
        from safetensors.torch import load_file

        if not path.is_file():
            raise InvalidInputError(f"no prompt file at {path}; train one with: kbengine train-prompts DATASET")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception as e:  # safetensors raises its own error types for foreign files
            raise InvalidInputError(f"{path} is not a safetensors prompt file ({e})") from e
        if meta.get("format") != FORMAT:
            raise InvalidInputError(f"{path} is not a kbengine prompt file (written by kbengine train-prompts)")
        if meta.get("model") != encoder.identity.name:
            raise InvalidInputError(
                f"{path} was trained for {meta.get('model')}, not for this knowledge base's {encoder.identity.name}"
            )
        config = json.loads(meta["config"])
        model = cls(encoder, n_ctx=config["n_ctx"], stages=config["stages"], deep_len=config["deep_len"])
        saved = load_file(str(path))
        model.learner.load_state_dict({k[8:]: v for k, v in saved.items() if k.startswith("learner.")})
        model.hsp.load_state_dict({k[4:]: v for k, v in saved.items() if k.startswith("hsp.")})
        return model.eval()


@dataclass
class LearnedPrompts:
    """Learned prompts for detect: text features per query image."""

    model: PromptModel

    def texts_for(self, image_feature: np.ndarray) -> TextPair:
        with torch.inference_mode():
            feats = self.model.text_features(torch.from_numpy(np.asarray(image_feature, np.float32))[None])[0]
        pair = feats.cpu().numpy()
        return TextPair(normal=pair[0], abnormal=pair[1], types={})


def load_learned_texts(encoder: Encoder, path: Path) -> LearnedPrompts:
    require_joint(encoder)
    return LearnedPrompts(PromptModel.load(encoder, path))


def focal_loss(prob: Tensor, target: Tensor, gamma: float = 2.0, eps: float = 1e-6) -> Tensor:
    p = prob.clamp(eps, 1 - eps)
    pt = torch.where(target > 0.5, p, 1 - p)
    return (-((1 - pt) ** gamma) * torch.log(pt)).mean()


def dice_loss(prob: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    inter = (prob * target).sum(dim=(-2, -1))
    return (1 - (2 * inter + eps) / (prob.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1)) + eps)).mean()


def _mask(item: DatasetImage, size: tuple[int, int]) -> np.ndarray:
    if item.mask is None:
        return np.zeros(size[::-1], np.float32)
    mask = Image.open(item.mask).convert("L").resize(size, Image.Resampling.NEAREST)
    return (np.asarray(mask) > 127).astype(np.float32)


def train_prompts(
    encoder: Any,
    dataset: Path,
    out: Path,
    *,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 4,
    limit: int | None = None,
    seed: int = 0,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Train on the test split of ``dataset`` (images with masks, and normal ones); save to ``out``."""
    require_joint(encoder)
    items = [i for i in mvtec_images(dataset, split="test") if i.is_normal or i.mask is not None]
    if limit is not None:
        items = items[:limit]
    if not any(not i.is_normal for i in items):
        raise InvalidInputError(f"{dataset} has no defective test images with ground-truth masks to train on")
    torch.manual_seed(seed)
    model = PromptModel(encoder)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    layers = list(encoder.patch_layers)
    rng = np.random.default_rng(seed)
    history: list[float] = []
    for epoch in range(epochs):
        order = rng.permutation(len(items))
        losses = []
        for start in range(0, len(order), batch_size):
            batch = [items[i] for i in order[start : start + batch_size]]
            images = [load_image(b.path) for b in batch]
            with torch.no_grad():
                patches = encoder.patch_features(images, layers, local=True)
                global_keys = torch.from_numpy(encoder.embed_images(images))
            texts = model.text_features(global_keys)  # (B, 2, D)
            grid = patches[layers[0]].shape[1:3]
            target = torch.from_numpy(np.stack([_mask(b, (grid[1], grid[0])) for b in batch]))
            labels = torch.tensor([0 if b.is_normal else 1 for b in batch])
            loss = F.cross_entropy(100.0 * torch.einsum("bd,bkd->bk", global_keys, texts), labels)
            for layer in layers:
                tokens = F.normalize(torch.from_numpy(patches[layer]), dim=-1)  # (B, h, w, D)
                logits = 100.0 * torch.einsum("bhwd,bkd->bkhw", tokens, texts)
                prob = logits.softmax(dim=1)[:, 1]
                loss = loss + (focal_loss(prob, target) + dice_loss(prob, target)) / len(layers)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)))
        log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} over {len(items)} images")
    model.save(out, encoder.identity.name)
    return {"out": str(out), "epochs": epochs, "images": len(items), "loss": history}

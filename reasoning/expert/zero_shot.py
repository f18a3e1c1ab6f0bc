"""Zero-shot evidence from a joint image-text encoder (CLIP): prompt ensembles -> text
embeddings -> the eq. 2 map over several layers' local patch tokens, and an image score.

Text side. Normal: the mean of the domain's normal-state prompts over all templates
("a photo of a flawless bottle.", ...). Abnormal: the mean of the abnormal-state ensemble and,
when the knowledge base holds defect types for the category, of the type-level prompts ("a photo
of a bottle with broken_large defect."), so the map looks for the damage the plant has
documented. Learned prompts (``PromptLearner``, object-agnostic) replace both when given.

Image side. Local patch tokens (V-V attention in the last blocks) of the encoder's patch layers,
each through ``ln_post`` and ``proj``; the eq. 2 map per layer, averaged over layers. The image
score is the mean of the global embedding's abnormal probability (softmax at CLIP's temperature
100) and the map's top-1% mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from kbengine.core.encoders.base import Encoder, l2_normalise
from kbengine.core.errors import InvalidInputError
from reasoning.expert.anomaly_map import image_score, zero_shot_map
from reasoning.expert.domains import Domain


@dataclass(frozen=True)
class TextPair:
    normal: np.ndarray
    abnormal: np.ndarray
    types: dict[str, np.ndarray]
    """Per defect type, its type-level prompt embedding (for zero-shot type guesses)."""


def require_joint(encoder: Encoder) -> None:
    if not (encoder.joint_space and encoder.has_text):
        raise InvalidInputError(
            f"zero-shot detection needs an encoder with a joint image-text space (CLIP); "
            f"{encoder.identity.name} has none. Use normal references (--mode references) or --encoder open_clip"
        )


def _mean_embedding(encoder: Encoder, prompts: list[str]) -> np.ndarray:
    return l2_normalise(encoder.embed_texts(prompts).mean(axis=0, keepdims=True))[0]


def text_pair(encoder: Encoder, domain: Domain, category: str, defect_types: Sequence[str]) -> TextPair:
    require_joint(encoder)
    normal = _mean_embedding(encoder, domain.state_prompts(category, abnormal=False))
    abnormal = _mean_embedding(encoder, domain.state_prompts(category, abnormal=True))
    types = {t: _mean_embedding(encoder, domain.type_prompts(category, t)) for t in defect_types}
    if types:
        abnormal = l2_normalise(((abnormal + np.mean(list(types.values()), axis=0)) / 2)[None])[0]
    return TextPair(normal=normal, abnormal=abnormal, types=types)


def zero_shot(
    encoder: Encoder, image: Image.Image, global_key: np.ndarray, texts: TextPair, form: str = "ratio"
) -> tuple[np.ndarray, float]:
    """(h, w) map in [0, 1] and the image score; ``global_key`` is the image's global embedding."""
    layers = encoder.patch_layers
    tokens = encoder.patch_features([image], layers, local=True)
    maps = [zero_shot_map(tokens[layer][0], texts.normal, texts.abnormal, form) for layer in layers]
    grid = np.mean(np.stack(maps), axis=0)
    logits = 100.0 * np.array([global_key @ texts.normal, global_key @ texts.abnormal])
    p_abnormal = float(1.0 / (1.0 + np.exp(logits[0] - logits[1])))
    return grid, (p_abnormal + image_score(grid)) / 2

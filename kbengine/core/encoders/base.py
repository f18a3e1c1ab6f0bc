"""The encoder interface: image embeddings, text embeddings where the backend has them, and
multi-layer patch features (the AD Expert's input)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image
from pydantic import BaseModel, computed_field, model_validator

from kbengine.core.errors import MissingDependencyError


class EncoderIdentity(BaseModel):
    """Stored with the collection: a knowledge base never mixes embedding spaces.

    ``backend`` is the registry name, ``model`` and ``weights`` what it loaded; ``name`` is the
    three joined (``open_clip:ViT-L-14-336@openai``), the string lock ids and caches are keyed by."""

    backend: str
    model: str
    weights: str
    image_dim: int
    text_dim: int | None
    joint_space: bool

    @model_validator(mode="before")
    @classmethod
    def _from_legacy_name(cls, data: Any) -> Any:
        """Collections written before the identity had fields stored only ``name``."""
        if isinstance(data, dict) and "backend" not in data and isinstance(data.get("name"), str):
            backend, _, rest = data["name"].partition(":")
            model, _, weights = rest.rpartition("@") if "@" in rest else (rest, "", "")
            data = {**data, "backend": backend, "model": model, "weights": weights}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def name(self) -> str:
        return f"{self.backend}:{self.model}" + (f"@{self.weights}" if self.weights else "")


@runtime_checkable
class Encoder(Protocol):
    identity: EncoderIdentity

    @property
    def has_text(self) -> bool: ...

    @property
    def joint_space(self) -> bool:
        """True when image and text embeddings share one space (CLIP): image->text scoring works."""
        ...

    @property
    def patch_layers(self) -> tuple[int, ...]:
        """Layer (block) indices whose patch features :meth:`patch_features` returns by default."""
        ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, image_dim) float32, L2-normalised."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, text_dim) float32, L2-normalised. Raises when ``has_text`` is False."""
        ...

    def patch_features(
        self, images: Sequence[Image.Image], layers: Sequence[int] | None = None, local: bool = False
    ) -> dict[int, np.ndarray]:
        """Per layer, (N, H, W, C) float32 patch features. ``local=True`` asks for tokens that keep
        local semantics (a ViT's V-V attention in its last blocks; a CNN's features already do)."""
        ...


@runtime_checkable
class OnePass(Protocol):
    """An encoder that gives the global embedding and patch features from one forward pass."""

    def encode(self, images: Sequence[Image.Image], layers: Sequence[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """(N, image_dim) unit global embeddings (as ``embed_images``) and, per layer, (N, H, W, C)
        patch features (as ``patch_features``)."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; zero rows stay zero instead of becoming NaN."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def require(module: str, package: str, what: str) -> Any:
    """Import ``module`` for ``what``, or say which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - dependencies of kbengine
        raise MissingDependencyError(f"the {what} needs '{package}'; install it with: pip install {package}") from e

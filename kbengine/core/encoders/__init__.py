"""Encoders behind one interface: a registry of backend name -> builder, and :func:`get_encoder`.

A builder takes the settings and the identity stored with the knowledge base (None for a new
one) and returns an :class:`Encoder`. ``register_encoder`` adds a backend without touching the
rest of the engine; nothing else asks which backend it has."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kbengine.core import threads as _threads  # first: sets OMP_WAIT_POLICY before torch loads
from kbengine.core.encoders.base import Encoder, EncoderIdentity, l2_normalise
from kbengine.core.errors import EncoderMismatchError, InvalidInputError
from kbengine.core.settings import Settings

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderIdentity",
    "get_encoder",
    "l2_normalise",
    "register_encoder",
    "resolve_backend",
]

Builder = Callable[[Settings, EncoderIdentity | None], Encoder]


def _packaged(settings: Settings, stored: EncoderIdentity | None) -> Encoder:
    """The EfficientNet-Lite variant and side the settings name (``packaged_model``,
    ``packaged_image_size``), else the knowledge base's own, else the defaults; a knowledge base from
    before the variants was built with Lite0 at 224 px."""
    from kbengine.core.encoders.packaged import DEFAULT_VARIANT, PackagedEncoder, side_of, variant_of

    own = variant_of(stored.model) if stored is not None and stored.backend == "packaged" else None
    variant = settings.packaged_model or own or DEFAULT_VARIANT
    own_side = side_of(variant, stored.weights) if stored is not None and own == variant else None
    return PackagedEncoder(device=settings.device, variant=variant, image_size=settings.packaged_image_size or own_side)


def _open_clip(settings: Settings, stored: EncoderIdentity | None) -> Encoder:
    """open_clip with the settings' model and weights; an existing knowledge base opened with
    ``encoder=auto`` reuses the model (and random weights) it was built with."""
    from kbengine.core.encoders.openclip import RANDOM, OpenClipEncoder

    model, pretrained = settings.clip_model, settings.clip_pretrained
    if stored is not None and settings.encoder == "auto" and stored.backend == "open_clip":
        if stored.model != model and not stored.model.startswith("local-dir:"):
            model = stored.model
        if stored.weights == RANDOM:
            pretrained = RANDOM
    return OpenClipEncoder(
        model, pretrained, device=settings.device, cache_dir=settings.clip_cache_dir, vv_blocks=settings.clip_vv_blocks
    )


def _dinov2(settings: Settings, stored: EncoderIdentity | None) -> Encoder:
    """DINOv2 from ``dino_model``; a knowledge base built with it reopens with the folder or hub id
    it recorded when ``dino_model`` is not set, and with its input size under ``encoder=auto``
    unless ``dino_image_size`` is set. The same weights found at another path or hub id keep the
    stored identity (lock ids and caches are keyed by it)."""
    from kbengine.core.encoders.dinov2 import Dinov2Encoder, stored_image_size

    own = stored if stored is not None and stored.backend == "dinov2" else None
    model, size = settings.dino_model, settings.dino_image_size
    if own is not None:
        model = model or own.model
        if settings.encoder == "auto" and "dino_image_size" not in settings.model_fields_set:
            size = stored_image_size(own.weights) or size
    encoder = Dinov2Encoder(model, image_size=size, device=settings.device)
    if own is not None and own.weights == encoder.identity.weights and own.image_dim == encoder.identity.image_dim:
        encoder.identity = own
    return encoder


ENCODERS: dict[str, Builder] = {"packaged": _packaged, "open_clip": _open_clip, "dinov2": _dinov2}
"""Backend name -> builder."""


def register_encoder(name: str, builder: Builder) -> None:
    """Make ``KBENGINE_ENCODER=name`` build encoders with ``builder``."""
    ENCODERS[name] = builder


def resolve_backend(settings: Settings, stored: EncoderIdentity | None = None) -> str:
    """The backend to use: the explicit setting, else the knowledge base's own, else open_clip
    when its weights are on this machine, else packaged."""
    if settings.encoder != "auto":
        if settings.encoder not in ENCODERS:
            raise InvalidInputError(f"unknown encoder {settings.encoder!r}; choose one of {', '.join(ENCODERS)}")
        return settings.encoder
    if stored is not None:
        if stored.backend not in ENCODERS:
            raise InvalidInputError(
                f"this knowledge base was built with encoder backend {stored.backend!r}, which is not available "
                f"here (available: {', '.join(ENCODERS)})"
            )
        return stored.backend
    from kbengine.core.encoders.openclip import weights_available

    if weights_available(settings.clip_model, settings.clip_pretrained, settings.clip_cache_dir):
        return "open_clip"
    return "packaged"


def torch_threads(settings: Settings) -> int:
    """The thread policy (:mod:`kbengine.core.threads`): ``torch_threads`` when set, else this
    process's share of the machine's cores (every core when it runs alone or ``share_cores`` is
    off) divided by ``workers``, at least 1, so the kbengine processes and workers on one machine
    never oversubscribe its cores."""
    return _threads.threads_for(settings.torch_threads, settings.workers, settings.share_cores)


_CALLS = ("embed_images", "embed_texts", "patch_features", "encode")


def _fitted(settings: Settings, call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def fitted(*args: Any, **kwargs: Any) -> Any:
        _threads.fit(settings.torch_threads, settings.workers, settings.share_cores)
        return call(*args, **kwargs)

    return fitted


def get_encoder(settings: Settings, stored: EncoderIdentity | None = None) -> Encoder:
    """Build the encoder the settings ask for (under the thread policy, :func:`torch_threads`,
    re-fitted at the start of each of its calls); refuse one that does not match ``stored``."""
    _threads.fit(settings.torch_threads, settings.workers, settings.share_cores, force=True)
    encoder = ENCODERS[resolve_backend(settings, stored)](settings, stored)
    if stored is not None and stored != encoder.identity:
        raise EncoderMismatchError(
            f"this knowledge base was built with encoder {stored.name} (image {stored.image_dim}-d, "
            f"text {stored.text_dim}-d) but {encoder.identity.name} was asked for; open it with the "
            "same encoder (--encoder auto, with KBENGINE_PACKAGED_MODEL / _PACKAGED_IMAGE_SIZE / _DINO_MODEL unset or "
            "as it was built), or ingest into a new knowledge base"
        )
    for name in _CALLS:  # each call re-fits the calling thread's torch threads to the current share
        if callable(getattr(encoder, name, None)):
            setattr(encoder, name, _fitted(settings, getattr(encoder, name)))
    return encoder

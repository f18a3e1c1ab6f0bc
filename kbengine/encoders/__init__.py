"""Encoders behind one interface, chosen by name through :func:`get_encoder`."""

from __future__ import annotations

from kbengine.encoders.base import Encoder, EncoderIdentity, l2_normalise
from kbengine.errors import EncoderMismatchError, InvalidInputError
from kbengine.settings import Settings

__all__ = ["Encoder", "EncoderIdentity", "get_encoder", "l2_normalise", "resolve_backend"]

BACKENDS = ("packaged", "open_clip")


def resolve_backend(settings: Settings, stored: EncoderIdentity | None = None) -> str:
    """The backend to use: the explicit setting, else the knowledge base's own, else open_clip
    when its weights are on this machine, else packaged."""
    if settings.encoder != "auto":
        if settings.encoder not in BACKENDS:
            raise InvalidInputError(f"unknown encoder {settings.encoder!r}; choose one of {', '.join(BACKENDS)}")
        return settings.encoder
    if stored is not None:
        return stored.name.split(":", 1)[0]
    from kbengine.encoders.openclip import weights_available

    if weights_available(settings.clip_model, settings.clip_pretrained, settings.clip_cache_dir):
        return "open_clip"
    return "packaged"


def _stored_clip(settings: Settings, stored: EncoderIdentity | None) -> tuple[str, str]:
    """For an existing open_clip knowledge base opened with encoder=auto, reuse its model name."""
    model, pretrained = settings.clip_model, settings.clip_pretrained
    if stored is not None and settings.encoder == "auto" and stored.name.startswith("open_clip:"):
        name, _, source = stored.name.removeprefix("open_clip:").rpartition("@")
        if name != model and not name.startswith("local-dir:"):
            model = name
        if source == "random":
            pretrained = "random"
    return model, pretrained


def get_encoder(settings: Settings, stored: EncoderIdentity | None = None) -> Encoder:
    """Build the encoder the settings ask for; refuse one that does not match ``stored``."""
    backend = resolve_backend(settings, stored)
    encoder: Encoder
    if backend == "packaged":
        from kbengine.encoders.packaged import PackagedEncoder

        encoder = PackagedEncoder(device=settings.device)
    else:
        from kbengine.encoders.openclip import OpenClipEncoder

        model, pretrained = _stored_clip(settings, stored)
        encoder = OpenClipEncoder(
            model,
            pretrained,
            device=settings.device,
            cache_dir=settings.clip_cache_dir,
            vv_blocks=settings.clip_vv_blocks,
        )
    if stored is not None and stored != encoder.identity:
        raise EncoderMismatchError(
            f"this knowledge base was built with encoder {stored.name} (image {stored.image_dim}-d, "
            f"text {stored.text_dim}-d) but {encoder.identity.name} was asked for; open it with the "
            "same encoder (or --encoder auto), or ingest into a new knowledge base"
        )
    return encoder

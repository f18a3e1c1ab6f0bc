"""Multimodal LLM backends behind one interface, chosen by name (``KBENGINE_LLM`` / ``--llm``)."""

from __future__ import annotations

from kbengine.core.errors import InvalidInputError
from kbengine.core.settings import Settings
from reasoning.llm.base import LLM, Message, Part, Stream, redact_url

BACKENDS = ("none", "openai", "hf")


def get_llm(settings: Settings, name: str | None = None) -> LLM | None:
    """The configured backend; None for ``none`` (the grounded report needs no model)."""
    backend = name or settings.llm
    if backend == "none":
        return None
    if backend == "openai":
        from reasoning.llm.openai_backend import OpenAIChat

        return OpenAIChat.from_settings(settings)
    if backend == "hf":
        from reasoning.llm.hf_backend import HFChat

        return HFChat.from_settings(settings)
    raise InvalidInputError(f"unknown LLM backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LLM", "Message", "Part", "Stream", "get_llm", "redact_url"]

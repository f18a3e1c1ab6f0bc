"""One interface for multimodal LLMs: a chat of text and image parts in, text out (streamed).

Backends (chosen by name through ``reasoning.llm.get_llm``): ``openai`` (any OpenAI-compatible
chat-completions server), ``hf`` (transformers, a local Qwen2.5-VL-style model), ``none`` (the
deterministic grounded report; it does not take messages, see ``reasoning.report``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
Stream = Callable[[str], object]
"""Called with each new piece of text as it is generated."""


class Part(BaseModel):
    """A text or an image in a message. ``label`` names an image in the audit trail
    (e.g. "template: knowledge page", "query")."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Literal["text", "image"]
    text: str | None = None
    image: Image.Image | None = Field(None, exclude=True, repr=False)
    image_path: str | None = None
    label: str | None = None

    @classmethod
    def of_text(cls, text: str) -> Part:
        return cls(kind="text", text=text)

    @classmethod
    def of_image(cls, image: Image.Image, label: str, path: str | None = None) -> Part:
        return cls(kind="image", image=image, label=label, image_path=path)


class Message(BaseModel):
    role: Role
    parts: list[Part]


class LLM(Protocol):
    """A multimodal chat model."""

    name: str

    def generate(self, messages: list[Message], *, max_new_tokens: int = 512, stream: Stream | None = None) -> str:
        """The assistant's reply to ``messages``; ``stream`` receives the text as it arrives."""
        ...

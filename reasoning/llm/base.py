"""One interface for multimodal LLMs: a chat of text and image parts in, text out (streamed).

Backends (chosen by name through ``reasoning.llm.get_llm``): ``openai`` (any OpenAI-compatible
chat-completions server), ``hf`` (transformers, a local Qwen2.5-VL-style model), ``none`` (the
deterministic grounded report; it does not take messages, see ``reasoning.report``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, Protocol
from urllib.parse import unquote

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

_HIDDEN = "***"
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>[^/?#]*)@")
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|credential|signature|^sig$", re.IGNORECASE)

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


def redact_url(url: str) -> str:
    """``url`` fit to show in a message or a result: credentials (``user:pass@``) and the values of query
    parameters named like a key, token, secret, password or auth become ``***``."""
    return url_secrets(url)[0]


def url_secrets(url: str) -> tuple[str, list[str]]:
    """(``redact_url(url)``, the secrets it hides), so that text quoting them (a server's echo, an
    exception) can be cleaned too. Works on any string: no parsing that could fail on a bad URL."""
    secrets: list[str] = []
    match = _USERINFO.match(url)
    if match and match["userinfo"]:
        userinfo = match["userinfo"]
        secrets += [userinfo, userinfo.partition(":")[2]]
        url = f"{match['head'] or ''}{_HIDDEN}@{url[match.end() :]}"
    head, mark, rest = url.partition("?")
    if not mark:
        return url, _distinct(secrets)
    query, hash_mark, fragment = rest.partition("#")
    fields = []
    for field in query.split("&"):
        name, equals, value = field.partition("=")
        if equals and value and _SECRET_NAME.search(unquote(name)):
            secrets += [value, unquote(value)]
            field = f"{name}={_HIDDEN}"
        fields.append(field)
    return f"{head}?{'&'.join(fields)}{hash_mark}{fragment}", _distinct(secrets)


def _distinct(secrets: list[str]) -> list[str]:
    """Non-empty, longest first (so that a secret is hidden before a part of it)."""
    return sorted({s for s in secrets if s}, key=len, reverse=True)

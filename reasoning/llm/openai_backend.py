"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama, OpenAI).

Messages go out as ``{"role", "content": [parts]}`` with images as PNG data URLs, in part order.
Every failure is an :class:`~kbengine.core.errors.LLMError` whose message says what to do; 5xx replies,
timeouts and connection errors are retried with exponential backoff.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
from PIL import Image

from kbengine.core.errors import LLMError
from reasoning.llm.base import Message, Part, Stream

if TYPE_CHECKING:
    from kbengine.core.settings import Settings

_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}
_SNIPPET = 300


class _Retryable(Exception):
    """A failure worth another attempt; ``final`` is the LLMError to raise when attempts run out."""

    def __init__(self, final: LLMError) -> None:
        super().__init__(str(final))
        self.final = final


class OpenAIChat:
    """A multimodal chat model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        temperature: float = 0.0,
    ) -> None:
        if not model:
            raise LLMError("give the model name: --model NAME or KBENGINE_LLM_MODEL")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.temperature = temperature
        self.name = f"openai:{model}@{self.base_url}"

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIChat:
        """Build from ``llm_url``, ``llm_model``, ``llm_api_key``, ``llm_timeout`` and ``llm_retries``."""
        if not settings.llm_model:
            raise LLMError("give the model name: --model NAME or KBENGINE_LLM_MODEL")
        return cls(
            settings.llm_url,
            settings.llm_model,
            api_key=settings.llm_api_key,
            timeout=settings.llm_timeout,
            retries=settings.llm_retries,
        )

    # ------------------------------------------------------------------ public

    def generate(self, messages: list[Message], *, max_new_tokens: int = 512, stream: Stream | None = None) -> str:
        """The assistant's reply to ``messages``; with ``stream``, the reply is streamed (SSE) piece by piece."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages),
            "max_tokens": max_new_tokens,
            "temperature": self.temperature,
            "stream": stream is not None,
        }
        attempts = self.retries + 1
        with httpx.Client(timeout=self.timeout, headers=self._headers()) as client:
            for attempt in range(attempts):
                try:
                    if stream is None:
                        return self._post(client, body)
                    return self._post_stream(client, body, stream)
                except _Retryable as failure:
                    if attempt + 1 >= attempts:
                        tries = f" (tried {attempts} times)" if attempts > 1 else ""
                        raise LLMError(f"{failure.final}{tries}") from failure.final.__cause__
                    time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ requests

    @property
    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _post(self, client: httpx.Client, body: dict[str, Any]) -> str:
        try:
            response = client.post(self._url, json=body)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            self._transport_error(exc)
        if response.status_code >= 400:
            self._http_error(client, response.status_code, response.text)
        try:
            data = response.json()
        except ValueError as exc:
            raise LLMError(
                f"the LLM server at {self._url} sent a reply that is not JSON ({_snippet(response.text)!r}): "
                "is --llm-url an OpenAI-compatible endpoint (it usually ends in /v1)?"
            ) from exc
        return self._content(data)

    def _post_stream(self, client: httpx.Client, body: dict[str, Any], stream: Stream) -> str:
        pieces: list[str] = []
        try:
            with client.stream("POST", self._url, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    self._http_error(client, response.status_code, response.text)
                for piece in self._sse_pieces(response.iter_lines()):
                    pieces.append(piece)
                    stream(piece)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if pieces:  # text already went out: another attempt would repeat it
                raise LLMError(
                    f"the LLM server at {self._url} broke off the streamed reply ({type(exc).__name__}: {exc}): "
                    "try again, or raise KBENGINE_LLM_TIMEOUT if it is slow"
                ) from exc
            self._transport_error(exc)
        text = "".join(pieces)
        if not text:
            raise LLMError(
                f"the server replied without content (model {self.model!r} at {self._url}, streamed): "
                "check that the model serves chat completions and that max_new_tokens is not too small"
            )
        return text

    def _sse_pieces(self, lines: Iterator[str]) -> Iterator[str]:
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith(":") or not line.startswith("data:"):
                continue
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                return
            try:
                chunk = json.loads(payload)
            except ValueError as exc:
                raise LLMError(
                    f"the LLM server at {self._url} streamed a chunk that is not JSON ({_snippet(payload)!r}): "
                    "is --llm-url an OpenAI-compatible endpoint?"
                ) from exc
            if isinstance(chunk, dict) and chunk.get("error"):
                raise LLMError(f"the LLM server at {self._url} failed mid-stream: {_error_message(chunk)}")
            try:
                content = chunk["choices"][0].get("delta", {}).get("content") if chunk.get("choices") else None
            except (AttributeError, TypeError, KeyError, IndexError) as exc:
                raise LLMError(
                    f"the LLM server at {self._url} streamed a chunk without choices ({_snippet(payload)!r}): "
                    "is --llm-url an OpenAI-compatible endpoint?"
                ) from exc
            if isinstance(content, str) and content:
                yield content

    def _content(self, data: Any) -> str:
        content: Any = None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content:
            raise LLMError(
                f"the server replied without content (model {self.model!r} at {self._url}): "
                f"{_snippet(json.dumps(data) if not isinstance(data, str) else data)!r}; check that the model "
                "serves chat completions and that max_new_tokens is not too small"
            )
        return content

    # ------------------------------------------------------------------ errors

    def _transport_error(self, exc: httpx.HTTPError | httpx.InvalidURL) -> NoReturn:
        if isinstance(exc, httpx.TimeoutException):
            raise _Retryable(
                _chain(
                    LLMError(
                        f"the LLM server at {self._url} did not answer within the timeout of {self.timeout:g} s "
                        f"({type(exc).__name__}): raise KBENGINE_LLM_TIMEOUT, ask for fewer "
                        "tokens, or check that the server is not overloaded"
                    ),
                    exc,
                )
            )
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            raise LLMError(
                f"the LLM URL {self.base_url!r} is not valid ({exc}): give a full URL such as "
                "http://localhost:8000/v1 with --llm-url or KBENGINE_LLM_URL"
            ) from exc
        if isinstance(exc, httpx.TransportError):
            raise _Retryable(
                _chain(
                    LLMError(
                        f"cannot reach the LLM server at {self.base_url} ({type(exc).__name__}: {exc}). "
                        "Is it running? Check --llm-url (or KBENGINE_LLM_URL)."
                    ),
                    exc,
                )
            )
        raise LLMError(f"the request to the LLM server at {self._url} failed: {exc}") from exc

    def _http_error(self, client: httpx.Client, status: int, text: str) -> NoReturn:
        message = _error_message(text)
        if status >= 500:
            raise _Retryable(
                LLMError(
                    f"the LLM server at {self._url} failed with HTTP {status}: {message}; "
                    "check the server's log (it may be out of memory or still loading the model)"
                )
            )
        if status in (401, 403):
            raise LLMError(
                f"the LLM server at {self._url} refused the request (HTTP {status}: {message}): "
                "check the API key (set KBENGINE_LLM_API_KEY)"
            )
        if status == 404:
            models = self._list_models(client)
            listing = (
                f" The server offers: {', '.join(models)}."
                if models
                else f" Could not list the models ({self.base_url}/models did not answer with a list)."
            )
            route = (
                ""
                if self.model.lower() in message.lower() or "model" in message.lower()
                else f" If the model is right, check that --llm-url ({self.base_url}) is the API root (often .../v1)."
            )
            raise LLMError(
                f"the LLM server at {self._url} answered HTTP 404 ({message}): the model name {self.model!r} may be "
                f"wrong; give one the server serves with --model NAME or KBENGINE_LLM_MODEL.{listing}{route}"
            )
        raise LLMError(
            f"the LLM server at {self._url} rejected the request with HTTP {status}: {message} "
            "(fix what the server names: e.g. a smaller KBENGINE_LLM_MAX_NEW_TOKENS, or a model that accepts images)"
        )

    def _list_models(self, client: httpx.Client) -> list[str]:
        try:
            response = client.get(f"{self.base_url}/models", timeout=min(self.timeout, 10.0))
            response.raise_for_status()
            data = response.json()
            return [str(m["id"]) for m in data["data"] if isinstance(m, dict) and "id" in m]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return []


# ---------------------------------------------------------------------- conversion


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our messages in the chat-completions format, parts kept in order (images as PNG data URLs)."""
    return [{"role": m.role, "content": [_part(p) for p in m.parts]} for m in messages]


def _part(part: Part) -> dict[str, Any]:
    if part.kind == "text":
        return {"type": "text", "text": part.text or ""}
    return {"type": "image_url", "image_url": {"url": png_data_url(_image_of(part))}}


def _image_of(part: Part) -> Image.Image:
    if part.image is not None:
        return part.image
    name = part.label or "image"
    if not part.image_path:
        raise LLMError(f"the image part {name!r} has neither an image nor an image_path: give one of them")
    try:
        with Image.open(part.image_path) as img:
            img.load()
            return img
    except (OSError, ValueError) as exc:
        raise LLMError(f"cannot read the image {part.image_path} (part {name!r}): {exc}; check the file") from exc


def png_data_url(image: Image.Image) -> str:
    """``data:image/png;base64,...`` of ``image``."""
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------- helpers


def _chain(error: LLMError, cause: BaseException) -> LLMError:
    error.__cause__ = cause
    return error


def _snippet(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"


def _error_message(body: Any) -> str:
    """The server's own error message from an OpenAI-style ``{"error": {"message": ...}}`` body, else the body."""
    data = body
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except ValueError:
            return _snippet(body) or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message") or error
        if isinstance(error, str) and error:
            return _snippet(error)
        if error is not None:
            return _snippet(json.dumps(error))
    return _snippet(json.dumps(data)) or "(empty body)"

"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama, OpenAI).

Messages go out as ``{"role", "content": [parts]}`` with images as PNG data URLs, in part order.
Every failure is an :class:`~kbengine.core.errors.LLMError` whose message says what to do; 5xx replies,
timeouts and connection errors are retried with exponential backoff, all within one deadline. A reply
that runs past the deadline, is too long, or is a stream closed before its end is an error, never a
cut answer.
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
from reasoning.llm.base import Message, Part, Stream, redact_url, url_secrets

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
    """A multimodal chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``timeout`` bounds each wait for the server (connecting, each read); ``deadline`` bounds one whole
    :meth:`generate` call, retries and keep-alive comments included, and is checked as each piece of the
    reply arrives (a silent server is cut by whichever of the two comes first). A reply longer than
    ``max_reply_chars`` characters (or a body of more than ``8 * max_reply_chars`` bytes plus 64 KiB) is
    refused rather than read whole. Credentials in ``base_url`` (``user:pass@``, ``?api_key=...``) are
    sent but never shown: ``name`` and every message carry :func:`~reasoning.llm.base.redact_url`'s form.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        temperature: float = 0.0,
        deadline: float = 300.0,
        max_reply_chars: int = 200_000,
    ) -> None:
        if not model:
            raise LLMError("give the model name: --model NAME or KBENGINE_LLM_MODEL")
        root, mark, query = base_url.partition("?")
        self._root, self._query = root.rstrip("/"), mark + query
        self.base_url = self._root + self._query
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.temperature = temperature
        self.deadline = deadline
        self.max_reply_chars = max_reply_chars
        self.shown_url, self._secrets = url_secrets(self.base_url)
        self.name = f"openai:{model}@{self.shown_url}"

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIChat:
        """Build from ``llm_url``, ``llm_model``, ``llm_api_key``, ``llm_timeout``, ``llm_retries``,
        ``llm_deadline`` and ``llm_max_reply_chars``."""
        if not settings.llm_model:
            raise LLMError("give the model name: --model NAME or KBENGINE_LLM_MODEL")
        return cls(
            settings.llm_url,
            settings.llm_model,
            api_key=settings.llm_api_key,
            timeout=settings.llm_timeout,
            retries=settings.llm_retries,
            deadline=settings.llm_deadline,
            max_reply_chars=settings.llm_max_reply_chars,
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
        deadline = time.monotonic() + self.deadline
        with httpx.Client(timeout=self.timeout, headers=self._headers()) as client:
            for attempt in range(attempts):
                try:
                    if stream is None:
                        return self._post(client, body, deadline)
                    return self._post_stream(client, body, stream, deadline)
                except _Retryable as failure:
                    pause = self.backoff * 2**attempt
                    if attempt + 1 >= attempts or time.monotonic() + pause >= deadline:
                        tries = f" (tried {attempt + 1} times)" if attempt else ""
                        if attempt + 1 < attempts:
                            tries += f"; no time left to try again within KBENGINE_LLM_DEADLINE ({self.deadline:g} s)"
                        raise LLMError(f"{failure.final}{tries}") from failure.final.__cause__
                    time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ requests

    @property
    def _url(self) -> str:
        return self._endpoint("chat/completions")

    @property
    def _shown(self) -> str:
        """The chat-completions URL as messages show it (credentials hidden)."""
        return redact_url(self._url)

    def _endpoint(self, route: str) -> str:
        return f"{self._root}/{route}{self._query}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _scrub(self, text: str) -> str:
        """``text`` from elsewhere (a server's message, an exception) with the URL's secrets hidden."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _limits(self, deadline: float) -> tuple[httpx.Timeout, bool]:
        """The timeout of the next request, and whether the deadline shortened it."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._past_deadline(None)
        return httpx.Timeout(min(self.timeout, left)), left < self.timeout

    @property
    def _max_bytes(self) -> int:
        """Bytes read at most for one body or one streamed line: a JSON-escaped character takes up to
        6 bytes (``\\uXXXX``), and the envelope around the text needs room too."""
        return 8 * self.max_reply_chars + 65_536

    def _post(self, client: httpx.Client, body: dict[str, Any], deadline: float) -> str:
        timeout, shortened = self._limits(deadline)
        try:
            with client.stream("POST", self._url, json=body, timeout=timeout) as response:
                raw = self._read(response, deadline)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if shortened and isinstance(exc, httpx.TimeoutException):
                raise self._past_deadline(None) from exc
            self._transport_error(exc)
        if response.status_code >= 400:
            self._http_error(client, response.status_code, _text(raw), deadline)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise LLMError(
                f"the LLM server at {self._shown} sent a reply that is not JSON "
                f"({self._scrub(_snippet(_text(raw)))!r}): is --llm-url an OpenAI-compatible endpoint "
                "(it usually ends in /v1)?"
            ) from exc
        content = self._content(data)
        if len(content) > self.max_reply_chars:
            raise self._too_long(f"{len(content)} characters")
        return content

    def _post_stream(self, client: httpx.Client, body: dict[str, Any], stream: Stream, deadline: float) -> str:
        pieces: list[str] = []
        received = 0
        finished = False
        timeout, shortened = self._limits(deadline)
        try:
            with client.stream("POST", self._url, json=body, timeout=timeout) as response:
                if response.status_code >= 400:
                    self._http_error(client, response.status_code, _text(self._read(response, deadline)), deadline)
                for piece, end in self._sse_pieces(self._lines(self._chunks(response, deadline, pieces))):
                    finished = finished or end
                    if not piece:
                        continue
                    received += len(piece)
                    if received > self.max_reply_chars:
                        raise self._too_long(f"more than {self.max_reply_chars} characters, streamed")
                    pieces.append(piece)
                    stream(piece)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if shortened and isinstance(exc, httpx.TimeoutException):
                raise self._past_deadline(pieces) from exc
            if pieces:  # text already went out: another attempt would repeat it
                raise LLMError(
                    f"the LLM server at {self._shown} broke off the streamed reply "
                    f"({type(exc).__name__}: {self._scrub(str(exc))}): "
                    "try again, or raise KBENGINE_LLM_TIMEOUT if it is slow"
                ) from exc
            self._transport_error(exc)
        text = "".join(pieces)
        if not finished:
            raise LLMError(
                f"the LLM server closed the stream before the end of the answer ({len(text)} characters received; "
                f"no [DONE] and no finish_reason from {self._shown}): the answer is cut, so it is not used; "
                "try again, and check the server's log"
            )
        if not text:
            raise LLMError(
                f"the server replied without content (model {self.model!r} at {self._shown}, streamed): "
                "check that the model serves chat completions and that max_new_tokens is not too small"
            )
        return text

    def _chunks(self, response: httpx.Response, deadline: float, pieces: list[str] | None = None) -> Iterator[bytes]:
        """The body as it arrives, cut by the deadline however steadily the server sends (keep-alives)."""
        for chunk in response.iter_bytes():
            if time.monotonic() > deadline:
                raise self._past_deadline(pieces)
            yield chunk

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        """The whole (non-streamed) body, refused past ``_max_bytes`` without reading the rest."""
        parts: list[bytes] = []
        size = 0
        for chunk in self._chunks(response, deadline):
            size += len(chunk)
            if size > self._max_bytes:
                raise self._too_long(f"a body of more than {self._max_bytes} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def _lines(self, chunks: Iterator[bytes]) -> Iterator[str]:
        """The lines of an SSE body; a line longer than ``_max_bytes`` is refused."""
        pending = b""
        for chunk in chunks:
            lines = (pending + chunk).splitlines(keepends=True)
            pending = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
            if len(pending) > self._max_bytes:
                raise self._too_long(f"a streamed line of more than {self._max_bytes} bytes")
            yield from (_text(line) for line in lines)
        if pending:
            yield _text(pending)

    def _sse_pieces(self, lines: Iterator[str]) -> Iterator[tuple[str, bool]]:
        """(text, whether the server says the answer is complete) for each data line, up to ``[DONE]``."""
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith(":") or not line.startswith("data:"):
                continue
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                yield "", True
                return
            try:
                chunk = json.loads(payload)
            except ValueError as exc:
                raise LLMError(
                    f"the LLM server at {self._shown} streamed a chunk that is not JSON "
                    f"({self._scrub(_snippet(payload))!r}): is --llm-url an OpenAI-compatible endpoint?"
                ) from exc
            if isinstance(chunk, dict) and chunk.get("error"):
                raise LLMError(
                    f"the LLM server at {self._shown} failed mid-stream: {self._scrub(_error_message(chunk))}"
                )
            try:
                choice = chunk["choices"][0] if chunk.get("choices") else {}
                content = choice.get("delta", {}).get("content")
                finished = bool(choice.get("finish_reason"))
            except (AttributeError, TypeError, KeyError, IndexError) as exc:
                raise LLMError(
                    f"the LLM server at {self._shown} streamed a chunk without choices "
                    f"({self._scrub(_snippet(payload))!r}): is --llm-url an OpenAI-compatible endpoint?"
                ) from exc
            yield (content if isinstance(content, str) else ""), finished

    def _content(self, data: Any) -> str:
        content: Any = None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content:
            shown = _snippet(json.dumps(data) if not isinstance(data, str) else data)
            raise LLMError(
                f"the server replied without content (model {self.model!r} at {self._shown}): "
                f"{self._scrub(shown)!r}; check that the model serves chat completions and that max_new_tokens "
                "is not too small"
            )
        return content

    # ------------------------------------------------------------------ errors

    def _past_deadline(self, pieces: list[str] | None) -> LLMError:
        received = f" ({sum(map(len, pieces))} characters received)" if pieces is not None else ""
        return LLMError(
            f"the LLM server at {self._shown} did not finish the reply within the deadline of {self.deadline:g} s"
            f"{received}: raise KBENGINE_LLM_DEADLINE, ask for fewer tokens (KBENGINE_LLM_MAX_NEW_TOKENS), or "
            "check that the server is not overloaded"
        )

    def _too_long(self, what: str) -> LLMError:
        return LLMError(
            f"the LLM server at {self._shown} sent a reply too long to use ({what}; the limit is "
            f"KBENGINE_LLM_MAX_REPLY_CHARS={self.max_reply_chars} characters): ask for fewer tokens "
            "(KBENGINE_LLM_MAX_NEW_TOKENS), or raise KBENGINE_LLM_MAX_REPLY_CHARS if such answers are expected"
        )

    def _transport_error(self, exc: httpx.HTTPError | httpx.InvalidURL) -> NoReturn:
        detail = f"{type(exc).__name__}: {self._scrub(str(exc))}"
        if isinstance(exc, httpx.TimeoutException):
            raise _Retryable(
                _chain(
                    LLMError(
                        f"the LLM server at {self._shown} did not answer within the timeout of {self.timeout:g} s "
                        f"({type(exc).__name__}): raise KBENGINE_LLM_TIMEOUT, ask for fewer "
                        "tokens, or check that the server is not overloaded"
                    ),
                    exc,
                )
            )
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            raise LLMError(
                f"the LLM URL {self.shown_url!r} is not valid ({self._scrub(str(exc))}): give a full URL such as "
                "http://localhost:8000/v1 with --llm-url or KBENGINE_LLM_URL"
            ) from exc
        if isinstance(exc, httpx.TransportError):
            raise _Retryable(
                _chain(
                    LLMError(
                        f"cannot reach the LLM server at {self.shown_url} ({detail}). "
                        "Is it running? Check --llm-url (or KBENGINE_LLM_URL)."
                    ),
                    exc,
                )
            )
        raise LLMError(f"the request to the LLM server at {self._shown} failed: {self._scrub(str(exc))}") from exc

    def _http_error(self, client: httpx.Client, status: int, text: str, deadline: float) -> NoReturn:
        message = self._scrub(_error_message(text))
        if status >= 500:
            raise _Retryable(
                LLMError(
                    f"the LLM server at {self._shown} failed with HTTP {status}: {message}; "
                    "check the server's log (it may be out of memory or still loading the model)"
                )
            )
        if status in (401, 403):
            raise LLMError(
                f"the LLM server at {self._shown} refused the request (HTTP {status}: {message}): "
                "check the API key (set KBENGINE_LLM_API_KEY)"
            )
        if status == 404:
            models = self._list_models(client, deadline)
            listing = (
                f" The server offers: {', '.join(models)}."
                if models
                else f" Could not list the models ({redact_url(self._endpoint('models'))} did not answer with a list)."
            )
            route = (
                ""
                if self.model.lower() in message.lower() or "model" in message.lower()
                else f" If the model is right, check that --llm-url ({self.shown_url}) is the API root (often .../v1)."
            )
            raise LLMError(
                f"the LLM server at {self._shown} answered HTTP 404 ({message}): the model name {self.model!r} may "
                f"be wrong; give one the server serves with --model NAME or KBENGINE_LLM_MODEL.{listing}{route}"
            )
        raise LLMError(
            f"the LLM server at {self._shown} rejected the request with HTTP {status}: {message} "
            "(fix what the server names: e.g. a smaller KBENGINE_LLM_MAX_NEW_TOKENS, or a model that accepts images)"
        )

    def _list_models(self, client: httpx.Client, deadline: float) -> list[str]:
        try:
            timeout = min(self.timeout, 10.0, deadline - time.monotonic())
            if timeout <= 0:
                return []
            with client.stream("GET", self._endpoint("models"), timeout=timeout) as response:
                response.raise_for_status()
                data = json.loads(self._read(response, deadline))
            return [str(m["id"]) for m in data["data"] if isinstance(m, dict) and "id" in m]
        except (httpx.HTTPError, LLMError, ValueError, KeyError, TypeError):
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


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


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

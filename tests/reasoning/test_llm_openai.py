"""The ``openai`` LLM backend against a tiny OpenAI-compatible server (standard library, a background
thread): request format (roles, part order, PNG data URLs), JSON and SSE replies, retries with
backoff, the error messages for each way a server can fail, the deadline and size limits on a reply,
and credentials in the URL that never show."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from kbengine.core.errors import LLMError
from kbengine.core.settings import Settings
from reasoning.llm.base import Message, Part, redact_url
from reasoning.llm.openai_backend import OpenAIChat, png_data_url, to_openai_messages

MODELS = ("qwen2.5-vl-7b", "llava-1.6")


class FakeServer(ThreadingHTTPServer):
    """An OpenAI-compatible server whose ``behaviour`` each test sets; it records every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = "json"
        self.reply = "A crack runs across the tile."
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: clients that hang up are expected
        pass


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send_json(self, status: int, data: Any) -> None:
        self._send_raw(status, json.dumps(data).encode(), "application/json")

    def _send_raw(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_events(self, *events: str, end: bool = True) -> None:
        """An SSE reply: one ``data:`` line per event, then ``[DONE]`` when ``end``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {event}\n\n".encode())
            self.wfile.flush()
        if end:
            self.wfile.write(b"data: [DONE]\n\n")

    def _delta(self, content: str, finish: str | None = None) -> str:
        choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
        return json.dumps({"object": "chat.completion.chunk", "choices": [choice]})

    def _completion(self, content: str | None) -> dict[str, Any]:
        return {
            "id": "cmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        if urlsplit(self.path).path == "/v1/models" and server.behaviour == "unknown_model":
            self._send_json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        with server.lock:
            server.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
            n = len(server.posts())
        behaviour = server.behaviour
        if urlsplit(self.path).path != "/v1/chat/completions":
            self._send_json(404, {"detail": "Not Found"})
        elif behaviour == "json":
            self._send_json(200, self._completion(server.reply))
        elif behaviour == "sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i, piece in enumerate(("A crack ", "runs across ", "the tile.")):
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            end = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        elif behaviour == "sse_cut":  # the connection closes mid-answer: no finish_reason, no [DONE]
            self._send_events(self._delta("A crack "), self._delta("runs"), end=False)
        elif behaviour == "sse_finish_only":  # a finish_reason, then the connection closes without [DONE]
            self._send_events(self._delta("A crack."), self._delta("", "stop"), end=False)
        elif behaviour == "sse_long":
            self._send_events(*(self._delta("0123456789") for _ in range(100)))
        elif behaviour == "sse_pings":  # keep-alive comments every 0.2 s, never an answer
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            while not server.stopping.wait(0.2):
                self.wfile.write(b": ping\n\n")
                self.wfile.flush()
        elif behaviour == "trickle":  # a JSON body one byte every 0.2 s
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            while not server.stopping.wait(0.2):
                self.wfile.write(b" ")
                self.wfile.flush()
        elif behaviour == "huge":  # 10 MB of JSON
            size = 10_000_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for _ in range(size // 65_536 + 1):
                self.wfile.write(b" " * 65_536)
        elif behaviour == "json_long":
            self._send_json(200, self._completion("0123456789" * 100))
        elif (behaviour == "flaky" and n <= 2) or behaviour == "always_500":
            self._send_json(500, {"error": {"message": "CUDA out of memory"}})
        elif behaviour == "flaky":
            self._send_json(200, self._completion(server.reply))
        elif behaviour == "slow":
            server.stopping.wait(server.delay)
            self._send_json(200, self._completion(server.reply))
        elif behaviour == "bad_json":
            self._send_raw(200, b"<html>this is not json{", "application/json")
        elif behaviour == "empty":
            self._send_json(200, self._completion(""))
        elif behaviour == "no_choices":
            self._send_json(200, {"id": "cmpl-1", "object": "chat.completion"})
        elif behaviour == "unknown_model":
            self._send_json(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
        elif behaviour == "unauthorized":
            self._send_json(401, {"error": {"message": "Incorrect API key provided."}})
        elif behaviour == "bad_request":
            self._send_json(400, {"error": {"message": "max_tokens is too large: 99999999."}})
        else:  # pragma: no cover
            self._send_json(500, {"error": {"message": f"unknown behaviour {behaviour}"}})


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stopping.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _chat(server: FakeServer, **kwargs: Any) -> OpenAIChat:
    kwargs.setdefault("backoff", 0.01)
    return OpenAIChat(server.url, kwargs.pop("model", MODELS[0]), **kwargs)


def _image(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)


def _decode(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    raw = base64.b64decode(url[len(prefix) :])
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(raw))
    assert img.format == "PNG"
    return img


def _inspection_messages() -> list[Message]:
    return [
        Message(role="system", parts=[Part.of_text("You are an industrial inspector.")]),
        Message(
            role="user",
            parts=[
                Part.of_text("Reference from the knowledge base:"),
                Part.of_image(_image((40, 30), (255, 0, 0)), label="template"),
                Part.of_text("Inspect this part:"),
                Part.of_image(_image((50, 20), (0, 0, 255)), label="query"),
                Part.of_text("Is it defective?"),
            ],
        ),
    ]


# --------------------------------------------------------------------------- request format


def test_json_reply_and_request_format(server: FakeServer) -> None:
    llm = _chat(server, api_key="sk-test", temperature=0.2)
    assert llm.name == f"openai:{MODELS[0]}@{server.url}"

    assert llm.generate(_inspection_messages(), max_new_tokens=64) == server.reply

    (request,) = server.posts()
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == MODELS[0]
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.2
    assert body["stream"] is False
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "You are an industrial inspector."}]

    content = body["messages"][1]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "text", "image_url", "text"]
    assert [p["text"] for p in content if p["type"] == "text"] == [
        "Reference from the knowledge base:",
        "Inspect this part:",
        "Is it defective?",
    ]
    template, query = (_decode(p["image_url"]["url"]) for p in content if p["type"] == "image_url")
    # the template comes first, as given: it is the 40x30 red one, the query the 50x20 blue one
    assert template.size == (40, 30)
    assert template.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert query.size == (50, 20)
    assert query.convert("RGB").getpixel((0, 0)) == (0, 0, 255)


def test_no_api_key_sends_no_authorization(server: FakeServer) -> None:
    _chat(server).generate([Message(role="user", parts=[Part.of_text("hi")])])
    assert "Authorization" not in server.posts()[0]["headers"]


def test_image_path_is_read_when_the_image_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "query.jpg"
    _image((24, 16), (0, 200, 0)).save(path)
    part = Part(kind="image", image_path=str(path), label="query")
    (message,) = to_openai_messages([Message(role="user", parts=[part])])
    assert message["role"] == "user"
    assert _decode(message["content"][0]["image_url"]["url"]).size == (24, 16)

    missing = Part(kind="image", image_path=str(tmp_path / "nope.png"), label="query")
    with pytest.raises(LLMError, match="cannot read the image"):
        to_openai_messages([Message(role="user", parts=[missing])])
    with pytest.raises(LLMError, match="neither an image nor an image_path"):
        to_openai_messages([Message(role="user", parts=[Part(kind="image", label="query")])])


def test_png_data_url_handles_other_modes() -> None:
    assert _decode(png_data_url(Image.new("CMYK", (8, 6)))).size == (8, 6)
    assert _decode(png_data_url(Image.new("RGBA", (3, 5), (1, 2, 3, 4)))).mode == "RGBA"


def test_from_settings() -> None:
    with pytest.raises(LLMError, match="give the model name: --model NAME or KBENGINE_LLM_MODEL"):
        OpenAIChat.from_settings(Settings(llm_model=None))
    llm = OpenAIChat.from_settings(
        Settings(llm_url="http://h:1/v1/", llm_model="m", llm_api_key="k", llm_timeout=7, llm_retries=4)
    )
    assert (llm.name, llm.api_key, llm.timeout, llm.retries) == ("openai:m@http://h:1/v1", "k", 7, 4)
    assert (llm.deadline, llm.max_reply_chars) == (300, 200_000)
    llm = OpenAIChat.from_settings(Settings(llm_model="m", llm_deadline=9, llm_max_reply_chars=50))
    assert (llm.deadline, llm.max_reply_chars) == (9, 50)


# --------------------------------------------------------------------------- streaming


def test_sse_stream_in_three_chunks(server: FakeServer) -> None:
    server.behaviour = "sse"
    pieces: list[str] = []
    text = _chat(server).generate(_inspection_messages(), stream=pieces.append)
    assert pieces == ["A crack ", "runs across ", "the tile."]
    assert text == "A crack runs across the tile."
    assert server.posts()[0]["body"]["stream"] is True


def test_stream_with_server_errors_is_retried_then_fails(server: FakeServer) -> None:
    server.behaviour = "always_500"
    pieces: list[str] = []
    with pytest.raises(LLMError, match="HTTP 500"):
        _chat(server, retries=1).generate(_inspection_messages(), stream=pieces.append)
    assert pieces == []
    assert len(server.posts()) == 2


# --------------------------------------------------------------------------- retries


def test_two_server_errors_then_success_is_retried(server: FakeServer) -> None:
    server.behaviour = "flaky"
    assert _chat(server, retries=2).generate(_inspection_messages()) == server.reply
    assert len(server.posts()) == 3
    assert all(r["body"] == server.posts()[0]["body"] for r in server.posts())


def test_always_500_fails_after_the_retries(server: FakeServer) -> None:
    server.behaviour = "always_500"
    with pytest.raises(LLMError, match=r"HTTP 500.*CUDA out of memory.*tried 3 times") as info:
        _chat(server, retries=2).generate(_inspection_messages())
    assert len(server.posts()) == 3
    assert "server's log" in str(info.value)


def test_timeout(server: FakeServer) -> None:
    server.behaviour, server.delay = "slow", 5.0
    with pytest.raises(LLMError, match="timeout") as info:
        _chat(server, timeout=0.3, retries=1).generate(_inspection_messages())
    assert "KBENGINE_LLM_TIMEOUT" in str(info.value)
    assert len(server.posts()) == 2  # timeouts are retried


# --------------------------------------------------------------------------- bad replies


def test_malformed_json(server: FakeServer) -> None:
    server.behaviour = "bad_json"
    with pytest.raises(LLMError, match="not JSON"):
        _chat(server).generate(_inspection_messages())
    assert len(server.posts()) == 1


@pytest.mark.parametrize("behaviour", ["empty", "no_choices"])
def test_reply_without_content(server: FakeServer, behaviour: str) -> None:
    server.behaviour = behaviour
    with pytest.raises(LLMError, match="the server replied without content"):
        _chat(server).generate(_inspection_messages())


def test_unknown_model_lists_the_served_models(server: FakeServer) -> None:
    server.behaviour = "unknown_model"
    with pytest.raises(LLMError) as info:
        _chat(server, model="no-such-model").generate(_inspection_messages())
    message = str(info.value)
    assert "'no-such-model' may be wrong" in message
    assert all(m in message for m in MODELS)
    assert "KBENGINE_LLM_MODEL" in message
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions", "/v1/models"]


def test_wrong_route_says_model_or_url(server: FakeServer) -> None:
    llm = OpenAIChat(server.url.removesuffix("/v1"), "m", backoff=0.01)  # forgot /v1
    with pytest.raises(LLMError, match=r"model name 'm' may be wrong.*Could not list.*--llm-url"):
        llm.generate(_inspection_messages())


def test_unauthorized_says_api_key(server: FakeServer) -> None:
    server.behaviour = "unauthorized"
    with pytest.raises(LLMError, match=r"HTTP 401.*API key.*KBENGINE_LLM_API_KEY"):
        _chat(server).generate(_inspection_messages())
    assert len(server.posts()) == 1  # not retried


def test_other_client_error_shows_the_servers_message(server: FakeServer) -> None:
    server.behaviour = "bad_request"
    with pytest.raises(LLMError, match=r"HTTP 400: max_tokens is too large"):
        _chat(server).generate(_inspection_messages())
    assert len(server.posts()) == 1


def test_closed_port_cannot_reach() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAIChat(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff=0.01)
    with pytest.raises(LLMError, match=r"cannot reach the LLM server at http://127\.0\.0\.1:\d+/v1.*Is it running\?"):
        llm.generate(_inspection_messages())


def test_invalid_url() -> None:
    with pytest.raises(LLMError, match="not valid"):
        OpenAIChat("localhost:8000/v1", "m").generate(_inspection_messages())


# --------------------------------------------------------------------------- whole replies: deadline, size, end


def _failure_within(seconds: float, call: Any) -> str:
    """The LLMError message ``call()`` raises, checking that it came within ``seconds``."""
    start = time.monotonic()
    with pytest.raises(LLMError) as info:
        call()
    assert time.monotonic() - start < seconds
    return str(info.value)


def test_keep_alive_pings_do_not_outlive_the_deadline(server: FakeServer) -> None:
    server.behaviour = "sse_pings"
    pieces: list[str] = []
    llm = _chat(server, deadline=1.0)
    message = _failure_within(2.5, lambda: llm.generate(_inspection_messages(), stream=pieces.append))
    assert "deadline of 1 s (0 characters received)" in message
    assert "KBENGINE_LLM_DEADLINE" in message
    assert pieces == [] and len(server.posts()) == 1  # a deadline is not retried


def test_a_silent_server_is_cut_by_the_deadline(server: FakeServer) -> None:
    server.behaviour, server.delay = "slow", 5.0
    llm = _chat(server, timeout=60, deadline=0.5)
    message = _failure_within(1.5, lambda: llm.generate(_inspection_messages()))
    assert "deadline of 0.5 s" in message and "KBENGINE_LLM_TIMEOUT" not in message
    assert len(server.posts()) == 1


def test_a_trickling_body_does_not_outlive_the_deadline(server: FakeServer) -> None:
    server.behaviour = "trickle"
    llm = _chat(server, deadline=1.0)
    message = _failure_within(2.5, lambda: llm.generate(_inspection_messages()))
    assert "deadline of 1 s" in message and "KBENGINE_LLM_DEADLINE" in message


def test_retries_stop_at_the_deadline(server: FakeServer) -> None:
    server.behaviour = "always_500"
    llm = _chat(server, retries=10, backoff=0.4, deadline=1.0)
    message = _failure_within(2.0, lambda: llm.generate(_inspection_messages()))
    assert "HTTP 500" in message and "KBENGINE_LLM_DEADLINE" in message
    assert 2 <= len(server.posts()) < 11


def test_stream_closed_before_its_end_is_an_error(server: FakeServer) -> None:
    server.behaviour = "sse_cut"
    pieces: list[str] = []
    with pytest.raises(LLMError, match=r"closed the stream before the end of the answer \(12 characters received"):
        _chat(server).generate(_inspection_messages(), stream=pieces.append)
    assert pieces == ["A crack ", "runs"]


def test_stream_with_a_finish_reason_needs_no_done(server: FakeServer) -> None:
    server.behaviour = "sse_finish_only"
    assert _chat(server).generate(_inspection_messages(), stream=lambda _: None) == "A crack."


def test_streamed_reply_over_the_size_limit(server: FakeServer) -> None:
    server.behaviour = "sse_long"
    pieces: list[str] = []
    with pytest.raises(LLMError, match=r"KBENGINE_LLM_MAX_REPLY_CHARS=55 characters"):
        _chat(server, max_reply_chars=55).generate(_inspection_messages(), stream=pieces.append)
    assert "".join(pieces) == "0123456789" * 5  # nothing past the limit went out


def test_reply_over_the_size_limit(server: FakeServer) -> None:
    server.behaviour = "json_long"
    with pytest.raises(LLMError, match=r"1000 characters; the limit is KBENGINE_LLM_MAX_REPLY_CHARS=999 "):
        _chat(server, max_reply_chars=999).generate(_inspection_messages())
    assert _chat(server, max_reply_chars=1000).generate(_inspection_messages()) == "0123456789" * 100


def test_huge_body_is_refused_without_reading_it_whole(server: FakeServer) -> None:
    server.behaviour = "huge"
    llm = _chat(server, max_reply_chars=1000)
    message = _failure_within(3.0, lambda: llm.generate(_inspection_messages()))
    assert f"more than {8 * 1000 + 65_536} bytes" in message
    assert "KBENGINE_LLM_MAX_REPLY_CHARS=1000" in message


# --------------------------------------------------------------------------- credentials in the URL


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:secret@h:1/v1?api_key=abc", "http://***@h:1/v1?api_key=***"),
        ("https://tok3n@h/v1", "https://***@h/v1"),
        ("user:pass@h:1/v1", "***@h:1/v1"),
        ("http://h/v1?api-version=2024-06&X-Auth-Token=t&sig=s&password=p#top", None),
        ("http://h:1/v1?x=a@b", "http://h:1/v1?x=a@b"),
        ("http://localhost:8000/v1", "http://localhost:8000/v1"),
    ],
)
def test_redact_url(url: str, shown: str | None) -> None:
    expected = shown or "http://h/v1?api-version=2024-06&X-Auth-Token=***&sig=***&password=***#top"
    assert redact_url(url) == expected


def _secret_url(server: FakeServer) -> str:
    return server.url.replace("http://", "http://user:secret@") + "?api_key=abc"


def test_credentials_in_the_url_never_show(server: FakeServer) -> None:
    from reasoning.asker import respond  # the path by which the backend's name becomes Answer.llm

    llm = OpenAIChat(_secret_url(server), MODELS[0], backoff=0.01)
    text, _, _, name = respond(llm, "Is it defective?", _inspection_messages)
    assert text == server.reply
    assert name == f"openai:{MODELS[0]}@http://***@127.0.0.1:{server.server_address[1]}/v1?api_key=***"
    (request,) = server.posts()  # the credentials still go to the server
    assert request["path"] == "/v1/chat/completions?api_key=abc"
    assert request["headers"]["Authorization"].startswith("Basic ")

    failures = []
    for behaviour in ("always_500", "unknown_model", "sse_cut", "sse_long"):
        server.behaviour = behaviour
        streamed = behaviour.startswith("sse")
        with pytest.raises(LLMError) as info:
            OpenAIChat(_secret_url(server), MODELS[0], retries=0, max_reply_chars=50).generate(
                _inspection_messages(), stream=(lambda _: None) if streamed else None
            )
        failures.append(str(info.value))
    assert all("127.0.0.1" in f and "***" in f for f in failures)
    assert f"The server offers: {', '.join(MODELS)}" in failures[1]  # /models is asked with the same credentials
    assert not any("secret" in f or "abc" in f for f in failures), failures


def test_credentials_never_show_when_the_server_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAIChat(f"http://user:secret@127.0.0.1:{port}/v1?token=abc", "m", retries=0)
    with pytest.raises(LLMError, match="cannot reach") as info:
        llm.generate(_inspection_messages())
    assert "secret" not in str(info.value) and "abc" not in str(info.value)

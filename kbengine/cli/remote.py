"""The CLI's client of a running ``kbengine serve``: find it, send it a request, read its answer
back into the engine's pydantic models, so a command prints what it prints in-process.

A ``kbengine serve`` on an embedded knowledge base writes ``<kb>/serve.json`` (its URL, pid and
host) once it listens and removes it when it stops; :func:`find` reads it (a file whose process
is gone is stale and ignored), unless ``--server URL`` / ``KBENGINE_SERVER`` names a service.

:func:`call` is the one way a command talks to the service (multipart with files and form fields,
or a query string; JSON back, parsed into ``model``); :func:`events` reads a stream of server-sent
events. The service's errors come back as the engine's own exceptions (422 as
``InvalidInputError``, 409 as ``EmptyKnowledgeBaseError``, 502 as ``LLMError``), so the CLI prints
the same ``error:`` line as in-process; anything else, and a service that cannot be reached, is a
:class:`ServiceError` that says what to do. Only the standard library (``http.client``): a call
through the service loads neither torch nor numpy."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlencode, urlsplit

from kbengine.core.errors import EmptyKnowledgeBaseError, InvalidInputError, KBEngineError, LLMError

if TYPE_CHECKING:
    from pydantic import BaseModel

    Model = TypeVar("Model", bound=BaseModel)

ADVERT = "serve.json"
"""The file under the knowledge base folder where a running ``kbengine serve`` says where it is."""
TIMEOUT = 600.0
"""Seconds a request may take (an ask on a slow LLM, a service still loading its models)."""
ENGINE_ERRORS: dict[int, type[KBEngineError]] = {422: InvalidInputError, 409: EmptyKnowledgeBaseError, 502: LLMError}


class ServiceError(KBEngineError):
    """The kbengine service refused a request or could not be reached."""


@dataclass(frozen=True)
class Remote:
    """A running service: its base URL, the API key to send, and the advert it was found by."""

    url: str
    key: str | None = None
    advert: Path | None = None

    def where(self) -> str:
        return f"the kbengine service at {self.url}" + (f" (advertised in {self.advert})" if self.advert else "")


# -- the advert ------------------------------------------------------------------------------


def advertise(kb: Path, url: str) -> Path:
    """Write ``<kb>/serve.json`` for this process (atomically); returns its path."""
    kb.mkdir(parents=True, exist_ok=True)
    path = kb / ADVERT
    content = {"url": url, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    partial = path.with_name(f".{ADVERT}.{os.getpid()}")
    partial.write_text(json.dumps(content), encoding="utf-8")
    os.replace(partial, path)
    return path


def withdraw(path: Path) -> None:
    """Remove the advert ``path`` if this process wrote it."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def advertised(kb: Path) -> tuple[str, Path] | None:
    """The URL a live ``kbengine serve`` of ``kb`` advertises, and the advert; None when there is
    none, or when it names a process of this host that has ended (a serve killed without notice)."""
    path = kb / ADVERT
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        url, pid, host = str(content["url"]), int(content["pid"]), str(content.get("host", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host == socket.gethostname() and not alive(pid):
        return None
    return url, path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def find(server: str | None, key: str | None, kb_dir: Path | None, url: str | None) -> Remote | None:
    """The service a command sends its request to: ``server`` when given (``--server`` /
    ``KBENGINE_SERVER``), else the live ``kbengine serve`` that advertises itself in the embedded
    knowledge base's folder; None: run in this process."""
    if server:
        return Remote(server.rstrip("/"), key or None)
    if url:  # a Qdrant server: this process can open it alongside any service
        return None
    if kb_dir is None:
        from kbengine.core.settings import Settings

        settings = Settings()
        if settings.qdrant_url:
            return None
        kb_dir = settings.kb
    found = advertised(kb_dir)
    return None if found is None else Remote(found[0].rstrip("/"), key or None, found[1])


# -- requests --------------------------------------------------------------------------------


def form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def multipart(fields: Mapping[str, object], files: Sequence[tuple[str, Path]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``fields`` (None left out) and ``files`` (field name,
    path; sent under the file's base name), and its content type."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{form_value(item)}\r\n'.encode()
            )
    for name, path in files:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise InvalidInputError(f"{path}: cannot read it ({e.strerror or e.__class__.__name__})") from None
        filename = Path(path).name.replace('"', "%22").replace("\r", "").replace("\n", "")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode("utf-8", "surrogateescape") + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def send(
    remote: Remote,
    method: str,
    path: str,
    *,
    fields: Mapping[str, object] | None = None,
    files: Sequence[tuple[str, Path]] = (),
    params: Mapping[str, object] | None = None,
    body: object = None,
    accept: str = "application/json",
    timeout: float = TIMEOUT,
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send one request; the open connection and a 2xx response (errors raised as exceptions)."""
    parts = urlsplit(remote.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"--server {remote.url!r}: give an http:// or https:// URL")
    target = parts.path.rstrip("/") + path
    if params:
        target += "?" + urlencode({k: form_value(v) for k, v in params.items() if v is not None}, doseq=True)
    headers = {"Accept": accept, "User-Agent": "kbengine-cli"}
    if remote.key:
        headers["Authorization"] = f"Bearer {remote.key}"
    data: bytes | None = None
    if fields is not None or files:
        data, headers["Content-Type"] = multipart(fields or {}, files)
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, target, body=data, headers=headers)
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as e:
        connection.close()
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or e.__class__.__name__
        hint = (
            f"if that serve has stopped, delete {remote.advert}"
            if remote.advert
            else "is 'kbengine serve' running there? (--server / KBENGINE_SERVER)"
        )
        raise ServiceError(f"cannot reach {remote.where()}: {reason}; {hint}") from None
    if response.status >= 400:
        try:
            raise refusal(remote, response)
        finally:
            connection.close()
    return connection, response


def refusal(remote: Remote, response: http.client.HTTPResponse) -> KBEngineError:
    """The exception a 4xx/5xx answer means: the engine's own for the engine's refusals."""
    raw = response.read()
    try:
        detail = str(json.loads(raw)["detail"])
    except (ValueError, KeyError, TypeError):
        detail = raw.decode("utf-8", "replace").strip()[:300] or response.reason
    status = response.status
    if status in ENGINE_ERRORS:
        return ENGINE_ERRORS[status](detail)
    hint = ""
    if status in (401, 403):
        hint = "; give the service's key with --api-key or KBENGINE_API_KEY"
    elif status == 503 and response.getheader("Retry-After"):
        hint = f"; retry in {response.getheader('Retry-After')} s"
    return ServiceError(f"{remote.where()} answered {status}: {detail}{hint}")


@overload
def call(remote: Remote, method: str, path: str, model: type[Model], **request: Any) -> Model: ...
@overload
def call(remote: Remote, method: str, path: str, model: None = None, **request: Any) -> Any: ...
def call(remote: Remote, method: str, path: str, model: type[Model] | None = None, **request: Any) -> Any:
    """One request to the service, its JSON answer parsed into ``model`` (the JSON itself without
    one). ``request``: ``fields`` and ``files`` (a multipart form: ``{"k": 3}``, ``[("image",
    path)]``), ``params`` (a query string), ``body`` (JSON), ``timeout``.

    >>> call(remote, "POST", "/v1/seek", SeekResult, fields={"k": 3}, files=[("image", photo)])
    """
    connection, response = send(remote, method, path, **request)
    try:
        raw = response.read()
    finally:
        connection.close()
    try:
        content = json.loads(raw)
    except ValueError:
        raise ServiceError(f"{remote.where()} answered {response.status} without JSON") from None
    if model is None:
        return content
    from pydantic import ValidationError

    try:
        return model.model_validate(content)
    except ValidationError as e:
        raise ServiceError(
            f"{remote.where()} answered a {model.__name__} this kbengine cannot read (another version?): "
            f"{e.errors()[0]['msg']}"
        ) from None


def events(remote: Remote, path: str, **request: Any) -> Iterator[tuple[str, Any]]:
    """The server-sent events of a streamed answer as (event, data) pairs, as they arrive."""
    connection, response = send(remote, "POST", path, accept="text/event-stream", **request)
    try:
        name, data = "message", list[str]()
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if data:
                    yield name, json.loads("\n".join(data))
                name, data = "message", list[str]()
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
    finally:
        connection.close()

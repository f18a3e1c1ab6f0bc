"""How the service answers: JSON of the engine's models, ``{"detail": reason}`` errors with the
status each engine error means, and server-sent events."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from kbengine.core.errors import EmptyKnowledgeBaseError, InvalidInputError, KBEngineError, LLMError, StoreError
from kbengine.service.pool import Busy

BUSY = "busy: the request queue is full, retry shortly"
STATUS: tuple[tuple[type[KBEngineError], int], ...] = (
    (InvalidInputError, 422),  # input the engine refuses, with the reason
    (EmptyKnowledgeBaseError, 409),  # nothing to answer from yet
    (LLMError, 502),  # the configured LLM failed
    (StoreError, 503),  # the store is not reachable
    (KBEngineError, 400),
)


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def json_reply(model: Any, *, status: int = 200, extra: dict[str, Any] | None = None) -> JSONResponse:
    """A pydantic model as the JSON the Python API's ``model_dump(mode="json")`` gives (``extra``
    fields added)."""
    content = model.model_dump(mode="json")
    content.update(extra or {})
    return JSONResponse(content, status_code=status)


def event(name: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def add_error_handlers(app: FastAPI) -> None:
    async def busy(request: Request, e: Exception) -> JSONResponse:
        request.app.state.service.metrics.busy.inc()
        retry = e.retry_after if isinstance(e, Busy) else 1
        return error(503, BUSY, {"Retry-After": str(retry)})

    async def engine(_: Request, e: Exception) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(e, kind))
        return error(status, str(e))

    async def http(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, HTTPException)
        return error(e.status_code, str(e.detail), dict(e.headers or {}))

    app.add_exception_handler(Busy, busy)
    for kind, _status in STATUS:
        app.add_exception_handler(kind, engine)
    app.add_exception_handler(HTTPException, http)

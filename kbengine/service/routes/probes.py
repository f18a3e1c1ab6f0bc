"""``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/whoami``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response

from kbengine.core.errors import KBEngineError
from kbengine.service.replies import error
from kbengine.service.state import READ, Shared, request_key

router = APIRouter(tags=["service"])


@router.get("/healthz", summary="The process is up.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Models loaded and the store reachable (503 otherwise).")
async def readyz(service: Shared) -> JSONResponse:
    if not service.ready:
        return error(503, service.ready_error or "starting: loading the models")
    kb = service.kb
    try:
        locks = await asyncio.get_running_loop().run_in_executor(None, kb.store.count)
    except KBEngineError as e:
        return error(503, f"the store is not reachable: {e}")
    return JSONResponse({"status": "ready", "locks": locks, "encoder": kb.identity.name if kb.identity else None})


@router.get("/v1/whoami", summary="The scope the request's key grants (read or write).")
async def whoami(
    service: Shared,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> dict[str, str | bool | None]:
    return {"scope": service.keys.scope_of(request_key(authorization, x_api_key)), "keys": not service.keys.open}


@router.get("/metrics", summary="Prometheus metrics.", dependencies=READ)
async def metrics(service: Shared) -> Response:
    return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

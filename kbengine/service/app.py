"""The HTTP API and the inspection page: one process owns the knowledge base (its embedded store,
its warm models) and serves many clients.

Every route that runs a model goes through the bounded :class:`~kbengine.service.pool.WorkPool`;
responses are the Python API's pydantic models as JSON (``Detection`` gains ``heatmap`` when
asked for). Errors are ``{"detail": reason}``: 401/403 for keys and scopes, 413 for a body over
the limit, 422 for input the engine refuses, 409 when the knowledge base has nothing to answer
from, 502 when the LLM fails, 503 with ``Retry-After`` when the queue is full.

Layout: ``state`` (the shared :class:`Service` and the key checks), ``routes/`` (probes, inspect,
knowledge, the page), ``replies`` (JSON, errors, events), ``middleware`` (body limit, metrics),
``pool`` (workers and the read/write lock), ``jobs`` (ingest jobs), ``auth``, ``uploads``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import FastAPI

from kbengine.facade import KnowledgeBase
from kbengine.service.middleware import BodyLimit, Measured
from kbengine.service.replies import add_error_handlers
from kbengine.service.routes import feedback, inspect, knowledge, page, probes
from kbengine.service.settings import ServiceSettings
from kbengine.service.state import Service


def create_app(kb: KnowledgeBase, settings: ServiceSettings | None = None, *, warm: bool = True) -> FastAPI:
    """The FastAPI app serving ``kb``. ``warm``: load the models before the first request."""
    settings = settings or ServiceSettings()
    service = Service(kb, settings)

    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm:  # on the pool's worker: the thread that will run the models
            await service.pool.run(service.warm)
        else:
            service.ready = True
        yield
        service.close()

    app = FastAPI(
        title="kbengine",
        summary="Knowledge-grounded visual inspection (ADSeeker): seek, detect, ask, ingest.",
        version=_version(),
        lifespan=lifespan,  # type: ignore[arg-type]
    )
    app.state.service = service
    for router in (probes.router, inspect.router, knowledge.router, feedback.router):
        app.include_router(router)
    page.mount(app)
    add_error_handlers(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )
    app.add_middleware(Measured, metrics=service.metrics)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kbengine")
    except PackageNotFoundError:
        return "0"

"""The HTTP API and the inspection page: one process owns the knowledge base (its embedded store,
its warm models) and serves many clients.

Every route that runs a model goes through the bounded :class:`~kbengine.service.pool.WorkPool`;
responses are the Python API's pydantic models as JSON (``Detection`` gains ``heatmap`` when
asked for). Errors are ``{"detail": reason}``: 401/403 for keys and scopes, 413 for a body over
the limit, 422 for input the engine refuses, 409 when the knowledge base has nothing to answer
from, 503 with ``Retry-After`` when the queue is full."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from kbengine.core.blobs import BLOB_NAME
from kbengine.core.errors import EmptyKnowledgeBaseError, InvalidInputError, KBEngineError, LLMError, StoreError
from kbengine.core.schemas import Answer, Detection, DocumentList, EditReport, KBInfo, SeekResult
from kbengine.facade import KnowledgeBase
from kbengine.service.auth import Keys, Scope, allows
from kbengine.service.heatmap import heatmap_data_url
from kbengine.service.jobs import Job, Jobs
from kbengine.service.metrics import Metrics
from kbengine.service.pool import Busy, WorkPool
from kbengine.service.settings import ServiceSettings
from kbengine.service.uploads import check_ingest_upload, decode_upload, safe_name

STATIC = Path(__file__).parent / "static"
Scope_ = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope_, Receive, Send], Awaitable[None]]


class Relabel(BaseModel):
    """The new labels of ``PATCH /v1/documents/{doc_id}`` (at least one)."""

    category: str | None = None
    defect_type: str | None = None
    domain: str | None = None
    dry_run: bool = False


class Service:
    """What the routes share: the knowledge base, the pool, the jobs, the keys, the metrics."""

    def __init__(self, kb: KnowledgeBase, settings: ServiceSettings) -> None:
        self.kb = kb
        self.settings = settings
        self.keys = Keys.load(settings.api_keys, settings.api_keys_file)
        self.pool = WorkPool(kb.settings.workers, settings.queue)
        self.metrics = Metrics(lambda: float(self.pool.depth))
        self.jobs = Jobs(
            kb.ingest,
            self.pool,
            settings.jobs_kept,
            on_finish=lambda job: self.metrics.jobs.labels(state=job.state).inc(),
        )
        self.uploads = kb.settings.kb / "uploads"
        self.ready = False
        self.ready_error: str | None = None
        self._llm: Any = None
        self._llm_loaded = False

    def warm(self) -> None:
        """Load the encoder and wire the layers, so the first request pays no start-up."""
        try:
            if self.kb.identity is not None or self.kb.settings.encoder != "auto":
                _ = self.kb.encoder
            _ = self.kb.seeker, self.kb.detector
            self.kb.store.count()
            self.ready = True
        except KBEngineError as e:
            self.ready_error = str(e)

    def llm(self, name: str | None) -> Any:
        """The server's configured LLM (loaded once); a request may ask for ``none`` instead."""
        from reasoning.llm import get_llm

        if name not in (None, "", self.kb.settings.llm, "none"):
            raise InvalidInputError(f"llm {name!r}: this server offers {self.kb.settings.llm!r} or 'none'")
        if name == "none":
            return None
        if not self._llm_loaded:
            self._llm = get_llm(self.kb.settings)
            self._llm_loaded = True
        return self._llm

    def close(self) -> None:
        self.jobs.close()
        self.pool.close()


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _json(model: Any, **extra: Any) -> JSONResponse:
    content = model.model_dump(mode="json")
    content.update(extra)
    return JSONResponse(content)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over ``limit`` bytes: by its Content-Length at once, or while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        too_large = _error(413, f"the request body is over the limit of {limit:,} bytes (KBENGINE_MAX_UPLOAD_BYTES)")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await too_large(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)


class Measured:
    """Count and time every HTTP request by its route template (until the response starts)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        done = False

        def observe(status: int) -> None:
            nonlocal done
            if not done:
                done = True
                route = getattr(scope.get("route"), "path", None)
                name = route or ("/static" if scope["path"].startswith("/static") else "unmatched")
                self.metrics.observe(name, status, time.perf_counter() - start)

        async def observed(message: Any) -> None:
            if message["type"] == "http.response.start":
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            observe(500)


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
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    # -- errors ---------------------------------------------------------------------------------
    @app.exception_handler(Busy)
    async def busy(_: Request, e: Busy) -> JSONResponse:
        service.metrics.busy.inc()
        return _error(503, "busy: the request queue is full, retry shortly", {"Retry-After": str(e.retry_after)})

    @app.exception_handler(InvalidInputError)
    async def invalid(_: Request, e: InvalidInputError) -> JSONResponse:
        return _error(422, str(e))

    @app.exception_handler(EmptyKnowledgeBaseError)
    async def empty(_: Request, e: EmptyKnowledgeBaseError) -> JSONResponse:
        return _error(409, str(e))

    @app.exception_handler(LLMError)
    async def llm_failed(_: Request, e: LLMError) -> JSONResponse:
        return _error(502, str(e))

    @app.exception_handler(StoreError)
    async def store_failed(_: Request, e: StoreError) -> JSONResponse:
        return _error(503, str(e))

    @app.exception_handler(KBEngineError)
    async def refused(_: Request, e: KBEngineError) -> JSONResponse:
        return _error(400, str(e))

    # -- auth -----------------------------------------------------------------------------------
    def scope(needed: Scope) -> Callable[..., None]:
        def check(
            authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
            x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
        ) -> None:
            if service.keys.open:
                return
            granted = service.keys.scope_of(_key(authorization, x_api_key))
            if granted is None:
                raise HTTPException(
                    401, "an API key is needed: 'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"}
                )
            if not allows(granted, needed):
                raise HTTPException(403, f"this key has the {granted} scope; this route needs {needed}")

        return check

    read = [Depends(scope("read"))]
    write = [Depends(scope("write"))]

    async def image_bytes(image: UploadFile) -> tuple[bytes, str | None]:
        return await image.read(), image.filename

    def photo(data: tuple[bytes, str | None]) -> Any:
        return decode_upload(data[0], data[1], kb.settings.max_image_pixels)

    # -- probes and metrics ---------------------------------------------------------------------
    @app.get("/healthz", tags=["service"], summary="The process is up.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Models loaded and the store reachable (503 otherwise).")
    async def readyz() -> JSONResponse:
        if not service.ready:
            return _error(503, service.ready_error or "starting: loading the models")
        try:
            locks = await asyncio.get_running_loop().run_in_executor(None, kb.store.count)
        except KBEngineError as e:
            return _error(503, f"the store is not reachable: {e}")
        return JSONResponse({"status": "ready", "locks": locks, "encoder": kb.identity.name if kb.identity else None})

    @app.get("/v1/whoami", tags=["service"], summary="The scope the request's key grants (read or write).")
    async def whoami(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> dict[str, str | bool | None]:
        return {"scope": service.keys.scope_of(_key(authorization, x_api_key)), "keys": not service.keys.open}

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics.", dependencies=read)
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- read routes ----------------------------------------------------------------------------
    @app.get("/v1/info", tags=["knowledge"], response_model=KBInfo, dependencies=read)
    async def info() -> JSONResponse:
        return _json(await service.pool.run(kb.info))

    @app.get("/v1/documents", tags=["knowledge"], response_model=DocumentList, dependencies=read)
    async def documents(
        category: str | None = None,
        defect_type: str | None = None,
        domain: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> JSONResponse:
        listing = await service.pool.run(
            lambda: kb.documents(category=category, defect_type=defect_type, domain=domain, offset=offset, limit=limit)
        )
        return _json(listing)

    @app.get(
        "/v1/blobs/{name}",
        tags=["knowledge"],
        dependencies=read,
        responses={200: {"content": {"image/png": {}}}},
        summary="A page, figure or image retrieval returned (the last part of its image_path).",
    )
    async def blob(name: str) -> FileResponse:
        if not BLOB_NAME.fullmatch(name):
            raise HTTPException(404, "no such blob")
        path = kb.blobs.path(name)
        if not path.is_file():
            raise HTTPException(404, "no such blob")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=31536000, immutable"})

    @app.post("/v1/seek", tags=["inspect"], response_model=SeekResult, dependencies=read)
    async def seek(
        image: Annotated[UploadFile, File(description="The photo.")],
        k: Annotated[int, Form(ge=1, le=100)] = 5,
        strategy: Annotated[str, Form()] = "kde",
        category: Annotated[str | None, Form()] = None,
        text: Annotated[str | None, Form()] = None,
        defect_type: Annotated[str | None, Form()] = None,
        domain: Annotated[str | None, Form()] = None,
        include_normal: Annotated[bool, Form()] = False,
        key: Annotated[str, Form()] = "auto",
        seed: Annotated[int | None, Form()] = None,
    ) -> JSONResponse:
        data = await image_bytes(image)
        result = await service.pool.run(
            lambda: kb.seek(
                photo(data),
                k,
                strategy,
                category or None,
                text or None,
                defect_type=defect_type or None,
                domain=domain or None,
                include_normal=include_normal,
                key=key,
                seed=seed,
            )
        )
        return _json(result)

    @app.post(
        "/v1/detect",
        tags=["inspect"],
        dependencies=read,
        responses={200: {"model": Detection, "description": "Detection, and 'heatmap' (a PNG data URL) when asked."}},
    )
    async def detect(
        image: Annotated[UploadFile, File(description="The photo.")],
        category: Annotated[str | None, Form()] = None,
        mode: Annotated[str, Form()] = "auto",
        heatmap: Annotated[bool, Form(description="Add the map as an RGBA PNG data URL.")] = False,
    ) -> JSONResponse:
        data = await image_bytes(image)

        def run() -> tuple[Detection, str | None]:
            found = kb.detect(photo(data), category or None, mode=mode)
            return found, heatmap_data_url(found) if heatmap else None

        found, url = await service.pool.run(run)
        return _json(found, **({"heatmap": url} if heatmap else {}))

    @app.post(
        "/v1/ask",
        tags=["inspect"],
        dependencies=read,
        responses={
            200: {
                "model": Answer,
                "content": {"text/event-stream": {}},
                "description": "Answer; with stream=true server-sent events: 'detection' (with heatmap=true), "
                "'token' {text}, then 'answer' (the Answer) or 'error' {detail}.",
            }
        },
    )
    async def ask(
        image: Annotated[UploadFile, File(description="The photo.")],
        question: Annotated[str, Form()] = "Is there a defect in this image? What type, and why does it matter?",
        category: Annotated[str | None, Form()] = None,
        k: Annotated[int, Form(ge=1, le=20)] = 3,
        llm: Annotated[str | None, Form(description="'none' or the server's configured backend.")] = None,
        setting: Annotated[str, Form()] = "seek",
        stream: Annotated[bool, Form()] = False,
        heatmap: Annotated[
            bool, Form(description="With stream: a 'detection' event (with the heatmap) before the tokens.")
        ] = False,
    ) -> Response:
        data = await image_bytes(image)

        def run(emit: Callable[[str], Any] | None, first: Callable[[Detection], Any] | None = None) -> Answer:
            query = kb.query(photo(data))
            if first is not None:  # the same query: its encoder pass serves the answer too
                first(kb.detect(query, category or None))
            return kb.ask(
                query, question, service.llm(llm), setting=setting, category=category or None, k=k, stream=emit
            )

        if not stream:
            return _json(await service.pool.run(lambda: run(None)))
        loop = asyncio.get_running_loop()
        events_queue: asyncio.Queue[str | None] = asyncio.Queue()

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(events_queue.put_nowait, _event("token", {"text": text}))

        def detected(found: Detection) -> None:
            content = found.model_dump(mode="json")
            content["heatmap"] = heatmap_data_url(found)
            loop.call_soon_threadsafe(events_queue.put_nowait, _event("detection", content))

        async def work() -> Answer:
            try:
                return await service.pool.run(lambda: run(emit, detected if heatmap else None))
            finally:
                events_queue.put_nowait(None)

        task = asyncio.ensure_future(work())
        await asyncio.sleep(0)
        if task.done() and task.exception() is not None:  # refused at once (busy): a plain error
            raise task.exception()  # type: ignore[misc]

        async def events() -> AsyncIterator[str]:
            while (event := await events_queue.get()) is not None:
                yield event
            try:
                answer = await task
            except KBEngineError as e:
                yield _event("error", {"detail": str(e)})
            except Busy:
                yield _event("error", {"detail": "busy: the request queue is full, retry shortly"})
            else:
                yield _event("answer", answer.model_dump(mode="json"))

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- write routes ---------------------------------------------------------------------------
    @app.post("/v1/ingest", tags=["knowledge"], status_code=202, response_model=Job, dependencies=write)
    async def ingest(
        files: Annotated[list[UploadFile], File(description="PDFs, images, a card.yaml with its images.")],
        domain: Annotated[str | None, Form()] = None,
        category: Annotated[str | None, Form()] = None,
        defect_type: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        if len(files) > settings.max_upload_files:
            raise InvalidInputError(f"{len(files)} files: at most {settings.max_upload_files} in one upload")
        named: dict[str, bytes] = {}
        for upload in files:
            name = safe_name(upload.filename, "upload")
            stem, suffix = Path(name).stem, Path(name).suffix
            n = 1
            while name in named:
                n += 1
                name = f"{stem}-{n}{suffix}"
            named[name] = await upload.read()

        def check() -> None:
            for name, data in named.items():
                check_ingest_upload(name, data, kb.settings.max_image_pixels)

        await asyncio.get_running_loop().run_in_executor(None, check)  # refused: nothing written
        folder = service.uploads / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            for name, data in named.items():
                (folder / name).write_bytes(data)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        options = {"domain": domain or None, "category": category or None, "defect_type": defect_type or None}
        job = service.jobs.submit(folder, list(named), options)
        return JSONResponse(job.model_dump(mode="json"), status_code=202)

    @app.delete("/v1/documents/{doc_id}", tags=["knowledge"], response_model=EditReport, dependencies=write)
    async def remove_document(doc_id: str, dry_run: bool = False) -> JSONResponse:
        """Remove a document and every lock of it (``kb.remove``)."""
        report = await service.pool.run(lambda: kb.remove(doc_id, dry_run=dry_run), write=True)
        if not report.documents:
            raise HTTPException(404, f"no document {doc_id}")
        return _json(report)

    @app.patch("/v1/documents/{doc_id}", tags=["knowledge"], response_model=EditReport, dependencies=write)
    async def relabel_document(doc_id: str, labels: Relabel) -> JSONResponse:
        """Give a document new labels (``kb.relabel``)."""
        report = await service.pool.run(
            lambda: kb.relabel(
                doc_id,
                defect_type=labels.defect_type,
                category=labels.category,
                domain=labels.domain,
                dry_run=labels.dry_run,
            ),
            write=True,
        )
        if not report.documents:
            raise HTTPException(404, f"no document {doc_id}")
        return _json(report)

    @app.get("/v1/jobs/{job_id}", tags=["knowledge"], response_model=Job, dependencies=write)
    async def job(job_id: str) -> JSONResponse:
        found = service.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, "no such job (finished jobs are kept for a while, KBENGINE_JOBS_KEPT)")
        return JSONResponse(found.model_dump(mode="json"))

    # -- the page -------------------------------------------------------------------------------
    if (STATIC / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(Measured, metrics=service.metrics)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    return app


def _key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY``, else ``X-API-Key``."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


async def _http_error(_: Request, e: HTTPException) -> JSONResponse:
    return _error(e.status_code, str(e.detail), dict(e.headers or {}))


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kbengine")
    except PackageNotFoundError:
        return "0"

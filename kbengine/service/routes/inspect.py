"""``POST /v1/seek``, ``/v1/detect`` and ``/v1/ask``: a photo in, the Python API's result out.

Every model call runs on the service's bounded worker pool; ``ask`` streams server-sent events:
``detection`` (with ``heatmap=true``), ``token``..., then ``answer`` or ``error``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kbengine.core.errors import KBEngineError
from kbengine.core.schemas import Answer, Detection, SeekResult
from kbengine.service.heatmap import heatmap_data_url
from kbengine.service.pool import Busy
from kbengine.service.recent import INSPECTION_HEADER
from kbengine.service.replies import BUSY, event, json_reply
from kbengine.service.state import READ, Service, Shared, read_upload

router = APIRouter(tags=["inspect"])
Reply = TypeVar("Reply", bound=Response)


@router.post("/v1/seek", response_model=SeekResult, dependencies=READ)
async def seek(
    service: Shared,
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
    candidates: Annotated[int | None, Form(ge=1, le=10_000)] = None,
    focus: Annotated[bool | None, Form()] = None,
) -> JSONResponse:
    data = await read_upload(image)
    kb = service.kb
    result = await service.pool.run(
        lambda: kb.seek(
            service.photo(data),
            k,
            strategy,
            category or None,
            text or None,
            defect_type=defect_type or None,
            domain=domain or None,
            include_normal=include_normal,
            key=key,
            seed=seed,
            candidates=candidates,
            focus=focus,
        )
    )
    return inspected(json_reply(result), service, data)


@router.post(
    "/v1/detect",
    tags=["inspect"],
    dependencies=READ,
    responses={200: {"model": Detection, "description": "Detection, and 'heatmap' (a PNG data URL) when asked."}},
)
async def detect(
    service: Shared,
    image: Annotated[UploadFile, File(description="The photo.")],
    category: Annotated[str | None, Form()] = None,
    mode: Annotated[str, Form()] = "auto",
    heatmap: Annotated[bool, Form(description="Add the map as an RGBA PNG data URL.")] = False,
) -> JSONResponse:
    data = await read_upload(image)
    kb = service.kb

    def run() -> tuple[Detection, str | None]:
        found = kb.detect(service.photo(data), category or None, mode=mode)
        return found, heatmap_data_url(found) if heatmap else None

    found, url = await service.pool.run(run)
    return inspected(json_reply(found, extra={"heatmap": url} if heatmap else None), service, data)


@router.post(
    "/v1/ask",
    tags=["inspect"],
    dependencies=READ,
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
    service: Shared,
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
    data = await read_upload(image)
    kb = service.kb

    def run(emit: Callable[[str], Any] | None, first: Callable[[Detection], Any] | None = None) -> Answer:
        query = kb.query(service.photo(data))
        if first is not None:  # the same query: its encoder pass serves the answer too
            first(kb.detect(query, category or None))
        return kb.ask(query, question, service.llm(llm), setting=setting, category=category or None, k=k, stream=emit)

    if not stream:
        return inspected(json_reply(await service.pool.run(lambda: run(None))), service, data)
    loop = asyncio.get_running_loop()
    events_queue: asyncio.Queue[str | None] = asyncio.Queue()

    def emit(text: str) -> None:
        loop.call_soon_threadsafe(events_queue.put_nowait, event("token", {"text": text}))

    def detected(found: Detection) -> None:
        content = found.model_dump(mode="json")
        content["heatmap"] = heatmap_data_url(found)
        loop.call_soon_threadsafe(events_queue.put_nowait, event("detection", content))

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
        while (item := await events_queue.get()) is not None:
            yield item
        try:
            answer = await task
        except KBEngineError as e:
            yield event("error", {"detail": str(e)})
        except Busy:
            yield event("error", {"detail": BUSY})
        else:
            yield event("answer", answer.model_dump(mode="json"))

    headers = {"Cache-Control": "no-cache", INSPECTION_HEADER: service.recent.add(data)}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def inspected(reply: Reply, service: Service, upload: tuple[bytes, str | None]) -> Reply:
    """``reply`` with the photo's inspection id (``POST /v1/feedback`` takes it instead of the photo)."""
    reply.headers[INSPECTION_HEADER] = service.recent.add(upload)
    return reply

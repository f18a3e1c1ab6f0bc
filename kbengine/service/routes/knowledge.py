"""What the knowledge base holds and how it changes: ``GET /v1/info``, ``/v1/documents``,
``/v1/blobs/{name}`` (read scope); ``POST /v1/ingest`` with ``GET /v1/jobs/{id}``, ``DELETE`` and
``PATCH /v1/documents/{id}`` (write scope). Uploads are checked before anything is written and
stored under names the server makes; no path from a request is opened."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from kbengine.core.blobs import BLOB_NAME
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import DocumentList, EditReport, KBInfo
from kbengine.service.jobs import Job
from kbengine.service.replies import json_reply
from kbengine.service.state import READ, WRITE, Shared
from kbengine.service.uploads import check_ingest_upload, safe_name

router = APIRouter(tags=["knowledge"])


class Relabel(BaseModel):
    """The new labels of ``PATCH /v1/documents/{doc_id}`` (at least one)."""

    category: str | None = None
    defect_type: str | None = None
    domain: str | None = None
    dry_run: bool = False


@router.get("/v1/info", response_model=KBInfo, dependencies=READ)
async def info(service: Shared) -> JSONResponse:
    return json_reply(await service.pool.run(service.kb.info))


@router.get("/v1/documents", response_model=DocumentList, dependencies=READ)
async def documents(
    service: Shared,
    category: str | None = None,
    defect_type: str | None = None,
    domain: str | None = None,
    source: Annotated[
        str | None, Query(description="The documents from this file, or the files under this folder.")
    ] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    listing = await service.pool.run(
        lambda: service.kb.documents(
            category=category, defect_type=defect_type, domain=domain, source=source, offset=offset, limit=limit
        )
    )
    return json_reply(listing)


@router.get(
    "/v1/blobs/{name}",
    tags=["knowledge"],
    dependencies=READ,
    responses={200: {"content": {"image/png": {}}}},
    summary="A page, figure or image retrieval returned (the last part of its image_path).",
)
async def blob(name: str, service: Shared) -> FileResponse:
    if not BLOB_NAME.fullmatch(name):
        raise HTTPException(404, "no such blob")
    path = service.kb.blobs.path(name)
    if not path.is_file():
        raise HTTPException(404, "no such blob")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=31536000, immutable"})


@router.post("/v1/ingest", status_code=202, response_model=Job, dependencies=WRITE)
async def ingest(
    service: Shared,
    files: Annotated[list[UploadFile], File(description="PDFs, images, a card.yaml with its images.")],
    domain: Annotated[str | None, Form()] = None,
    category: Annotated[str | None, Form()] = None,
    defect_type: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    if len(files) > service.settings.max_upload_files:
        raise InvalidInputError(f"{len(files)} files: at most {service.settings.max_upload_files} in one upload")
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
            check_ingest_upload(name, data, service.kb.settings.max_image_pixels)

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
    return json_reply(job, status=202)


@router.delete("/v1/documents/{doc_id}", response_model=EditReport, dependencies=WRITE)
async def remove_document(doc_id: str, service: Shared, dry_run: bool = False) -> JSONResponse:
    """Remove a document and every lock of it (``kb.remove``)."""
    report = await service.pool.run(lambda: service.kb.remove(doc_id, dry_run=dry_run), write=True)
    if not report.documents:
        raise HTTPException(404, f"no document {doc_id}")
    return json_reply(report)


@router.patch("/v1/documents/{doc_id}", response_model=EditReport, dependencies=WRITE)
async def relabel_document(doc_id: str, labels: Relabel, service: Shared) -> JSONResponse:
    """Give a document new labels (``kb.relabel``)."""
    report = await service.pool.run(
        lambda: service.kb.relabel(
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
    return json_reply(report)


@router.get("/v1/jobs/{job_id}", response_model=Job, dependencies=WRITE)
async def job(job_id: str, service: Shared) -> JSONResponse:
    found = service.jobs.get(job_id)
    if found is None:
        raise HTTPException(404, "no such job (finished jobs are kept for a while, KBENGINE_JOBS_KEPT)")
    return json_reply(found)

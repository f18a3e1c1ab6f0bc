"""``POST /v1/feedback``: an inspector's verdict on a photo becomes knowledge (``kb.feedback``).

The photo comes as a multipart ``image``, or as the ``inspection`` id a seek, detect or ask of
this service answered with (header ``X-Inspection-Id``) so the page does not upload it twice.
Write scope: it changes the knowledge base (under the pool's write lock, as ingest does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse

from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import FeedbackReport
from kbengine.service.replies import json_reply
from kbengine.service.state import WRITE, Shared, read_upload
from kbengine.service.uploads import decode_upload

router = APIRouter(tags=["knowledge"])


@router.post("/v1/feedback", response_model=FeedbackReport, dependencies=WRITE)
async def feedback(
    service: Shared,
    category: Annotated[str, Form(description="The part's category.")],
    defect_type: Annotated[str, Form(description="Its defect type, or good for a normal part.")],
    image: Annotated[UploadFile | None, File(description="The photo (or give inspection).")] = None,
    inspection: Annotated[
        str | None, Form(description="The X-Inspection-Id of a photo this service inspected lately.")
    ] = None,
    note: Annotated[str | None, Form(max_length=2000)] = None,
    domain: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    if (image is None) == (not inspection):
        raise InvalidInputError("give the photo as image, or the inspection id of one this service inspected")
    if image is not None:
        upload = await read_upload(image)
    else:
        held = service.recent.get(str(inspection))
        if held is None:
            raise InvalidInputError(
                f"inspection {inspection}: this service no longer holds that photo (it keeps the latest few); "
                "upload it as image"
            )
        upload = held
    kb = service.kb

    def run() -> FeedbackReport:
        decode_upload(upload[0], upload[1], kb.settings.max_image_pixels)  # the upload's checks, named by its name
        return kb.feedback(upload[0], category=category, defect_type=defect_type, domain=domain or None, note=note)

    return json_reply(await service.pool.run(run, write=True))

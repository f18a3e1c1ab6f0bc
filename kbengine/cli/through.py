"""The commands' requests to a running ``kbengine serve`` (:mod:`kbengine.cli.remote`): each
returns the result model the in-process command gets, named as in-process (the photo by the path
the user gave, where the service only saw an upload)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbengine.cli.remote import Remote, ServiceError, call, events
from kbengine.core.errors import InvalidInputError, KBEngineError
from kbengine.core.vocabulary import printable

if TYPE_CHECKING:
    from kbengine.core.schemas import Answer, Detection, FileFailure, IngestReport, SeekResult

__all__ = ["ask", "call", "detect", "detect_many", "ingest", "refuse", "seek"]

POLL = 0.2
"""Seconds between two looks at an ingest job."""


def refuse(remote: Remote, given: Mapping[str, object]) -> None:
    """Refuse the options the service's API does not take (those given: truthy values)."""
    named = [option for option, value in given.items() if value]
    if named:
        raise InvalidInputError(
            f"{', '.join(named)}: not available through {remote.where()}; leave "
            f"{'it' if len(named) == 1 else 'them'} out, or stop the service to run in-process"
        )


def seek(remote: Remote, image: Path, fields: Mapping[str, object]) -> SeekResult:
    from kbengine.core.schemas import SeekResult

    result = call(remote, "POST", "/v1/seek", SeekResult, fields=fields, files=[("image", image)])
    result.query = printable(str(image))
    return result


def without_map(content: dict[str, Any]) -> dict[str, Any]:
    """A Detection's JSON with the empty arrays that stand for the map and mask it leaves out."""
    import numpy as np

    return {**content, "anomaly_map": np.zeros((0, 0), np.float32), "mask": np.zeros((0, 0), bool)}


def detect(remote: Remote, image: Path, fields: Mapping[str, object]) -> Detection:
    from kbengine.core.schemas import Detection

    content = call(remote, "POST", "/v1/detect", fields=fields, files=[("image", image)])
    result = Detection.model_validate(without_map(content))
    result.image = printable(str(image))
    return result


def as_answer(content: dict[str, Any]) -> Answer:
    from kbengine.core.schemas import Answer

    if content.get("detection") is not None:
        content = {**content, "detection": without_map(content["detection"])}
    return Answer.model_validate(content)


def detect_many(remote: Remote, photos: list[Path], fields: Mapping[str, object]) -> Iterator[Detection | FileFailure]:
    """One request a photo, in order; a photo the service refuses is a ``FileFailure``."""
    from kbengine.core.schemas import FileFailure

    for photo in photos:
        try:
            yield detect(remote, photo, fields)
        except InvalidInputError as e:
            name = printable(str(photo))
            yield FileFailure(path=name, reason=str(e).removeprefix(f"{photo.name}: "))


def ask(remote: Remote, image: Path, fields: Mapping[str, object], stream: Callable[[str], Any] | None) -> Answer:
    """The service's answer; with ``stream``, its tokens handed to ``stream`` as they arrive."""
    files = [("image", image)]
    answer: Answer | None = None
    if stream is None:
        answer = as_answer(call(remote, "POST", "/v1/ask", fields=fields, files=files))
    else:
        for name, data in events(remote, "/v1/ask", fields={**fields, "stream": True}, files=files):
            if name == "token":
                stream(data["text"])
            elif name == "answer":
                answer = as_answer(data)
            elif name == "error":
                raise ServiceError(f"{remote.where()}: {data['detail']}")
        if answer is None:
            raise ServiceError(f"{remote.where()} ended the answer's stream without an answer")
    assert answer is not None
    if answer.detection is not None:
        answer.detection.image = printable(str(image))
    return answer


def ingest(
    remote: Remote,
    paths: list[Path],
    domain: str | None,
    category: str | None,
    defect_type: str | None,
    progress: Callable[[int, int, str], None],
) -> IngestReport:
    """Upload ``paths`` (files, not folders) as one ingest job and wait for its report."""
    from kbengine.core.schemas import IngestReport

    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise InvalidInputError(
            f"{', '.join(folders)}: {remote.where()} takes uploaded files (PDFs, images, a card with its "
            "images), not folders, whose layout labels their documents only in-process; give the files "
            "(with --category/--defect-type where they need labels), or stop the service and ingest the folder"
        )
    fields = {"domain": domain, "category": category, "defect_type": defect_type}
    job = call(remote, "POST", "/v1/ingest", fields=fields, files=[("files", p) for p in paths])
    while job["state"] in ("queued", "running"):
        progress(int(job.get("done", 0)), int(job.get("total", 0)), "")
        time.sleep(POLL)
        job = call(remote, "GET", f"/v1/jobs/{job['id']}")
    report = job.get("report")
    if job["state"] == "failed" and report is None:
        raise KBEngineError(f"{remote.where()}: ingest failed: {job.get('error')}")
    if report is None:
        raise ServiceError(f"{remote.where()}: the ingest job ended without a report")
    result = IngestReport.model_validate(report)
    if job["state"] == "failed":
        result.notes.append(f"the service stopped the job: {job.get('error')}")
    return result

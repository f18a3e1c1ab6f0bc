"""Ingest jobs: an upload is written to its own folder and ingested from one background thread, one
source at a time under the pool's write lock (queries wait for one file, not the whole upload),
the model work on the pool's worker; ``GET /v1/jobs/{id}`` reads the progress."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from kbengine.core.errors import KBEngineError
from kbengine.core.schemas import FileFailure, IngestReport
from kbengine.service.pool import WorkPool

JobState = Literal["queued", "running", "done", "failed"]
CARD_NAMES = frozenset({"card.yaml", "card.yml", "card.md"})


class Job(BaseModel):
    """An ingest job as ``GET /v1/jobs/{id}`` shows it."""

    id: str
    state: JobState = "queued"
    files: list[str] = Field(default_factory=list, description="The uploaded files' names, as stored.")
    total: int = Field(0, description="Ingest steps: one per file, or one for a folder with a card.")
    done: int = 0
    report: IngestReport | None = None
    error: str | None = None
    created: float = Field(default_factory=time.time)
    finished: float | None = None


def merge_reports(reports: list[IngestReport]) -> IngestReport | None:
    """One report for a job's steps: counts added, lists joined."""
    if not reports:
        return None
    merged = reports[0].model_copy(deep=True)
    for report in reports[1:]:
        for name in IngestReport.model_fields:
            mine, theirs = getattr(merged, name), getattr(report, name)
            if isinstance(mine, bool):
                continue
            if isinstance(mine, int | float):
                setattr(merged, name, mine + theirs)
            elif isinstance(mine, list):
                setattr(merged, name, mine + [item for item in theirs if item not in mine])
    return merged


class Jobs:
    """Runs ingest jobs one after another; keeps the last ``kept`` finished ones."""

    def __init__(
        self,
        ingest: Callable[..., IngestReport],
        pool: WorkPool,
        kept: int,
        on_finish: Callable[[Job], Any] | None = None,
    ) -> None:
        self._ingest = ingest
        self._pool = pool
        self._kept = kept
        self._on_finish = on_finish
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._guard = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kbengine-ingest")

    def get(self, job_id: str) -> Job | None:
        with self._guard:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job else None

    def submit(self, folder: Path, files: list[str], options: dict[str, str | None]) -> Job:
        steps = [folder] if CARD_NAMES & set(files) else [folder / name for name in files]
        job = Job(id=uuid.uuid4().hex, files=files, total=len(steps))
        with self._guard:
            self._jobs[job.id] = job
            self._forget_old()
        self._executor.submit(self._run, job.id, folder, steps, options)
        return job.model_copy(deep=True)

    def _run(self, job_id: str, folder: Path, steps: list[Path], options: dict[str, str | None]) -> None:
        reports: list[IngestReport] = []
        self._update(job_id, state="running")
        try:
            for step in steps:
                reports.append(self._pool.call(partial(self._write, step, options)))
                self._update(job_id, done=len(reports), report=merge_reports(reports))
        except KBEngineError as e:
            self._update(job_id, state="failed", error=str(e), report=merge_reports(reports))
        except Exception as e:  # a job must end in a state the client can read
            self._update(job_id, state="failed", error=f"{e.__class__.__name__}: {e}", report=merge_reports(reports))
        else:
            self._update(job_id, state="done")
        finally:
            self._update(job_id, finished=time.time())
            report = self.get(job_id)
            if report and report.report and report.report.documents == 0 and not report.report.locks_added:
                failed: list[FileFailure] = report.report.failed
                if failed and len(failed) >= len(steps):
                    shutil.rmtree(folder, ignore_errors=True)  # nothing of it stored: keep nothing
            if self._on_finish and report:
                self._on_finish(report)

    def _write(self, step: Path, options: dict[str, str | None]) -> IngestReport:
        """One ingest step, on a worker, holding the write lock (queries wait for this one file)."""
        with self._pool.lock.writing():
            return self._ingest(step, **options)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._guard:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = job.model_copy(update=changes)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished is not None]
        for job_id in finished[: max(0, len(finished) - self._kept)]:
            del self._jobs[job_id]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
